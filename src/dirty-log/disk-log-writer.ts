/**
 * DiskLogWriter: the device half of DiskDirtyLog. It owns the log buffer (header + clean bits, laid out
 * in disk-log-format.ts; the log's clean RegionBits are a view into it, so a write is the buffer
 * itself), the set of buffer blocks changed since their last write, the health of the log device and
 * its I/O counters, and it runs every write and flush of the device in one SerialQueue.
 *
 * States of the log device (health letter): A alive; D a read or write failed (fail_log_device:
 * sticky, raises one event); F a flush of the log device failed (log_dev_flush_failed, wins over D).
 *
 * What it tracks between steps:
 *   changed blocks    logical blocks of the buffer changed since their last successful write; a failed
 *                     write puts its blocks back, so the next step retries them (and reports it)
 *   touchedDirtied    a bit went clean -> dirty: the next mark step writes and flushes (touched_dirtied;
 *                     in 'whole-buffer' mode every mark sets it, as the kernel's log_clear_bit does)
 *   cleansUnflushed   a background clean step wrote bits that no device flush has covered yet
 *
 * Queued steps (each runs alone, in call order, and writes a copy of its blocks taken when it starts:
 * two writes of one block never overlap, and the last one carries the newest bits):
 *   writeMarks()    the mark step: only when a bit was dirtied, write the changed blocks, then flush
 *   writeCleans()   the write half of a clean step (its leg flush ran before, see CleanScheduler); a
 *                   background step leaves the device flush to the next mark step or waiting flush
 *   flushCleans()   the end of a waiting flush: one device flush for bits a background step wrote
 *   reload()        resume: read the buffer, let the log reconcile header and bits, write it all, flush
 *
 * Past the kernel, format unchanged: 'changed-blocks' (default) writes only the changed logical blocks,
 * as contiguous runs; 'whole-buffer' is the kernel's behaviour (every write is the whole buffer).
 *
 * Leg generations (optional, `generations`): every step first re-encodes the leg generation record in
 * header bytes 16..1023 for the bits as they are (leg-generation-record.ts), then takes a copy of all
 * its blocks at once, so what a step writes is one consistent state. The header blocks [0, headEnd)
 * go first, in one write; while a leg is stale the rest of the changed blocks go in one more write
 * (the span from the first to the last), so a crash leaves either the old tail or the new one, which
 * the record accepts both. Without a stale leg the blocks go as runs (a record torn by a crash then
 * only loses flags that are all clear anyway).
 *
 * Called by DiskDirtyLog only.
 */
import { assert } from '../assert.js';
import type { BlockDevice } from '../block/block-device.js';
import { toBlockError } from '../errors.js';
import { rethrowProgrammerError } from '../fail-fast.js';
import { SerialQueue } from '../serial-queue.js';
import type { LegGenerations } from './leg-generations.js';
import { regionBitsBytes } from './region-bits.js';
import type { DirtyLogStats, LogHealth } from './dirty-log.js';
import {
  decodeDiskLogHeader,
  diskLogBitsOffsetBytes,
  diskLogBufferBytes,
  encodeDiskLogHeader,
  type DiskLogHeader,
} from './disk-log-format.js';

export type DiskLogWriteMode = 'changed-blocks' | 'whole-buffer';

export interface DiskLogWriterOptions {
  readonly device: BlockDevice;
  /** How the device appears in messages (the kernel prints maj:min). */
  readonly displayName: string;
  readonly regionCount: number;
  readonly writeMode: DiskLogWriteMode;
  /** Raised once when the log device fails. */
  readonly raiseEvent: () => void;
  /** The kernel's DMWARN lines. */
  readonly warn: (line: string) => void;
  /** Keep the leg generation record in the header (a mirror's disk log; see leg-generations.ts). */
  readonly generations?: LegGenerations;
}

/** A contiguous range of whole blocks of the buffer. */
interface Run {
  readonly offsetBytes: number;
  readonly lengthBytes: number;
}

/** A run with the bytes to write, copied when its step started. */
interface RunData extends Run {
  readonly data: Uint8Array;
}

export class DiskLogWriter {
  readonly writeMode: DiskLogWriteMode;
  readonly bufferBytes: number;
  readonly blockBytes: number;
  /** Where the header blocks end: the first block boundary at or after the bits offset. */
  readonly headEndBytes: number;
  /** The log as it is written: header and clean bits. Changed in place by the log; see regionMarked(). */
  readonly buffer: Uint8Array;
  readonly #device: BlockDevice;
  readonly #options: DiskLogWriterOptions;
  /** Orders every write and flush of the log device (the steps listed in the banner). */
  readonly #queue = new SerialQueue();
  readonly #changedBlocks = new Set<number>();
  #touchedDirtied = false;
  #cleansUnflushed = false;
  #deviceFailed = false;
  #deviceFlushFailed = false;
  #bytesWritten = 0;
  #writesTotal = 0;
  #flushesTotal = 0;

