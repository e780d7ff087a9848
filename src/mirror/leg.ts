/**
 * Leg: one device of a mirror set (the kernel's `struct mirror`), with its error bookkeeping.
 *
 * Error kinds (dm-raid1's DM_RAID1_*_ERROR bits) and the status letter they give, in precedence order:
 *   flush -> F,  write -> D,  sync -> S (recovery copy failed),  read -> R;  errors of no kind -> U;
 *   no error -> A.
 * `errorCount` only grows until the mirror set resets all legs when a resync completes (reset_ms_flags).
 * A leg with errorCount > 0 is not "valid": it is never chosen for reads while another leg is.
 * Only MirrorSet.failLeg() records errors, so every failure goes through one place (dm's fail_mirror).
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
  errorsTotal: Record<LegErrorKind, number>;
}

export class Leg {
  readonly stats: LegStats = {
    readsTotal: 0,
    writesTotal: 0,
    readBytesTotal: 0,
    writeBytesTotal: 0,
    flushesTotal: 0,
    correctedReadErrorsTotal: 0,
    errorsTotal: { flush: 0, write: 0, sync: 0, read: 0 },
  };
  readonly index: number;
  readonly device: BlockDevice;
  /** The device name as written in the table. */
  readonly tableName: string;
  /** Where the mirror's data starts on the device, in bytes (the table's offset in sectors × 512). */
  readonly offsetBytes: number;
  #errorCount = 0;
  readonly #errorKinds = new Set<LegErrorKind>();

  constructor(options: { index: number; device: BlockDevice; tableName: string; offsetBytes: number }) {
    assertCount(options.index, 'index');
    assertCount(options.offsetBytes, 'offsetBytes');
    this.index = options.index;
    this.device = options.device;
    this.tableName = options.tableName;
    this.offsetBytes = options.offsetBytes;
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

  /** Forgets every error (reset_ms_flags, when a resync completes). */
  resetErrors(): void {
    this.#errorCount = 0;
    this.#errorKinds.clear();
  }

  get health(): LegHealth {
    if (this.#errorCount === 0) return 'A';
    for (const [kind, letter] of precedence) if (this.#errorKinds.has(kind)) return letter;
    assert(this.#errorKinds.size === 0);
    return 'U';
  }
}
