/**
 * RegionHash: per-region bookkeeping of a mirror set (the kernel's dm-region-hash.c). It knows regions,
 * pending write counts and the dirty log; it does not know legs, and it never imports the mirror: it
 * reports through the callbacks given at construction, as dm_region_hash_create does.
 *
 * A region is in the hash only while something is happening to it; a region not in the hash is CLEAN
 * when the log says it is in sync, else NOSYNC.
 *
 *   state        meaning                                       writes go to
 *   CLEAN        in sync, no write pending                     all legs (CLEAN -> DIRTY first)
 *   DIRTY        in sync, writes pending (log marked)          all legs
 *   NOSYNC       legs may differ                               the default leg only
 *   RECOVERING   being copied from the default leg             delayed until recovery ends
 *
 * Lists (a region is on at most one, recorded in `region.list`):
 *   clean            DIRTY regions whose last write completed: clearRegion() on the next updateStates()
 *   quiesced         RECOVERING regions with no pending writes: ready for the copier
 *   recovered        copies that succeeded: clearRegion() + setRegionSync(true) on the next updateStates()
 *   failedRecovered  copies that failed: setRegionSync(!errorsHandled) on the next updateStates()
 *
 * Ordering rules (each from the kernel's history, see ../shared/seed):
 *   - inc() takes a CLEAN region off the clean list before marking it DIRTY (rh_inc/rh_dec race).
 *   - dec() leaves a NOSYNC region NOSYNC (interrupted initial sync must not mark it clean).
 *   - After a failed leg flush (sticky until the table is reloaded), dec() turns a DIRTY region NOSYNC and
 *     leaves the log alone, as dm_rh_dec: the dirty bit stays, the sync count does not drop, and the
 *     entry stays in the hash (it alone says NOSYNC) until the table is reloaded.
 *   - Clears go to the log in updateStates() and are flushed there, always, in the background (the log
 *     writes them after its leg flush, off the mark path); the log's postsuspend waits for them, so a
 *     suspend that runs a final pass leaves the log clean (outstanding clears flushed at suspend).
 *   - All state changes go through transition(), which checks an allowed-transitions table.
 */
import { assert, assertCount, unreachable } from '../assert.js';
import type { DirtyLog } from '../dirty-log/dirty-log.js';
import { recoveryParallelMax } from '../limits.js';

export type RegionState = 'CLEAN' | 'DIRTY' | 'NOSYNC' | 'RECOVERING';
export type RegionList = 'none' | 'clean' | 'quiesced' | 'recovered' | 'failedRecovered';

export interface Region<Delayed> {
  readonly index: number;
  state: RegionState;
  pending: number;
  list: RegionList;
  /** Writes that arrived while the region was RECOVERING; dispatched when its recovery ends. */
  readonly delayed: Delayed[];
  /** The last recovery could not read its source: the region stays out of sync whatever the features. */
  keepOutOfSync: boolean;
}

const allowedTransitions: Readonly<Record<RegionState, readonly RegionState[]>> = {
  CLEAN: ['DIRTY', 'RECOVERING', 'NOSYNC'],
  DIRTY: ['CLEAN', 'NOSYNC', 'RECOVERING'],
  NOSYNC: ['RECOVERING'],
  RECOVERING: ['NOSYNC'],
};

export interface RegionHashCallbacks<Delayed> {
  /** Delayed writes of a region whose recovery ended: requeue them (dispatch_bios). */
  readonly dispatchDelayed: (writes: Delayed[]) => void;
  /** Something changed that the worker should look at (wakeup_workers). */
  readonly wakeup: () => void;
  /** Recovery in flight dropped to zero (wakeup_all_recovery_waiters). */
  readonly recoveryIdle: () => void;
}

export interface RegionHashOptions<Delayed> {
  readonly log: DirtyLog;
  readonly regionCount: number;
  /** Recoveries in flight at once (the kernel's recovery_count semaphore; dm uses 1). */
  readonly recoveryParallelMax: number;
  readonly callbacks: RegionHashCallbacks<Delayed>;
}

