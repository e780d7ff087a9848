/**
 * MirrorEvents: how a mirror set tells the world: typed notifications to listeners, dm table events
 * (dm_table_event through the set's raiseEvent) and the kernel's log messages.
 *
 * raise() notifies the listeners at once and raises one dm event in a microtask: dm's trigger_event is a
 * work item, and schedule_work on a pending work is a no-op, so events raised together (both legs
 * failing one write) reach dm core as one (reference fail-write D: event 2). notify() only tells the
 * listeners (a default-leg change is no dm event). `count` grows by one per dm event raised; flushed()
 * resolves once no event waits for its microtask (part of MirrorSet.idle()).
 *
 * messageLimited() is DMERR_LIMIT / DMWARN_LIMIT: rate limited by the RateLimiter, with the kernel's
 * "<site>: N callbacks suppressed" note once a window ends.
 *
 * Users: LegSet (leg failures, default-leg changes), Recovery (sync complete, recovery errors), the
 * worker (read-path messages) and MirrorSet (log failure).
 */
import type { LegErrorKind } from './leg.js';
import type { RateLimiter } from './rate-limit.js';

export type KernelLogLevel = 'error' | 'warn' | 'info';

export type MirrorEvent =
  | { readonly kind: 'leg-failed'; readonly leg: number; readonly errorKind: LegErrorKind }
  | { readonly kind: 'default-leg-changed'; readonly from: number; readonly to: number }
  | { readonly kind: 'sync-complete' }
  | { readonly kind: 'log-failed' }
  | { readonly kind: 'scrub-complete'; readonly mismatchedRegions: number; readonly repairedRegions: number; readonly aborted: boolean };

export interface MirrorEventsOptions {
  readonly onMessage: (level: KernelLogLevel, message: string) => void;
  readonly raiseEvent: () => void;
  readonly messageLimiter: RateLimiter;
}

export class MirrorEvents {
  readonly #onMessage: (level: KernelLogLevel, message: string) => void;
  readonly #raiseEvent: () => void;
  readonly #messageLimiter: RateLimiter;
  /** Limiters of the other *_LIMIT call sites, by site and level (made on first use). */
  readonly #siteLimiters = new Map<string, RateLimiter>();
  readonly #listeners = new Set<(event: MirrorEvent) => void>();
  #count = 0;
  #pending = false;
  #flushWaiters: (() => void)[] = [];

  constructor(options: MirrorEventsOptions) {
    this.#onMessage = options.onMessage;
    this.#raiseEvent = options.raiseEvent;
    this.#messageLimiter = options.messageLimiter;
  }

  /** dm events raised so far (a counter that only grows). */
  get count(): number {
    return this.#count;
  }

  /** An event was raised and waits for its microtask to reach dm core. */
  get pending(): boolean {
    return this.#pending;
  }

  /** Adds a listener; returns the function that removes it. */
  on(listener: (event: MirrorEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Notifies the listeners and raises a dm event (coalesced with others raised in the same turn). */
  raise(event: MirrorEvent): void {
    this.notify(event);
    if (this.#pending) return;
    this.#pending = true;
    queueMicrotask(() => {
      this.#pending = false;
      this.#count += 1;
      this.#raiseEvent();
      for (const resolve of this.#flushWaiters.splice(0)) resolve();
    });
  }

  /** Notifies the listeners only. */
  notify(event: MirrorEvent): void {
    for (const listener of this.#listeners) listener(event);
  }

  /** Resolves once no raised event waits to reach dm core. */
  flushed(): Promise<void> {
    if (!this.#pending) return Promise.resolve();
    return new Promise((resolve) => this.#flushWaiters.push(resolve));
  }

  message(level: KernelLogLevel, message: string): void {
    this.#onMessage(level, message);
  }

  /**
   * DMERR_LIMIT / DMWARN_LIMIT: rate limited per call site (the kernel function and the level:
   * read_callback has one of each), as each DM*_LIMIT keeps its own state; recovery_complete's uses the
   * set's limiter itself. `site` names the function in the suppressed note.
   */
  messageLimited(site: string, level: KernelLogLevel, message: string): void {
    const key = `${site}:${level}`;
    let limiter = site === 'recovery_complete' ? this.#messageLimiter : this.#siteLimiters.get(key);
    if (limiter === undefined) {
      limiter = this.#messageLimiter.fork();
      this.#siteLimiters.set(key, limiter);
    }
    const { allowed, suppressed } = limiter.take();
    if (suppressed > 0) this.#onMessage('warn', `${site}: ${suppressed} callbacks suppressed`);
    if (allowed) this.#onMessage(level, message);
  }
}
