/**
 * MappedDevice: dm core's mapped_device. A named BlockDevice whose sectors are mapped by a table of
 * targets (mirror, linear, zero, error). It knows nothing about mirrors: the caller builds each target
 * from its table line through `buildTarget`.
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
 *   suspend(): 1. block: new I/O is held in `queued` (bounded by heldIoMax)
 *              2. presuspend every live target (the mirror releases its held writes here)
 *              3. wait until no I/O is in flight
 *              4. postsuspend every live target
 *   An I/O a target answers with RequeueRequest is parked in `parked` while a noflush suspend is in
 *   progress (dm's DM_ENDIO_REQUEUE under DMF_NOFLUSH_SUSPENDING); otherwise it fails with EIO, as the
 *   kernel does when the noflush suspend was not requested.
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
 * Control operations (load, suspend, resume, clear, remove/close) are serialized; I/O runs concurrently.
 */
import { assert, assertCount } from '../assert.js';
import type { BlockCapabilities, ReadOptions, WriteOptions, ZeroOptions } from '../block/block-device.js';
import { BlockDeviceBase } from '../block/block-device-base.js';
import { BlockError, ControlError, TableError } from '../errors.js';
import { failFast, rethrowProgrammerError, settleOperating } from '../fail-fast.js';
import { sectorBytes } from '../limits.js';
import { isDeviceAreaError } from './device-area.js';
import { formatTableLine, parseTableText, tableLengthSectors, type TableLine } from './table-lines.js';
import { RequeueRequest, type SuspendOptions, type Target } from './target.js';

/** What a target gets from the mapped device it belongs to. */
export interface TargetContext {
  /** The mapped device's name. */
  readonly deviceName: string;
  /** dm_table_event: counts only while the target's table is live. */
  readonly raiseEvent: () => void;
}

export interface MappedDeviceOptions {
  readonly name: string;
  /** The target's ctr. Throws TableError on bad arguments; the device destroys targets it built. */
  readonly buildTarget: (line: TableLine, context: TargetContext) => Promise<Target>;
  /** Target types load() accepts (default: mirror, linear, zero, error). */
  readonly knownTypes?: readonly string[];
  /** I/O held while suspended (queued plus parked); beyond it new I/O fails with ENOMEM. */
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

/** One segment of a table, as callers may inspect it (e.g. to reach the mirror target). */
export interface Segment {
  readonly line: TableLine;
  readonly target: Target;
  readonly startBytes: number;
  readonly endBytes: number;
}

/** Default bound on held I/O: well above NBD's in-flight window times a few connections. */
export const heldIoMaxDefault = 4096;

interface Table {
  readonly segments: readonly Segment[];
  readonly lengthSectors: number;
  live: boolean;
}

interface HeldIo {
  readonly issue: () => void;
  readonly fail: (error: Error) => void;
}

interface EventWaiter {
  readonly afterNr: number;
  readonly resolve: (eventNr: number) => void;
  readonly reject: (error: unknown) => void;
}

export class MappedDevice extends BlockDeviceBase {
  readonly name: string;
  readonly logicalBlockBytes = 512;
  readonly capabilities: BlockCapabilities = { flush: true, fua: true, trim: true, writeZeroes: true };
  readonly #buildTarget: MappedDeviceOptions['buildTarget'];
  readonly #knownTypes: readonly string[] | undefined;
  readonly #heldIoMax: number;

  #sizeBytes: number | undefined;
  #live: Table | undefined;
  #inactive: Table | undefined;
  #suspended = false;
  /** New I/O is held rather than issued (from the start of suspend() until resume()). */
  #blocked = false;
  #noflushSuspending = false;
  #inFlight = 0;
  readonly #queued: HeldIo[] = [];
  readonly #parked: HeldIo[] = [];
  #drainWaiters: (() => void)[] = [];
  #openCount = 0;
  #eventNr = 0;
  readonly #eventListeners = new Set<(eventNr: number) => void>();
  #eventWaiters: EventWaiter[] = [];
  #control: Promise<unknown> = Promise.resolve();

