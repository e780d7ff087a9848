/**
 * MappedDevice: dm core's mapped_device. A named BlockDevice whose sectors are mapped by a table of
 * targets (mirror, linear, zero, error). It knows nothing about mirrors: the caller builds each target
 * from its table line through `buildTarget`. Its parts: DeviceTable (device-table.ts: building,
 * destroying, routing and formatting one table), IoHoldGate (io-hold-gate.ts: held, parked and
 * in-flight I/O) and EventCounter (event-counter.ts: event_nr, listeners, `dmsetup wait`).
 *
 * Tables: at most one live and one inactive table (`dmsetup load` builds the inactive one; `resume`
 * swaps it in). Every target of a table is constructed at load time; if one fails, the ones built are
 * destroyed and the TableError is thrown, and the previous inactive table stays. A "too small for
 * target" error (dm core's area check) is thrown only after every other line was constructed, as the
 * kernel checks areas once the whole table is built. Unlike the kernel, which checks a reload's areas
 * when it resumes, a reload is checked at load too (test/scenario/oracle/table-order.out).
 *
 * States:
 *     ACTIVE --suspend()--> (suspending) --> SUSPENDED --resume()--> ACTIVE
 *   suspend(): 1. block the gate: new I/O is held (bounded by heldIoMax)
 *              2. presuspend every live target (the mirror releases its held writes here)
 *              3. wait until no I/O is in flight
 *              4. postsuspend every live target
 *   An I/O a target answers with RequeueRequest is parked by the gate while a noflush suspend is in
 *   progress (dm's DM_ENDIO_REQUEUE under DMF_NOFLUSH_SUSPENDING); otherwise it fails with EIO, as the
 *   kernel does when the noflush suspend was not requested. A failed presuspend unblocks the gate.
 *   resume(): if an inactive table exists, suspend first (plain), swap it in, resume its targets, re-issue
 *   parked I/O then queued I/O against the new live table, and only then destroy the old table (the
 *   kernel's do_resume order). Without an inactive table it resumes the live targets.
 *   A re-issued I/O is split again by the new table: the whole request is reissued.
 *
 * Routing: an I/O is split at segment boundaries; each piece goes to its segment's target with the
 * offset made segment-relative here, exactly once. Pieces run in parallel; a RequeueRequest of any piece
 * requeues the whole request, else the first error fails it. flush() goes to every target.
 *
 * Size: `sizeBytes` is 0 until the first resume with a table and then fixed for the life of the object
 * (an NBD export cannot change size). load() rejects a table of another total length with TableError
 * (source 'core') "Table length N sectors differs from device length M sectors"; the kernel would
 * resize instead.
 *
 * Events: `eventNr` only grows (dm's event_nr). Targets of the live table raise events through the
 * context they get from buildTarget (dm_table_event); events from a table that is not live are dropped,
 * as the kernel only hooks the live table's callback. waitEvent() is `dmsetup wait`.
 *
 * Control operations (load, suspend, resume, clear, remove/close) run one at a time in a SerialQueue;
 * I/O runs concurrently.
 */
import { assert, assertCount } from '../assert.js';
import type { BlockCapabilities, ReadOptions, WriteOptions, ZeroOptions } from '../block/block-device.js';
import { BlockDeviceBase } from '../block/block-device-base.js';
import { BlockError, ControlError, TableError } from '../errors.js';
import { rethrowProgrammerError } from '../fail-fast.js';
import { heldIoMaxDefault, sectorBytes } from '../limits.js';
import { SerialQueue } from '../serial-queue.js';
import { buildTable, destroyTable, formatSegments, settlePieces, splitRange, type DeviceTable, type Segment } from './device-table.js';
import { EventCounter } from './event-counter.js';
import { IoHoldGate } from './io-hold-gate.js';
import { parseTableText, tableLengthSectors, type TableLine } from './table-lines.js';
import type { SuspendOptions, Target, TargetContext } from './target.js';

export type { Segment } from './device-table.js';
export type { TargetContext } from './target.js';

