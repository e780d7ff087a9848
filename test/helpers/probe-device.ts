/**
 * Probes for fault, regression and NBD server tests (the one ProbeDevice of test/):
 *   ProbeDevice  wraps a BlockDevice, records every request in a shared journal (start and end, in
 *                order), counts requests in flight (and the most at once), can delay every request by
 *                `delayMs`, can advertise other capabilities than the inner device (an NBD export
 *                without fast zeroes), and can hold requests of a kind (and range) at a gate until
 *                release() — the oracle's suspended-linear "gate", in memory.
 *   ProbeLog     wraps a DirtyLog, records marks, clears and flushes in the same journal, and can fail
 *                or slow down flushes.
 * Both forward everything else unchanged, argument checks included (the inner device makes them).
 * close() of a ProbeDevice does not close the inner device unless `closeInner` is set, so one device
 * can back several tables in a test.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { BlockCapabilities, BlockDevice, ReadOptions, WriteOptions, ZeroOptions } from '../../src/block/block-device.js';
import type { DirtyLog, DirtyLogStats, LogFlushOptions, LogHealth, LogSyncMode } from '../../src/dirty-log/dirty-log.js';
import { BlockError } from '../../src/errors.js';

export type ProbeOp = 'read' | 'write' | 'zero' | 'trim' | 'flush';

export interface JournalEntry {
  readonly seq: number;
  readonly who: string;
  readonly what: 'start' | 'end' | 'mark' | 'clear' | 'flush-start' | 'flush-end' | 'flush-failed';
  readonly op?: ProbeOp;
  readonly offsetBytes?: number;
  readonly lengthBytes?: number;
  readonly regionIndex?: number;
}

/** A shared, ordered record of what every probe saw. */
export class Journal {
  readonly entries: JournalEntry[] = [];
  #seq = 0;
  add(entry: Omit<JournalEntry, 'seq'>): number {
    const seq = this.#seq++;
    this.entries.push({ seq, ...entry });
    return seq;
  }
}

export interface GateSpec {
  readonly ops: readonly ProbeOp[];
  /** Only requests overlapping this byte range wait at the gate. */
  readonly range?: { readonly offsetBytes: number; readonly lengthBytes: number };
}

export interface ProbeDeviceOptions {
  readonly name?: string;
  readonly journal?: Journal;
  /** Every request waits this long (after the gate) before it reaches the inner device. */
  readonly delayMs?: number;
  /** Capabilities to advertise instead of the inner device's (e.g. `{ writeZeroes: false }`). */
  readonly capabilities?: Partial<BlockCapabilities>;
  /** close() closes the inner device too (default: it stays open). */
  readonly closeInner?: boolean;
}

export class ProbeDevice implements BlockDevice {
  readonly inner: BlockDevice;
  readonly name: string;
  readonly journal: Journal;
  /** Requests started and not yet settled (those waiting at the gate included), and the most at once. */
  inFlight = 0;
  inFlightMax = 0;
  /** Requests seen in all. */
  operations = 0;
  delayMs: number;
  readonly #capabilities: Partial<BlockCapabilities>;
  readonly #closeInner: boolean;
  #gate: { spec: GateSpec; opened: Promise<void>; open: () => void } | undefined;
  #waiting = 0;

  constructor(inner: BlockDevice, options: ProbeDeviceOptions = {}) {
    this.inner = inner;
    this.name = options.name ?? inner.name;
    this.journal = options.journal ?? new Journal();
    this.delayMs = options.delayMs ?? 0;
    this.#capabilities = options.capabilities ?? {};
    this.#closeInner = options.closeInner ?? false;
  }

  get sizeBytes(): number {
    return this.inner.sizeBytes;
  }

  get logicalBlockBytes(): number {
    return this.inner.logicalBlockBytes;
  }

