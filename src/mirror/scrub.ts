/**
 * Scrub: the online check of one mirror set (md's `check`/`repair` sync actions, DRBD's online verify).
 * It reads every in-sync region from every valid leg, compares them, and names the regions whose legs
 * differ; with `repair` it rewrites them. It runs while clients use the set.
 *
 * One region at a time, in order:
 *
 *   region state                        action
 *   out of sync (NOSYNC, resyncing)     skipped: recovery owns it, and its legs are expected to differ
 *   fewer than two valid legs           skipped: nothing to compare
 *   in sync                             hold it against writes (WriteQueue.hold), check again that it is
 *                                       in sync, then chunk by chunk read every valid leg once, compare,
 *                                       and (repair) rewrite a differing chunk; release the region
 *
 * Holding a region: a barrier in the write queue's overlap gate. The hold waits for the writes already
 * inside the region, and writes that arrive later wait until the region is released, so a scrub never
 * compares a region while a client write is half applied (no false mismatch), and a write waits at most
 * for one region's reads (and its repair). Reads of the region by clients go on meanwhile.
 *
 * Which data is right, per differing chunk (the vote, among the legs that were read):
 *   two legs read                       the default leg's, if it was read; else none
 *   three or more legs read             the data a strict majority of them hold; else none (a tie, or
 *                                       every leg different)
 * Legs outside the winning group are "outvoted". A chunk with no winner is reported as unresolved and
 * never guessed. With repair a chunk with a winner is written through the set's normal write path, to
 * every leg (the region's dirty mark, the log flush and a failed leg are handled as for a client write).
 *
 * A leg read that fails fails the leg with a read error (R), as a client read does, and the region is
 * compared among the others; with read repair (read-repair.ts) the good data (the winner's, or what
 * every other leg holds) is written back to that leg instead, which stays A if the write succeeds.
 * Without a winner nothing is written back and the leg fails.
 *
 * Pace: at most `bytesPerSecond` of the set per second when given (`--rate`), else the resync's pace
 * (resync-rate.ts: unthrottled while clients are idle, the busy rate while they are busy). The result
 * lists at most scrubReportedRegionsMax regions (the rest are counted). A suspend aborts a running scrub
 * (MirrorSet.presuspend waits for the region in hand); so does the caller's signal.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { assert } from '../assert.js';
import { BlockError } from '../errors.js';
import { rethrowProgrammerError, settleOperating } from '../fail-fast.js';
import { copierChunkBytes, scrubReportedRegionsMax, scrubSleepMsMax } from '../limits.js';
import type { Leg } from './leg.js';
import type { LegSet } from './leg-set.js';
import type { ReadRepair } from './read-repair.js';

export interface ScrubOptions {
  /** Rewrite differing regions (from the default leg, or the majority with three legs or more). */
  readonly repair?: boolean;
  /** At most this many bytes of the set per second; undefined: the resync's pace. */
  readonly bytesPerSecond?: number;
  readonly signal?: AbortSignal;
  /** Called after each region. */
  readonly onProgress?: (progress: ScrubProgress) => void;
}

export interface ScrubProgress {
  readonly doneRegions: number;
  readonly regionCount: number;
  readonly doneBytes: number;
  readonly sizeBytes: number;
  readonly mismatchedRegions: number;
}

export interface ScrubLegRef {
  /** The leg's index in the table. */
  readonly leg: number;
  /** How status lines name it. */
  readonly name: string;
}

/** One region whose legs differ. */
export interface ScrubRegionReport {
  readonly region: number;
  /** Legs that disagreed with the winning data (every chunk of the region counted). */
  readonly outvoted: readonly ScrubLegRef[];
  /**
   *   repaired     every differing chunk was rewritten
   *   differs      not repaired (no --repair), the vote had a winner
   *   unresolved   some chunk had no winner (a tie, or every leg different): not repaired
   *   failed       a repair write failed (the leg failed as on a client write)
   */
  readonly verdict: 'repaired' | 'differs' | 'unresolved' | 'failed';
}

export interface ScrubResult {
  readonly state: 'complete' | 'aborted';
  readonly repair: boolean;
  readonly regionCount: number;
  /** Regions compared on two legs or more. */
  readonly scrubbedRegions: number;
  /** Regions not compared: out of sync, or fewer than two valid legs. */
  readonly skippedRegions: number;
  /** Regions whose legs differed (all of them, listed or not). */
  readonly mismatchedRegions: number;
  readonly repairedRegions: number;
  /** The differing regions, in order, at most scrubReportedRegionsMax of them. */
  readonly regions: readonly ScrubRegionReport[];
  /** Leg reads that failed (each failed its leg, or was repaired with read repair). */
  readonly readErrors: number;
  /** Wall-clock times (ms since the epoch). */
  readonly startedAtMs: number;
  readonly finishedAtMs: number;
}