  constructor(options: MappedDeviceOptions) {
    super();
    assert(options.name.length > 0, 'a mapped device needs a name');
    this.name = options.name;
    this.#buildTarget = options.buildTarget;
    this.#knownTypes = options.knownTypes;
    this.#heldIoMax = options.heldIoMax ?? heldIoMaxDefault;
    assert(Number.isSafeInteger(this.#heldIoMax) && this.#heldIoMax > 0, 'heldIoMax > 0');
    this.checkGeometry();
  }

  /** 0 until the first resume with a table; fixed afterwards. */
  get sizeBytes(): number {
    return this.#sizeBytes ?? 0;
  }

  get eventNr(): number {
    return this.#eventNr;
  }

  get suspended(): boolean {
    return this.#suspended;
  }

  /** I/O requests currently issued to targets (not held, not parked). */
  get inFlightCount(): number {
    return this.#inFlight;
  }

  /** I/O held back: queued while suspended plus parked by RequeueRequest. */
  get heldCount(): number {
    return this.#queued.length + this.#parked.length;
  }

  // ---- tables ---------------------------------------------------------------------------------------

  /**
   * Builds the inactive table from table text (`dmsetup load`), replacing any previous inactive table.
   * @throws TableError from parsing, from a target's constructor, or for a length change.
   */
  load(text: string): Promise<void> {
    return this.#serialize(async () => {
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
      const table = await this.#buildTable(lines);
      const previous = this.#inactive;
      this.#inactive = table;
      if (previous !== undefined) await destroyTable(previous);
    });
  }