export class RegionHash<Delayed> {
  readonly log: DirtyLog;
  readonly regionCount: number;
  #recoveryParallelMax: number;
  readonly #callbacks: RegionHashCallbacks<Delayed>;
  readonly #regions = new Map<number, Region<Delayed>>();
  readonly #clean = new Set<Region<Delayed>>();
  readonly #quiesced = new Set<Region<Delayed>>();
  readonly #recovered = new Set<Region<Delayed>>();
  readonly #failedRecovered = new Set<Region<Delayed>>();
  /** Recoveries handed out and not yet completed (recovery_in_flight). */
  #recoveryInFlight = 0;
  #recoveryStopped = false;
  /** A flush of the legs failed: regions whose writes drain afterwards go NOSYNC (flush_failure; sticky). */
  #flushFailure = false;

  constructor(options: RegionHashOptions<Delayed>) {
    assertCount(options.regionCount, 'regionCount');
    assert(options.regionCount === options.log.regionCount, 'region hash and log disagree on the region count');
    checkRecoveryParallel(options.recoveryParallelMax);
    this.log = options.log;
    this.regionCount = options.regionCount;
    this.#recoveryParallelMax = options.recoveryParallelMax;
    this.#callbacks = options.callbacks;
  }

  /** Regions currently held in memory (for the memory bound: only active regions cost memory). */
  get activeRegionCount(): number {
    return this.#regions.size;
  }

  get recoveryInFlight(): number {
    return this.#recoveryInFlight;
  }

  get recoveryParallelMax(): number {
    return this.#recoveryParallelMax;
  }

  set recoveryParallelMax(value: number) {
    checkRecoveryParallel(value);
    this.#recoveryParallelMax = value;
  }

  get flushFailure(): boolean {
    return this.#flushFailure;
  }

  /** The state of a region, from the hash or (when absent) from the log (dm_rh_get_state). */
  getState(regionIndex: number): RegionState {
    this.#checkIndex(regionIndex);
    const region = this.#regions.get(regionIndex);
    if (region !== undefined) return region.state;
    return this.log.inSync(regionIndex) ? 'CLEAN' : 'NOSYNC';
  }

  /** The region object, if the region is in the hash (for tests and assertions). */
  peek(regionIndex: number): Readonly<Region<Delayed>> | undefined {
    return this.#regions.get(regionIndex);
  }

  /** A write is about to be issued to the region (rh_inc). Marks the log when the region was CLEAN. */
  inc(regionIndex: number): void {
    const region = this.#find(regionIndex);
    region.pending += 1;
    if (region.state === 'CLEAN') {
      // Take it off the clean list first: a region on the clean list with a new write must not be cleared.
      this.#unlist(region);
      this.#transition(region, 'CLEAN', 'DIRTY');
      this.log.markRegion(regionIndex);
    }
    assert(region.list === 'none' || region.state === 'RECOVERING' || region.state === 'NOSYNC');
    assert(region.list !== 'clean', 'a region with a pending write is never on the clean list');
  }

