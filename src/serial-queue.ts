/**
 * SerialQueue: runs asynchronous operations one at a time, in the order they were queued (a promise
 * chain). An operation starts only after the previous one settled, whether it resolved or rejected.
 *
 * Each caller of run() gets its own operation's outcome, rejection included, and owns it: the chain
 * itself only orders the operations, so one failing operation neither fails nor skips the later ones.
 * A programmer error thrown by an operation reaches its caller like any other rejection (the caller
 * decides, through src/fail-fast.ts, that it stops the process).
 *
 * Users: DiskLogWriter (every write and flush of a disk log device), MappedDevice (control operations:
 * load, suspend, resume, clear, remove). Never waits by itself; unbounded only in the sense that every
 * caller's own bound (one mirror worker, one control connection per request) bounds what is queued.
 */
export class SerialQueue {
  /** Settles once every operation queued so far has settled; never rejects. */
  #tail: Promise<unknown> = Promise.resolve();

  /** Queues `op` behind every operation queued before it; resolves or rejects with `op`'s outcome. */
  run<T>(op: () => Promise<T>): Promise<T> {
    const result = this.#tail.then(op);
    // The next operation waits for this one to settle, not to succeed: `result` is the caller's.
    this.#tail = Promise.allSettled([result]);
    return result;
  }

  /** Resolves once every operation queued so far has settled (their outcomes went to their callers). */
  async idle(): Promise<void> {
    await this.#tail;
  }
}