  /** Drops the inactive table (`dmsetup clear`). */
  clearInactive(): Promise<void> {
    return this.#serialize(async () => {
      const previous = this.#inactive;
      this.#inactive = undefined;
      if (previous !== undefined) await destroyTable(previous);
    });
  }

  /** Suspends the device (see the banner). A no-op when already suspended. */
  suspend(options: SuspendOptions = {}): Promise<void> {
    return this.#serialize(() => this.#suspend(options));
  }

  /** Swaps in the inactive table if any, resumes the targets and re-issues held I/O. */
  resume(): Promise<void> {
    return this.#serialize(() => this.#resume());
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
    return this.#formatLines(options, (target) => target.statusTable());
  }

  /** `dmsetup status [--inactive]`: exactly what dmsetup prints, one line per target, "\n" when none. */
  status(options: { inactive?: boolean } = {}): string {
    return this.#formatLines(options, (target) => target.statusInfo());
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
      eventNr: this.#eventNr,
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
    this.#eventNr++;
    const eventNr = this.#eventNr;
    for (const listener of [...this.#eventListeners]) listener(eventNr);
    const waiting = this.#eventWaiters;
    this.#eventWaiters = [];
    for (const waiter of waiting) {
      if (eventNr > waiter.afterNr) waiter.resolve(eventNr);
      else this.#eventWaiters.push(waiter);
    }
  }

  /** Calls `listener(eventNr)` on every event; returns the function that unsubscribes it. */
  onEvent(listener: (eventNr: number) => void): () => void {
    this.#eventListeners.add(listener);
    return () => {
      this.#eventListeners.delete(listener);
    };
  }

  /**
   * `dmsetup wait [afterNr]`: resolves with the event number once it exceeds `afterNr` (at once if it
   * already does). Rejects with the signal's reason on abort, and with ControlError ENXIO on remove.
   */
  waitEvent(afterNr: number, signal?: AbortSignal): Promise<number> {
    assertCount(afterNr, 'afterNr');
    if (this.#eventNr > afterNr) return Promise.resolve(this.#eventNr);
    if (this.closed) return Promise.reject(new ControlError('ENXIO', `Cannot wait on ${this.name}: device removed`));
    if (signal?.aborted === true) return Promise.reject(signal.reason);
    return new Promise<number>((resolve, reject) => {
      const onAbort = (): void => {
        this.#eventWaiters = this.#eventWaiters.filter((w) => w !== waiter);
        reject(signal?.reason);
      };
      const waiter: EventWaiter = {
        afterNr,
        resolve: (eventNr) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(eventNr);
        },
        reject: (error) => {
          signal?.removeEventListener('abort', onAbort);
          reject(error);
        },
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#eventWaiters.push(waiter);
    });
  }

  // ---- I/O ------------------------------------------------------------------------------------------

  protected doRead(offsetBytes: number, lengthBytes: number, options: ReadOptions): Promise<Buffer> {
    return this.#submit(async (table) => {
      const pieces = splitRange(table, offsetBytes, lengthBytes);
      const parts = await settleAll(
        pieces.map((piece) => piece.segment.target.read(piece.targetOffsetBytes, piece.lengthBytes, options)),
      );
      // One segment (the usual table): the target's buffer is the answer, with no copy.
      const data = parts.length === 1 && parts[0] !== undefined ? parts[0] : Buffer.concat(parts);
      assert(data.length === lengthBytes, 'pieces cover the read');
      return data;
    });
  }

  protected doWrite(offsetBytes: number, data: Uint8Array, options: WriteOptions): Promise<void> {
    return this.#submit(async (table) => {
      const pieces = splitRange(table, offsetBytes, data.length);
      await settleAll(
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
    return this.#submit(async (table) => {
      const pieces = splitRange(table, offsetBytes, lengthBytes);
      await settleAll(
        pieces.map((piece) => piece.segment.target.trim(piece.targetOffsetBytes, piece.lengthBytes, options)),
      );
    });
  }

  protected override doWriteZeroes(offsetBytes: number, lengthBytes: number, options: ZeroOptions): Promise<void> {
    return this.#submit(async (table) => {
      const pieces = splitRange(table, offsetBytes, lengthBytes);
      await settleAll(
        pieces.map((piece) => piece.segment.target.writeZeroes(piece.targetOffsetBytes, piece.lengthBytes, options)),
      );
    });
  }

  protected doFlush(): Promise<void> {
    return this.#submit(async (table) => {
      await settleAll(table.segments.map((segment) => segment.target.flush()));
    });
  }

  /** Tears down: a flushing suspend, then both tables destroyed; held I/O and waiters fail. */
  protected doClose(): Promise<void> {
    return this.#serialize(async () => {
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
      const held = [...this.#parked.splice(0), ...this.#queued.splice(0)];
      for (const io of held) io.fail(new BlockError('ESHUTDOWN', `Cannot complete I/O on ${this.name}: device removed`));
      const waiters = this.#eventWaiters;
      this.#eventWaiters = [];
      for (const waiter of waiters) waiter.reject(new ControlError('ENXIO', `Cannot wait on ${this.name}: device removed`));
    });
  }

  /**
   * Runs `run` against the live table now, or holds it while the device is blocked. The promise settles
   * when the request finally completes, after any number of requeues.
   */
  #submit<T>(run: (table: Table) => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const io: HeldIo = {
        issue: () => this.#issue({ io, run, resolve, reject }),
        fail: reject,
      };
      if (this.#blocked) this.#hold(this.#queued, io);
      else io.issue();
    });
  }

  #issue<T>(options: {
    io: HeldIo;
    run: (table: Table) => Promise<T>;
    resolve: (value: T) => void;
    reject: (error: Error) => void;
  }): void {
    const table = this.#live;
    if (table === undefined) {
      options.reject(new BlockError('EIO', `Cannot do I/O on ${this.name}: no live table`));
      return;
    }
    this.#inFlight++;
    options
      .run(table)
      .then(options.resolve, (error: unknown) => {
        rethrowProgrammerError(error); // A bug in a target is not an I/O error (goes to failFast below).
        if (error instanceof RequeueRequest) {
          if (this.#noflushSuspending) {
            this.#hold(this.#parked, options.io);
            return;
          }
          options.reject(new BlockError('EIO', `I/O on ${this.name} failed: requeued outside a noflush suspend`, { cause: error }));
          return;
        }
        options.reject(error instanceof Error ? error : new BlockError('EIO', String(error), { cause: error }));
      })
      .finally(() => {
        this.#inFlight--;
        assert(this.#inFlight >= 0, 'in-flight count never goes negative');
        if (this.#inFlight === 0) {
          const waiters = this.#drainWaiters;
          this.#drainWaiters = [];
          for (const wake of waiters) wake();
        }
      })
      // Only a programmer error (a target's, or a failed assertion above) can land here.
      .catch(failFast);
  }

  #hold(list: HeldIo[], io: HeldIo): void {
    if (this.heldCount >= this.#heldIoMax) {
      io.fail(new BlockError('ENOMEM', `Cannot hold I/O on ${this.name}: ${this.#heldIoMax} requests already held`));
      return;
    }
    list.push(io);
  }

  /** Admits I/O again: parked requests first, then queued ones, in arrival order. */
  #unblock(): void {
    this.#blocked = false;
    const held = [...this.#parked.splice(0), ...this.#queued.splice(0)];
    for (const io of held) io.issue();
  }

  #drain(): Promise<void> {
    if (this.#inFlight === 0) return Promise.resolve();
    return new Promise<void>((resolve) => this.#drainWaiters.push(resolve));
  }

  // ---- control --------------------------------------------------------------------------------------

  async #suspend(options: SuspendOptions): Promise<void> {
    if (this.#suspended) return;
    const noflush = options.noflush === true;
    this.#blocked = true;
    this.#noflushSuspending = noflush;
    const table = this.#live;
    try {
      if (table !== undefined) {
        for (const segment of table.segments) await segment.target.presuspend({ noflush });
      }
    } catch (error) {
      rethrowProgrammerError(error);
      // The suspend did not happen: let held I/O go again (dm undoes a failed suspend the same way).
      this.#noflushSuspending = false;
      this.#unblock();
      throw error;
    }
    await this.#drain();
    this.#noflushSuspending = false;
    assert(this.#inFlight === 0, 'no I/O in flight once suspended');
    if (table !== undefined) {
      for (const segment of table.segments) await segment.target.postsuspend();
    }
    this.#suspended = true;
  }

  async #resume(): Promise<void> {
    this.#checkNotClosed('resume');
    const next = this.#inactive;
    let old: Table | undefined;
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
      this.#unblock();
    }
    if (old !== undefined) await destroyTable(old);
  }

  async #buildTable(lines: readonly TableLine[]): Promise<Table> {
    const segments: Segment[] = [];
    const table: Table = { segments, lengthSectors: tableLengthSectors(lines), live: false };
    const context: TargetContext = {
      deviceName: this.name,
      raiseEvent: () => {
        if (table.live && this.#live === table) this.raiseEvent();
      },
    };
    // dm core checks every target's device areas only after all constructors ran, so a later line's
    // argument error wins over an earlier line's "too small for target": keep the first such error.
    let areaError: TableError | undefined;
    try {
      for (const line of lines) {
        let target: Target;
        try {
          target = await this.#buildTarget(line, context);
        } catch (error) {
          if (!isDeviceAreaError(error)) throw withTargetType(error, line.type);
          areaError ??= error;
          continue;
        }
        segments.push({
          line,
          target,
          startBytes: line.startSectors * sectorBytes,
          endBytes: (line.startSectors + line.lengthSectors) * sectorBytes,
        });
        assert(target.lengthSectors === line.lengthSectors, `${line.type} target length matches its line`);
        assert(target.sizeBytes === line.lengthSectors * sectorBytes, `${line.type} target size matches its line`);
      }
      if (areaError !== undefined) throw areaError;
    } catch (error) {
      try {
        await destroyTable(table);
      } catch (destroyError) {
        rethrowProgrammerError(destroyError);
        // The table error is what the caller must see; the cleanup failure is reported, not lost.
        process.emitWarning(`${this.name}: destroying a partly built table failed: ${String(destroyError)}`);
      }
      throw error;
    }
    return table;
  }

  #formatLines(options: { inactive?: boolean }, params: (target: Target) => string): string {
    const segments = this.segments(options);
    if (segments.length === 0) return '\n';
    return (
      segments
        .map((segment) =>
          formatTableLine({
            startSectors: segment.line.startSectors,
            lengthSectors: segment.line.lengthSectors,
            type: segment.target.type,
            params: params(segment.target),
          }),
        )
        .join('\n') + '\n'
    );
  }

  #checkNotClosed(op: string): void {
    if (this.closed) throw new ControlError('ENXIO', `Cannot ${op} ${this.name}: device removed`);
  }

  #serialize<T>(op: () => Promise<T>): Promise<T> {
    const result = this.#control.then(op, op);
    this.#control = result.catch(() => undefined);
    return result;
  }
}