export interface MappedDeviceOptions {
  readonly name: string;
  /** The target's ctr. Throws TableError on bad arguments; the device destroys targets it built. */
  readonly buildTarget: (line: TableLine, context: TargetContext) => Promise<Target>;
  /** Target types load() accepts (default: mirror, linear, zero, error). */
  readonly knownTypes?: readonly string[];
  /** I/O held while suspended (queued plus parked); beyond it new I/O fails with ENOMEM (default limits.ts heldIoMaxDefault). */
  readonly heldIoMax?: number;
}

export type MappedDeviceState = 'ACTIVE' | 'SUSPENDED';
export type TablesPresent = 'LIVE' | 'INACTIVE' | 'LIVE & INACTIVE' | 'None';

export interface MappedDeviceInfo {
  readonly name: string;
  readonly state: MappedDeviceState;
  readonly tablesPresent: TablesPresent;
  readonly openCount: number;
  readonly eventNr: number;
  readonly targetCount: number;
}

export class MappedDevice extends BlockDeviceBase {
  readonly name: string;
  readonly logicalBlockBytes = sectorBytes;
  readonly capabilities: BlockCapabilities = { flush: true, fua: true, trim: true, writeZeroes: true };
  readonly #buildTarget: MappedDeviceOptions['buildTarget'];
  readonly #knownTypes: readonly string[] | undefined;
  readonly #gate: IoHoldGate<DeviceTable>;
  readonly #events = new EventCounter();
  /** Orders the control operations (load, suspend, resume, clear, close). */
  readonly #control = new SerialQueue();

  #sizeBytes: number | undefined;
  #live: DeviceTable | undefined;
  #inactive: DeviceTable | undefined;
  #suspended = false;
  #openCount = 0;

