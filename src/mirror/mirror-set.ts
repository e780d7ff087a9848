/**
 * MirrorSet: the mirror target (the kernel's dm-raid1.c). It is a BlockDevice and a Target: legs, the
 * default leg, the per-set worker, the read and write paths, failure handling, recovery, events,
 * suspend/resume and status. Bookkeeping of regions is the RegionHash's, persistence the DirtyLog's,
 * copying the Copier's; table parsing and formatting live in table.ts.
 *
 * Writes, per worker pass (do_writes):
 *   region state   action
 *   CLEAN, DIRTY   inc pending (CLEAN -> DIRTY marks the log), then to every leg
 *   NOSYNC         inc pending, then to the default leg only
 *   RECOVERING     delayed until the region's recovery ends
 *   flush, trim    to every leg, not region-counted
 * The log is flushed ONCE for the whole batch, after every mark and before any data write (group
 * commit). If that flush fails and handle_errors is set, the batch's writes go to the failure list and
 * no data goes out ahead of its dirty mark.
 *
 * Write completion: all legs ok -> done. Some legs failed -> failLeg(write) each, then (do_failures)
 * the region is marked NOSYNC in the log, and the write is
 *   - failed with EIO when no leg is valid, or when keep_log is set and the log has failed;
 *   - held until suspend with handle_errors (and no keep_log): a noflush suspend requeues it into the
 *     next table, a plain suspend fails it with EIO;
 *   - acknowledged otherwise (the kernel's "pretend"; the data is on every valid leg).
 *
 * Reads: in-sync regions are read from a valid leg (the default leg first, as the kernel; with
 * readPolicy "balance" and handle_errors, any valid leg); out-of-sync regions only from the default leg,
 * and only while it is valid, else EIO. A failed read marks the leg R and is retried on another valid
 * in-sync leg; with no such leg the read fails with EIO. Never stale data. The messages depend on the
 * path the read took (see #readFailed).
 *
 * Recovery: regions out of sync are copied from the default leg to every other leg, up to
 * recoveryParallelMax regions at once (dm: 1). The default leg does not change while the set is out of
 * sync. Sync complete raises an event once and resets the legs' error flags.
 *
 * Suspend: presuspend releases held writes (requeue or EIO), stops recovery, waits until recovery I/O
 * has drained and the worker is idle; postsuspend runs a last pass (clears flushed) and suspends the
 * log. Resume resumes the log (rereads it) and restarts recovery.
 *
 * Where we differ from the kernel (see README "Differences from dm-raid1"):
 *   - A failed write on the default leg moves the default to a valid leg even without handle_errors
 *     (when in sync), so no read is served from a leg known to have dropped a write. Other errors move
 *     it only with handle_errors, as the kernel.
 *   - A recovery whose source read failed leaves the region out of sync even without handle_errors:
 *     nothing was copied, so calling it in sync could serve unsynchronised data later.
 *   - The default leg never changes while the set is out of sync, keep_log or not: the kernel switches
 *     under keep_log, and then serves out-of-sync regions from a leg that may not hold them.
 *   - Where the kernel "pretends" a failed write succeeded (no handle_errors, or keep_log), we do so only
 *     when the default leg holds the data; otherwise the write fails with EIO.
 */
import { assert, unreachable } from '../assert.js';
import type { BlockCapabilities, ReadOptions, WriteOptions, ZeroOptions } from '../block/block-device.js';
import { BlockDeviceBase } from '../block/block-device-base.js';
import { Copier } from '../copy/copier.js';
import type { DirtyLog } from '../dirty-log/dirty-log.js';
import { BlockError } from '../errors.js';
import { detach, failFast, rethrowProgrammerError, settleOperating } from '../fail-fast.js';
import { legsMax, readRetriesMax, recoveryParallelDefault, sectorBytes, writeQueueMax } from '../limits.js';
import { RegionHash, type Region } from '../region/region-hash.js';
import { RequeueRequest, type SuspendOptions, type Target } from '../target/target.js';
import { Leg, type LegErrorKind } from './leg.js';
import { isRegionCounted, newMirrorIo, splitByRegion, type MirrorIo, type MirrorIoInit } from './mirror-io.js';
import { MirrorWorker } from './mirror-worker.js';
import { OverlapGate } from './overlap-gate.js';
import { RateLimiter } from './rate-limit.js';
import { formatMeasure, formatMirrorStatus, formatMirrorTable, type MirrorFeatures } from './table.js';

export type ReadPolicy = 'default' | 'balance';

/** Client I/O within this window makes recovery run at the busy rate. */
const clientBusyWindowMs = 100;
const recoveryBusyBytesPerSecondDefault = 64 * 1024 * 1024;
export type KernelLogLevel = 'error' | 'warn' | 'info';

export type MirrorEvent =
  | { readonly kind: 'leg-failed'; readonly leg: number; readonly errorKind: LegErrorKind }
  | { readonly kind: 'default-leg-changed'; readonly from: number; readonly to: number }
  | { readonly kind: 'sync-complete' }
  | { readonly kind: 'log-failed' };