export interface ScrubContext {
  readonly name: string;
  readonly regionBytes: number;
  readonly sizeBytes: number;
  readonly regionCount: number;
  readonly legSet: LegSet;
  readonly regionInSync: (regionIndex: number) => boolean;
  /** Holds the set's bytes against writes (WriteQueue.hold); resolves with the release. */
  readonly hold: (offsetBytes: number, lengthBytes: number) => Promise<() => void>;
  /** Writes the set's bytes inside a held range through the normal write path (to every leg). */
  readonly rewrite: (offsetBytes: number, data: Uint8Array) => Promise<void>;
  /** The resync's pace now (bytes/s, null: unthrottled), used when the scrub has no rate of its own. */
  readonly resyncRate: () => number | null;
  /** Read repair (--read-repair), when on: a leg whose read fails gets the good data written back. */
  readonly readRepair: ReadRepair | undefined;
  /** Monotonic clock (ms) and a sleep, for the pace (tests pass fakes). */
  readonly now?: () => number;
  readonly sleep?: (ms: number, signal: AbortSignal | undefined) => Promise<void>;
  /** Wall clock (ms since the epoch), for the result's times. */
  readonly wallClock?: () => number;
}

/** The verdict of one chunk among the legs read. */
type ChunkVote =
  | { readonly kind: 'same' }
  | { readonly kind: 'winner'; readonly data: Buffer; readonly outvoted: readonly Leg[] }
  | { readonly kind: 'none'; readonly differing: readonly Leg[] };

/**
 * Compares one chunk as read from several legs (see the banner's vote). `defaultLeg`: the set's
 * default leg, the winner between two legs.
 */
export function voteChunk(reads: ReadonlyMap<Leg, Buffer>, defaultLeg: Leg): ChunkVote {
  assert(reads.size >= 2, 'a vote needs two legs');
  const groups: { data: Buffer; legs: Leg[] }[] = [];
  for (const [leg, data] of reads) {
    const group = groups.find((g) => g.data.equals(data));
    if (group === undefined) groups.push({ data, legs: [leg] });
    else group.legs.push(leg);
  }
  if (groups.length === 1) return { kind: 'same' };
  const legs = [...reads.keys()];
  let winner: { data: Buffer; legs: Leg[] } | undefined;
  if (reads.size === 2) winner = groups.find((g) => g.legs.includes(defaultLeg));
  else winner = groups.find((g) => g.legs.length * 2 > reads.size);
  if (winner === undefined) return { kind: 'none', differing: legs };
  const chosen = winner;
  return { kind: 'winner', data: chosen.data, outvoted: legs.filter((leg) => !chosen.legs.includes(leg)) };
}

export class Scrub {
  readonly #context: ScrubContext;
  readonly #now: () => number;
  readonly #sleep: (ms: number, signal: AbortSignal | undefined) => Promise<void>;
  readonly #wallClock: () => number;
  #running: AbortController | undefined;
  #finished: Promise<void> = Promise.resolve();
  #last: ScrubResult | undefined;
  #lastComplete: ScrubResult | undefined;
  #progress: ScrubProgress | undefined;
  /** Virtual clock of the pace: when the next region may start (ms, from `now`). */
  #paceNextMs = 0;

  constructor(context: ScrubContext) {
    assert(context.regionBytes > 0 && context.sizeBytes > 0 && context.regionCount > 0);
    this.#context = context;
    this.#now = context.now ?? (() => performance.now());
    this.#sleep = context.sleep ?? ((ms, signal) => sleep(ms, undefined, signal === undefined ? {} : { signal }));
    this.#wallClock = context.wallClock ?? (() => Date.now());
  }

  get running(): boolean {
    return this.#running !== undefined;
  }

  /** The last finished scrub's result (complete or aborted), if any. */
  get last(): ScrubResult | undefined {
    return this.#last;
  }

  /** The last scrub that went through every region. */
  get lastComplete(): ScrubResult | undefined {
    return this.#lastComplete;
  }

  /** The running scrub's progress, if one runs. */
  get progress(): ScrubProgress | undefined {
    return this.#running === undefined ? undefined : this.#progress;
  }

  /** Stops a running scrub after the region in hand; resolves when it has stopped. */
  async abort(): Promise<void> {
    this.#running?.abort(new BlockError('ESHUTDOWN', `${this.#context.name}: scrub aborted`));
    await this.#finished;
  }

