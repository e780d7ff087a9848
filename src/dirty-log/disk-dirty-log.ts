/**
 * DiskDirtyLog: the kernel's `disk` dirty log (dm-log.c disk_*), byte-compatible with it. The clean bits
 * live in the writer's I/O buffer (header + bits, see disk-log-format.ts) and are a RegionBits view into
 * it, so a write is the buffer itself; sync and recovering bits are memory only (RegionLogState, shared
 * with the core log as dm's _disk_type reuses core_*).
 *
 * The log is the DirtyLog entry points and the wiring of two parts:
 *   DiskLogWriter   the buffer, its changed blocks, the one queue of device writes and flushes, and the
 *                   device's health: A alive; D a read/write failed (fail_log_device: sticky, one event);
 *                   F a flush of the log device failed (log_dev_flush_failed, wins over D)
 *   CleanScheduler  pending and applying cleans, the clean steps, the lazy timer and the clock
 * A failing leg flush (ctx.flushData) is not a log failure: as the kernel, the log then marks every
 * region dirty (flush_failed, sticky: later clears are ignored) and stays 'A'; the mirror reports the
 * leg 'F'.
 *
 * Ordering rules:
 *   - markRegion() clears a bit in memory at once; flush() writes it and then flushes the log device
 *     (the mark step; only flushes that carry a dirtied bit run it, as the kernel's touched_dirtied).
 *   - clearRegion() only queues the region as pending-clean. A clean step takes the due pending cleans,
 *     calls ctx.flushData() FIRST, and only then sets their bits, writes them and flushes the log
 *     device: a clean bit never reaches the disk before the legs' caches hold the region's writes.
 *     Cleans queued while flushData() runs wait for the next step; a region marked again meanwhile is
 *     dropped from the step (it stays dirty). One clean step runs at a time.
 *   - The mark step never waits for a clean step's leg flush (the kernel's disk_flush does: there every
 *     dirty mark queues behind the legs' fdatasync). Until a clean step has set its bits, the bitmap
 *     simply holds those regions dirty, so a mark step writes the blocks as they are.
 *   - Every log device write and flush runs in the writer's queue (resume, mark steps, the write half of
 *     clean steps), each write a snapshot of its blocks taken when it starts: two writes of one block
 *     never overlap, and the last one carries the newest bits (a mark racing a clean of the same region
 *     clears the bit again and re-queues the block: it ends dirty).
 *   - flush({cleans: 'background'}) (the mirror's worker) resolves after the mark step and starts a
 *     clean step beside it; flush() (default 'wait') also waits until the cleans due at the call are
 *     durable. resume() and close() wait for a running clean step.
 *   - resume() reads the header and bits, applies the grow/shrink/version rules (reconcileHeader in
 *     disk-log-format.ts), copies clean to sync and writes the whole buffer (header included) before
 *     any resync may start.
 *   - postsuspend() writes the marks and waits for every pending clean regardless of age to be durable.
 *   - A background clean step writes its bits without a log flush (the next mark step or waiting flush
 *     covers them), and with lazyCleanMs > 0 at most one background step starts per lazyCleanMs: each
 *     forces the legs' dirty data out, and a log flush issued meanwhile waits for that data too.
 *
 * Past the kernel, format unchanged: only the changed logical blocks are written ('changed-blocks';
 * 'whole-buffer' is the kernel's behaviour, for comparison), and with lazyCleanMs > 0 a clean is held
 * until the region has been idle that long, so a hot region costs no log write per write burst.
 *
 * Leg generations (issue 11, only when built with `legNames`): the log keeps a record of which legs are
 * stale in header bytes 16..1023 (leg-generations.ts, leg-generation-record.ts), read at resume
 * (`legGenerations`) and written with every log write. setLegStale() is durable once the next flush()
 * resolves: the same mark step that carries the dirty marks writes it. postsuspend() seals the record
 * (it then binds only the exact bits on disk; after a crash, also the bits before the last step). Without `legNames` the log never
 * touches those bytes (the kernel's behaviour).
 *
 * Called by the mirror / region hash through the DirtyLog interface; built by createDirtyLog().
 */
