/**
 * CoreDirtyLog: the kernel's `core` dirty log (dm-log.c core_*): three bit sets in memory, nothing
 * persisted, so every activation starts as the table's sync mode says.
 *
 * Its bit sets and resync search are a RegionLogState (dirty-log.ts), which states the initial state
 * (create_log_context) and the search rule (sync_search).
 *
 * Called by the region hash and the mirror (see DirtyLog for the ordering rules); flush() is a no-op and
 * health is always 'A'; its `stats` are all zero.
 */
import { assert, assertCount } from '../assert.js';
import { isRegionSizeSectors } from '../limits.js';
import type { DirtyLog, DirtyLogStats, LogHealth, LogSyncMode } from './dirty-log.js';
import { RegionLogState } from './dirty-log.js';

export interface CoreDirtyLogOptions {
  readonly regionCount: number;
  readonly regionSizeSectors: number;
  readonly syncMode: LogSyncMode;
}

export class CoreDirtyLog implements DirtyLog {
  readonly type = 'core';
  readonly regionSizeSectors: number;
  readonly regionCount: number;
  readonly syncMode: LogSyncMode;
  readonly health: LogHealth = 'A';
  readonly stats: DirtyLogStats = { logBytesWritten: 0, logWritesTotal: 0, logFlushesTotal: 0 };
  readonly #state: RegionLogState;

  constructor(options: CoreDirtyLogOptions) {
    assertCount(options.regionCount, 'regionCount');
    assert(options.regionCount > 0, 'a log needs at least one region');
    assert(isRegionSizeSectors(options.regionSizeSectors), 'region size: a power of two within limits.ts regionSizeSectorsMin/Max');
    this.regionSizeSectors = options.regionSizeSectors;
    this.regionCount = options.regionCount;
    this.syncMode = options.syncMode;
    this.#state = new RegionLogState({ regionCount: options.regionCount, syncMode: options.syncMode });
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