  /**
   * Scrubs the whole set. Resolves with the result, aborted or complete; never rejects for I/O errors.
   * @throws BlockError EBUSY when a scrub already runs.
   */
  async run(options: ScrubOptions = {}): Promise<ScrubResult> {
    if (this.#running !== undefined) throw new BlockError('EBUSY', `${this.#context.name}: a scrub is already running`);
    if (options.bytesPerSecond !== undefined) assert(Number.isFinite(options.bytesPerSecond) && options.bytesPerSecond > 0, 'a scrub rate is positive');
    const controller = new AbortController();
    const signal = options.signal === undefined ? controller.signal : AbortSignal.any([controller.signal, options.signal]);
    this.#running = controller;
    let finish: () => void = () => undefined;
    this.#finished = new Promise((resolve) => {
      finish = resolve;
    });
    try {
      const result = await this.#scrub({ ...options, signal });
      this.#last = result;
      if (result.state === 'complete') this.#lastComplete = result;
      return result;
    } finally {
      this.#running = undefined;
      this.#progress = undefined;
      finish();
    }
  }

  async #scrub(options: ScrubOptions & { readonly signal: AbortSignal }): Promise<ScrubResult> {
    const { regionCount, regionBytes, sizeBytes } = this.#context;
    const repair = options.repair === true;
    const startedAtMs = this.#wallClock();
    const regions: ScrubRegionReport[] = [];
    const totals = { scrubbed: 0, skipped: 0, mismatched: 0, repaired: 0, readErrors: 0 };
    let state: ScrubResult['state'] = 'complete';
    this.#paceNextMs = this.#now();
    let regionIndex = 0;
    for (; regionIndex < regionCount; regionIndex++) {
      const startBytes = regionIndex * regionBytes;
      const lengthBytes = Math.min(regionBytes, sizeBytes - startBytes);
      assert(lengthBytes > 0, 'every region holds bytes');
      if (!(await this.#pace(lengthBytes, options))) {
        state = 'aborted';
        break;
      }
      const outcome = await this.#scrubRegion({ regionIndex, startBytes, lengthBytes, repair });
      totals.readErrors += outcome.readErrors;
      if (outcome.kind === 'skipped') totals.skipped += 1;
      else totals.scrubbed += 1;
      if (outcome.kind === 'differs') {
        totals.mismatched += 1;
        if (outcome.report.verdict === 'repaired') totals.repaired += 1;
        if (regions.length < scrubReportedRegionsMax) regions.push(outcome.report);
      }
      this.#progress = {
        doneRegions: regionIndex + 1,
        regionCount,
        doneBytes: startBytes + lengthBytes,
        sizeBytes,
        mismatchedRegions: totals.mismatched,
      };
      options.onProgress?.(this.#progress);
    }
    assert(totals.scrubbed + totals.skipped === regionIndex, 'every region visited is scrubbed or skipped');
    assert(totals.repaired <= totals.mismatched && regions.length <= totals.mismatched);
    return {
      state,
      repair,
      regionCount,
      scrubbedRegions: totals.scrubbed,
      skippedRegions: totals.skipped,
      mismatchedRegions: totals.mismatched,
      repairedRegions: totals.repaired,
      regions,
      readErrors: totals.readErrors,
      startedAtMs,
      finishedAtMs: this.#wallClock(),
    };
  }

  /**
   * Waits until `lengthBytes` more may be scrubbed (a virtual-clock token bucket, as the copier's
   * throttle). Returns false when aborted.
   */
  async #pace(lengthBytes: number, options: ScrubOptions & { readonly signal: AbortSignal }): Promise<boolean> {
    for (;;) {
      if (options.signal.aborted) return false;
      const rate = options.bytesPerSecond ?? this.#context.resyncRate();
      const nowMs = this.#now();
      if (rate === null) {
        this.#paceNextMs = nowMs;
        return true;
      }
      const startMs = Math.max(this.#paceNextMs, nowMs - 1000 * (lengthBytes / rate));
      if (startMs <= nowMs) {
        this.#paceNextMs = startMs + 1000 * (lengthBytes / rate);
        return true;
      }
      try {
        await this.#sleep(Math.min(startMs - nowMs, scrubSleepMsMax), options.signal);
      } catch (err) {
        rethrowProgrammerError(err);
        assert(options.signal.aborted, 'a pace sleep ends early only when aborted');
        return false;
      }
    }
  }

  async #scrubRegion(options: {
    readonly regionIndex: number;
    readonly startBytes: number;
    readonly lengthBytes: number;
    readonly repair: boolean;
  }): Promise<{ kind: 'skipped' | 'same'; readErrors: number } | { kind: 'differs'; report: ScrubRegionReport; readErrors: number }> {
    const { regionIndex, startBytes, lengthBytes } = options;
    const context = this.#context;
    const comparable = (): boolean => context.regionInSync(regionIndex) && context.legSet.legs.filter((leg) => leg.valid).length >= 2;
    if (!comparable()) return { kind: 'skipped', readErrors: 0 };
    const release = await context.hold(startBytes, lengthBytes);
    try {
      // Checked again under the hold: a write that failed meanwhile may have taken the region out of sync.
      if (!comparable()) return { kind: 'skipped', readErrors: 0 };
      const outvoted = new Set<Leg>();
      const flags = { compared: false, differs: false, unrepaired: false, unresolved: false, failed: false };
      let readErrors = 0;
      for (let offsetBytes = 0; offsetBytes < lengthBytes; offsetBytes += copierChunkBytes) {
        const chunkBytes = Math.min(copierChunkBytes, lengthBytes - offsetBytes);
        const at = startBytes + offsetBytes;
        const chunk = await this.#readChunk(at, chunkBytes);
        readErrors += chunk.failed.length;
        const vote = chunk.reads.size >= 2 ? voteChunk(chunk.reads, context.legSet.defaultLeg) : undefined;
        // The data the legs whose read failed should hold: the winner's, or what every leg read holds
        // (one leg alone included: read repair trusts another valid leg of an in-sync region, as md).
        const good = vote?.kind === 'winner' ? vote.data : vote?.kind !== 'none' ? chunk.reads.values().next().value : undefined;
        await this.#readErrors({ failed: chunk.failed, atBytes: at, data: good, regionIndex });
        if (vote === undefined) continue;
        flags.compared = true;
        if (vote.kind === 'same') continue;
        flags.differs = true;
        if (vote.kind === 'none') {
          flags.unresolved = true;
          continue;
        }
        for (const leg of vote.outvoted) outvoted.add(leg);
        if (!options.repair) {
          flags.unrepaired = true;
          continue;
        }
        if (!(await this.#rewrite(at, vote.data))) flags.failed = true;
      }
      const compared = flags.compared;
      const differs = flags.differs;
      if (!compared) return { kind: 'skipped', readErrors };
      if (!differs) return { kind: 'same', readErrors };
      const verdict: ScrubRegionReport['verdict'] = flags.failed ? 'failed' : flags.unresolved ? 'unresolved' : flags.unrepaired ? 'differs' : 'repaired';
      const names = [...outvoted].sort((a, b) => a.index - b.index).map((leg) => ({ leg: leg.index, name: context.legSet.displayName(leg) }));
      return { kind: 'differs', report: { region: regionIndex, outvoted: names, verdict }, readErrors };
    } finally {
      release();
    }
  }

  /** Reads one chunk of the set's bytes from every valid leg, once each. */
  async #readChunk(atBytes: number, lengthBytes: number): Promise<{ reads: Map<Leg, Buffer>; failed: Leg[] }> {
    const legs = this.#context.legSet.legs.filter((leg) => leg.valid);
    const results = await settleOperating(
      legs.map((leg) => {
        leg.stats.readsTotal += 1;
        leg.stats.readBytesTotal += lengthBytes;
        return leg.device.read(leg.offsetBytes + atBytes, lengthBytes);
      }),
    );
    const reads = new Map<Leg, Buffer>();
    const failed: Leg[] = [];
    results.forEach((result, index) => {
      const leg = legs[index];
      assert(leg !== undefined);
      if (result.status === 'fulfilled') {
        assert(result.value.length === lengthBytes, 'a leg read returns its length');
        reads.set(leg, result.value);
      } else {
        failed.push(leg);
      }
    });
    assert(reads.size + failed.length === legs.length);
    return { reads, failed };
  }

  /**
   * Legs whose read of a chunk failed: with read repair and data to write back, the leg gets it (and
   * stays A if that write succeeds); otherwise the leg fails with a read error, as on a client read.
   */
  async #readErrors(options: { failed: readonly Leg[]; atBytes: number; data: Buffer | undefined; regionIndex: number }): Promise<void> {
    const repair = this.#context.readRepair;
    for (const leg of options.failed) {
      const data = options.data;
      if (repair !== undefined && data !== undefined && (await repair.writeBack({ leg, atBytes: options.atBytes, data, regionIndex: options.regionIndex }))) continue;
      this.#context.legSet.failLeg(leg, 'read');
    }
  }

  /** Rewrites a chunk through the set's write path; false when the write failed (the legs are handled). */
  async #rewrite(atBytes: number, data: Buffer): Promise<boolean> {
    try {
      await this.#context.rewrite(atBytes, data);
      return true;
    } catch (err) {
      rethrowProgrammerError(err);
      return false;
    }
  }
}
