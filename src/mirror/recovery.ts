/**
 * Recovery: the resync of one mirror set (dm-raid1's do_recovery, recover, recovery_complete) and its
 * sync state (ms->in_sync).
 *
 * Each worker pass calls run(): unless the set is suspending it asks the region hash for work
 * (recoveryPrepare), then starts a copy for every region the hash hands out (at most
 * recoveryParallelMax in flight), each from the default leg to every other leg through the Copier. When
 * the log counts every region in sync and the set was not yet in sync, the set becomes in sync: "sync
 * complete", every leg's errors are forgotten and one 'sync-complete' event is raised.
 *
 * The copy of one region:
 *   source read fails       -> "Unable to read primary mirror during recovery", the source leg fails
 *                              (sync); the region stays out of sync (keepOutOfSync), whatever the features
 *                              (the kernel calls it in sync without handle_errors; but nothing was copied)
 *   a target write fails    -> "Write error during recovery (error = 0x<bits>)", each such leg fails (sync)
 *   no error                -> counted in stats; the region hash marks it in sync
 * Both messages are rate limited (DMERR_LIMIT). The default leg is pinned while the set is out of sync,
 * so the source cannot change under a copy (asserted after it).
 *
 * Pace: the rate controller (resync-rate.ts) decides, before every region and every chunk, how many
 * regions and chunks run at once and at what rate: fast while clients are idle, bounded while they are
 * busy (clientIo() marks them busy and applies the busy throttle at once).
 *
 * drained() resolves once no recovery is in flight (presuspend waits for it after stopping recovery);
 * the region hash's recoveryIdle callback, wired to recoveryIdle(), wakes the waiters.
 */
import { assert } from '../assert.js';
import type { Copier } from '../copy/copier.js';
import type { DirtyLog } from '../dirty-log/dirty-log.js';
import { detach, failFast } from '../fail-fast.js';
import type { Region, RegionHash } from '../region/region-hash.js';
import type { LegSet } from './leg-set.js';
import type { MirrorEvents } from './mirror-events.js';
import type { RegionWriteIo } from './mirror-io.js';
import type { MirrorStats } from './mirror-status.js';
import type { ResyncRate } from './resync-rate.js';

export interface RecoveryOptions {
  readonly name: string;
  readonly rh: RegionHash<RegionWriteIo>;
  readonly log: DirtyLog;
  readonly legSet: LegSet;
  readonly copier: Copier;
  readonly events: MirrorEvents;
  readonly stats: MirrorStats;
  readonly regionBytes: number;
  readonly sizeBytes: number;
  /** The rate controller (regions and chunks at once, the throttle). */
  readonly rate: ResyncRate;
}

export class Recovery {
  readonly #name: string;
  readonly #rh: RegionHash<RegionWriteIo>;
  readonly #log: DirtyLog;
  readonly #legSet: LegSet;
  readonly #copier: Copier;
  readonly #events: MirrorEvents;
  readonly #stats: MirrorStats;
  readonly #regionBytes: number;
  readonly #sizeBytes: number;
  readonly #rate: ResyncRate;
  /** ms->in_sync: every region in sync and the sync-complete event raised. */
  #inSync = false;
  #drainWaiters: (() => void)[] = [];

  constructor(options: RecoveryOptions) {
    assert(options.regionBytes > 0 && options.sizeBytes > 0);
    this.#name = options.name;
    this.#rh = options.rh;
    this.#log = options.log;
    this.#legSet = options.legSet;
    this.#copier = options.copier;
    this.#events = options.events;
    this.#stats = options.stats;
    this.#regionBytes = options.regionBytes;
    this.#sizeBytes = options.sizeBytes;
    this.#rate = options.rate;
  }

  get inSync(): boolean {
    return this.#inSync;
  }

  /** The set may hold regions out of sync again (a failed write, a failed trim, a reread log). */
  markOutOfSync(): void {
    this.#inSync = false;
  }

