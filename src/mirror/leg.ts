/**
 * Leg: one device of a mirror set (the kernel's `struct mirror`), with its error bookkeeping.
 *
 * Error kinds (dm-raid1's DM_RAID1_*_ERROR bits) and the status letter they give, in precedence order:
 *   flush -> F,  write -> D,  sync -> S (recovery copy failed),  read -> R;  errors of no kind -> U;
 *   no error -> A.
 * `errorCount` only grows until the mirror set resets all legs when a resync completes (reset_ms_flags).
 * A leg with errorCount > 0 is not "valid": it is never chosen for reads while another leg is.
 * Only MirrorSet.failLeg() records errors, so every failure goes through one place (dm's fail_mirror).
 *
 * A remote leg (issue 11) also has a `connection` (the reconnecting NBD device) and may be `returning`:
 *
 *   in service --(its connection is lost; I/O fails fast, the leg fails as any leg)--> failed (D/F)
 *   failed --(connection 'attached', same size)--> returning: the errors stay (letter D, not valid: no
 *            read source, never the new default), writes go to it as to every leg, recovery copies the
 *            regions out of sync onto it from the default leg
 *   returning --(the set is in sync again: sync complete resets every leg)--> in service, letter A
 *   returning --(connection lost again, or a recovery copy onto it fails)--> failed
 *   (a write error keeps it returning: the write may be one from before it came back, completed late;
 *   its region goes out of sync and recovery copies it onto the leg, or fails trying)
 * `resyncBytesTotal` counts the bytes recovery wrote onto the leg (in stats, for status and metrics).
 */
import { assert, assertCount } from '../assert.js';
import type { BlockDevice } from '../block/block-device.js';

export type LegErrorKind = 'flush' | 'write' | 'sync' | 'read';
export type LegHealth = 'A' | 'F' | 'D' | 'S' | 'R' | 'U';

const precedence: readonly [LegErrorKind, LegHealth][] = [
  ['flush', 'F'],
  ['write', 'D'],
  ['sync', 'S'],
  ['read', 'R'],
];

/** Per-leg I/O counters (for metrics); errors counted per kind, never reset. */
export interface LegStats {
  readsTotal: number;
  writesTotal: number;
  readBytesTotal: number;
  writeBytesTotal: number;
  flushesTotal: number;
  /** Read errors corrected by writing the good data back (read repair); the leg stayed A. */
  correctedReadErrorsTotal: number;
  /** Bytes recovery copied onto this leg (resync onto a new or returning leg). */
  resyncBytesTotal: number;
  /** Times the leg came back and began its resync (re-attaches of its connection). */
  returnsTotal: number;
  errorsTotal: Record<LegErrorKind, number>;
}

/** The state of a remote leg's connection; a local leg is 'local'. */
export type LegConnectionState = 'local' | 'connected' | 'connecting' | 'detached';

/** The events a remote leg's connection raises (ReconnectingNbdBlockDevice's). */
export type LegConnectionEvent =
  | { readonly type: 'detached'; readonly reason: Error }
  | { readonly type: 'attached' }
  | { readonly type: 'reattach-refused'; readonly reason: Error };

/** What the mirror needs of a leg's connection: its state and its events (ReconnectingNbdBlockDevice). */
export interface LegConnection {
  readonly connectionState: 'connected' | 'connecting' | 'detached';
  onEvent(listener: (event: LegConnectionEvent) => void): () => void;
}

export class Leg {
  readonly stats: LegStats = {
    readsTotal: 0,
    writesTotal: 0,
    readBytesTotal: 0,
    writeBytesTotal: 0,
    flushesTotal: 0,
    correctedReadErrorsTotal: 0,
    resyncBytesTotal: 0,
    returnsTotal: 0,
    errorsTotal: { flush: 0, write: 0, sync: 0, read: 0 },
  };
  readonly index: number;
  readonly device: BlockDevice;
  /** The device name as written in the table. */
  readonly tableName: string;
  /** Where the mirror's data starts on the device, in bytes (the table's offset in sectors × 512). */
  readonly offsetBytes: number;
  /** The remote leg's connection; undefined for a local leg. */
  readonly connection: LegConnection | undefined;
  #errorCount = 0;
  readonly #errorKinds = new Set<LegErrorKind>();
  #returning = false;

  constructor(options: { index: number; device: BlockDevice; tableName: string; offsetBytes: number; connection?: LegConnection }) {
    assertCount(options.index, 'index');
    assertCount(options.offsetBytes, 'offsetBytes');
    this.index = options.index;
    this.device = options.device;
    this.tableName = options.tableName;
    this.offsetBytes = options.offsetBytes;
    this.connection = options.connection;
  }

  get connectionState(): LegConnectionState {
    return this.connection?.connectionState ?? 'local';
  }

  /** The connection is lost now (a remote leg not connected); false for a local leg. */
  get lost(): boolean {
    const state = this.connectionState;
    return state === 'connecting' || state === 'detached';
  }

  /** Came back after a loss and is being resynced (see the banner); never valid meanwhile. */
  get returning(): boolean {
    return this.#returning;
  }

  /** The leg came back: it stays failed until the set is in sync again. */
  beginReturn(): void {
    assert(!this.valid, 'only a failed leg returns');
    this.#returning = true;
    this.stats.returnsTotal += 1;
  }

  /** The leg failed again (lost, or a copy onto it failed), or the set is in sync (resetErrors). */
  endReturn(): void {
    this.#returning = false;
  }

  get errorCount(): number {
    return this.#errorCount;
  }

  /** A leg with no recorded error (get_valid_mirror's test). */
  get valid(): boolean {
    return this.#errorCount === 0;
  }

  hasError(kind: LegErrorKind): boolean {
    return this.#errorKinds.has(kind);
  }

  /** Records an error; returns true when it is the first of its kind (the kernel raises an event then). */
  recordError(kind: LegErrorKind): boolean {
    this.#errorCount += 1;
    this.stats.errorsTotal[kind] += 1;
    if (this.#errorKinds.has(kind)) return false;
    this.#errorKinds.add(kind);
    return true;
  }

  /** Forgets every error (reset_ms_flags, when a resync completes); a returning leg is back. */
  resetErrors(): void {
    this.#errorCount = 0;
    this.#errorKinds.clear();
    this.#returning = false;
  }

  get health(): LegHealth {
    if (this.#errorCount === 0) return 'A';
    for (const [kind, letter] of precedence) if (this.#errorKinds.has(kind)) return letter;
    assert(this.#errorKinds.size === 0);
    return 'U';
  }
}