  constructor(options: MappedDeviceOptions) {
    super();
    assert(options.name.length > 0, 'a mapped device needs a name');
    this.name = options.name;
    this.#buildTarget = options.buildTarget;
    this.#knownTypes = options.knownTypes;
    this.#gate = new IoHoldGate({
      name: options.name,
      heldIoMax: options.heldIoMax ?? heldIoMaxDefault,
      current: () => this.#live,
    });
    this.checkGeometry();
  }

  /** 0 until the first resume with a table; fixed afterwards. */
  get sizeBytes(): number {
    return this.#sizeBytes ?? 0;
  }

  get eventNr(): number {
    return this.#events.eventNr;
  }

  get suspended(): boolean {
    return this.#suspended;
  }

  /** I/O requests currently issued to targets (not held, not parked). */
  get inFlightCount(): number {
    return this.#gate.inFlightCount;
  }

  /** I/O held back: queued while suspended plus parked by RequeueRequest. */
  get heldCount(): number {
    return this.#gate.heldCount;
  }

  // ---- tables ---------------------------------------------------------------------------------------

  /**
   * Builds the inactive table from table text (`dmsetup load`), replacing any previous inactive table.
   * @throws TableError from parsing, from a target's constructor, or for a length change.
   */
  load(text: string): Promise<void> {
    return this.#control.run(async () => {
      this.#checkNotClosed('load');
      const lines = parseTableText(text, this.#knownTypes === undefined ? {} : { knownTypes: this.#knownTypes });
      const lengthSectors = tableLengthSectors(lines);
      if (this.#sizeBytes !== undefined && lengthSectors * sectorBytes !== this.#sizeBytes) {
        throw new TableError({
          source: 'core',
          kernelError:
            `Table length ${lengthSectors} sectors differs from device length ` +
            `${this.#sizeBytes / sectorBytes} sectors`,
        });
      }
      const table = await buildTable({
        deviceName: this.name,
        lines,
        buildTarget: this.#buildTarget,
        // dm_table_event: only the live table's targets count (the kernel hooks only its callback).
        raiseEvent: (source) => {
          if (source.live && this.#live === source) this.raiseEvent();
        },
      });
      const previous = this.#inactive;
      this.#inactive = table;
      if (previous !== undefined) await destroyTable(previous);
    });
  }

  /** Drops the inactive table (`dmsetup clear`). */
  clearInactive(): Promise<void> {
    return this.#control.run(async () => {
      const previous = this.#inactive;
      this.#inactive = undefined;
      if (previous !== undefined) await destroyTable(previous);
    });
  }

  /** Suspends the device (see the banner). A no-op when already suspended. */
  suspend(options: SuspendOptions = {}): Promise<void> {
    return this.#control.run(() => this.#suspend(options));
  }

  /** Swaps in the inactive table if any, resumes the targets and re-issues held I/O. */
  resume(): Promise<void> {
    return this.#control.run(() => this.#resume());
  }

  /**
   * `dmsetup remove`: refuses while open (EBUSY), else suspends with a flush, destroys both tables and
   * closes the device. Held I/O fails with ESHUTDOWN.
   * @throws ControlError EBUSY when the device is open.
   */
  async remove(): Promise<void> {
    if (this.#openCount > 0) {
      throw new ControlError('EBUSY', `Cannot remove ${this.name}: device is open (open count ${this.#openCount})`);
    }
    await this.close();
  }

  /** The live (or inactive) table's segments, in order. */
  segments(options: { inactive?: boolean } = {}): readonly Segment[] {
    const table = options.inactive === true ? this.#inactive : this.#live;
    return table?.segments ?? [];
  }

  /** `dmsetup table [--inactive]`: exactly what dmsetup prints, one line per target, "\n" when none. */
  table(options: { inactive?: boolean } = {}): string {
    return formatSegments(this.segments(options), (target) => target.statusTable());
  }

  /** `dmsetup status [--inactive]`: exactly what dmsetup prints, one line per target, "\n" when none. */
  status(options: { inactive?: boolean } = {}): string {
    return formatSegments(this.segments(options), (target) => target.statusInfo());
  }

  info(): MappedDeviceInfo {
    const live = this.#live !== undefined;
    const inactive = this.#inactive !== undefined;
    const tablesPresent: TablesPresent =
      live && inactive ? 'LIVE & INACTIVE' : live ? 'LIVE' : inactive ? 'INACTIVE' : 'None';
    return {
      name: this.name,
      state: this.#suspended ? 'SUSPENDED' : 'ACTIVE',
      tablesPresent,
      openCount: this.#openCount,
      eventNr: this.#events.eventNr,
      targetCount: this.#live?.segments.length ?? 0,
    };
  }

  // ---- open count and events -------------------------------------------------------------------------

  /** Counts an opener (an NBD export, a stacked table). */
  holdOpen(): void {
    this.#checkNotClosed('open');
    this.#openCount++;
  }

  releaseOpen(): void {
    assert(this.#openCount > 0, 'releaseOpen without holdOpen');
    this.#openCount--;
  }

  /** dm_table_event: bumps the event counter and wakes listeners and waiters. */
  raiseEvent(): void {
    this.#events.raise();
  }

  /** Calls `listener(eventNr)` on every event; returns the function that unsubscribes it. */
  onEvent(listener: (eventNr: number) => void): () => void {
    return this.#events.onEvent(listener);
  }

  /**
   * `dmsetup wait [afterNr]`: resolves with the event number once it exceeds `afterNr` (at once if it
   * already does). Rejects with the signal's reason on abort, and with ControlError ENXIO on remove.
   */
  waitEvent(afterNr: number, signal?: AbortSignal): Promise<number> {
    assertCount(afterNr, 'afterNr');
    if (this.#events.eventNr > afterNr) return Promise.resolve(this.#events.eventNr);
    if (this.closed) return Promise.reject(this.#removedError('wait on'));
    return this.#events.wait(afterNr, signal);
  }

  // ---- I/O ------------------------------------------------------------------------------------------

  protected doRead(offsetBytes: number, lengthBytes: number, options: ReadOptions): Promise<Buffer> {
    return this.#gate.submit(async (table) => {
      const pieces = splitRange(table, offsetBytes, lengthBytes);
      const parts = await settlePieces(
        pieces.map((piece) => piece.segment.target.read(piece.targetOffsetBytes, piece.lengthBytes, options)),
      );
      // One segment (the usual table): the target's buffer is the answer, with no copy.
      const data = parts.length === 1 && parts[0] !== undefined ? parts[0] : Buffer.concat(parts);
      assert(data.length === lengthBytes, 'pieces cover the read');
      return data;
    });
  }

  protected doWrite(offsetBytes: number, data: Uint8Array, options: WriteOptions): Promise<void> {
    return this.#gate.submit(async (table) => {
      const pieces = splitRange(table, offsetBytes, data.length);
      await settlePieces(
        pieces.map((piece) =>
          piece.segment.target.write(
            piece.targetOffsetBytes,
            data.subarray(piece.sourceOffsetBytes, piece.sourceOffsetBytes + piece.lengthBytes),
            options,
          ),
        ),
      );
    });
  }

  protected override doTrim(offsetBytes: number, lengthBytes: number, options: WriteOptions): Promise<void> {
    return this.#gate.submit(async (table) => {
      const pieces = splitRange(table, offsetBytes, lengthBytes);
      await settlePieces(
        pieces.map((piece) => piece.segment.target.trim(piece.targetOffsetBytes, piece.lengthBytes, options)),
      );
    });
  }

  protected override doWriteZeroes(offsetBytes: number, lengthBytes: number, options: ZeroOptions): Promise<void> {
    return this.#gate.submit(async (table) => {
      const pieces = splitRange(table, offsetBytes, lengthBytes);
      await settlePieces(
        pieces.map((piece) => piece.segment.target.writeZeroes(piece.targetOffsetBytes, piece.lengthBytes, options)),
      );
    });
  }

  protected doFlush(): Promise<void> {
    return this.#gate.submit(async (table) => {
      await settlePieces(table.segments.map((segment) => segment.target.flush()));
    });
  }

  /** Tears down: a flushing suspend, then both tables destroyed; held I/O and waiters fail. */
  protected doClose(): Promise<void> {
    return this.#control.run(async () => {
      await this.#suspend({});
      const live = this.#live;
      const inactive = this.#inactive;
      this.#live = undefined;
      this.#inactive = undefined;
      if (live !== undefined) {
        live.live = false;
        await destroyTable(live);
      }
      if (inactive !== undefined) await destroyTable(inactive);
      this.#gate.failHeld(() => new BlockError('ESHUTDOWN', `Cannot complete I/O on ${this.name}: device removed`));
      this.#events.rejectWaiters(() => this.#removedError('wait on'));
    });
  }

  // ---- control --------------------------------------------------------------------------------------

  async #suspend(options: SuspendOptions): Promise<void> {
    if (this.#suspended) return;
    const noflush = options.noflush === true;
    this.#gate.block({ noflush });
    const table = this.#live;
    try {
      if (table !== undefined) {
        for (const segment of table.segments) await segment.target.presuspend({ noflush });
      }
    } catch (error) {
      rethrowProgrammerError(error);
      // The suspend did not happen: let held I/O go again (dm undoes a failed suspend the same way).
      this.#gate.unblock();
      throw error;
    }
    await this.#gate.drain();
    this.#gate.endNoflush();
    assert(this.#gate.inFlightCount === 0, 'no I/O in flight once suspended');
    if (table !== undefined) {
      for (const segment of table.segments) await segment.target.postsuspend();
    }
    this.#suspended = true;
  }

  async #resume(): Promise<void> {
    this.#checkNotClosed('resume');
    const next = this.#inactive;
    let old: DeviceTable | undefined;
    if (next !== undefined) {
      if (!this.#suspended) await this.#suspend({});
      assert(this.#suspended, 'a table is swapped only while suspended');
      const nextBytes = next.lengthSectors * sectorBytes;
      assert(this.#sizeBytes === undefined || this.#sizeBytes === nextBytes, 'load() rejected a length change');
      old = this.#live;
      if (old !== undefined) old.live = false;
      this.#inactive = undefined;
      this.#live = next;
      next.live = true;
      this.#sizeBytes = nextBytes;
    }
    if (this.#suspended) {
      const table = this.#live;
      if (table !== undefined) {
        for (const segment of table.segments) await segment.target.resume();
      }
      this.#suspended = false;
      this.#gate.unblock();
    }
    if (old !== undefined) await destroyTable(old);
  }

  #checkNotClosed(op: string): void {
    if (this.closed) throw this.#removedError(op);
  }

  #removedError(op: string): ControlError {
    return new ControlError('ENXIO', `Cannot ${op} ${this.name}: device removed`);
  }
}
