/**
 * CoreDirtyLog: the kernel's `core` dirty log (dm-log.c core_*): three bit sets in memory, nothing
 * persisted, so every activation starts as the table's sync mode says.
 *
 * Initial state (create_log_context):
 *   clean      all set (no write in flight)
 *   sync       all set and syncCount = regionCount with `nosync`; all clear and syncCount = 0 otherwise
 *   recovering all clear
 * The resync search (sync_search) walks forward over clear sync bits, skipping recovering ones, and only
 * restarts at resume(): a region that drops out of sync behind the search waits for the next resume,
 * as in the kernel (reference fail-write C).
 *
 * Called by the region hash and the mirror (see DirtyLog for the ordering rules); flush() is a no-op and
 * health is always 'A'. Exposes `stats` (all zero) like DiskDirtyLog.
 */
import { assert, assertCount, isPowerOfTwo } from '../assert.js';
import type { DirtyLog, LogHealth, LogSyncMode } from './dirty-log.js';
import { RegionBits } from './region-bits.js';

/** Log I/O counters (optional member of both logs; the core log never does I/O). */
export interface DirtyLogStats {
  readonly logBytesWritten: number;
  readonly logWritesTotal: number;
  readonly logFlushesTotal: number;
}

export interface CoreDirtyLogOptions {
  readonly regionCount: number;
  readonly regionSizeSectors: number;
  readonly syncMode: LogSyncMode;
}

/**
 * The bit sets and resync search shared by the core and disk logs (dm's _disk_type reuses the core_*
 * functions). `clean` may be supplied as a view into a disk buffer.
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

export class CoreDirtyLog implements DirtyLog {
  readonly type = 'core';
  readonly regionSizeSectors: number;
  readonly regionCount: number;
  readonly syncMode: LogSyncMode;
  readonly health: LogHealth = 'A';
  readonly #state: RegionLogState;

  constructor(options: CoreDirtyLogOptions) {
    assertCount(options.regionCount, 'regionCount');
    assert(options.regionCount > 0, 'a log needs at least one region');
    assert(isPowerOfTwo(options.regionSizeSectors) && options.regionSizeSectors >= 2, 'region size must be a power of two >= 2');
    this.regionSizeSectors = options.regionSizeSectors;
    this.regionCount = options.regionCount;
    this.syncMode = options.syncMode;
    this.#state = new RegionLogState({ regionCount: options.regionCount, syncMode: options.syncMode });
  }

  get stats(): DirtyLogStats {
    return { logBytesWritten: 0, logWritesTotal: 0, logFlushesTotal: 0 };
  }

  isClean(regionIndex: number): boolean {
    return this.#state.clean.test(regionIndex);
  }

  inSync(regionIndex: number): boolean {
    return this.#state.sync.test(regionIndex);
  }

  markRegion(regionIndex: number): void {
    this.#state.clean.clear(regionIndex);
  }

  clearRegion(regionIndex: number): void {
    this.#state.clean.set(regionIndex);
  }

  flush(): Promise<void> {
    return Promise.resolve();
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

  resume(): Promise<void> {
    this.#state.syncSearch = 0;
    return Promise.resolve();
  }

  presuspend(): Promise<void> {
    return Promise.resolve();
  }

  postsuspend(): Promise<void> {
    return Promise.resolve();
  }

  close(): Promise<void> {
    return Promise.resolve();
  }

  statusInfo(): string {
    return '1 core';
  }

  statusTable(): string {
    const base = `core ${this.syncMode === 'default' ? 1 : 2} ${this.regionSizeSectors}`;
    return this.syncMode === 'default' ? base : `${base} ${this.syncMode}`;
  }
}
