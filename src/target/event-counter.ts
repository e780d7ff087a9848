/**
 * EventCounter: a mapped device's event counter (dm's event_nr) with its listeners and `dmsetup wait`
 * waiters. The number only grows; raise() bumps it and wakes every listener and every waiter whose
 * number it now exceeds, synchronously, in the order they subscribed.
 *
 * Lists it owns: listeners (until they unsubscribe) and waiters (until resolved, aborted, or rejected by
 * rejectWaiters() when the device goes away). Waiters are bounded by their callers: one per pending
 * control request.
 *
 * Called by MappedDevice (raise() from the live table's targets, wait() for `dmsetup wait`).
 */
import { assertCount } from '../assert.js';

interface EventWaiter {
  readonly afterNr: number;
  readonly resolve: (eventNr: number) => void;
  readonly reject: (error: unknown) => void;
}

export class EventCounter {
  #eventNr = 0;
  readonly #listeners = new Set<(eventNr: number) => void>();
  #waiters: EventWaiter[] = [];

  get eventNr(): number {
    return this.#eventNr;
  }

  /** dm_table_event: bumps the counter and wakes listeners and waiters. */
  raise(): void {
    this.#eventNr++;
    const eventNr = this.#eventNr;
    for (const listener of [...this.#listeners]) listener(eventNr);
    const waiting = this.#waiters;
    this.#waiters = [];
    for (const waiter of waiting) {
      if (eventNr > waiter.afterNr) waiter.resolve(eventNr);
      else this.#waiters.push(waiter);
    }
  }

  /** Calls `listener(eventNr)` on every event; returns the function that unsubscribes it. */
  onEvent(listener: (eventNr: number) => void): () => void {
    this.#listeners.add(listener);
    return () => {
      this.#listeners.delete(listener);
    };
  }

  /**
   * Resolves with the event number once it exceeds `afterNr` (at once if it already does). Rejects with
   * the signal's reason on abort, and with rejectWaiters()'s error.
   */
  wait(afterNr: number, signal?: AbortSignal): Promise<number> {
    assertCount(afterNr, 'afterNr');
    if (this.#eventNr > afterNr) return Promise.resolve(this.#eventNr);
    if (signal?.aborted === true) return Promise.reject(signal.reason);
    return new Promise<number>((resolve, reject) => {
      const onAbort = (): void => {
        this.#waiters = this.#waiters.filter((w) => w !== waiter);
        reject(signal?.reason);
      };
      const waiter: EventWaiter = {
        afterNr,
        resolve: (eventNr) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(eventNr);
        },
        reject: (error) => {
          signal?.removeEventListener('abort', onAbort);
          reject(error);
        },
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#waiters.push(waiter);
    });
  }

  /** Rejects every waiter, each with its own `error()` (the device was removed). */
  rejectWaiters(error: () => Error): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const waiter of waiters) waiter.reject(error());
  }
}