  constructor(options: DiskLogWriterOptions) {
    this.#options = options;
    this.#device = options.device;
    this.writeMode = options.writeMode;
    this.blockBytes = options.device.logicalBlockBytes;
    this.bufferBytes = diskLogBufferBytes({ regionCount: options.regionCount, logicalBlockBytes: this.blockBytes });
    assert(this.bufferBytes <= options.device.sizeBytes, 'the log device is too small (checked by createDirtyLog)');
    this.buffer = new Uint8Array(this.bufferBytes);
    this.headEndBytes = Math.ceil(diskLogBitsOffsetBytes / this.blockBytes) * this.blockBytes;
    assert(this.headEndBytes <= this.bufferBytes, 'the buffer holds the header blocks');
  }

  /** The leg generation record changed (a stale flag): the next mark step writes and flushes it. */
  recordChanged(): void {
    assert(this.#options.generations !== undefined, 'only a log that keeps leg generations has a record');
    this.#markHeaderBlocks();
    this.#touchedDirtied = true;
  }

  get health(): LogHealth {
    if (this.#deviceFlushFailed) return 'F';
    return this.#deviceFailed ? 'D' : 'A';
  }

  get stats(): DirtyLogStats {
    return { logBytesWritten: this.#bytesWritten, logWritesTotal: this.#writesTotal, logFlushesTotal: this.#flushesTotal };
  }

  /** The clean bits' storage: the buffer from the bits offset on (RegionBits storage). */
  get bitsStorage(): Uint8Array {
    return this.buffer.subarray(diskLogBitsOffsetBytes);
  }

  /** True when a step would write: blocks changed, or a bit was dirtied (whole-buffer mode). */
  get hasChanges(): boolean {
    return this.#changedBlocks.size > 0 || this.#touchedDirtied;
  }

  /** markRegion() cleared the region's bit (`bitChanged`: it was set): the next mark step writes it. */
  regionMarked(options: { regionIndex: number; bitChanged: boolean }): void {
    if (options.bitChanged) {
      this.#touchBit(options.regionIndex);
      this.#touchedDirtied = true;
    } else if (this.writeMode === 'whole-buffer') {
      this.#touchedDirtied = true; // The kernel's log_clear_bit touches unconditionally.
    }
  }

  /** A clean step set the region's bit (after its leg flush): the step's write carries it. */
  regionCleaned(regionIndex: number): void {
    this.#touchBit(regionIndex);
  }

  /** Every bit may have changed (flush_failed cleared them all): every bit block is rewritten. */
  allBitsDirtied(): void {
    this.#markAllBlocks();
    this.#touchedDirtied = true;
  }

  /** The mark step (queued): writes the changed blocks and flushes, if a bit was dirtied. */
  writeMarks(): Promise<void> {
    return this.#queue.run(async () => {
      if (!this.#touchedDirtied) return;
      await this.#writeChanged({ flushDevice: true });
    });
  }

  /**
   * The write half of a clean step (queued). A background step leaves the device flush to the next mark
   * step (or waiting flush): its leg flush keeps the disk busy, and a mark queued behind a second device
   * flush would wait for it too. A dirtied bit still gets its flush at once.
   */
  writeCleans(options: { background: boolean }): Promise<void> {
    return this.#queue.run(async () => {
      // A mark step may have written (and flushed) these blocks already: then they are durable.
      if (!this.hasChanges) return;
      await this.#writeChanged({ flushDevice: !options.background || this.#touchedDirtied });
    });
  }

