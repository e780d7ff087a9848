/**
 * MirrorSet: the mirror target (the kernel's dm-raid1.c). It is a BlockDevice and a Target, and wires
 * the parts dm-raid1.c is made of:
 *
 *   MirrorSet (this file)  the BlockDevice entry points (mirror_map), suspend/resume, status, wiring
 *   LegSet                 legs, the default leg, fail_mirror, choose_mirror, mirror_flush
 *   WriteQueue             the bounded write queue and its admission (no deadlock, see write-queue.ts)
 *   MirrorWorker           the pass in do_mirror's order, the write and failure paths
 *   ReadPath               mirror_map for reads, do_reads, read retries
 *   Recovery               do_recovery, the copy of one region, ms->in_sync
 *   ResyncRate             the resync's rate controller (fast when idle, bounded when clients are busy)
 *   Scrub                  the online check and repair of the legs (ours, md's check/repair)
 *   ReadRepair             md's fix_read_error, opt-in (ours)
 *   MirrorEvents           listeners, dm events, kernel messages
 *   mirror-status.ts       status, table, IMA and JSON from a snapshot
 * Bookkeeping of regions is the RegionHash's, persistence the DirtyLog's, copying the Copier's; table
 * parsing lives in table.ts.
 *
 * A write travels: WriteQueue.submit (the overlap gate, spans, region pieces that view the caller's
 * buffer, admission), then the worker's pass writes the pieces to the legs (mirror-worker.ts). A read is
 * split at region boundaries here; ReadPath sends in-sync pieces to a leg at once, the others through the
 * pass.
 *
 * Suspend: presuspend aborts a running scrub, releases held writes (requeue or EIO), stops recovery,
 * waits until the scrub and recovery I/O have drained and the worker is idle; postsuspend runs a last pass (clears flushed) and suspends the
 * log. Resume resumes the log (rereads it) and restarts recovery. idle() waits until nothing happens
 * (tests wait on it instead of sleeping).
 *
 * Where we differ from the kernel (README "Differences from dm-raid1"), each where it happens: the
 * default leg moves on a write error and never while the set is out of sync or after a failed leg flush
 * (leg-set.ts); a recovery that could not read its source leaves the region out of sync (recovery.ts); a
 * failed write is "pretended" only when the default leg holds the data, and a failed trim resyncs its
 * region (mirror-worker.ts); overlapping writes are ordered (overlap-gate.ts).
 */
import { assert } from '../assert.js';
import type { BlockCapabilities, BlockDevice, ReadOptions, WriteOptions, ZeroOptions } from '../block/block-device.js';
import { BlockDeviceBase } from '../block/block-device-base.js';
import { Copier } from '../copy/copier.js';
import type { DirtyLog } from '../dirty-log/dirty-log.js';
import { rethrowProgrammerError } from '../fail-fast.js';
import { BlockError } from '../errors.js';
import { legsMax, legsMin, recoveryBusyBytesPerSecondDefault, recoveryBusyParallelDefault, recoveryParallelDefault, sectorBytes } from '../limits.js';
import { RegionHash } from '../region/region-hash.js';
import type { SuspendOptions, Target } from '../target/target.js';
import { Leg } from './leg.js';
import { LegSet, type ReadPolicy } from './leg-set.js';
import { MirrorEvents, type KernelLogLevel, type MirrorEvent } from './mirror-events.js';
import { splitByRegion, type RegionWriteIo } from './mirror-io.js';
import { newMirrorStats, statusInfo, statusMeasure, statusTable, type MirrorSnapshot, type MirrorStats } from './mirror-status.js';
import { MirrorWorker } from './mirror-worker.js';
import { RateLimiter } from './rate-limit.js';
import { ReadPath } from './read-path.js';
import { ReadRepair } from './read-repair.js';
import { Recovery } from './recovery.js';
import { ResyncRate, type ResyncRateStatus } from './resync-rate.js';
import { Scrub, type ScrubOptions, type ScrubProgress, type ScrubResult } from './scrub.js';
import type { MirrorFeatures } from './table.js';
import { WriteQueue } from './write-queue.js';