  /** A write to the region completed (rh_dec). */
  dec(regionIndex: number): void {
    const region = this.#regions.get(regionIndex);
    assert(region !== undefined, `dec of region ${regionIndex} which is not in the hash`);
    assert(region.pending > 0, `dec of region ${regionIndex} with no pending writes`);
    region.pending -= 1;
    if (region.pending > 0) return;
    if (region.state === 'DIRTY' && this.#flushFailure) {
      // A flush failed earlier: we cannot know this write reached every leg. As dm_rh_dec: the region goes
      // NOSYNC and is never cleared, so its dirty bit stays in the log and the next table resyncs it; the
      // log's sync bit is left alone (the kernel's sync count does not drop).
      this.#transition(region, 'DIRTY', 'NOSYNC');
    } else if (region.state === 'RECOVERING') {
      this.#putOn(region, 'quiesced');
    } else if (region.state === 'DIRTY') {
      this.#transition(region, 'DIRTY', 'CLEAN');
      this.#putOn(region, 'clean');
    }
    if (region.state === 'NOSYNC') {
      // NOSYNC stays NOSYNC: only recovery may bring it back (seed: interrupted initial sync corruption).
      assert(region.list === 'none' && region.delayed.length === 0);
      if (this.log.inSync(regionIndex)) {
        // Only a flush failure leaves a NOSYNC region in sync in the log: the hash entry is all that keeps
        // it NOSYNC, so it stays until the table is reloaded (as the kernel keeps every NOSYNC entry).
        assert(this.#flushFailure, `NOSYNC region ${regionIndex} is in sync in the log without a flush failure`);
      } else {
        // The log already says so, so the idle entry can leave the hash (the kernel keeps it until reload).
        this.#regions.delete(regionIndex);
      }
    }
    this.#callbacks.wakeup();
  }

  /** A write to the region failed on some leg: the legs now differ (dm_rh_mark_nosync). */
  markNosync(regionIndex: number): void {
    const region = this.#regions.get(regionIndex);
    assert(region !== undefined, `markNosync of region ${regionIndex} which is not in the hash`);
    assert(region.pending > 0, 'markNosync is only called while the failed write is still pending');
    assert(region.list === 'none' || region.list === 'quiesced' || region.state === 'NOSYNC');
    this.log.setRegionSync(regionIndex, false);
    const recovering = region.state === 'RECOVERING';
    if (region.state !== 'NOSYNC') this.#transition(region, region.state, 'NOSYNC');
    if (recovering) this.#completeResyncWork(region, false);
  }

  /**
   * A flush of the legs failed (dm_rh_mark_nosync on a PREFLUSH bio). Sticky: nothing clears it, not
   * even a completed resync; a new table gets a new region hash (the kernel's rh->flush_failure).
   */
  markFlushFailure(): void {
    this.#flushFailure = true;
  }

  /** A write to a RECOVERING region waits for the recovery to end (dm_rh_delay). */
  delay(regionIndex: number, write: Delayed): void {
    const region = this.#regions.get(regionIndex);
    assert(region !== undefined && region.state === 'RECOVERING', 'only writes to recovering regions are delayed');
    region.delayed.push(write);
  }

  /**
   * Moves finished regions out of the hash and tells the log (dm_rh_update_states), then flushes the
   * log, always; the clears persist in the background (the log's postsuspend waits for them).
   * @throws BlockError when the log flush fails.
   */
  async updateStates(options: { errorsHandled: boolean }): Promise<void> {
    const clean = [...this.#clean];
    const recovered = [...this.#recovered];
    const failedRecovered = [...this.#failedRecovered];
    for (const region of [...clean, ...recovered, ...failedRecovered]) {
      this.#unlist(region);
      this.#regions.delete(region.index);
    }
    for (const region of recovered) {
      assert(region.pending === 0 && region.state === 'RECOVERING');
      this.log.clearRegion(region.index);
      this.#completeResyncWork(region, true);
    }
    for (const region of failedRecovered) {
      assert(region.state === 'RECOVERING' || region.state === 'NOSYNC');
      this.#completeResyncWork(region, !options.errorsHandled && !region.keepOutOfSync);
    }
    for (const region of clean) {
      assert(region.pending === 0 && region.state === 'CLEAN', `region ${region.index} on the clean list is ${region.state}`);
      this.log.clearRegion(region.index);
    }
    await this.log.flush({ cleans: 'background' });
  }

  /**
   * Makes the log durable (dm_rh_flush): marks from inc() before any data write. Clears persist in the
   * background (after their leg flush), so a pass never waits for a leg flush here.
   */
  flush(): Promise<void> {
    return this.log.flush({ cleans: 'background' });
  }

  /**
   * Asks the log for regions to recover, up to the free recovery slots, and starts quiescing them
   * (dm_rh_recovery_prepare). Returns how many were taken.
   */
  recoveryPrepare(): number {
    let taken = 0;
    while (!this.#recoveryStopped && this.#recoveryInFlight < this.#recoveryParallelMax) {
      const regionIndex = this.log.getResyncWork();
      if (regionIndex === null) break;
      this.#checkIndex(regionIndex);
      const region = this.#find(regionIndex);
      this.#recoveryInFlight += 1;
      taken += 1;
      if (region.state !== 'RECOVERING') this.#transition(region, region.state, 'RECOVERING');
      this.#unlist(region);
      if (region.pending === 0) this.#putOn(region, 'quiesced');
    }
    return taken;
  }

  /** The next quiesced region, ready to copy (dm_rh_recovery_start), or null. */
  recoveryStart(): Region<Delayed> | null {
    const first = this.#quiesced.values().next();
    if (first.done === true) return null;
    const region = first.value;
    this.#unlist(region);
    assert(region.state === 'RECOVERING' && region.pending === 0);
    return region;
  }

  /** The copy of a region finished (dm_rh_recovery_end). */
  recoveryEnd(region: Region<Delayed>, options: { success: boolean; keepOutOfSync?: boolean }): void {
    assert(this.#regions.get(region.index) === region, 'recoveryEnd of a region not in the hash');
    assert(region.list === 'none');
    if (options.keepOutOfSync === true) assert(!options.success, 'only a failed recovery keeps a region out of sync');
    region.keepOutOfSync = options.keepOutOfSync === true;
    this.#putOn(region, options.success ? 'recovered' : 'failedRecovered');
    this.#callbacks.wakeup();
  }

  /** Stops handing out recovery work (dm_rh_stop_recovery); wait with recoveryInFlight === 0. */
  stopRecovery(): void {
    this.#recoveryStopped = true;
  }

  startRecovery(): void {
    this.#recoveryStopped = false;
    this.#callbacks.wakeup();
  }

  get recoveryStopped(): boolean {
    return this.#recoveryStopped;
  }

  /** True when nothing is queued on any list: used to decide whether another worker pass is needed. */
  get hasListedWork(): boolean {
    return this.#clean.size + this.#recovered.size + this.#failedRecovered.size + this.#quiesced.size > 0;
  }

  #completeResyncWork(region: Region<Delayed>, success: boolean): void {
    this.log.setRegionSync(region.index, success);
    const delayed = region.delayed.splice(0);
    if (delayed.length > 0) this.#callbacks.dispatchDelayed(delayed);
    assert(this.#recoveryInFlight > 0, 'recovery completed with none in flight');
    this.#recoveryInFlight -= 1;
    if (this.#recoveryInFlight === 0) this.#callbacks.recoveryIdle();
  }

  #find(regionIndex: number): Region<Delayed> {
    this.#checkIndex(regionIndex);
    let region = this.#regions.get(regionIndex);
    if (region === undefined) {
      region = {
        index: regionIndex,
        state: this.log.inSync(regionIndex) ? 'CLEAN' : 'NOSYNC',
        pending: 0,
        list: 'none',
        delayed: [],
        keepOutOfSync: false,
      };
      this.#regions.set(regionIndex, region);
    }
    return region;
  }

  #transition(region: Region<Delayed>, from: RegionState, to: RegionState): void {
    assert(region.state === from, `region ${region.index}: transition from ${from} but state is ${region.state}`);
    assert(allowedTransitions[from].includes(to), `region ${region.index}: ${from} -> ${to} is not allowed`);
    region.state = to;
  }

  #listOf(list: Exclude<RegionList, 'none'>): Set<Region<Delayed>> {
    switch (list) {
      case 'clean':
        return this.#clean;
      case 'quiesced':
        return this.#quiesced;
      case 'recovered':
        return this.#recovered;
      case 'failedRecovered':
        return this.#failedRecovered;
      default:
        return unreachable(list);
    }
  }

  #putOn(region: Region<Delayed>, list: Exclude<RegionList, 'none'>): void {
    this.#unlist(region);
    this.#listOf(list).add(region);
    region.list = list;
  }

  #unlist(region: Region<Delayed>): void {
    if (region.list === 'none') return;
    const removed = this.#listOf(region.list).delete(region);
    assert(removed, `region ${region.index} was not on its list ${region.list}`);
    region.list = 'none';
  }

  #checkIndex(regionIndex: number): void {
    assert(Number.isSafeInteger(regionIndex) && regionIndex >= 0 && regionIndex < this.regionCount,
      `region index ${regionIndex} out of range (${this.regionCount} regions)`);
  }
}

/** The recovery slots of a region hash: 1..recoveryParallelMax (limits.ts; dm uses 1). */
function checkRecoveryParallel(value: number): void {
  assert(Number.isSafeInteger(value) && value >= 1, 'recoveryParallelMax must be an integer >= 1');
  assert(value <= recoveryParallelMax, `recoveryParallelMax must be <= ${recoveryParallelMax}`);
}
