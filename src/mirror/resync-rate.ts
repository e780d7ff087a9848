/**
 * ResyncRate: the resync's rate controller, "fast when idle, bounded when clients are busy" (md's
 * speed_limit_min/max, DRBD's c-plan-ahead in spirit, with a deterministic rule instead of a feedback
 * loop). Recovery asks it before every region copy and the copier before every chunk; the scrub takes
 * its pace from it when it has no --rate of its own.
 *
 *   mode   when                                     regions at once      chunks per region   rate
 *   idle   no client I/O in the last busyWindowMs   parallelMax          the copier's        the cap
 *   busy   client I/O in the last busyWindowMs      busyParallelMax (1)  1                   min(busy rate, cap)
 * The cap is `--resync-rate` (none by default); the busy rate resyncBusyBytesPerSecondDefault unless
 * told otherwise (null: busy mode limits concurrency only).
 *
 * Why this bounds a client's latency: in busy mode at most busyParallelMax × 1 recovery chunks are in
 * flight on a leg at any time, so a client request queues behind at most that many; at the switch from
 * idle, the chunks already issued (at most parallelMax × the copier's window) finish first, and no new
 * one starts until one of them has. The resync never stops while clients are busy: it keeps one chunk
 * in flight, at the busy rate.
 *
 * It also measures the resync (bytes copied over the last resyncRateWindowMs) for `status --json` and
 * the metrics: the mode, the limit in force and the measured speed. Time comes from `now` (tests pass a
 * fake clock).
 */
import { assert } from '../assert.js';
import { recoveryBusyWindowMs, resyncRateSamplesMax, resyncRateWindowMs } from '../limits.js';

export type ResyncMode = 'idle' | 'busy';

export interface ResyncRateOptions {
  /** Regions recovered at once while clients are idle (the recovery-parallel setting). */
  readonly parallelMax: number;
  /** Regions recovered at once while clients are busy. */
  readonly busyParallelMax: number;
  /** Rate while clients are busy, bytes/s; null: no busy throttle. */
  readonly busyBytesPerSecond: number | null;
  /** The cap, always, bytes/s (`--resync-rate`); null: none. */
  readonly capBytesPerSecond: number | null;
  /** Monotonic clock in ms. */
  readonly now: () => number;
}

/** What status reports about the resync's pace. */
export interface ResyncRateStatus {
  readonly mode: ResyncMode;
  /** The throttle in force now, bytes/s; null: unthrottled. */
  readonly limitBytesPerSecond: number | null;
  /** The cap (`--resync-rate`), bytes/s; null: none. */
  readonly capBytesPerSecond: number | null;
  /** Bytes copied per second over the last resyncRateWindowMs. */
  readonly bytesPerSecond: number;
  /** Regions recovered at once in this mode. */
  readonly regionsInFlightMax: number;
}

export class ResyncRate {
  #parallelMax: number;
  readonly #busyParallelMax: number;
  readonly #busyBytesPerSecond: number | null;
  readonly #capBytesPerSecond: number | null;
  readonly #now: () => number;
  #lastClientIoMs = -Infinity;
  readonly #samples: { atMs: number; bytes: number }[] = [];

  constructor(options: ResyncRateOptions) {
    checkParallel(options.parallelMax);
    checkParallel(options.busyParallelMax);
    assert(options.busyBytesPerSecond === null || options.busyBytesPerSecond > 0, 'a busy rate is positive');
    assert(options.capBytesPerSecond === null || options.capBytesPerSecond > 0, 'a cap is positive');
    this.#parallelMax = options.parallelMax;
    this.#busyParallelMax = options.busyParallelMax;
    this.#busyBytesPerSecond = options.busyBytesPerSecond;
    this.#capBytesPerSecond = options.capBytesPerSecond;
    this.#now = options.now;
  }

  get parallelMax(): number {
    return this.#parallelMax;
  }

  set parallelMax(value: number) {
    checkParallel(value);
    this.#parallelMax = value;
  }

  /** A client request arrived: busy for the next busy window. */
  clientIo(): void {
    this.#lastClientIoMs = this.#now();
  }

  get mode(): ResyncMode {
    return this.#now() - this.#lastClientIoMs < recoveryBusyWindowMs ? 'busy' : 'idle';
  }

  /** The throttle in force now (bytes/s), or null for none. */
  limitBytesPerSecond(): number | null {
    const busy = this.mode === 'busy' ? this.#busyBytesPerSecond : null;
    const cap = this.#capBytesPerSecond;
    if (busy === null) return cap;
    return cap === null ? busy : Math.min(busy, cap);
  }

  /** Regions recovered at once now. */
  regionsInFlightMax(): number {
    return this.mode === 'busy' ? Math.min(this.#busyParallelMax, this.#parallelMax) : this.#parallelMax;
  }

  /** Copier chunks in flight per region now; undefined: the copier's own window. */
  chunksInFlightMax(): number | undefined {
    return this.mode === 'busy' ? 1 : undefined;
  }

  /** Recovery copied `bytes` (for the measured speed). */
  noteCopied(bytes: number): void {
    assert(Number.isSafeInteger(bytes) && bytes >= 0, 'copied bytes are a count');
    const atMs = this.#now();
    this.#samples.push({ atMs, bytes });
    this.#trim(atMs);
  }

  status(): ResyncRateStatus {
    const nowMs = this.#now();
    this.#trim(nowMs);
    const bytes = this.#samples.reduce((sum, sample) => sum + sample.bytes, 0);
    return {
      mode: this.mode,
      limitBytesPerSecond: this.limitBytesPerSecond(),
      capBytesPerSecond: this.#capBytesPerSecond,
      bytesPerSecond: Math.round((bytes * 1000) / resyncRateWindowMs),
      regionsInFlightMax: this.regionsInFlightMax(),
    };
  }

  #trim(nowMs: number): void {
    // Past the bound the oldest samples merge (their bytes count, their time is the later one's).
    while (this.#samples.length > resyncRateSamplesMax) {
      const oldest = this.#samples.shift();
      const next = this.#samples[0];
      if (oldest !== undefined && next !== undefined) next.bytes += oldest.bytes;
    }
    while (this.#samples.length > 0 && (this.#samples[0]?.atMs ?? nowMs) <= nowMs - resyncRateWindowMs) this.#samples.shift();
  }
}

function checkParallel(value: number): void {
  assert(Number.isSafeInteger(value) && value >= 1, 'regions at once: an integer >= 1');
}