import { assert, assertCount } from '../assert.js';
import type { BlockDevice } from '../block/block-device.js';
import { isRegionSizeSectors } from '../limits.js';
import { CleanScheduler } from './clean-scheduler.js';
import type { DirtyLog, DirtyLogStats, LogFlushOptions, LogHealth, LogSyncMode } from './dirty-log.js';
import { RegionLogState } from './dirty-log.js';
import { diskLogBitsOffsetBytes, diskLogMagic, reconcileHeader, type DiskLogHeader } from './disk-log-format.js';
import { DiskLogWriter, type DiskLogWriteMode } from './disk-log-writer.js';
import { LegGenerations, type LegGenerationsView } from './leg-generations.js';
import { regionBitsBytes } from './region-bits.js';

export type { DiskLogWriteMode } from './disk-log-writer.js';

export interface DiskDirtyLogOptions {
  readonly device: BlockDevice;
  /** How the device appears in status lines and messages (the kernel prints maj:min). */
  readonly displayName: string;
  readonly regionCount: number;
  readonly regionSizeSectors: number;
  readonly syncMode: LogSyncMode;
  /** Flushes the data legs before clean bits are written (flush_callback_fn). */
  readonly flushData: () => Promise<void>;
  /** Raised once when the log device fails. */
  readonly raiseEvent: () => void;
  /** Hold a clean until the region was idle this long; 0 (default) cleans at the next flush. */
  readonly lazyCleanMs?: number;
  /** 'changed-blocks' (default) or 'whole-buffer' (the kernel: every flush writes the whole buffer). */
  readonly writeMode?: DiskLogWriteMode;
  /** Arm a timer that flushes lazy cleans as they come due (default true when lazyCleanMs > 0). */
  readonly lazyCleanTimer?: boolean;
  /** Monotonic clock in ms (default performance.now); tests pass a fake one. */
  readonly now?: () => number;
  /** Receives the kernel's DMWARN lines ("incompatible disk log version"). */
  readonly onWarning?: (line: string) => void;
  /** The legs' table names, in table order: keep the leg generation record (see the banner). */
  readonly legNames?: readonly string[];
}

export class DiskDirtyLog implements DirtyLog {
  readonly type = 'disk';
  readonly regionSizeSectors: number;
  readonly regionCount: number;
  readonly syncMode: LogSyncMode;
  readonly bufferBytes: number;
  readonly blockBytes: number;
  readonly #displayName: string;
  readonly #onWarning: ((line: string) => void) | undefined;
  readonly #state: RegionLogState;
  readonly #writer: DiskLogWriter;
  readonly #cleans: CleanScheduler;
  readonly #generations: LegGenerations | undefined;
  #flushFailed = false;
  #closed = false;

