/**
 * The DirtyLog interface: the kernel's dm_dirty_log_type (include/linux/dm-dirty-log.h), one method per
 * operation. The region hash and the mirror call it; `core` (memory) and `disk` (persistent, the kernel's
 * on-disk format) implement it.
 *
 * Three bit sets per log, indexed by region:
 *   clean      - 1 = no write in flight may have left the legs different (what the disk log persists)
 *   sync       - 1 = the legs hold the same data (the recovery engine's view; sync_bits)
 *   recovering - 1 = handed out by getResyncWork() and not yet returned through setRegionSync()
 *
 * Ordering rules the callers depend on:
 *   - markRegion() and clearRegion() only change memory; flush() makes them durable. The mirror calls
 *     flush() once per worker batch, after all marks and before any data write of the batch.
 *   - A disk log calls the context's flushData() before it persists cleared bits, so a region is marked
 *     clean on disk only after the legs' caches were flushed (dm-log's flush_callback_fn). The worker
 *     flushes with `cleans: 'background'`: marks are durable when flush() resolves, clears follow.
 *   - resume() (re)reads persistent state and resets the resync search; presuspend()/postsuspend()
 *     bracket a suspend; postsuspend() writes outstanding state so a clean deactivation needs no resync.
 *
 * Synchronous methods never wait and never fail (memory only). Methods returning promises may wait and
 * throw BlockError; a failing log also records it in `health` and raises an event through the context.
 *
 * Also here: RegionLogState, the three bit sets and the resync search that both logs share (dm's
 * _disk_type reuses the core_* functions), and DirtyLogStats, the log I/O counters metrics read.
 */
import { assert, assertCount } from '../assert.js';
import type { BlockDevice } from '../block/block-device.js';
import { RegionBits } from './region-bits.js';

/** The log's own health letter in the status line: Alive, Dead (I/O failed), Flush failed. */
export type LogHealth = 'A' | 'D' | 'F';

/** What the table asked for: trust the log (default), force a full resync, or trust everything. */
export type LogSyncMode = 'default' | 'sync' | 'nosync';

/** How flush() treats clears (see DirtyLog.flush). */
export interface LogFlushOptions {
  readonly cleans?: 'wait' | 'background';
}

/** Log device I/O counters (all zero for the core log, which does no I/O). */
export interface DirtyLogStats {
  readonly logBytesWritten: number;
  readonly logWritesTotal: number;
  readonly logFlushesTotal: number;
}

export interface DirtyLog {
  /** The log type as in the table ("core", "disk"). */
  readonly type: string;
  readonly regionSizeSectors: number;
  readonly regionCount: number;
  readonly syncMode: LogSyncMode;
  readonly health: LogHealth;
  /** Counters of the log's device I/O since it was built (the metrics endpoint reads them). */
  readonly stats: DirtyLogStats;

  /** True when the region has no write that may have left the legs different. Never waits. */
  isClean(regionIndex: number): boolean;
  /** True when the legs hold the same data for the region. Never waits. */
  inSync(regionIndex: number): boolean;
  /** Marks the region dirty in memory (a write is about to start). Durable after flush(). */
  markRegion(regionIndex: number): void;
  /** Marks the region clean in memory (its writes are done). Durable after flush(). */
  clearRegion(regionIndex: number): void;
  /**
   * Makes marks durable, and clears: with `cleans: 'wait'` (default) it resolves once the clears made
   * before the call are durable (or overtaken by a new mark); with `cleans: 'background'` it resolves
   * once the marks are durable and persists the clears afterwards, so a mark never waits for the leg
   * flush that must precede a clear. @throws BlockError when the log device fails.
   */
  flush(options?: LogFlushOptions): Promise<void>;
  /** The next region to recover, marked recovering, or null when none is left until resume(). */
  getResyncWork(): number | null;
  /** Ends a recovery (or records a write failure): sets or clears the region's sync bit. */
  setRegionSync(regionIndex: number, inSync: boolean): void;
  /** Regions in sync. */
  syncCount(): number;

