/**
 * RateLimiter: the kernel's ___ratelimit (lib/ratelimit.c) for repeated messages, as DMERR_LIMIT and
 * DMWARN_LIMIT use it: at most `burst` messages per `intervalMs`. A failing resync would otherwise log
 * one identical line per region.
 *
 * States: a window opens at the first take() and lasts intervalMs. Inside it the first `burst` takes
 * are allowed and the rest are counted as missed. The first take() after the window ended opens a new
 * one and reports how many were missed in the old one (the kernel then prints "<func>: N callbacks
 * suppressed" before the message), so a suppressed burst is always accounted for once traffic resumes.
 *
 * Called by MirrorSet for its *_LIMIT messages, one limiter per call site (fork()); time comes from
 * `now` (tests pass a fake clock).
 */
import { assert } from '../assert.js';
import { kernelMessageBurst, kernelMessageIntervalMs } from '../limits.js';

export interface RateLimiterOptions {
  readonly intervalMs?: number;
  readonly burst?: number;
  /** Monotonic clock in ms; performance.now by default. */
  readonly now?: () => number;
}

export interface RateLimitDecision {
  /** Print this message. */
  readonly allowed: boolean;
  /** Messages dropped in the window that just ended (0 when none, or when no window ended). */
  readonly suppressed: number;
}

export class RateLimiter {
  readonly intervalMs: number;
  readonly burst: number;
  readonly #now: () => number;
  /** Start of the current window, or null before the first message. */
  #windowStartMs: number | null = null;
  #printed = 0;
  #missed = 0;

  constructor(options: RateLimiterOptions = {}) {
    this.intervalMs = options.intervalMs ?? kernelMessageIntervalMs;
    this.burst = options.burst ?? kernelMessageBurst;
    assert(Number.isFinite(this.intervalMs) && this.intervalMs > 0, 'intervalMs > 0');
    assert(Number.isSafeInteger(this.burst) && this.burst >= 1, 'burst >= 1');
    this.#now = options.now ?? (() => performance.now());
  }

  /**
   * A new limiter with the same interval, burst and clock and a state of its own: the kernel's
   * DM*_LIMIT macros keep one ratelimit state per call site (a static in each expansion).
   */
  fork(): RateLimiter {
    return new RateLimiter({ intervalMs: this.intervalMs, burst: this.burst, now: this.#now });
  }

  /** Messages dropped so far in the current window. */
  get missed(): number {
    return this.#missed;
  }

  /** Decides about one message now. */
  take(): RateLimitDecision {
    const nowMs = this.#now();
    let suppressed = 0;
    if (this.#windowStartMs === null || nowMs - this.#windowStartMs >= this.intervalMs) {
      suppressed = this.#missed;
      this.#missed = 0;
      this.#printed = 0;
      this.#windowStartMs = nowMs;
    }
    if (this.#printed < this.burst) {
      this.#printed += 1;
      return { allowed: true, suppressed };
    }
    this.#missed += 1;
    assert(suppressed === 0, 'a new window always allows its first message');
    return { allowed: false, suppressed };
  }
}