  constructor(options: DiskDirtyLogOptions) {
    assertCount(options.regionCount, 'regionCount');
    assert(options.regionCount > 0, 'a log needs at least one region');
    assert(isRegionSizeSectors(options.regionSizeSectors), 'region size: a power of two within limits.ts regionSizeSectorsMin/Max');
    this.regionSizeSectors = options.regionSizeSectors;
    this.regionCount = options.regionCount;
    this.syncMode = options.syncMode;
    this.#displayName = options.displayName;
    this.#onWarning = options.onWarning;
    const warn = (line: string): void => this.#warn(line);
    this.#generations = options.legNames === undefined ? undefined : new LegGenerations({ legNames: options.legNames });
    this.#writer = new DiskLogWriter({
      device: options.device,
      displayName: options.displayName,
      regionCount: options.regionCount,
      writeMode: options.writeMode ?? 'changed-blocks',
      raiseEvent: options.raiseEvent,
      warn,
      ...(this.#generations === undefined ? {} : { generations: this.#generations }),
    });
    this.bufferBytes = this.#writer.bufferBytes;
    this.blockBytes = this.#writer.blockBytes;
    this.#state = new RegionLogState({
      regionCount: options.regionCount,
      syncMode: options.syncMode,
      cleanStorage: this.#writer.bitsStorage,
    });
    this.#cleans = new CleanScheduler({
      lazyCleanMs: options.lazyCleanMs ?? 0,
      timer: options.lazyCleanTimer !== false,
      now: options.now ?? (() => performance.now()),
      flushData: options.flushData,
      setClean: (regions) => this.#setClean(regions),
      flushDataFailed: () => this.#flushDataFailed(),
      writeCleans: (step) => this.#writer.writeCleans(step),
      flushDue: () => this.flush(),
      warn,
    });
  }

  get health(): LogHealth {
    return this.#writer.health;
  }

  get stats(): DirtyLogStats {
    return this.#writer.stats;
  }

  /** True once a leg flush failed: every region is dirty on disk and clears are ignored. */
  get flushFailed(): boolean {
    return this.#flushFailed;
  }

  /**
   * The leg generation record: what resume found and each leg's stale flag now; undefined for a log
   * built without `legNames`. Before the first resume, every leg is current and the record 'none'.
   */
  get legGenerations(): LegGenerationsView | undefined {
    return this.#generations?.view;
  }

  /**
   * Records leg `legIndex` (table order) as stale or current. Memory only: durable once the next
   * flush() resolves (its mark step writes the record with the dirty marks, then flushes the device).
   * A no-op when the flag is already so. Never waits.
   */
  setLegStale(legIndex: number, stale: boolean): void {
    const generations = this.#generations;
    assert(generations !== undefined, 'setLegStale needs a log built with legNames');
    if (generations.setStale(legIndex, stale)) this.#writer.recordChanged();
    assert(generations.isStale(legIndex) === stale);
  }

  /** Regions cleared in memory whose clean bit is not written yet (lazy cleaning). */
  get pendingCleanCount(): number {
    return this.#cleans.count;
  }

  isClean(regionIndex: number): boolean {
    return this.#state.clean.test(regionIndex) || this.#cleans.has(regionIndex);
  }

  inSync(regionIndex: number): boolean {
    return this.#state.sync.test(regionIndex);
  }

  markRegion(regionIndex: number): void {
    this.#cleans.forget(regionIndex);
    this.#writer.regionMarked({ regionIndex, bitChanged: this.#state.clean.clear(regionIndex) });
    assert(!this.isClean(regionIndex));
  }

  clearRegion(regionIndex: number): void {
    if (this.#flushFailed) {
      this.#state.clean.test(regionIndex); // Range check only: core_clear_region ignores it.
      return;
    }
    if (this.#cleans.has(regionIndex)) return;
    if (this.#state.clean.test(regionIndex) && this.#writer.writeMode === 'changed-blocks') return;
    this.#cleans.add(regionIndex);
  }

  flush(options: LogFlushOptions = {}): Promise<void> {
    const marks = this.#writer.writeMarks();
    if (options.cleans === 'background') {
      // The clean step runs beside the marks: its leg flush never delays them (only its log writes queue).
      this.#cleans.kickBackground();
      return marks;
    }
    const wanted = this.#cleans.due({ allCleans: false });
    return marks
      .then(() => this.#cleans.settle({ allCleans: false, wanted }))
      .then(() => this.#writer.flushCleans());
  }

  getResyncWork(): number | null {
    return this.#state.getResyncWork();
  }

  setRegionSync(regionIndex: number, inSync: boolean): void {
    this.#state.setRegionSync(regionIndex, inSync);
  }

  syncCount(): number {
    return this.#state.syncCount;
  }

  async resume(): Promise<void> {
    await this.#cleans.idle();
    return this.#writer.reload({
      begin: () => {
        assert(!this.#closed, 'resume after close');
        this.#cleans.reset();
      },
      reconcile: (read) => this.#reconcile(read),
    });
  }

  presuspend(): Promise<void> {
    return Promise.resolve();
  }

  async postsuspend(): Promise<void> {
    const wanted = this.#cleans.due({ allCleans: true });
    await this.#writer.writeMarks();
    await this.#cleans.settle({ allCleans: true, wanted });
    await this.#writer.flushCleans();
    await this.#writer.sealRecord();
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#cleans.close();
    await this.#writer.close();
  }

  statusInfo(): string {
    return `3 disk ${this.#displayName} ${this.health}`;
  }

  statusTable(): string {
    const base = `disk ${this.syncMode === 'default' ? 2 : 3} ${this.#displayName} ${this.regionSizeSectors}`;
    return this.syncMode === 'default' ? base : `${base} ${this.syncMode}`;
  }

  /** A copy of the log buffer as it would be written now (for tests and tools). */
  snapshot(): Uint8Array {
    return this.#writer.snapshot();
  }

  /**
   * The resume step's middle (in the writer's queue, on the buffer just read): applies reconcileHeader's
   * verdict to the bits, copies clean to sync, and returns the header to write.
   */
  #reconcile(read: DiskLogHeader | undefined): DiskLogHeader {
    const state = this.#state;
    const verdict = reconcileHeader({ read, syncMode: this.syncMode, regionCount: this.regionCount });
    // The record describes the bits as read: it is checked before they are reconciled. Its flags are
    // kept whatever the table's sync mode (a forced resync must not copy a stale leg over a current one).
    const ours = read !== undefined && read.magic === diskLogMagic && verdict.failure === undefined;
    this.#generations?.load(this.#writer.buffer, {
      nrRegions: ours ? read.nrRegions : undefined,
      bitsBytes: regionBitsBytes(this.regionCount),
      headEndBytes: this.#writer.headEndBytes,
    });
    if (verdict.failure === 'incompatible-version') this.#warn('incompatible disk log version');
    if (verdict.failure !== undefined) {
      this.#warn(`${this.#displayName}: Failed to read header on dirty region log device`);
      this.#writer.failDevice();
    }
    // Grown (or new, or failed): the bits past the regions kept are cleared (set with nosync). Shrunk:
    // bits past the end are cleared up to the next 64-bit boundary (BITS_PER_LONG on the kernel's 64-bit
    // hosts; disklog-resize.out shows a stale 33rd-40th bit zeroed). The buffer always holds that
    // boundary (see diskLogBufferBytes).
    state.clean.fillRange({ from: verdict.keptRegions, to: this.regionCount, value: verdict.newBitsClean });
    state.clean.fillRange({ from: this.regionCount, to: state.clean.wordCount * 32, value: false });
    const bitsEnd = diskLogBitsOffsetBytes + state.clean.wordCount * 4;
    const longEnd = diskLogBitsOffsetBytes + Math.ceil(state.clean.wordCount / 2) * 8;
    assert(longEnd <= this.bufferBytes, 'the buffer holds the bits up to a 64-bit boundary');
    this.#writer.buffer.fill(0, bitsEnd, longEnd);
    state.sync.copyFrom(state.clean);
    state.syncCount = state.clean.count();
    state.syncSearch = 0;
    assert(state.syncCount <= this.regionCount);
    assert(verdict.header.nrRegions === this.regionCount);
    return verdict.header;
  }

  /** A clean step's leg flush succeeded: the regions still applying become clean in the buffer. */
  #setClean(regions: ReadonlySet<number>): void {
    for (const regionIndex of regions) {
      if (this.#state.clean.set(regionIndex)) this.#writer.regionCleaned(regionIndex);
    }
  }

  /**
   * A clean step's leg flush failed. The mirror records the leg failure itself; the log only loses its
   * clean bits: which regions are clean is unknown now, so all are dirty, for good (flush_failed).
   */
  #flushDataFailed(): void {
    this.#flushFailed = true;
    this.#state.clean.clearAll();
    this.#writer.allBitsDirtied();
  }

  #warn(line: string): void {
    this.#onWarning?.(line);
  }
}
