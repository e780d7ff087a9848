/**
 * MirrorWorker: the per-set worker loop (the kernel's kmirrord workqueue, one per mirror set).
 *
 * wake() asks for a pass; the loop runs passes one after another until no wake-up arrived during the
 * last one. There is never more than one pass of a set at a time (seed: "This code was never designed
 * to handle more than one instance of do_work() running at once"), and each set has its own loop, so a
 * set whose dirty log lives on another set never waits on itself (seed: one kmirrord per set).
 *
 * idle() resolves when no pass runs and none is wanted (flush_workqueue).
 * A pass that throws is a programmer error: it goes to failFast (src/fail-fast.ts) and the process stops.
 */
import { assert } from '../assert.js';
import { detach, failFast } from '../fail-fast.js';

export class MirrorWorker {
  readonly #pass: () => Promise<void>;
  #wanted = false;
  #running = false;
  #idleWaiters: (() => void)[] = [];
  #passes = 0;

  constructor(pass: () => Promise<void>) {
    this.#pass = pass;
  }

  /** Passes run so far. */
  get passes(): number {
    return this.#passes;
  }

  get running(): boolean {
    return this.#running;
  }

  wake(): void {
    this.#wanted = true;
    if (this.#running) return;
    this.#running = true;
    // Run on a later tick so that a burst of wake-ups (many completions) becomes one pass.
    setImmediate(() => {
      // A pass settles every operating error itself: whatever escapes it is a broken invariant.
      detach(this.#loop(), failFast);
    });
  }

  /** Resolves when the loop is idle (after any pass in progress and any pass it asked for). */
  idle(): Promise<void> {
    if (!this.#running && !this.#wanted) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  async #loop(): Promise<void> {
    assert(this.#running, 'loop started without the running flag');
    try {
      while (this.#wanted) {
        this.#wanted = false;
        this.#passes += 1;
        await this.#pass();
      }
    } finally {
      this.#running = false;
    }
    const waiters = this.#idleWaiters.splice(0);
    for (const resolve of waiters) resolve();
  }
}
