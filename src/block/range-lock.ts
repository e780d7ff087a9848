/**
 * RangeLock: exclusive byte ranges for read-modify-write. A holder of [start, end) keeps every other
 * acquirer of an overlapping range waiting until it releases; disjoint ranges never wait. Used by
 * NbdBlockDevice when the server demands a minimum block size, so that two writes patching the same
 * block (or a write and a patch) cannot interleave their read and write halves and lose bytes.
 * The set of holders is bounded by the callers in flight (the device's connection bounds those).
 */
import { assert } from '../assert.js';

interface Holder {
  readonly startBytes: number;
  readonly endBytes: number;
  readonly released: Promise<void>;
}

export class RangeLock {
  readonly #held = new Set<Holder>();

  /** Ranges held now. */
  get size(): number {
    return this.#held.size;
  }

  /**
   * Waits until no holder overlaps [startBytes, endBytes), then holds it. Returns the release function
   * (call it exactly once; a second call is a programmer error).
   */
  async acquire(startBytes: number, endBytes: number): Promise<() => void> {
    assert(startBytes < endBytes, 'a locked range is not empty');
    for (let blockers = this.#overlapping(startBytes, endBytes); blockers.length > 0; blockers = this.#overlapping(startBytes, endBytes)) {
      await Promise.all(blockers.map((holder) => holder.released));
    }
    let release: () => void = () => undefined;
    const released = new Promise<void>((resolve) => {
      release = resolve;
    });
    const holder: Holder = { startBytes, endBytes, released };
    this.#held.add(holder);
    let done = false;
    return () => {
      assert(!done, 'a range is released once');
      done = true;
      this.#held.delete(holder);
      release();
    };
  }

  #overlapping(startBytes: number, endBytes: number): Holder[] {
    const out: Holder[] = [];
    for (const holder of this.#held) if (holder.startBytes < endBytes && startBytes < holder.endBytes) out.push(holder);
    return out;
  }
}