interface Piece {
  readonly segment: Segment;
  readonly targetOffsetBytes: number;
  readonly sourceOffsetBytes: number;
  readonly lengthBytes: number;
}

/** Splits [offset, offset+length) at segment boundaries; offsets become segment-relative here only. */
function splitRange(table: Table, offsetBytes: number, lengthBytes: number): Piece[] {
  const segments = table.segments;
  let low = 0;
  let high = segments.length - 1;
  while (low < high) {
    const mid = (low + high) >> 1;
    const segment = segments[mid];
    assert(segment !== undefined, 'segment index in range');
    if (segment.endBytes <= offsetBytes) low = mid + 1;
    else high = mid;
  }
  const pieces: Piece[] = [];
  let done = 0;
  for (let index = low; done < lengthBytes; index++) {
    const segment = segments[index];
    assert(segment !== undefined, `range ${offsetBytes}+${lengthBytes} lies inside the table`);
    const position = offsetBytes + done;
    assert(position >= segment.startBytes && position < segment.endBytes, 'piece starts inside its segment');
    const pieceBytes = Math.min(lengthBytes - done, segment.endBytes - position);
    pieces.push({
      segment,
      targetOffsetBytes: position - segment.startBytes,
      sourceOffsetBytes: done,
      lengthBytes: pieceBytes,
    });
    done += pieceBytes;
  }
  assert(done === lengthBytes, 'pieces cover the range exactly');
  return pieces;
}