  /** A client request arrived: recovery runs in busy mode for the next busy window (resync-rate.ts). */
  clientIo(): void {
    this.#rate.clientIo();
    this.#applyThrottle();
  }

  #applyThrottle(): void {
    const rate = this.#rate.limitBytesPerSecond();
    if (this.#copier.bytesPerSecond !== rate) this.#copier.setThrottle(rate);
  }

  /** do_recovery, once per worker pass. */
  run(options: { readonly suspending: boolean }): void {
    if (!options.suspending) {
      this.#rh.recoveryParallelMax = this.#rate.regionsInFlightMax();
      this.#rh.recoveryPrepare();
    }
    for (let region = this.#rh.recoveryStart(); region !== null; region = this.#rh.recoveryStart()) {
      // #recover settles every copy error itself: anything it throws is a broken invariant.
      detach(this.#recover(region), failFast);
    }
    if (!this.#inSync && this.#log.syncCount() === this.#rh.regionCount) {
      this.#inSync = true;
      this.#events.message('info', `${this.#name}: sync complete`);
      this.#legSet.resetErrors();
      // The flush failure stays (the kernel's rh->flush_failure lives as long as the table).
      this.#events.raise({ kind: 'sync-complete' });
    }
  }

  /** The region hash's recoveryIdle callback: recovery in flight dropped to zero. */
  recoveryIdle(): void {
    assert(this.#rh.recoveryInFlight === 0, 'recovery idle with none in flight');
    for (const resolve of this.#drainWaiters.splice(0)) resolve();
  }

  /** Resolves once no recovery is in flight. */
  drained(): Promise<void> {
    if (this.#rh.recoveryInFlight === 0) return Promise.resolve();
    return new Promise((resolve) => this.#drainWaiters.push(resolve));
  }

  async #recover(region: Region<RegionWriteIo>): Promise<void> {
    // Rate controller: full speed when clients are idle, bounded while they are busy.
    this.#applyThrottle();
    // Paired with the check after the copy: the default leg is pinned only while the set is out of sync.
    assert(!this.#inSync, 'recovery runs only while the set is out of sync');
    const source = this.#legSet.defaultLeg;
    const startBytes = region.index * this.#regionBytes;
    const lengthBytes = Math.min(this.#regionBytes, this.#sizeBytes - startBytes);
    assert(lengthBytes > 0);
    const targets = this.#legSet.legs.filter((leg) => leg !== source);
    const result = await this.#copier.copy({
      source: { device: source.device, offsetBytes: source.offsetBytes + startBytes },
      targets: targets.map((leg) => ({ device: leg.device, offsetBytes: leg.offsetBytes + startBytes })),
      lengthBytes,
      inFlightMax: () => this.#rate.chunksInFlightMax() ?? this.#copier.inFlightMax,
    });
    assert(source === this.#legSet.defaultLeg, 'the default leg changed during recovery');
    if (result.readError !== null) {
      this.#events.messageLimited('recovery_complete', 'error', 'Unable to read primary mirror during recovery');
      this.#legSet.failLeg(source, 'sync');
    }
    let writeErrorBits = 0;
    result.writeErrors.forEach((error, index) => {
      if (error === null) return;
      writeErrorBits |= 1 << index;
    });
    if (writeErrorBits !== 0) {
      this.#events.messageLimited('recovery_complete', 'error', `Write error during recovery (error = 0x${writeErrorBits.toString(16)})`);
      result.writeErrors.forEach((error, index) => {
        const leg = targets[index];
        if (error !== null && leg !== undefined) this.#legSet.failLeg(leg, 'sync');
      });
    }
    const success = result.readError === null && writeErrorBits === 0;
    if (success) {
      this.#stats.recoveredRegionsTotal += 1;
      this.#stats.recoveryBytesTotal += result.bytesCopied;
      this.#rate.noteCopied(result.bytesCopied);
    }
    this.#rh.recoveryEnd(region, { success, keepOutOfSync: result.readError !== null });
  }
}