export interface MirrorLegOptions {
  readonly device: import('../block/block-device.js').BlockDevice;
  /** The device as written in the table. */
  readonly tableName: string;
  readonly offsetSectors: number;
  /** How status lines show the device (the kernel prints maj:min). Default: tableName. */
  readonly displayName?: string;
}

export interface MirrorSetOptions {
  readonly lengthSectors: number;
  /** The dirty log, constructed and not yet resumed; the mirror set owns it from now on. */
  readonly log: DirtyLog;
  readonly legs: readonly MirrorLegOptions[];
  readonly features: MirrorFeatures;
  readonly recoveryParallelMax?: number;
  /**
   * Recovery rate while clients are busy (I/O in the last 100 ms), bytes/s; unlimited when idle.
   * Default 64 MiB/s; null: never throttle.
   */
  readonly recoveryBusyBytesPerSecond?: number | null;
  readonly readPolicy?: ReadPolicy;
  readonly copier?: Copier;
  readonly name?: string;
  /** Kernel-style messages ("Mirror read failed from X. Trying alternative device."). */
  readonly onMessage?: (level: KernelLogLevel, message: string) => void;
  /** dm_table_event: raised on leg failure (handle_errors), log failure and sync complete. */
  readonly raiseEvent?: () => void;
  /**
   * Rate limit of the kernel's *_LIMIT messages (10 per 5 s by default; tests pass a fake clock): used
   * for recovery_complete's, and forked for each other call site, as each DM*_LIMIT keeps its own state.
   */
  readonly messageLimiter?: RateLimiter;
}

export interface MirrorStats {
  readsTotal: number;
  writesTotal: number;
  readBytesTotal: number;
  writeBytesTotal: number;
  recoveredRegionsTotal: number;
  recoveryBytesTotal: number;
  logFlushFailuresTotal: number;
}

export class MirrorSet extends BlockDeviceBase implements Target {
  readonly type = 'mirror' as const;
  readonly name: string;
  readonly lengthSectors: number;
  readonly sizeBytes: number;
  readonly logicalBlockBytes: number;
  readonly capabilities: BlockCapabilities;
  readonly regionBytes: number;
  readonly regionCount: number;
  readonly features: MirrorFeatures;
  readonly log: DirtyLog;
  readonly legs: readonly Leg[];
  readonly stats: MirrorStats = {
    readsTotal: 0,
    writesTotal: 0,
    readBytesTotal: 0,
    writeBytesTotal: 0,
    recoveredRegionsTotal: 0,
    recoveryBytesTotal: 0,
    logFlushFailuresTotal: 0,
  };
  readonly #displayNames: readonly string[];
  readonly #rh: RegionHash<MirrorIo>;
  readonly #worker: MirrorWorker;
  readonly #copier: Copier;
  readonly #readPolicy: ReadPolicy;
  readonly #onMessage: (level: KernelLogLevel, message: string) => void;
  readonly #messageLimiter: RateLimiter;
  /** Limiters of the other *_LIMIT call sites, by site (made on first use). */
  readonly #siteLimiters = new Map<string, RateLimiter>();
  readonly #raiseEvent: () => void;
  readonly #listeners = new Set<(event: MirrorEvent) => void>();

  readonly #recoveryBusyBytesPerSecond: number | null;
  /** When the last client request arrived (ms, performance.now()), for the recovery rate controller. */
  #lastClientIoMs = -Infinity;
  #defaultLeg: Leg;
  /** ms->in_sync: every region in sync and the sync-complete event raised. */
  #inSync = false;
  #logFailure = false;
  #legFailure = false;
  /** Serializes overlapping writes, trims and zeroes (not in the kernel: see overlap-gate.ts). */
  readonly #overlaps = new OverlapGate();
  /** ms->suspend: set at presuspend; held writes are released and new failures not held. */
  #suspending = false;
  #noflushSuspending = false;
  #suspended = false;
  #destroyed = false;
  #eventCount = 0;
  #eventPending = false;
  #balanceNext = 0;

  /** Queues the worker takes at the start of each pass. */
  #writes: MirrorIo[] = [];
  #reads: MirrorIo[] = [];
  #failures: MirrorIo[] = [];
  #holds: MirrorIo[] = [];
  #queueWaiters: (() => void)[] = [];
  #recoveryIdleWaiters: (() => void)[] = [];

