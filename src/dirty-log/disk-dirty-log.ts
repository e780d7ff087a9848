/**
 * DiskDirtyLog: the kernel's `disk` dirty log (dm-log.c disk_*), byte-compatible with it. The clean bits
 * live in one I/O buffer (header + bits, see disk-log-format.ts) and are a RegionBits view into it, so a
 * write is the buffer itself; sync and recovering bits are memory only (RegionLogState, shared with the
 * core log as dm's _disk_type reuses core_*).
 *
 * States of the log device (status letter): A alive; D a read/write failed (fail_log_device: sticky,
 * one event); F a flush of the log device failed (log_dev_flush_failed, wins over D). A failing leg
 * flush (ctx.flushData) is not a log failure: as the kernel, the log then marks every region dirty
 * (flush_failed, sticky: later clears are ignored) and stays 'A'; the mirror reports the leg 'F'.
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
 *   - Every log device write and flush runs in one queue (a promise chain: resume, mark steps, the
 *     write half of clean steps), each write a snapshot of its blocks taken when it starts: two writes
 *     of one block never overlap, and the last one carries the newest bits (a mark racing a clean of the
 *     same region clears the bit again and re-queues the block: it ends dirty).
 *   - flush({cleans: 'background'}) (the mirror's worker) resolves after the mark step and starts a
 *     clean step beside it; flush() (default 'wait') also waits until the cleans due at the call are
 *     durable. resume() and close() wait for a running clean step.
 *   - resume() reads the header and bits, applies the grow/shrink rules of disk_resume, copies clean to
 *     sync and writes the whole buffer (header included) before any resync may start.
 *   - postsuspend() writes the marks and waits for every pending clean regardless of age to be durable.
 *   - A background clean step writes its bits without a log flush (the next mark step or waiting flush
 *     covers them), and with lazyCleanMs > 0 at most one background step starts per lazyCleanMs: each
 *     forces the legs' dirty data out, and a log flush issued meanwhile waits for that data too.
 *
 * Past the kernel, format unchanged: only the changed logical blocks are written ('changed-blocks';
 * 'whole-buffer' is the kernel's behaviour, for comparison), and with lazyCleanMs > 0 a clean is held
 * until the region has been idle that long, so a hot region costs no log write per write burst. A
 * timer (unref'd) flushes lazy cleans that come due while no one calls flush().
 *
 * Called by the mirror / region hash through the DirtyLog interface; built by createDirtyLog().
 */
import { assert, assertCount, isPowerOfTwo } from '../assert.js';
import type { BlockDevice } from '../block/block-device.js';
import { toBlockError } from '../errors.js';
import { detach, rethrowProgrammerError } from '../fail-fast.js';
import { lazyCleanMsMax } from '../limits.js';
import type { DirtyLogStats } from './core-dirty-log.js';
import { RegionLogState } from './core-dirty-log.js';
import type { DirtyLog, LogFlushOptions, LogHealth, LogSyncMode } from './dirty-log.js';
import {
  decodeDiskLogHeader,
  diskLogBitsOffsetBytes,
  diskLogBufferBytes,
  diskLogMagic,
  diskLogVersion,
  diskLogVersionLegacy,
  encodeDiskLogHeader,
} from './disk-log-format.js';

/** Rounds a waiting flush spends on clean steps: the running one, then its own (with slack). */
const cleanSettleRoundsMax = 8;

export type DiskLogWriteMode = 'changed-blocks' | 'whole-buffer';

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
}

export class DiskDirtyLog implements DirtyLog {
  readonly type = 'disk';
  readonly regionSizeSectors: number;
  readonly regionCount: number;
  readonly syncMode: LogSyncMode;
  readonly bufferBytes: number;
  readonly blockBytes: number;
  readonly #options: DiskDirtyLogOptions;
  readonly #device: BlockDevice;
  readonly #buffer: Uint8Array;
  readonly #state: RegionLogState;
  readonly #lazyCleanMs: number;
  readonly #writeMode: DiskLogWriteMode;
  readonly #now: () => number;
  /** Regions cleared in memory but not yet set in the buffer, with the time of the clear (in order). */
  readonly #pendingCleans = new Map<number, number>();
  /** Regions whose clean the running flush is applying after flushData(). */
  readonly #applyingCleans = new Set<number>();
  /** Buffer blocks changed since the last successful write. */
  readonly #dirtyBlocks = new Set<number>();
  #touchedDirtied = false;
  #flushFailed = false;
  #logDevFailed = false;
  #logDevFlushFailed = false;
  #headerVersion = diskLogVersion;
  /** Orders every log device write and flush (resume, mark steps, the write half of clean steps). */
  #queue: Promise<unknown> = Promise.resolve();
  /** A background clean step wrote clean bits that no log flush has covered yet. */
  #cleansUnflushed = false;
  /** When the last clean step started (the clock of `now`). */
  #cleanStartedMs = -Infinity;
  /** The running clean step, if any. */
  #cleaning: Promise<void> | undefined;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;
  #bytesWritten = 0;
  #writesTotal = 0;
  #flushesTotal = 0;