export type { KernelLogLevel, MirrorEvent } from './mirror-events.js';
export type { ReadPolicy } from './leg-set.js';
export type { MirrorStats } from './mirror-status.js';
export type { ResyncRateStatus } from './resync-rate.js';
export type { ScrubOptions, ScrubProgress, ScrubRegionReport, ScrubResult } from './scrub.js';

export interface MirrorLegOptions {
  readonly device: BlockDevice;
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
   * Recovery rate while clients are busy (I/O in the last recoveryBusyWindowMs), bytes/s; unlimited when
   * idle. Default recoveryBusyBytesPerSecondDefault (64 MiB/s); null: never throttle.
   */
  readonly recoveryBusyBytesPerSecond?: number | null;
  /** Regions recovered at once while clients are busy. Default recoveryBusyParallelDefault (1). */
  readonly recoveryBusyParallelMax?: number;
  /** The resync's cap, bytes/s, idle or busy (`--resync-rate`); also the scrub's default pace. Default none. */
  readonly resyncBytesPerSecondMax?: number | null;
  /** md's read repair (`--read-repair`): a failed read of an in-sync region is rewritten from another leg. */
  readonly readRepair?: boolean;
  readonly readPolicy?: ReadPolicy;
  readonly copier?: Copier;
  readonly name?: string;
  /** Kernel-style messages ("Mirror read failed from X. Trying alternative device."). */
  readonly onMessage?: (level: KernelLogLevel, message: string) => void;
  /** dm_table_event: raised on leg failure (handle_errors), log failure and sync complete. */
  readonly raiseEvent?: () => void;
  /** Rate limit of the kernel's *_LIMIT messages (10 per 5 s by default, on `now`). */
  readonly messageLimiter?: RateLimiter;
  /** Monotonic clock in ms (default performance.now): the recovery throttle's busy window. */
  readonly now?: () => number;
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
  readonly stats: MirrorStats = newMirrorStats();
  readonly #events: MirrorEvents;
  readonly #legSet: LegSet;
  readonly #rh: RegionHash<RegionWriteIo>;
  readonly #reads: ReadPath;
  readonly #writes: WriteQueue;
  readonly #recovery: Recovery;
  readonly #worker: MirrorWorker;
  readonly #rate: ResyncRate;
  readonly #scrub: Scrub;
  readonly #readRepair: ReadRepair | undefined;
  #suspended = false;
  #destroyed = false;