  constructor(options: MirrorSetOptions) {
    super();
    assert(Number.isSafeInteger(options.lengthSectors) && options.lengthSectors > 0, 'lengthSectors > 0');
    assert(options.legs.length >= 2 && options.legs.length <= legsMax, `2..${legsMax} legs`);
    assert(!options.features.keepLog || options.features.handleErrors, 'keep_log requires handle_errors');
    this.name = options.name ?? 'mirror';
    this.lengthSectors = options.lengthSectors;
    this.sizeBytes = options.lengthSectors * sectorBytes;
    this.log = options.log;
    this.features = options.features;
    this.regionBytes = options.log.regionSizeSectors * sectorBytes;
    this.regionCount = Math.ceil(options.lengthSectors / options.log.regionSizeSectors);
    assert(this.regionCount === options.log.regionCount, 'the log was built for another region count');
    this.legs = options.legs.map(
      (leg, index) =>
        new Leg({ index, device: leg.device, tableName: leg.tableName, offsetBytes: leg.offsetSectors * sectorBytes }),
    );
    for (const leg of this.legs) {
      assert(leg.offsetBytes + this.sizeBytes <= leg.device.sizeBytes, `leg ${leg.tableName} is too small`);
    }
    this.#displayNames = options.legs.map((leg) => leg.displayName ?? leg.tableName);
    this.logicalBlockBytes = Math.max(...this.legs.map((leg) => leg.device.logicalBlockBytes));
    this.capabilities = {
      flush: true,
      fua: true,
      trim: this.legs.every((leg) => leg.device.capabilities.trim),
      writeZeroes: this.legs.every((leg) => leg.device.capabilities.writeZeroes),
    };
    const firstLeg = this.legs[0];
    assert(firstLeg !== undefined);
    this.#defaultLeg = firstLeg;
    this.#copier = options.copier ?? new Copier();
    this.#readPolicy = options.readPolicy ?? 'default';
    this.#recoveryBusyBytesPerSecond =
      options.recoveryBusyBytesPerSecond === undefined ? recoveryBusyBytesPerSecondDefault : options.recoveryBusyBytesPerSecond;
    this.#onMessage = options.onMessage ?? (() => undefined);
    this.#messageLimiter = options.messageLimiter ?? new RateLimiter();
    this.#raiseEvent = options.raiseEvent ?? (() => undefined);
    this.#worker = new MirrorWorker(() => this.#pass());
    this.#rh = new RegionHash<MirrorIo>({
      log: options.log,
      regionCount: this.regionCount,
      recoveryParallelMax: options.recoveryParallelMax ?? recoveryParallelDefault,
      callbacks: {
        dispatchDelayed: (writes) => {
          this.#writes.unshift(...writes);
          this.#worker.wake();
        },
        wakeup: () => this.#worker.wake(),
        recoveryIdle: () => {
          for (const resolve of this.#recoveryIdleWaiters.splice(0)) resolve();
        },
      },
    });
    this.checkGeometry();
    // A mirror set starts suspended, as a freshly loaded table: resume() starts it.
    this.#suspended = true;
  }

  // ---- Observation -------------------------------------------------------------------------------

  get defaultLegIndex(): number {
    return this.#defaultLeg.index;
  }

  get inSync(): boolean {
    return this.#inSync;
  }

  get suspended(): boolean {
    return this.#suspended;
  }

  /** Events raised so far (a counter that only grows). */
  get eventCount(): number {
    return this.#eventCount;
  }

  get recoveryInFlight(): number {
    return this.#rh.recoveryInFlight;
  }

  get recoveryParallelMax(): number {
    return this.#rh.recoveryParallelMax;
  }

  set recoveryParallelMax(value: number) {
    this.#rh.recoveryParallelMax = value;
    this.#worker.wake();
  }

  /** Writes held until suspend (handle_errors after a leg failure). */
  get heldWrites(): number {
    return this.#holds.length;
  }

  /** Regions in the region hash (the memory this set spends beyond its log bitmaps). */
  get activeRegions(): number {
    return this.#rh.activeRegionCount;
  }

  /** Whether a region is in sync in the log. */
  regionInSync(regionIndex: number): boolean {
    return this.log.inSync(regionIndex);
  }

  syncCount(): number {
    return this.log.syncCount();
  }

  /** Health letters, one per leg in table order ("AD"). */
  healthLetters(): string {
    return this.legs.map((leg) => leg.health).join('');
  }

  onEvent(listener: (event: MirrorEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  statusInfo(): string {
    return formatMirrorStatus({
      legs: this.#displayNames,
      syncCount: this.log.syncCount(),
      regionCount: this.regionCount,
      health: this.healthLetters(),
      logInfo: this.log.statusInfo(),
    });
  }

  statusTable(): string {
    return formatMirrorTable(
      {
        log: { type: this.log.type, args: [] },
        legs: this.legs.map((leg) => ({ device: this.#displayName(leg), offsetSectors: leg.offsetBytes / sectorBytes })),
        features: this.features,
      },
      { logTable: this.log.statusTable(), displayName: (device) => device },
    );
  }

  /** The IMA measurement string (`dmsetup measure`). */
  statusMeasure(): string {
    return formatMeasure({ legs: this.#displayNames, health: this.healthLetters(), features: this.features });
  }

  // ---- Lifecycle ---------------------------------------------------------------------------------

  async resume(): Promise<void> {
    assert(!this.#destroyed, 'resume after destroy');
    this.#suspending = false;
    this.#noflushSuspending = false;
    this.#suspended = false;
    try {
      await this.log.resume();
    } catch (err) {
      rethrowProgrammerError(err);
      this.#message('warn', 'log resume failed');
    }
    // The reread log may call regions out of sync that were in sync at suspend (a log device that
    // died, a leg flush failure that zeroed the clean bits, bits changed on disk): the set is then out
    // of sync again, so the default leg stays put while they resync (do_recovery sets it back and
    // raises sync complete). The kernel keeps in_sync here, and would move the default leg mid-resync.
    if (this.log.syncCount() < this.regionCount) this.#inSync = false;
    this.#rh.startRecovery();
    this.#worker.wake();
  }

  async presuspend(options: SuspendOptions = {}): Promise<void> {
    this.#suspending = true;
    this.#noflushSuspending = options.noflush === true;
    // Release held writes: with ms->suspend set, hold() now completes them (requeue or EIO).
    for (const io of this.#holds.splice(0)) this.#hold(io);
    this.#rh.stopRecovery();
    await this.#recoveryDrained();
    try {
      await this.log.presuspend();
    } catch (err) {
      rethrowProgrammerError(err);
      this.#message('warn', 'log presuspend failed');
    }
    this.#worker.wake();
    await this.#worker.idle();
  }

  async postsuspend(): Promise<void> {
    // Writes that were in flight at presuspend have completed by now (the mapped device waited for
    // them): one more pass clears their regions and flushes the log, so a clean deactivation needs no
    // resync on the next activation.
    this.#worker.wake();
    await this.#worker.idle();
    try {
      await this.log.postsuspend();
    } catch (err) {
      rethrowProgrammerError(err);
      this.#message('warn', 'log postsuspend failed');
    }
    this.#suspended = true;
  }

  /** Suspends (presuspend + postsuspend) for standalone use, outside a mapped device. */
  async suspend(options: SuspendOptions = {}): Promise<void> {
    await this.presuspend(options);
    await this.postsuspend();
  }

  async destroy(): Promise<void> {
    if (this.#destroyed) return;
    if (!this.#suspended) await this.suspend();
    this.#destroyed = true;
    await this.close();
  }

  protected async doClose(): Promise<void> {
    for (const io of this.#holds.splice(0)) this.#settle(io, new BlockError('ESHUTDOWN', 'mirror set closed'));
    await this.log.close();
    await Promise.all(this.legs.map((leg) => leg.device.close()));
  }

  // ---- BlockDevice entry points (offsets relative to the start of the set) ------------------------

  protected async doRead(offsetBytes: number, lengthBytes: number, options: ReadOptions): Promise<Buffer> {
    void options;
    this.#lastClientIoMs = performance.now();
    this.stats.readsTotal += 1;
    this.stats.readBytesTotal += lengthBytes;
    const pieces = splitByRegion({ offsetBytes, lengthBytes, regionBytes: this.regionBytes });
    if (pieces.length === 1) {
      const only = pieces[0];
      assert(only !== undefined);
      return this.#submitRead(only);
    }
    const parts = await Promise.all(pieces.map((piece) => this.#submitRead(piece)));
    return Buffer.concat(parts, lengthBytes);
  }

  protected async doWrite(offsetBytes: number, data: Uint8Array, options: WriteOptions): Promise<void> {
    this.stats.writesTotal += 1;
    this.stats.writeBytesTotal += data.length;
    const pieces = splitByRegion({ offsetBytes, lengthBytes: data.length, regionBytes: this.regionBytes });
    await this.#submitAll(
      pieces.map((piece) => ({
        kind: 'write',
        ...piece,
        data: data.subarray(piece.offsetBytes - offsetBytes, piece.offsetBytes - offsetBytes + piece.lengthBytes),
        fua: options.fua === true,
      })),
    );
  }

  protected override async doWriteZeroes(offsetBytes: number, lengthBytes: number, options: ZeroOptions): Promise<void> {
    this.stats.writesTotal += 1;
    const pieces = splitByRegion({ offsetBytes, lengthBytes, regionBytes: this.regionBytes });
    await this.#submitAll(
      pieces.map((piece) => ({ kind: 'zero', ...piece, fua: options.fua === true, noHole: options.noHole === true })),
    );
  }

  protected override async doTrim(offsetBytes: number, lengthBytes: number, options: WriteOptions): Promise<void> {
    const pieces = splitByRegion({ offsetBytes, lengthBytes, regionBytes: this.regionBytes });
    await this.#submitAll(pieces.map((piece) => ({ kind: 'trim', ...piece, fua: options.fua === true })));
  }

  protected async doFlush(): Promise<void> {
    await this.#submitAll([{ kind: 'flush', offsetBytes: 0, lengthBytes: 0, regionIndex: -1 }]);
  }

  /** Flushes every leg; a leg that fails is failed with kind `flush` (mirror_flush, the log's callback). */
  async flushLegs(): Promise<void> {
    const results = await settleOperating(this.legs.map((leg) => leg.device.flush()));
    let failed = false;
    results.forEach((result, index) => {
      if (result.status === 'rejected') {
        failed = true;
        const leg = this.legs[index];
        assert(leg !== undefined);
        this.#failLeg(leg, 'flush');
      }
    });
    if (failed) throw new BlockError('EIO', `${this.name}: a leg failed to flush`);
  }

  async #submitAll(inits: MirrorIoInit[]): Promise<void> {
    this.#lastClientIoMs = performance.now();
    const first = inits[0];
    const last = inits[inits.length - 1];
    if (first === undefined || last === undefined) return; // Nothing to write (an empty request).
    if (first.kind === 'flush') {
      await this.#queueAndWait(inits);
      return;
    }
    // Overlapping writes reach the legs one after the other, so the legs apply them in one order.
    const leave = await this.#overlaps.enter(first.offsetBytes, last.offsetBytes + last.lengthBytes);
    try {
      await this.#queueAndWait(inits);
    } finally {
      leave();
    }
  }

  async #queueAndWait(inits: MirrorIoInit[]): Promise<void> {
    const dones: Promise<Buffer | undefined>[] = [];
    for (const init of inits) {
      await this.#admit();
      const { io, done } = newMirrorIo(init);
      this.#writes.push(io);
      dones.push(done);
    }
    this.#worker.wake();
    const results = await Promise.allSettled(dones);
    for (const result of results) if (result.status === 'rejected') throw result.reason;
  }

  /** Bounds the write queue: waits while it is full. */
  async #admit(): Promise<void> {
    while (this.#writes.length >= writeQueueMax) {
      await new Promise<void>((resolve) => this.#queueWaiters.push(resolve));
    }
  }

  #submitRead(piece: { offsetBytes: number; lengthBytes: number; regionIndex: number }): Promise<Buffer> {
    const { io, done } = newMirrorIo({ kind: 'read', ...piece });
    // mirror_map: in-sync reads go straight to a leg; others through the worker (do_reads).
    if (this.log.inSync(io.regionIndex)) {
      const leg = this.#chooseLeg();
      if (leg === undefined) this.#settle(io, new BlockError('EIO', `${this.name}: no valid leg to read from`));
      else this.#issueRead(io, leg, { mapped: true });
    } else {
      this.#reads.push(io);
      this.#worker.wake();
    }
    return done.then((data) => {
      assert(data !== undefined && data.length === piece.lengthBytes, 'a read returns its length');
      return data;
    });
  }

  // ---- The worker pass (do_mirror) ---------------------------------------------------------------

  async #pass(): Promise<void> {
    const reads = this.#reads.splice(0);
    const writes = this.#writes.splice(0);
    const failures = this.#failures.splice(0);
    for (const resolve of this.#queueWaiters.splice(0)) resolve();
    try {
      await this.#rh.updateStates({ errorsHandled: this.features.handleErrors });
    } catch (err) {
      rethrowProgrammerError(err);
      // The log recorded its own failure (health D or F) and raised its event.
      this.#noteLogFailure();
    }
    this.#doRecovery();
    this.#doReads(reads);
    await this.#doWrites(writes);
    this.#doFailures(failures);
  }

  #doRecovery(): void {
    if (!this.#suspending) this.#rh.recoveryPrepare();
    for (let region = this.#rh.recoveryStart(); region !== null; region = this.#rh.recoveryStart()) {
      // #recover settles every copy error itself: anything it throws is a broken invariant.
      detach(this.#recover(region), failFast);
    }
    if (!this.#inSync && this.log.syncCount() === this.regionCount) {
      this.#inSync = true;
      this.#message('info', `${this.name}: sync complete`);
      for (const leg of this.legs) leg.resetErrors();
      this.#legFailure = false;
      this.#rh.resetFlushFailure();
      this.#event({ kind: 'sync-complete' });
    }
  }

  async #recover(region: Region<MirrorIo>): Promise<void> {
    // Rate controller: full speed when clients are idle, bounded while they are busy.
    const busy = performance.now() - this.#lastClientIoMs < clientBusyWindowMs;
    const rate = busy ? this.#recoveryBusyBytesPerSecond : null;
    if (this.#copier.bytesPerSecond !== rate) this.#copier.setThrottle(rate);
    // Paired with the check after the copy: the default leg is pinned only while the set is out of sync.
    assert(!this.#inSync, 'recovery runs only while the set is out of sync');
    const source = this.#defaultLeg;
    const startBytes = region.index * this.regionBytes;
    const lengthBytes = Math.min(this.regionBytes, this.sizeBytes - startBytes);
    assert(lengthBytes > 0);
    const targets = this.legs.filter((leg) => leg !== source);
    const result = await this.#copier.copy({
      source: { device: source.device, offsetBytes: source.offsetBytes + startBytes },
      targets: targets.map((leg) => ({ device: leg.device, offsetBytes: leg.offsetBytes + startBytes })),
      lengthBytes,
    });
    assert(source === this.#defaultLeg, 'the default leg changed during recovery');
    if (result.readError !== null) {
      this.#messageLimited('recovery_complete', 'error', 'Unable to read primary mirror during recovery');
      this.#failLeg(source, 'sync');
    }
    let writeErrorBits = 0;
    result.writeErrors.forEach((error, index) => {
      if (error === null) return;
      writeErrorBits |= 1 << index;
    });
    if (writeErrorBits !== 0) {
      this.#messageLimited('recovery_complete', 'error', `Write error during recovery (error = 0x${writeErrorBits.toString(16)})`);
      result.writeErrors.forEach((error, index) => {
        const leg = targets[index];
        if (error !== null && leg !== undefined) this.#failLeg(leg, 'sync');
      });
    }
    const success = result.readError === null && writeErrorBits === 0;
    if (success) {
      this.stats.recoveredRegionsTotal += 1;
      this.stats.recoveryBytesTotal += result.bytesCopied;
    }
    this.#rh.recoveryEnd(region, { success, keepOutOfSync: result.readError !== null });
  }

  #doReads(reads: MirrorIo[]): void {
    for (const io of reads) {
      let leg: Leg | undefined = this.#defaultLeg;
      if (this.log.inSync(io.regionIndex)) leg = this.#chooseLeg();
      else if (!leg.valid) leg = undefined;
      if (leg === undefined) {
        this.#messageLimited('mirror_end_io', 'error', 'Mirror read failed.');
        this.#settle(io, new BlockError('EIO', `Cannot read region ${io.regionIndex}: no valid in-sync leg`));
      } else {
        this.#issueRead(io, leg, { mapped: false });
      }
    }
  }

  async #doWrites(writes: MirrorIo[]): Promise<void> {
    if (writes.length === 0) return;
    const sync: MirrorIo[] = [];
    const nosync: MirrorIo[] = [];
    for (const io of writes) {
      if (!isRegionCounted(io.kind)) {
        sync.push(io);
        continue;
      }
      const state = this.#rh.getState(io.regionIndex);
      switch (state) {
        case 'CLEAN':
        case 'DIRTY':
          sync.push(io);
          break;
        case 'NOSYNC':
          nosync.push(io);
          break;
        case 'RECOVERING':
          this.#rh.delay(io.regionIndex, io);
          break;
        default:
          unreachable(state);
      }
    }
    for (const io of [...sync, ...nosync]) {
      if (!isRegionCounted(io.kind)) continue;
      this.#rh.inc(io.regionIndex);
      io.counted = true;
    }
    // Group commit: one log flush for the whole batch, before any data write of the batch.
    try {
      await this.#rh.flush();
    } catch (err) {
      rethrowProgrammerError(err);
      this.#noteLogFailure();
    }
    if (this.#logFailure && this.features.handleErrors) {
      this.#failures.push(...sync);
      if (sync.length > 0) this.#worker.wake();
    } else {
      // Both settle their request on every operating error: anything they throw is a broken invariant.
      for (const io of sync) detach(this.#issueWrite(io, this.legs), failFast);
    }
    for (const io of nosync) {
      if (this.#legFailure && this.features.handleErrors && !this.features.keepLog) {
        this.#failures.push(io);
        this.#worker.wake();
      } else {
        detach(this.#issueNosyncWrite(io), failFast);
      }
    }
  }

  #doFailures(failures: MirrorIo[]): void {
    for (const io of failures) {
      if (!this.#logFailure) {
        this.#inSync = false;
        if (io.kind === 'flush') this.#rh.markFlushFailure();
        else if (io.counted) this.#rh.markNosync(io.regionIndex);
      }
      if (this.#validLeg() === undefined || (this.features.keepLog && this.#logFailure)) {
        this.#settle(io, new BlockError('EIO', `Cannot write region ${io.regionIndex}: no valid leg`));
      } else if (this.features.handleErrors && !this.features.keepLog) {
        this.#hold(io);
      } else if (io.failedLegs.includes(this.#defaultLeg)) {
        // Ours: the kernel would pretend success, but the default leg (the source of every later read and
        // resync of this region) does not hold the data. EIO, not a write that is lost later.
        this.#settle(io, new BlockError('EIO', `Cannot write region ${io.regionIndex}: the default leg failed`));
      } else {
        this.#settle(io, undefined);
      }
    }
  }

  #hold(io: MirrorIo): void {
    if (this.#suspending) {
      if (this.#noflushSuspending) this.#settle(io, new RequeueRequest());
      else this.#settle(io, new BlockError('EIO', `Write to region ${io.regionIndex} failed: held write released by suspend`));
      return;
    }
    this.#holds.push(io);
  }

  // ---- Issuing I/O to legs -----------------------------------------------------------------------

  /**
   * Reads from one leg. `mapped`: the read of an in-sync region issued at submission (mirror_map, its
   * failure handled as mirror_end_io does); otherwise issued by the worker (do_reads, read_callback).
   */
  #issueRead(io: MirrorIo, leg: Leg, options: { mapped: boolean }): void {
    io.readAttempts += 1;
    io.readLeg = leg;
    leg.stats.readsTotal += 1;
    leg.stats.readBytesTotal += io.lengthBytes;
    detach(
      leg.device.read(leg.offsetBytes + io.offsetBytes, io.lengthBytes).then((data) => this.#settle(io, data)),
      (err: unknown) => this.#readFailed(io, leg, { err, mapped: options.mapped }),
    );
  }

  /**
   * A leg failed a read. The read is retried through the worker while the default leg is valid or the
   * region is in sync on another valid leg (default_ok || mirror_available), else it fails with EIO.
   * The kernel's messages differ by path (test/scenario/oracle/read-path.out):
   *   mapped (mirror_end_io): "Mirror read failed from X. Trying alternative device.", then the leg
   *     fails; with no retry "All replicated volumes dead, failing I/O".
   *   worker (read_callback): the leg fails, then "Read failure on mirror device X. Trying alternative
   *     device." or "Read failure on mirror device X.  Failing I/O." followed by end_io's
   *     "Mirror read failed." (the two spaces are the kernel's).
   */
  #readFailed(io: MirrorIo, leg: Leg, options: { err: unknown; mapped: boolean }): void {
    const name = this.#displayName(leg);
    if (options.mapped) this.#message('error', `Mirror read failed from ${name}. Trying alternative device.`);
    this.#failLeg(leg, 'read');
    const retry =
      io.readAttempts < Math.min(readRetriesMax, this.legs.length) &&
      (this.#defaultLeg.valid || (this.log.inSync(io.regionIndex) && this.#chooseLeg() !== undefined));
    if (retry) {
      if (!options.mapped) this.#messageLimited('read_callback', 'warn', `Read failure on mirror device ${name}. Trying alternative device.`);
      this.#reads.push(io);
      this.#worker.wake();
      return;
    }
    if (options.mapped) {
      this.#message('error', 'All replicated volumes dead, failing I/O');
    } else {
      this.#messageLimited('read_callback', 'error', `Read failure on mirror device ${name}.  Failing I/O.`);
      this.#messageLimited('mirror_end_io', 'error', 'Mirror read failed.');
    }
    const cause = options.err;
    this.#settle(io, new BlockError('EIO', `Cannot read region ${io.regionIndex}: every valid leg failed`, { cause }));
  }

  async #issueWrite(io: MirrorIo, legs: readonly Leg[]): Promise<void> {
    const results = await settleOperating(legs.map((leg) => this.#legOp(io, leg)));
    const failed: Leg[] = [];
    results.forEach((result, index) => {
      const leg = legs[index];
      if (result.status === 'rejected' && leg !== undefined) failed.push(leg);
    });
    if (failed.length === 0) {
      this.#settle(io, undefined);
      return;
    }
    if (io.kind === 'trim') {
      // A failed discard fails the request but degrades no leg (write_callback). Unlike the kernel we
      // resync the region, since the legs that did discard may now differ from those that did not.
      if (!this.#logFailure) {
        this.#inSync = false;
        this.#rh.markNosync(io.regionIndex);
      }
      this.#settle(io, new BlockError('ENOTSUP', `Trim of region ${io.regionIndex} failed on a leg`));
      return;
    }
    io.failedLegs.push(...failed);
    for (const leg of failed) this.#failLeg(leg, 'write');
    this.#failures.push(io);
    this.#worker.wake();
  }

  /** A write to a NOSYNC region goes to the default leg only; its error goes straight back (end_io). */
  async #issueNosyncWrite(io: MirrorIo): Promise<void> {
    try {
      await this.#legOp(io, this.#defaultLeg);
    } catch (err) {
      rethrowProgrammerError(err);
      this.#settle(io, err);
      return;
    }
    this.#settle(io, undefined);
  }

  #legOp(io: MirrorIo, leg: Leg): Promise<void> {
    const at = leg.offsetBytes + io.offsetBytes;
    if (io.kind === 'flush') {
      leg.stats.flushesTotal += 1;
    } else {
      leg.stats.writesTotal += 1;
      leg.stats.writeBytesTotal += io.lengthBytes;
    }
    switch (io.kind) {
      case 'write':
        assert(io.data !== undefined);
        return leg.device.write(at, io.data, { fua: io.fua });
      case 'zero':
        return leg.device.writeZeroes(at, io.lengthBytes, { fua: io.fua, noHole: io.noHole });
      case 'trim':
        return leg.device.trim(at, io.lengthBytes, { fua: io.fua });
      case 'flush':
        return leg.device.flush();
      case 'read':
        return unreachable(io.kind as never, 'reads are not issued as leg operations');
      default:
        return unreachable(io.kind);
    }
  }

  /** Completes a request exactly once and gives back its region pending count (mirror_end_io). */
  #settle(io: MirrorIo, outcome: Buffer | undefined | unknown): void {
    assert(!io.settled, 'a request completes once');
    io.settled = true;
    if (io.counted) {
      io.counted = false;
      this.#rh.dec(io.regionIndex);
    }
    if (outcome instanceof Error) io.reject(outcome);
    else io.resolve(outcome instanceof Buffer ? outcome : undefined);
  }

  // ---- Legs and failures (fail_mirror) -----------------------------------------------------------

  #failLeg(leg: Leg, kind: LegErrorKind): void {
    this.#legFailure = true;
    const first = leg.recordError(kind);
    if (!first) return;
    if (this.features.handleErrors) this.#event({ kind: 'leg-failed', leg: leg.index, errorKind: kind });
    if (leg !== this.#defaultLeg) return;
    if (!this.#inSync) {
      // Better to keep the failing leg than to read regions another leg never received. The kernel
      // switches here under keep_log; we do not (see the banner).
      if (this.features.handleErrors && !this.features.keepLog) {
        this.#message('error', `Primary mirror (${this.#displayName(leg)}) failed while out-of-sync: Reads may fail.`);
      }
      return;
    }
    const next = this.#validLeg();
    if (next === undefined) {
      if (this.features.handleErrors) this.#message('warn', 'All sides of mirror have failed.');
      return;
    }
    // The kernel switches only with handle_errors; we switch on a write error too (never read a leg that
    // dropped a write), but not on other errors (a read error keeps the default leg: RAR, not RAA).
    if (!this.features.handleErrors && kind !== 'write') return;
    const from = this.#defaultLeg.index;
    this.#defaultLeg = next;
    this.#notify({ kind: 'default-leg-changed', from, to: next.index });
  }

  #noteLogFailure(): void {
    this.stats.logFlushFailuresTotal += 1;
    this.#logFailure = true;
  }

  /** The dirty log reports its device failed (its context's raiseEvent): an event, handled or not. */
  logDeviceFailed(): void {
    this.#event({ kind: 'log-failed' });
  }

  #validLeg(): Leg | undefined {
    return this.legs.find((leg) => leg.valid);
  }

  /** choose_mirror: the default leg if valid, else the nearest valid leg before it (or balanced). */
  #chooseLeg(): Leg | undefined {
    const count = this.legs.length;
    if (this.#readPolicy === 'balance' && this.features.handleErrors) {
      for (let tries = 0; tries < count; tries++) {
        const leg = this.legs[this.#balanceNext % count];
        this.#balanceNext = (this.#balanceNext + 1) % count;
        if (leg !== undefined && leg.valid) return leg;
      }
      return undefined;
    }
    for (let step = 0; step < count; step++) {
      const leg = this.legs[(this.#defaultLeg.index - step + count) % count];
      if (leg !== undefined && leg.valid) return leg;
    }
    return undefined;
  }

  #displayName(leg: Leg): string {
    return this.#displayNames[leg.index] ?? leg.tableName;
  }

  #recoveryDrained(): Promise<void> {
    if (this.#rh.recoveryInFlight === 0) return Promise.resolve();
    return new Promise((resolve) => this.#recoveryIdleWaiters.push(resolve));
  }

  #event(event: MirrorEvent): void {
    this.#notify(event);
    // dm's trigger_event is a work item, and schedule_work on a pending work is a no-op: events raised
    // together (both legs failing one write) reach dm core as one (reference fail-write D: event 2).
    if (this.#eventPending) return;
    this.#eventPending = true;
    queueMicrotask(() => {
      this.#eventPending = false;
      this.#eventCount += 1;
      this.#raiseEvent();
    });
  }

  #notify(event: MirrorEvent): void {
    for (const listener of this.#listeners) listener(event);
  }

  #message(level: KernelLogLevel, message: string): void {
    this.#onMessage(level, message);
  }

  /**
   * DMERR_LIMIT / DMWARN_LIMIT: rate limited per call site (the site is the kernel function and the
   * level: read_callback has one of each); `site` names the function in the suppressed note.
   */
  #messageLimited(site: string, level: KernelLogLevel, message: string): void {
    const key = `${site}:${level}`;
    let limiter = site === 'recovery_complete' ? this.#messageLimiter : this.#siteLimiters.get(key);
    if (limiter === undefined) {
      limiter = this.#messageLimiter.fork();
      this.#siteLimiters.set(key, limiter);
    }
    const { allowed, suppressed } = limiter.take();
    if (suppressed > 0) this.#onMessage('warn', `${site}: ${suppressed} callbacks suppressed`);
    if (allowed) this.#onMessage(level, message);
  }
}