  get capabilities(): BlockCapabilities {
    return { ...this.inner.capabilities, ...this.#capabilities };
  }

  /** Requests currently waiting at the gate. */
  get waiting(): number {
    return this.#waiting;
  }

  /** Closes the gate: matching requests wait until release(). */
  hold(spec: GateSpec): void {
    let open: () => void = () => undefined;
    const opened = new Promise<void>((resolve) => {
      open = resolve;
    });
    this.#gate = { spec, opened, open };
  }

  /** Opens the gate: waiting requests go on, new ones pass. */
  release(): void {
    const gate = this.#gate;
    this.#gate = undefined;
    gate?.open();
  }

  /** Requests of the journal from this device, started (with their range). */
  started(op?: ProbeOp): JournalEntry[] {
    return this.journal.entries.filter((e) => e.who === this.name && e.what === 'start' && (op === undefined || e.op === op));
  }

  read(offsetBytes: number, lengthBytes: number, options?: ReadOptions): Promise<Buffer> {
    return this.#run('read', offsetBytes, lengthBytes, () => this.inner.read(offsetBytes, lengthBytes, options));
  }

  write(offsetBytes: number, data: Uint8Array, options?: WriteOptions): Promise<void> {
    return this.#run('write', offsetBytes, data.length, () => this.inner.write(offsetBytes, data, options));
  }

  flush(): Promise<void> {
    return this.#run('flush', 0, 0, () => this.inner.flush());
  }

  trim(offsetBytes: number, lengthBytes: number, options?: WriteOptions): Promise<void> {
    return this.#run('trim', offsetBytes, lengthBytes, () => this.inner.trim(offsetBytes, lengthBytes, options));
  }

  writeZeroes(offsetBytes: number, lengthBytes: number, options?: ZeroOptions): Promise<void> {
    return this.#run('zero', offsetBytes, lengthBytes, () => this.inner.writeZeroes(offsetBytes, lengthBytes, options));
  }

  close(): Promise<void> {
    return this.#closeInner ? this.inner.close() : Promise.resolve();
  }

  async #run<T>(op: ProbeOp, offsetBytes: number, lengthBytes: number, call: () => Promise<T>): Promise<T> {
    this.operations += 1;
    this.inFlight += 1;
    this.inFlightMax = Math.max(this.inFlightMax, this.inFlight);
    try {
      const gate = this.#gate;
      if (gate !== undefined && gate.spec.ops.includes(op) && overlaps(gate.spec.range, offsetBytes, lengthBytes)) {
        this.#waiting += 1;
        await gate.opened;
        this.#waiting -= 1;
      }
      if (this.delayMs > 0) await sleep(this.delayMs);
      this.journal.add({ who: this.name, what: 'start', op, offsetBytes, lengthBytes });
      const result = await call();
      this.journal.add({ who: this.name, what: 'end', op, offsetBytes, lengthBytes });
      return result;
    } finally {
      this.inFlight -= 1;
    }
  }
}

function overlaps(range: GateSpec['range'], offsetBytes: number, lengthBytes: number): boolean {
  if (range === undefined) return true;
  return offsetBytes < range.offsetBytes + range.lengthBytes && range.offsetBytes < offsetBytes + Math.max(lengthBytes, 1);
}

export class ProbeLog implements DirtyLog {
  readonly inner: DirtyLog;
  readonly journal: Journal;
  /** Make every flush fail with EIO. */
  failFlush = false;
  /** Delay every flush by this many ms (so overlapping I/O would show in the journal). */
  flushDelayMs = 0;
  flushesTotal = 0;

  constructor(inner: DirtyLog, journal: Journal) {
    this.inner = inner;
    this.journal = journal;
  }

  get type(): string {
    return this.inner.type;
  }
  get regionSizeSectors(): number {
    return this.inner.regionSizeSectors;
  }
  get regionCount(): number {
    return this.inner.regionCount;
  }
  get syncMode(): LogSyncMode {
    return this.inner.syncMode;
  }
  get health(): LogHealth {
    return this.inner.health;
  }
  get stats(): DirtyLogStats {
    return this.inner.stats;
  }
  isClean(regionIndex: number): boolean {
    return this.inner.isClean(regionIndex);
  }
  inSync(regionIndex: number): boolean {
    return this.inner.inSync(regionIndex);
  }
  markRegion(regionIndex: number): void {
    this.journal.add({ who: 'log', what: 'mark', regionIndex });
    this.inner.markRegion(regionIndex);
  }
  clearRegion(regionIndex: number): void {
    this.journal.add({ who: 'log', what: 'clear', regionIndex });
    this.inner.clearRegion(regionIndex);
  }
  async flush(options?: LogFlushOptions): Promise<void> {
    this.flushesTotal += 1;
    this.journal.add({ who: 'log', what: 'flush-start' });
    if (this.flushDelayMs > 0) await sleep(this.flushDelayMs);
    if (this.failFlush) {
      this.journal.add({ who: 'log', what: 'flush-failed' });
      throw new BlockError('EIO', 'Cannot flush the log: injected EIO');
    }
    await this.inner.flush(options);
    this.journal.add({ who: 'log', what: 'flush-end' });
  }
  getResyncWork(): number | null {
    return this.inner.getResyncWork();
  }
  setRegionSync(regionIndex: number, inSync: boolean): void {
    this.inner.setRegionSync(regionIndex, inSync);
  }
  syncCount(): number {
    return this.inner.syncCount();
  }
  resume(): Promise<void> {
    return this.inner.resume();
  }
  presuspend(): Promise<void> {
    return this.inner.presuspend();
  }
  postsuspend(): Promise<void> {
    return this.inner.postsuspend();
  }
  close(): Promise<void> {
    return this.inner.close();
  }
  statusInfo(): string {
    return this.inner.statusInfo();
  }
  statusTable(): string {
    return this.inner.statusTable();
  }
}
