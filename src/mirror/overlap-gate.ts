/**
 * OverlapGate: serializes overlapping writes of one mirror set. A write (or zero, or trim) enters the
 * gate before it is queued and leaves it when it completes; while it is inside, a write that overlaps
 * its byte range waits. So every leg sees two overlapping writes in the same order and the legs stay
 * identical. (The kernel gives no order to overlapping bios in flight: each leg may apply them in a
 * different order, and a region cleaned afterwards keeps legs that differ. This is where we go past it.)
 * Non-overlapping writes never wait; the set of writes inside is at most the write queue's depth.
 */
import { assert } from '../assert.js';

interface Entry {
  readonly startBytes: number;
  readonly endBytes: number;
  readonly left: Promise<void>;
}

export class OverlapGate {
  readonly #inside = new Set<Entry>();

  /** Writes inside the gate now. */
  get size(): number {
    return this.#inside.size;
  }

  /**
   * Enters with the byte range [startBytes, endBytes), waiting for every overlapping write inside to
   * leave first. Returns the function that leaves (call it exactly once, when the write has completed).
   */
  async enter(startBytes: number, endBytes: number): Promise<() => void> {
    assert(startBytes < endBytes, 'a gated range is not empty');
    for (let blockers = this.#overlapping(startBytes, endBytes); blockers.length > 0; blockers = this.#overlapping(startBytes, endBytes)) {
      await Promise.all(blockers.map((entry) => entry.left));
    }
    let leave: (() => void) | undefined;
    const left = new Promise<void>((resolve) => {
      leave = resolve;
    });
    assert(leave !== undefined, 'the promise executor runs at once');
    const resolveLeft = leave;
    const entry: Entry = { startBytes, endBytes, left };
    this.#inside.add(entry);
    let done = false;
    return () => {
      assert(!done, 'a write leaves the gate once');
      done = true;
      this.#inside.delete(entry);
      resolveLeft();
    };
  }

  #overlapping(startBytes: number, endBytes: number): Entry[] {
    const found: Entry[] = [];
    for (const entry of this.#inside) if (entry.startBytes < endBytes && startBytes < entry.endBytes) found.push(entry);
    return found;
  }
}