  constructor(options: DiskDirtyLogOptions) {
    assertCount(options.regionCount, 'regionCount');
    assert(options.regionCount > 0, 'a log needs at least one region');
    assert(isPowerOfTwo(options.regionSizeSectors) && options.regionSizeSectors >= 2, 'region size must be a power of two >= 2');
    const lazyCleanMs = options.lazyCleanMs ?? 0;
    assert(Number.isFinite(lazyCleanMs) && lazyCleanMs >= 0, 'lazyCleanMs must be >= 0');
    assert(lazyCleanMs <= lazyCleanMsMax, 'lazyCleanMs <= lazyCleanMsMax (a Node timer holds at most 2^31 - 1 ms)');
    this.#options = options;
    this.#device = options.device;
    this.regionSizeSectors = options.regionSizeSectors;
    this.regionCount = options.regionCount;
    this.syncMode = options.syncMode;
    this.blockBytes = options.device.logicalBlockBytes;
    this.bufferBytes = diskLogBufferBytes({ regionCount: options.regionCount, logicalBlockBytes: this.blockBytes });
    assert(this.bufferBytes <= options.device.sizeBytes, 'the log device is too small (checked by createDirtyLog)');
    this.#buffer = new Uint8Array(this.bufferBytes);
    this.#state = new RegionLogState({
      regionCount: options.regionCount,
      syncMode: options.syncMode,
      cleanStorage: this.#buffer.subarray(diskLogBitsOffsetBytes),
    });
    this.#lazyCleanMs = lazyCleanMs;
    this.#writeMode = options.writeMode ?? 'changed-blocks';
    this.#now = options.now ?? (() => performance.now());
  }

  get health(): LogHealth {
    if (this.#logDevFlushFailed) return 'F';
    return this.#logDevFailed ? 'D' : 'A';
  }

  /** True once a leg flush failed: every region is dirty on disk and clears are ignored. */
  get flushFailed(): boolean {
    return this.#flushFailed;
  }

  /** Regions cleared in memory whose clean bit is not written yet (lazy cleaning). */
  get pendingCleanCount(): number {
    return this.#pendingCleans.size + this.#applyingCleans.size;
  }

  get stats(): DirtyLogStats {
    return { logBytesWritten: this.#bytesWritten, logWritesTotal: this.#writesTotal, logFlushesTotal: this.#flushesTotal };
  }

  isClean(regionIndex: number): boolean {
    return (
      this.#state.clean.test(regionIndex) || this.#pendingCleans.has(regionIndex) || this.#applyingCleans.has(regionIndex)
    );
  }

  inSync(regionIndex: number): boolean {
    return this.#state.sync.test(regionIndex);
  }

  markRegion(regionIndex: number): void {
    this.#pendingCleans.delete(regionIndex);
    this.#applyingCleans.delete(regionIndex);
    if (this.#state.clean.clear(regionIndex)) {
      this.#touchBit(regionIndex);
      this.#touchedDirtied = true;
    } else if (this.#writeMode === 'whole-buffer') {
      this.#touchedDirtied = true; // The kernel's log_clear_bit touches unconditionally.
    }
    assert(!this.isClean(regionIndex));
  }

  clearRegion(regionIndex: number): void {
    if (this.#flushFailed) {
      this.#state.clean.test(regionIndex); // Range check only: core_clear_region ignores it.
      return;
    }
    if (this.#pendingCleans.has(regionIndex) || this.#applyingCleans.has(regionIndex)) return;
    if (this.#state.clean.test(regionIndex) && this.#writeMode === 'changed-blocks') return;
    this.#pendingCleans.set(regionIndex, this.#now());
    this.#armTimer();
  }

  flush(options: LogFlushOptions = {}): Promise<void> {
    const marks = this.#serialise(() => this.#writeMarks());
    if (options.cleans === 'background') {
      // The clean step runs beside the marks: its leg flush never delays them (only its log writes queue).
      if (this.#cleaning === undefined && this.#backgroundCleanDue()) this.#kickBackgroundCleans();
      return marks;
    }
    const wanted = this.#dueCleans({ allCleans: false });
    return marks
      .then(() => this.#settleCleans({ allCleans: false, wanted }))
      .then(() => this.#serialise(() => this.#flushUnflushedCleans()));
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
    await this.#cleansIdle();
    return this.#serialise(() => this.#resumeNow());
  }

  presuspend(): Promise<void> {
    return Promise.resolve();
  }

  async postsuspend(): Promise<void> {
    const wanted = this.#dueCleans({ allCleans: true });
    await this.#serialise(() => this.#writeMarks());
    await this.#settleCleans({ allCleans: true, wanted });
    await this.#serialise(() => this.#flushUnflushedCleans());
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#disarmTimer();
    await this.#cleansIdle();
    await this.#queue;
    await this.#device.close();
  }

  statusInfo(): string {
    return `3 disk ${this.#options.displayName} ${this.health}`;
  }

  statusTable(): string {
    const base = `disk ${this.syncMode === 'default' ? 2 : 3} ${this.#options.displayName} ${this.regionSizeSectors}`;
    return this.syncMode === 'default' ? base : `${base} ${this.syncMode}`;
  }

  /** A copy of the log buffer as it would be written now (for tests and tools). */
  snapshot(): Uint8Array {
    return this.#buffer.slice();
  }

  #serialise(run: () => Promise<void>): Promise<void> {
    const next = this.#queue.then(run);
    // The chain only orders the runs; each caller gets its own run's result.
    this.#queue = next.then(
      () => undefined,
      () => undefined,
    );
    return next;
  }

  async #resumeNow(): Promise<void> {
    assert(!this.#closed, 'resume after close');
    const state = this.#state;
    this.#disarmTimer();
    this.#pendingCleans.clear();
    this.#applyingCleans.clear();
    let nrRegions = 0;
    let readOk = true;
    try {
      const data = await this.#device.read(0, this.bufferBytes);
      this.#buffer.set(data);
      const header = decodeDiskLogHeader(this.#buffer);
      let { version } = header;
      nrRegions = header.nrRegions;
      // New log required? A forced sync mode or a foreign magic start from nothing (read_header).
      if (this.syncMode !== 'default' || header.magic !== diskLogMagic) {
        version = diskLogVersion;
        nrRegions = 0;
      }
      if (version === diskLogVersionLegacy) version = diskLogVersion;
      this.#headerVersion = version;
      if (version !== diskLogVersion) {
        this.#warn('incompatible disk log version');
        readOk = false;
      }
    } catch (err) {
      rethrowProgrammerError(err);
      readOk = false;
      this.#headerVersion = diskLogVersion;
    }
    if (!readOk) {
      this.#warn(`${this.#options.displayName}: Failed to read header on dirty region log device`);
      this.#failLogDevice();
      // An unreadable log proves nothing: every region is out of sync (or in sync with nosync).
      nrRegions = 0;
    }

    // Grown: new regions are cleared (set with nosync). Shrunk: bits past the end are cleared up to
    // the next 64-bit boundary (BITS_PER_LONG on the kernel's 64-bit hosts; disklog-resize.out shows
    // a stale 33rd-40th bit zeroed). The buffer always holds that boundary (see diskLogBufferBytes).
    const from = Math.min(nrRegions, this.regionCount);
    state.clean.fillRange({ from, to: this.regionCount, value: this.syncMode === 'nosync' });
    state.clean.fillRange({ from: this.regionCount, to: state.clean.wordCount * 32, value: false });
    const bitsEnd = diskLogBitsOffsetBytes + state.clean.wordCount * 4;
    const longEnd = diskLogBitsOffsetBytes + Math.ceil(state.clean.wordCount / 2) * 8;
    assert(longEnd <= this.bufferBytes, 'the buffer holds the bits up to a 64-bit boundary');
    this.#buffer.fill(0, bitsEnd, longEnd);
    state.sync.copyFrom(state.clean);
    state.syncCount = state.clean.count();
    state.syncSearch = 0;
    assert(state.syncCount <= this.regionCount);

    encodeDiskLogHeader({ magic: diskLogMagic, version: this.#headerVersion, nrRegions: this.regionCount }, this.#buffer);
    assert(decodeDiskLogHeader(this.#buffer).nrRegions === this.regionCount);
    this.#dirtyBlocks.clear();
    this.#touchedDirtied = false;
    try {
      await this.#writeRange(0, this.bufferBytes);
    } catch (err) {
      rethrowProgrammerError(err);
      this.#warn(`${this.#options.displayName}: Failed to write header on dirty region log device`);
      this.#failLogDevice();
      this.#markAllBlocks();
      this.#touchedDirtied = true;
      throw toBlockError(err, `Cannot write the header of dirty log ${this.#options.displayName}`);
    }
    try {
      await this.#flushDevice();
    } catch (err) {
      // disk_resume reports a failed header flush as a failed header write (read-path.out P); the
      // flush failure itself is recorded (log F) by #flushDevice.
      this.#warn(`${this.#options.displayName}: Failed to write header on dirty region log device`);
      throw err;
    }
  }

  /** The mark step (in the device queue): writes the changed blocks and flushes, if a bit was dirtied. */
  async #writeMarks(): Promise<void> {
    if (!this.#touchedDirtied) return;
    await this.#writeChanged({ flushDevice: true });
  }

  /**
   * Writes every changed block (marks, and cleans already applied after their leg flush) and then
   * flushes the log device. Runs only in the device queue, so no two writes of one block overlap and
   * the last write of a block carries its newest bytes.
   */
  async #writeChanged(options: { flushDevice: boolean }): Promise<void> {
    this.#touchedDirtied = false;
    const runs = this.#takeRuns();
    for (let i = 0; i < runs.length; i++) {
      const run = runs[i];
      assert(run !== undefined);
      try {
        await this.#writeRange(run.offsetBytes, run.lengthBytes);
      } catch (err) {
        rethrowProgrammerError(err);
        for (const later of runs.slice(i)) this.#markBlocks(later.offsetBytes, later.lengthBytes);
        this.#touchedDirtied = true; // The next flush retries the blocks, and reports the failure.
        this.#failLogDevice();
        throw toBlockError(err, `Cannot write dirty log ${this.#options.displayName}`);
      }
    }
    if (!options.flushDevice) {
      this.#cleansUnflushed ||= runs.length > 0;
      return;
    }
    this.#cleansUnflushed = false;
    await this.#flushDeviceOrRetry(() => (this.#touchedDirtied = true));
  }

  /** A waiting flush ends here: clean bits a background step wrote without a log flush get one. */
  async #flushUnflushedCleans(): Promise<void> {
    if (!this.#cleansUnflushed) return;
    this.#cleansUnflushed = false;
    await this.#flushDeviceOrRetry(() => (this.#cleansUnflushed = true));
  }

  /** Flushes the log device; on failure `retry` makes the next flush try again (then rethrows). */
  async #flushDeviceOrRetry(retry: () => void): Promise<void> {
    try {
      await this.#flushDevice();
    } catch (err) {
      rethrowProgrammerError(err);
      retry();
      throw err;
    }
  }

  /** The due pending cleans (all of them with allCleans), in clear order. */
  #dueCleans(options: { allCleans: boolean }): Set<number> {
    const due = new Set<number>();
    const now = this.#now();
    for (const [regionIndex, clearedAt] of this.#pendingCleans) {
      if (!options.allCleans && now - clearedAt < this.#lazyCleanMs) break; // The map is in time order.
      due.add(regionIndex);
    }
    return due;
  }

  /**
   * A background step may start: due cleans, and with lazy cleaning at most one background step per
   * lazyCleanMs (each forces the legs' dirty data out; the timer takes what comes due in between).
   */
  #backgroundCleanDue(): boolean {
    if (this.#now() - this.#cleanStartedMs < this.#lazyCleanMs) return false;
    return this.#hasDueCleans({ allCleans: false });
  }

  #hasDueCleans(options: { allCleans: boolean }): boolean {
    const first = this.#pendingCleans.values().next();
    if (first.done === true) return false;
    return options.allCleans || this.#now() - first.value >= this.#lazyCleanMs;
  }

  /**
   * Waits until none of `wanted` is pending any more: each was written clean by a clean step whose leg
   * flush started after the clear, or was marked again (it stays dirty). Bounded: the running step,
   * then at most one step of our own takes every wanted region still pending.
   */
  async #settleCleans(options: { allCleans: boolean; wanted: ReadonlySet<number> }): Promise<void> {
    for (let round = 0; round < cleanSettleRoundsMax; round++) {
      const running = this.#cleaning;
      if (running !== undefined) {
        await running;
        continue;
      }
      if (![...options.wanted].some((regionIndex) => this.#pendingCleans.has(regionIndex))) return;
      await this.#kickCleans({ allCleans: options.allCleans, chain: false });
    }
    // Only reached while new clean steps keep starting: a wanted region left pending stays dirty on disk
    // (the safe side) and the next flush takes it.
    if ([...options.wanted].some((regionIndex) => this.#pendingCleans.has(regionIndex))) this.#warn('cleans left pending');
  }

  /** Resolves when no clean step runs (its failure is the caller's who awaited it, not ours). */
  async #cleansIdle(): Promise<void> {
    for (let round = 0; round < cleanSettleRoundsMax && this.#cleaning !== undefined; round++) {
      await this.#cleaning.catch(rethrowProgrammerError);
    }
  }

  /**
   * Starts a clean step (one at a time). A chained step (a background kick, see #kickBackgroundCleans)
   * starts the next one if due cleans arrived meanwhile.
   */
  #kickCleans(options: { allCleans: boolean; chain: boolean }): Promise<void> {
    assert(this.#cleaning === undefined, 'one clean step at a time');
    this.#disarmTimer();
    this.#cleanStartedMs = this.#now();
    const step = this.#cleanOnce(options).finally(() => {
      assert(this.#cleaning === step);
      this.#cleaning = undefined;
      if (this.#closed) return;
      if (options.chain && this.#backgroundCleanDue()) {
        this.#kickBackgroundCleans();
      } else if (this.#pendingCleans.size > 0) {
        this.#armTimer();
      }
    });
    this.#cleaning = step;
    return step;
  }

  /**
   * Starts a chained clean step that nobody awaits: its failure is a warning (health and the event
   * already record it, and the next mark flush retries its blocks and throws); a bug stops the process.
   */
  #kickBackgroundCleans(): void {
    detach(this.#kickCleans({ allCleans: false, chain: true }), (err: unknown) => {
      this.#warn(`background clean failed: ${err instanceof Error ? err.message : String(err)}`);
    });
  }

  /**
   * The clean step: takes the due pending cleans, flushes the legs (flushData) FIRST, then sets their
   * bits (skipping regions marked again meanwhile) and writes them through the device queue.
   */
  async #cleanOnce(options: { allCleans: boolean; chain: boolean }): Promise<void> {
    assert(this.#applyingCleans.size === 0, 'no clean step left regions behind');
    for (const regionIndex of this.#dueCleans(options)) {
      this.#pendingCleans.delete(regionIndex);
      this.#applyingCleans.add(regionIndex);
    }
    if (this.#applyingCleans.size === 0) return;
    try {
      await this.#options.flushData();
      for (const regionIndex of this.#applyingCleans) {
        if (this.#state.clean.set(regionIndex)) this.#touchBit(regionIndex);
      }
    } catch (err) {
      rethrowProgrammerError(err); // A bug in a leg's flush is not a failed flush.
      // The mirror records the leg failure itself; the log only loses its clean bits.
      // Which regions are clean is unknown now: mark them all dirty, for good (flush_failed).
      this.#flushFailed = true;
      this.#pendingCleans.clear();
      this.#state.clean.clearAll();
      this.#markAllBlocks();
      this.#touchedDirtied = true;
    }
    this.#applyingCleans.clear();
    await this.#serialise(async () => {
      // A mark step may have written (and flushed) these blocks already: then they are durable.
      if (this.#dirtyBlocks.size === 0 && !this.#touchedDirtied) return;
      // A background step leaves the log flush to the next mark step (or waiting flush): its leg flush
      // keeps the disk busy, and a mark queued behind a second device flush would wait for it too.
      await this.#writeChanged({ flushDevice: !options.chain || this.#touchedDirtied });
    });
  }

  async #flushDevice(): Promise<void> {
    try {
      await this.#device.flush();
      this.#flushesTotal++;
    } catch (err) {
      rethrowProgrammerError(err);
      this.#logDevFlushFailed = true;
      this.#failLogDevice();
      throw toBlockError(err, `Cannot flush dirty log ${this.#options.displayName}`);
    }
  }

  async #writeRange(offsetBytes: number, lengthBytes: number): Promise<void> {
    assert(offsetBytes % this.blockBytes === 0 && lengthBytes % this.blockBytes === 0, 'log writes are whole blocks');
    assert(offsetBytes + lengthBytes <= this.bufferBytes);
    // A copy: marks made while the write is in flight must not tear the block being written.
    const data = this.#buffer.slice(offsetBytes, offsetBytes + lengthBytes);
    await this.#device.write(offsetBytes, data);
    this.#bytesWritten += lengthBytes;
    this.#writesTotal++;
  }

  /** Takes the changed blocks as contiguous runs and forgets them (they are re-marked on failure). */
  #takeRuns(): { offsetBytes: number; lengthBytes: number }[] {
    if (this.#dirtyBlocks.size === 0) return [];
    if (this.#writeMode === 'whole-buffer') {
      this.#dirtyBlocks.clear();
      return [{ offsetBytes: 0, lengthBytes: this.bufferBytes }];
    }
    const blocks = [...this.#dirtyBlocks].sort((a, b) => a - b);
    this.#dirtyBlocks.clear();
    const runs: { offsetBytes: number; lengthBytes: number }[] = [];
    let start = blocks[0] ?? 0;
    let end = start + 1;
    for (const block of blocks.slice(1)) {
      if (block === end) {
        end++;
        continue;
      }
      runs.push({ offsetBytes: start * this.blockBytes, lengthBytes: (end - start) * this.blockBytes });
      start = block;
      end = block + 1;
    }
    runs.push({ offsetBytes: start * this.blockBytes, lengthBytes: (end - start) * this.blockBytes });
    return runs;
  }

  #touchBit(regionIndex: number): void {
    this.#dirtyBlocks.add(Math.floor((diskLogBitsOffsetBytes + (regionIndex >>> 3)) / this.blockBytes));
  }

  #markBlocks(offsetBytes: number, lengthBytes: number): void {
    for (let b = offsetBytes / this.blockBytes; b < (offsetBytes + lengthBytes) / this.blockBytes; b++) {
      this.#dirtyBlocks.add(b);
    }
  }

  /** Marks every block that holds region bits (all of them for a whole-buffer rewrite). */
  #markAllBlocks(): void {
    const first = Math.floor(diskLogBitsOffsetBytes / this.blockBytes);
    const last = this.bufferBytes / this.blockBytes;
    for (let b = first; b < last; b++) this.#dirtyBlocks.add(b);
  }

  #failLogDevice(): void {
    if (this.#logDevFailed) return;
    this.#logDevFailed = true;
    this.#options.raiseEvent();
  }

  #warn(line: string): void {
    this.#options.onWarning?.(line);
  }

  #armTimer(): void {
    if (this.#timer !== undefined || this.#closed || this.#lazyCleanMs === 0) return;
    if (this.#options.lazyCleanTimer === false) return;
    const first = this.#pendingCleans.values().next();
    if (first.done === true) return;
    const dueMs = Math.max(first.value, this.#cleanStartedMs) + this.#lazyCleanMs;
    const waitMs = Math.max(0, dueMs - this.#now()) + 1;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      // A timer may fire a moment before its clean is due (timer and clock granularity): re-arm for
      // whatever is still pending, or that clean would wait for the next flush by the mirror.
      detach(this.flush().then(() => this.#armTimer()), (err: unknown) => {
        // Already recorded in health and raised as an event; the next flush by the mirror retries.
        this.#warn(`lazy clean flush failed: ${err instanceof Error ? err.message : String(err)}`);
      });
    }, waitMs);
    this.#timer.unref();
  }

  #disarmTimer(): void {
    if (this.#timer === undefined) return;
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}