/** Waits for every piece; a RequeueRequest wins over other errors (dm requeues the whole bio). */
async function settleAll<T>(promises: readonly Promise<T>[]): Promise<T[]> {
  const results = await settleOperating(promises);
  const failures = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as unknown] : []));
  const requeue = failures.find((reason) => reason instanceof RequeueRequest);
  if (requeue !== undefined) throw requeue;
  if (failures.length > 0) throw failures[0];
  return results.map((r) => {
    assert(r.status === 'fulfilled', 'no failures left');
    return r.value;
  });
}

/** Destroys every target of a table in reverse order; all are destroyed even if one fails. */
async function destroyTable(table: Table): Promise<void> {
  let firstError: unknown;
  for (const segment of [...table.segments].reverse()) {
    try {
      await segment.target.destroy();
    } catch (error) {
      rethrowProgrammerError(error);
      firstError ??= error;
    }
  }
  if (firstError !== undefined) throw firstError;
}

/** A constructor's TableError, labelled with the type of the line that failed (as the kernel's log line). */
function withTargetType(error: unknown, targetType: string): unknown {
  if (!(error instanceof TableError) || error.targetType !== undefined || error.source === 'core') return error;
  return new TableError({
    code: error.code,
    kernelError: error.kernelError,
    logLines: error.logLines,
    source: error.source,
    targetType,
    cause: error.cause,
  });
}