  constructor(options: MirrorSetOptions) {
    super();
    assert(Number.isSafeInteger(options.lengthSectors) && options.lengthSectors > 0, 'lengthSectors > 0');
    assert(options.legs.length >= legsMin && options.legs.length <= legsMax, `${legsMin}..${legsMax} legs`);
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
    this.logicalBlockBytes = Math.max(...this.legs.map((leg) => leg.device.logicalBlockBytes));
    this.capabilities = {
      flush: true,
      fua: true,
      trim: this.legs.every((leg) => leg.device.capabilities.trim),
      writeZeroes: this.legs.every((leg) => leg.device.capabilities.writeZeroes),
    };
    const now = options.now ?? (() => performance.now());
    this.#events = new MirrorEvents({
      onMessage: options.onMessage ?? (() => undefined),
      raiseEvent: options.raiseEvent ?? (() => undefined),
      messageLimiter: options.messageLimiter ?? new RateLimiter({ now }),
    });
    this.#legSet = new LegSet({
      legs: this.legs,
      displayNames: options.legs.map((leg) => leg.displayName ?? leg.tableName),
      features: this.features,
      readPolicy: options.readPolicy ?? 'default',
      events: this.#events,
      name: this.name,
      // After a failed leg flush, regions written since are NOSYNC on the default leg's word alone.
      defaultPinned: () => !this.#recovery.inSync || this.#rh.flushFailure,
    });
    this.#writes = new WriteQueue({ regionBytes: this.regionBytes, wake: () => this.#worker.wake() });
    this.#rate = new ResyncRate({
      parallelMax: options.recoveryParallelMax ?? recoveryParallelDefault,
      busyParallelMax: options.recoveryBusyParallelMax ?? recoveryBusyParallelDefault,
      busyBytesPerSecond: options.recoveryBusyBytesPerSecond === undefined ? recoveryBusyBytesPerSecondDefault : options.recoveryBusyBytesPerSecond,
      capBytesPerSecond: options.resyncBytesPerSecondMax ?? null,
      now,
    });
    const hold = (offsetBytes: number, lengthBytes: number): Promise<() => void> => this.#writes.hold(offsetBytes, lengthBytes);
    const regionInSync = (regionIndex: number): boolean => this.#reads.regionInSync(regionIndex);
    this.#readRepair =
      options.readRepair === true
        ? new ReadRepair({ name: this.name, legSet: this.#legSet, events: this.#events, stats: this.stats, regionInSync, hold })
        : undefined;
    this.#scrub = new Scrub({
      name: this.name,
      regionBytes: this.regionBytes,
      sizeBytes: this.sizeBytes,
      regionCount: this.regionCount,
      legSet: this.#legSet,
      regionInSync,
      hold,
      rewrite: (offsetBytes, data) => this.#writes.submit({ kind: 'write', fua: false }, { offsetBytes, lengthBytes: data.length, data }, { held: true }),
      resyncRate: () => this.#rate.limitBytesPerSecond(),
      readRepair: this.#readRepair,
    });
    this.#rh = new RegionHash<RegionWriteIo>({
      log: options.log,
      regionCount: this.regionCount,
      recoveryParallelMax: options.recoveryParallelMax ?? recoveryParallelDefault,
      callbacks: {
        dispatchDelayed: (writes) => this.#writes.requeue(writes),
        wakeup: () => this.#worker.wake(),
        recoveryIdle: () => this.#recovery.recoveryIdle(),
      },
    });
    this.#recovery = new Recovery({
      name: this.name,
      rh: this.#rh,
      log: this.log,
      legSet: this.#legSet,
      copier: options.copier ?? new Copier(),
      events: this.#events,
      stats: this.stats,
      regionBytes: this.regionBytes,
      sizeBytes: this.sizeBytes,
      rate: this.#rate,
    });
    this.#reads = new ReadPath({
      name: this.name,
      rh: this.#rh,
      legSet: this.#legSet,
      events: this.#events,
      wake: () => this.#worker.wake(),
      ...(this.#readRepair === undefined ? {} : { readRepair: this.#readRepair }),
    });
    this.#worker = new MirrorWorker({
      features: this.features,
      rh: this.#rh,
      legSet: this.#legSet,
      recovery: this.#recovery,
      reads: this.#reads,
      writes: this.#writes,
      stats: this.stats,
    });
    this.checkGeometry();
    // A mirror set starts suspended, as a freshly loaded table: resume() starts it.
    this.#suspended = true;
  }

  // ---- Observation -------------------------------------------------------------------------------

  get defaultLegIndex(): number {
    return this.#legSet.defaultLeg.index;
  }

  get inSync(): boolean {
    return this.#recovery.inSync;
  }

  get suspended(): boolean {
    return this.#suspended;
  }

  /** Events raised so far (a counter that only grows). */
  get eventCount(): number {
    return this.#events.count;
  }

  get recoveryInFlight(): number {
    return this.#rh.recoveryInFlight;
  }

  /** Regions recovered at once while clients are idle (the setting; busy mode uses fewer). */
  get recoveryParallelMax(): number {
    return this.#rate.parallelMax;
  }

  set recoveryParallelMax(value: number) {
    this.#rate.parallelMax = value;
    this.#rh.recoveryParallelMax = this.#rate.regionsInFlightMax();
    this.#worker.wake();
  }

  /** The resync's pace now: mode, limit in force, measured speed (resync-rate.ts). */
  get resyncRate(): ResyncRateStatus {
    return this.#rate.status();
  }

  /** Read repair is on (`--read-repair`). */
  get readRepair(): boolean {
    return this.#readRepair !== undefined;
  }

  /** The last finished scrub's result, and the running one's progress. */
  get lastScrub(): ScrubResult | undefined {
    return this.#scrub.last;
  }

  /** The last scrub that went through every region (metrics). */
  get lastCompleteScrub(): ScrubResult | undefined {
    return this.#scrub.lastComplete;
  }

  get scrubProgress(): ScrubProgress | undefined {
    return this.#scrub.progress;
  }

  get scrubRunning(): boolean {
    return this.#scrub.running;
  }

  /**
   * Compares every in-sync region on every valid leg while clients go on (scrub.ts); with `repair`,
   * rewrites the regions that differ. Raises a 'scrub-complete' event when it ends (complete, or
   * aborted by a suspend or the signal). @throws BlockError EBUSY while suspended or scrubbing.
   */
  async scrub(options: ScrubOptions = {}): Promise<ScrubResult> {
    if (this.#suspended || this.#destroyed) throw new BlockError('EBUSY', `${this.name}: cannot scrub a suspended mirror set`);
    const result = await this.#scrub.run(options);
    const what = result.repair ? `${result.repairedRegions} repaired` : 'not repaired';
    const ended = result.state === 'aborted' ? 'aborted' : 'complete';
    this.#events.message('info', `${this.name}: scrub ${ended}: ${result.mismatchedRegions} of ${result.regionCount} regions differ (${what})`);
    this.#events.raise({
      kind: 'scrub-complete',
      mismatchedRegions: result.mismatchedRegions,
      repairedRegions: result.repairedRegions,
      aborted: result.state === 'aborted',
    });
    return result;
  }

  /** Writes held until suspend (handle_errors after a leg failure). */
  get heldWrites(): number {
    return this.#worker.heldWrites;
  }

  /** Regions in the region hash (the memory this set spends beyond its log bitmaps). */
  get activeRegions(): number {
    return this.#rh.activeRegionCount;
  }

  /**
   * Whether every leg holds the region: in sync in the log and not NOSYNC in the region hash (after a
   * failed leg flush a region goes NOSYNC while the log still counts it in sync, as in the kernel).
   */
  regionInSync(regionIndex: number): boolean {
    return this.#reads.regionInSync(regionIndex);
  }

  syncCount(): number {
    return this.log.syncCount();
  }

  /** Health letters, one per leg in table order ("AD"). */
  healthLetters(): string {
    return this.#legSet.healthLetters();
  }

  onEvent(listener: (event: MirrorEvent) => void): () => void {
    return this.#events.on(listener);
  }

  /**
   * Resolves once nothing happens in the set: no worker pass runs or is wanted, no leg I/O the set
   * issued is in flight, no recovery is in flight and no raised event waits to reach dm core; then one
   * more turn of the event loop, so the requests completed meanwhile have reached their callers. Held
   * writes do not count. While the set resyncs this waits for the resync (or a suspend) to end.
   */
  async idle(): Promise<void> {
    do {
      await this.#worker.quiet();
      await this.#reads.quiet();
      await this.#recovery.drained();
      await this.#events.flushed();
      await new Promise<void>((resolve) => setImmediate(resolve));
    } while (this.#worker.busy || this.#reads.inFlight > 0 || this.#rh.recoveryInFlight > 0 || this.#events.pending);
  }

  /** What the status formatters need, taken now (mirror-status.ts). */
  snapshot(): MirrorSnapshot {
    return {
      legs: this.legs.map((leg) => ({ displayName: this.#legSet.displayName(leg), offsetBytes: leg.offsetBytes, health: leg.health })),
      features: this.features,
      regionCount: this.regionCount,
      syncCount: this.log.syncCount(),
      log: { type: this.log.type, statusInfo: this.log.statusInfo(), statusTable: this.log.statusTable() },
    };
  }

  statusInfo(): string {
    return statusInfo(this.snapshot());
  }

  statusTable(): string {
    return statusTable(this.snapshot());
  }

  /** The IMA measurement string (`dmsetup measure`). */
  statusMeasure(): string {
    return statusMeasure(this.snapshot());
  }

  // ---- Lifecycle ---------------------------------------------------------------------------------

  async resume(): Promise<void> {
    assert(!this.#destroyed, 'resume after destroy');
    this.#worker.endSuspend();
    this.#suspended = false;
    try {
      await this.log.resume();
    } catch (err) {
      rethrowProgrammerError(err);
      this.#events.message('warn', 'log resume failed');
    }
    // The reread log may call regions out of sync that were in sync at suspend (a log device that
    // died, a leg flush failure that zeroed the clean bits, bits changed on disk): the set is then out
    // of sync again, so the default leg stays put while they resync (do_recovery sets it back and
    // raises sync complete). The kernel keeps in_sync here, and would move the default leg mid-resync.
    if (this.log.syncCount() < this.regionCount) this.#recovery.markOutOfSync();
    this.#rh.startRecovery();
    this.#worker.wake();
  }

  async presuspend(options: SuspendOptions = {}): Promise<void> {
    // A scrub stops after its region in hand; that region's repair write may be held, released below.
    const scrubStopped = this.#scrub.abort();
    // With ms->suspend set, held writes complete now (requeue or EIO) and new failures are not held.
    this.#worker.beginSuspend({ noflush: options.noflush === true });
    this.#rh.stopRecovery();
    await scrubStopped;
    await this.#recovery.drained();
    try {
      await this.log.presuspend();
    } catch (err) {
      rethrowProgrammerError(err);
      this.#events.message('warn', 'log presuspend failed');
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
      this.#events.message('warn', 'log postsuspend failed');
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
    this.#worker.closeHolds();
    await this.log.close();
    await Promise.all(this.legs.map((leg) => leg.device.close()));
  }

  // ---- BlockDevice entry points (offsets relative to the start of the set) ------------------------

  protected async doRead(offsetBytes: number, lengthBytes: number, _options: ReadOptions): Promise<Buffer> {
    this.#recovery.clientIo();
    this.stats.readsTotal += 1;
    this.stats.readBytesTotal += lengthBytes;
    const pieces = splitByRegion({ offsetBytes, lengthBytes, regionBytes: this.regionBytes });
    const only = pieces.length === 1 ? pieces[0] : undefined;
    // One region (the usual read): the leg's buffer is the answer, with no copy.
    if (only !== undefined) return this.#reads.read(only);
    const parts = await Promise.all(pieces.map((piece) => this.#reads.read(piece)));
    return Buffer.concat(parts, lengthBytes);
  }

  protected async doWrite(offsetBytes: number, data: Uint8Array, options: WriteOptions): Promise<void> {
    this.stats.writesTotal += 1;
    this.stats.writeBytesTotal += data.length;
    this.#recovery.clientIo();
    await this.#writes.submit({ kind: 'write', fua: options.fua === true }, { offsetBytes, lengthBytes: data.length, data });
  }

  protected override async doWriteZeroes(offsetBytes: number, lengthBytes: number, options: ZeroOptions): Promise<void> {
    this.stats.writesTotal += 1;
    this.#recovery.clientIo();
    await this.#writes.submit({ kind: 'zero', fua: options.fua === true, noHole: options.noHole === true }, { offsetBytes, lengthBytes });
  }

  protected override async doTrim(offsetBytes: number, lengthBytes: number, options: WriteOptions): Promise<void> {
    this.#recovery.clientIo();
    await this.#writes.submit({ kind: 'trim', fua: options.fua === true }, { offsetBytes, lengthBytes });
  }

  protected async doFlush(): Promise<void> {
    this.#recovery.clientIo();
    await this.#writes.flush();
  }

  /** Flushes every leg; a leg that fails is failed with kind `flush` (mirror_flush, the log's callback). */
  flushLegs(): Promise<void> {
    return this.#legSet.flush();
  }

  /** The dirty log reports its device failed (its context's raiseEvent): an event, handled or not. */
  logDeviceFailed(): void {
    this.#events.raise({ kind: 'log-failed' });
  }
}
