/**
 * OverlapGate: serializes overlapping writes of one mirror set. A write (or zero, or trim) enters the
 * gate before it is queued and leaves it when it completes; while it is inside, a write that overlaps
 * its byte range waits. So every leg sees two overlapping writes in the same order and the legs stay
 * identical. (The kernel gives no order to overlapping bios in flight: each leg may apply them in a
 * different order, and a region cleaned afterwards keeps legs that differ. This is where we go past it.)
 * Non-overlapping writes never wait; the set of writes inside is at most the write queue's depth.
 *
 * A barrier (a scrub or a read repair holding a region against writes, scrub.ts) is first come, first
 * served: from the moment it asks, a later overlapping entry waits for it too, so a barrier waits only
 * for the entries inside and the barriers that asked before it (it cannot be starved by a stream of
 * writes), and a write waits at most for the barriers that asked before it.
 */
import { assert } from '../assert.js';

interface Entry {
  readonly startBytes: number;
  readonly endBytes: number;
  readonly left: Promise<void>;
}

export class OverlapGate {
  readonly #inside = new Set<Entry>();
  /** Barriers that asked and wait for the entries inside before them. */
  readonly #barriers = new Set<Entry>();

  /** Writes inside the gate now. */
  get size(): number {
    return this.#inside.size;
  }

  /**
   * Enters with the byte range [startBytes, endBytes), waiting for every overlapping write inside to
   * leave first. Returns the function that leaves (call it exactly once, when the write has completed).
   */
  async enter(startBytes: number, endBytes: number, options: { readonly barrier?: boolean } = {}): Promise<() => void> {
    assert(startBytes < endBytes, 'a gated range is not empty');
    let leave: (() => void) | undefined;
    const left = new Promise<void>((resolve) => {
      leave = resolve;
    });
    assert(leave !== undefined, 'the promise executor runs at once');
    const resolveLeft = leave;
    const entry: Entry = { startBytes, endBytes, left };
    const barrier = options.barrier === true;
    // A barrier blocks later arrivals from now on; it waits only for what is inside already.
    if (barrier) this.#barriers.add(entry);
    const blockersOf = (): Entry[] => this.#overlapping(startBytes, endBytes, { before: barrier ? entry : undefined });
    for (let blockers = blockersOf(); blockers.length > 0; blockers = blockersOf()) {
      await Promise.all(blockers.map((other) => other.left));
    }
    if (barrier) this.#barriers.delete(entry);
    this.#inside.add(entry);
    let done = false;
    return () => {
      assert(!done, 'a write leaves the gate once');
      done = true;
      this.#inside.delete(entry);
      resolveLeft();
    };
  }

  /** Entries inside that overlap, and the waiting barriers that asked earlier (all of them for a write). */
  #overlapping(startBytes: number, endBytes: number, options: { readonly before: Entry | undefined }): Entry[] {
    const found: Entry[] = [];
    for (const entry of this.#inside) if (entry.startBytes < endBytes && startBytes < entry.endBytes) found.push(entry);
    for (const entry of this.#barriers) {
      if (entry === options.before) break;
      if (entry.startBytes < endBytes && startBytes < entry.endBytes) found.push(entry);
    }
    return found;
  }
}