  /** A waiting flush ends here (queued): bits a background step wrote without a device flush get one. */
  flushCleans(): Promise<void> {
    return this.#queue.run(async () => {
      if (!this.#cleansUnflushed) return;
      this.#cleansUnflushed = false;
      await this.#flushDeviceOrRetry(() => (this.#cleansUnflushed = true));
    });
  }

  /**
   * The seal step (queued; a suspend's last): rewrites the header blocks until the record accepts only
   * the bits on the device (its crcTailBefore, kept for a write cut short, equals crcTail), then
   * flushes. A bitmap the kernel writes later that happens to equal the one before our last step is then
   * not taken for ours. A no-op for a log that keeps no record, or one already sealed.
   */
  sealRecord(): Promise<void> {
    return this.#queue.run(async () => {
      const generations = this.#options.generations;
      if (generations === undefined || this.health !== 'A') return;
      try {
        for (let round = 0; round < 2 && !generations.sealed(this.buffer, this.#recordGeometry()); round++) {
          this.#markHeaderBlocks();
          await this.#writeChanged({ flushDevice: true });
        }
      } catch (err) {
        rethrowProgrammerError(err);
        // Best effort: the failure is in the log's health (D or F) already, and an unsealed record
        // still binds the bits on disk; the suspend itself does not fail for it.
      }
    });
  }

  /**
   * The resume step (queued): `begin()`, then reads the whole buffer (a failed read leaves it as it is
   * and passes undefined), `reconcile(header read)` fixes the bits in the buffer and returns the header
   * to write, then the whole buffer is written and the device flushed, before any resync may start.
   * @throws BlockError when the write or the flush fails (recorded in health first).
   */
  reload(options: { begin: () => void; reconcile: (read: DiskLogHeader | undefined) => DiskLogHeader }): Promise<void> {
    return this.#queue.run(async () => {
      options.begin();
      let read: DiskLogHeader | undefined;
      try {
        this.buffer.set(await this.#device.read(0, this.bufferBytes));
        read = decodeDiskLogHeader(this.buffer);
      } catch (err) {
        rethrowProgrammerError(err);
        read = undefined;
      }
      const header = options.reconcile(read);
      encodeDiskLogHeader(header, this.buffer);
      assert(decodeDiskLogHeader(this.buffer).nrRegions === header.nrRegions, 'the header reads back as written');
      const crcTail = this.#encodeRecord()?.crcTail;
      this.#changedBlocks.clear();
      this.#touchedDirtied = false;
      await this.#writeWhole();
      if (crcTail !== undefined) this.#options.generations?.written(crcTail);
    });
  }

  /** disk_resume's failure of the log device (fail_log_device): health D, one event. */
  failDevice(): void {
    if (this.#deviceFailed) return;
    this.#deviceFailed = true;
    this.#options.raiseEvent();
  }

  /** Waits for the queued steps, then closes the device. */
  async close(): Promise<void> {
    await this.#queue.idle();
    await this.#device.close();
  }

  /** A copy of the buffer as it would be written now. */
  snapshot(): Uint8Array {
    return this.buffer.slice();
  }

  async #writeWhole(): Promise<void> {
    const name = this.#options.displayName;
    try {
      await this.#writeRange({ offsetBytes: 0, lengthBytes: this.bufferBytes });
    } catch (err) {
      rethrowProgrammerError(err);
      this.#options.warn(`${name}: Failed to write header on dirty region log device`);
      this.failDevice();
      this.allBitsDirtied();
      throw toBlockError(err, `Cannot write the header of dirty log ${name}`);
    }
    try {
      await this.#flushDevice();
    } catch (err) {
      rethrowProgrammerError(err);
      // disk_resume reports a failed header flush as a failed header write (read-path.out P); the
      // flush failure itself is recorded (log F) by #flushDevice.
      this.#options.warn(`${name}: Failed to write header on dirty region log device`);
      throw err;
    }
  }

  /**
   * Writes every changed block (marks, and cleans already applied after their leg flush) and then
   * flushes the log device if asked. Runs only in the queue, so no two writes of one block overlap and
   * the last write of a block carries its newest bytes.
   */
  async #writeChanged(options: { flushDevice: boolean }): Promise<void> {
    this.#touchedDirtied = false;
    // One state per step: the record is encoded for the bits now, and every run copied at once.
    const record = this.#encodeRecord();
    if (record?.changed === true) this.#markHeaderBlocks();
    const runs = this.#takeRuns().map((run) => ({ ...run, data: this.buffer.slice(run.offsetBytes, run.offsetBytes + run.lengthBytes) }));
    for (let i = 0; i < runs.length; i++) {
      const run = runs[i];
      assert(run !== undefined);
      try {
        await this.#writeRange(run);
      } catch (err) {
        rethrowProgrammerError(err);
        for (const later of runs.slice(i)) this.#markBlocks(later);
        this.#touchedDirtied = true; // The next flush retries the blocks, and reports the failure.
        this.failDevice();
        throw toBlockError(err, `Cannot write dirty log ${this.#options.displayName}`);
      }
    }
    if (record !== undefined) this.#options.generations?.written(record.crcTail);
    if (!options.flushDevice) {
      this.#cleansUnflushed ||= runs.length > 0;
      return;
    }
    this.#cleansUnflushed = false;
    await this.#flushDeviceOrRetry(() => (this.#touchedDirtied = true));
  }

  /** Flushes the log device; on failure `retry` makes the next step try again (then rethrows). */
  async #flushDeviceOrRetry(retry: () => void): Promise<void> {
    try {
      await this.#flushDevice();
    } catch (err) {
      rethrowProgrammerError(err);
      retry();
      throw err;
    }
  }

  async #flushDevice(): Promise<void> {
    try {
      await this.#device.flush();
      this.#flushesTotal++;
    } catch (err) {
      rethrowProgrammerError(err);
      this.#deviceFlushFailed = true;
      this.failDevice();
      throw toBlockError(err, `Cannot flush dirty log ${this.#options.displayName}`);
    }
  }

  /**
   * Writes one run: `data` when given (copied when its step started), else a copy taken now (marks made
   * while the write is in flight must not tear the block being written).
   */
  async #writeRange(run: Run | RunData): Promise<void> {
    assert(run.offsetBytes % this.blockBytes === 0 && run.lengthBytes % this.blockBytes === 0, 'log writes are whole blocks');
    assert(run.offsetBytes + run.lengthBytes <= this.bufferBytes);
    const data = 'data' in run ? run.data : this.buffer.slice(run.offsetBytes, run.offsetBytes + run.lengthBytes);
    assert(data.byteLength === run.lengthBytes);
    await this.#device.write(run.offsetBytes, data);
    this.#bytesWritten += run.lengthBytes;
    this.#writesTotal++;
  }

  /**
   * Takes the changed blocks as contiguous runs and forgets them (they are re-marked on failure). While
   * a leg is stale: at most two runs, the header blocks and one span over every other changed block.
   */
  #takeRuns(): Run[] {
    if (this.#changedBlocks.size === 0) return [];
    if (this.writeMode === 'whole-buffer') {
      this.#changedBlocks.clear();
      return [{ offsetBytes: 0, lengthBytes: this.bufferBytes }];
    }
    const blocks = [...this.#changedBlocks].sort((a, b) => a - b);
    this.#changedBlocks.clear();
    if (this.#options.generations?.anyStale === true) return this.#headAndSpan(blocks);
    const runs: Run[] = [];
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

  /** The runs of a step while a leg is stale: the header blocks (when changed), then one span. */
  #headAndSpan(sortedBlocks: readonly number[]): Run[] {
    const headBlocks = this.headEndBytes / this.blockBytes;
    const runs: Run[] = [];
    if ((sortedBlocks[0] ?? headBlocks) < headBlocks) runs.push({ offsetBytes: 0, lengthBytes: this.headEndBytes });
    const tail = sortedBlocks.filter((block) => block >= headBlocks);
    const first = tail[0];
    const last = tail.at(-1);
    if (first !== undefined && last !== undefined) {
      runs.push({ offsetBytes: first * this.blockBytes, lengthBytes: (last + 1 - first) * this.blockBytes });
    }
    return runs;
  }

  /** Re-encodes the leg generation record for the bits now; undefined for a log that keeps none. */
  #encodeRecord(): { changed: boolean; crcTail: number } | undefined {
    const generations = this.#options.generations;
    if (generations === undefined) return undefined;
    return generations.encode(this.buffer, this.#recordGeometry());
  }

  #recordGeometry(): { nrRegions: number; bitsBytes: number; headEndBytes: number } {
    return { nrRegions: this.#options.regionCount, bitsBytes: regionBitsBytes(this.#options.regionCount), headEndBytes: this.headEndBytes };
  }

  /** Marks the header blocks (the kernel header and the record) for the next step. */
  #markHeaderBlocks(): void {
    for (let b = 0; b < this.headEndBytes / this.blockBytes; b++) this.#changedBlocks.add(b);
  }

  #touchBit(regionIndex: number): void {
    this.#changedBlocks.add(Math.floor((diskLogBitsOffsetBytes + (regionIndex >>> 3)) / this.blockBytes));
  }

  #markBlocks(run: Run): void {
    for (let b = run.offsetBytes / this.blockBytes; b < (run.offsetBytes + run.lengthBytes) / this.blockBytes; b++) {
      this.#changedBlocks.add(b);
    }
  }

  /** Marks every block that holds region bits (all of them for a whole-buffer rewrite). */
  #markAllBlocks(): void {
    const first = Math.floor(diskLogBitsOffsetBytes / this.blockBytes);
    const last = this.bufferBytes / this.blockBytes;
    for (let b = first; b < last; b++) this.#changedBlocks.add(b);
  }
}