  /** Loads persistent state (the header and clean bits) and restarts the resync search. */
  resume(): Promise<void>;
  presuspend(): Promise<void>;
  /** Writes outstanding state. @throws BlockError when the log device fails. */
  postsuspend(): Promise<void>;
  /** Releases the log device (the log's dtr). */
  close(): Promise<void>;

  /** STATUSTYPE_INFO words, e.g. "1 core" or "3 disk vdc A" (no trailing space). */
  statusInfo(): string;
  /** STATUSTYPE_TABLE words, e.g. "core 1 1024" or "disk 2 vdc 1024 nosync" (no trailing space). */
  statusTable(): string;
}

/** What a log gets from the mirror that owns it (the kernel's dm_target plus flush_callback_fn). */
export interface DirtyLogContext {
  /** The segment length in sectors (ti->len): bounds the region size and sets the region count. */
  readonly targetLengthSectors: number;
  /** Flushes every data leg (mirror_flush); called before cleared bits are persisted. */
  readonly flushData: () => Promise<void>;
  /** Raises a device event (dm_table_event), e.g. when the log device fails. */
  readonly raiseEvent: () => void;
  /** Opens a log device by table name (a path, or a device held by the same daemon). */
  readonly openDevice: (name: string) => Promise<BlockDevice>;
  /** How a device is shown in status lines (the kernel prints major:minor). */
  readonly displayName?: (name: string) => string;
}

/** The log part of a mirror table: `<type> <#args> <args...>`. */
export interface LogSpec {
  readonly type: string;
  readonly args: readonly string[];
}

/**
 * The bit sets and resync search shared by the core and disk logs (dm's _disk_type reuses the core_*
 * functions). `clean` may be supplied as a view into a disk buffer.
 *
 * Initial state (create_log_context):
 *   clean      all set (no write in flight)
 *   sync       all set and syncCount = regionCount with `nosync`; all clear and syncCount = 0 otherwise
 *   recovering all clear
 * The resync search (sync_search) walks forward over clear sync bits, skipping recovering ones, and only
 * restarts at resume(): a region that drops out of sync behind the search waits for the next resume,
 * as in the kernel (reference fail-write C).
 */
export class RegionLogState {
  readonly regionCount: number;
  readonly clean: RegionBits;
  readonly sync: RegionBits;
  readonly recovering: RegionBits;
  syncCount: number;
  syncSearch = 0;

  constructor(options: { regionCount: number; syncMode: LogSyncMode; cleanStorage?: Uint8Array }) {
    assertCount(options.regionCount, 'regionCount');
    this.regionCount = options.regionCount;
    this.clean =
      options.cleanStorage === undefined
        ? new RegionBits({ bitCount: options.regionCount })
        : new RegionBits({ bitCount: options.regionCount, storage: options.cleanStorage });
    this.clean.setAll();
    this.sync = new RegionBits({ bitCount: options.regionCount });
    this.recovering = new RegionBits({ bitCount: options.regionCount });
    if (options.syncMode === 'nosync') {
      this.sync.setAll();
      this.syncCount = options.regionCount;
    } else {
      this.syncCount = 0;
    }
  }

  /** core_get_resync_work. */
  getResyncWork(): number | null {
    if (this.syncSearch >= this.regionCount) return null;
    for (;;) {
      const regionIndex = this.sync.findNextZero(this.syncSearch);
      this.syncSearch = regionIndex + 1;
      if (regionIndex >= this.regionCount) return null;
      if (!this.recovering.test(regionIndex)) {
        this.recovering.set(regionIndex);
        assert(!this.sync.test(regionIndex));
        return regionIndex;
      }
    }
  }

  /**
   * core_set_region_sync. The kernel counts every set even when the bit was already set; we count only
   * real changes, which is the same for every call the mirror makes (recovery ends only for regions
   * out of sync) and keeps syncCount <= regionCount.
   */
  setRegionSync(regionIndex: number, inSync: boolean): void {
    this.recovering.clear(regionIndex);
    if (inSync) {
      if (this.sync.set(regionIndex)) this.syncCount++;
    } else if (this.sync.clear(regionIndex)) {
      this.syncCount--;
    }
    assert(this.syncCount >= 0 && this.syncCount <= this.regionCount, `syncCount ${this.syncCount} out of range`);
  }
}
