/**
 * WriteQueue: the bounded queue of writes, zeroes, trims and flushes of one mirror set (ms->writes), the
 * way requests enter it, and its admission. The worker takes the whole queue at the start of each pass
 * (takeAll).
 *
 * submit(): a write, zero or trim of any length enters the overlap gate for its whole range (overlapping
 * writes reach the legs one after the other, so every leg applies them in one order; see
 * overlap-gate.ts), then runs in spans of at most requestBytesMax bytes, one after another (an NBD
 * request is one span). Each span is split at region boundaries once; its pieces are views of the
 * caller's buffer (never copies), enter the queue together and are waited for together; the first error
 * fails the request. flush() is a span of one flush.
 *
 * Admission, per span:
 *   queue + span <= writeQueueMax and nobody waits   -> the span enters at once
 *   otherwise                                         -> it waits, first come first served
 *   a pass takes the queue                            -> waiting spans enter, in order, while they fit
 * The pieces of a span enter together, never part of them.
 *
 * Why admission cannot deadlock, whatever the request size or the number of requests:
 *   1. Every span fits an empty queue: it has at most spanPiecesMax pieces, and spanPiecesMax <=
 *      writeQueueMax (checked when limits.ts loads; #admit() asserts the size of every span).
 *   2. A waiting span always has a pass coming: #admit() wakes the worker whether the span entered or
 *      waits, and takeAll() wakes it again whenever it leaves pieces in the queue.
 *   3. That pass empties the queue (takeAll) before it admits, so by 1. the first waiting span enters,
 *      and by 2. the next pass serves the one after it. A pass never waits for admission itself.
 * hold() holds a range against writes (a barrier in the overlap gate: a scrub or a read repair); the
 * holder may then write inside it with submit(..., { held: true }), which skips the gate.
 * requeue() puts back writes the region hash delayed during a recovery (dispatch_bios). They were
 * admitted once already, so they go to the front without admission; the queue may then hold more than
 * writeQueueMax pieces until the next pass, which only delays admissions (they are bounded by the
 * requests in flight, each admitted once).
 */
import { assert } from '../assert.js';
import { requestBytesMax, spanPiecesMax, writeQueueMax } from '../limits.js';
import { newFlushIo, newRegionWriteIo, splitByRegion, type RegionWriteInit, type RegionWriteIo, type WriteQueueIo } from './mirror-io.js';
import { OverlapGate } from './overlap-gate.js';

interface WaitingSpan {
  readonly ios: readonly WriteQueueIo[];
  readonly admitted: () => void;
}

export class WriteQueue {
  readonly #regionBytes: number;
  readonly #wake: () => void;
  /** Serializes overlapping writes, trims and zeroes (not in the kernel). */
  readonly #overlaps = new OverlapGate();
  #queue: WriteQueueIo[] = [];
  /** Spans waiting for room, in arrival order. */
  readonly #waiting: WaitingSpan[] = [];

  /** `wake` asks the worker for a pass (MirrorWorker.wake). */
  constructor(options: { readonly regionBytes: number; readonly wake: () => void }) {
    assert(Number.isSafeInteger(options.regionBytes) && options.regionBytes > 0, 'regionBytes > 0');
    this.#regionBytes = options.regionBytes;
    this.#wake = options.wake;
  }

  /** Pieces queued now. */
  get length(): number {
    return this.#queue.length;
  }

  /** Spans waiting for admission now. */
  get waitingSpans(): number {
    return this.#waiting.length;
  }

  /**
   * Holds [offsetBytes, +lengthBytes) against writes: waits for the writes inside it now (and earlier
   * holds), then later overlapping writes wait until the returned function is called (exactly once).
   */
  hold(offsetBytes: number, lengthBytes: number): Promise<() => void> {
    assert(lengthBytes > 0, 'a held range is not empty');
    return this.#overlaps.enter(offsetBytes, offsetBytes + lengthBytes, { barrier: true });
  }

  /**
   * A write, zero or trim of the set's bytes [offsetBytes, +lengthBytes); `data` exactly for a write.
   * `held`: the caller holds the range (hold()), so the write does not wait at the gate.
   */
  async submit(
    init: RegionWriteInit,
    range: { offsetBytes: number; lengthBytes: number; data?: Uint8Array },
    options: { readonly held?: boolean } = {},
  ): Promise<void> {
    const { offsetBytes, lengthBytes, data } = range;
    assert(lengthBytes > 0, 'an empty request never reaches the mirror set');
    assert((init.kind === 'write') === (data !== undefined && data.length === lengthBytes), 'a write, and only a write, carries its data');
    const endBytes = offsetBytes + lengthBytes;
    const leave = options.held === true ? () => undefined : await this.#overlaps.enter(offsetBytes, endBytes);
    try {
      for (let spanBytes = offsetBytes; spanBytes < endBytes; spanBytes += requestBytesMax) {
        const pieces = splitByRegion({
          offsetBytes: spanBytes,
          lengthBytes: Math.min(requestBytesMax, endBytes - spanBytes),
          regionBytes: this.#regionBytes,
        });
        const ios: WriteQueueIo[] = [];
        const dones: Promise<void>[] = [];
        for (const piece of pieces) {
          const start = piece.offsetBytes - offsetBytes;
          const { io, done } = newRegionWriteIo(init, piece, data?.subarray(start, start + piece.lengthBytes));
          ios.push(io);
          dones.push(done);
        }
        await this.#admitAndWait(ios, dones);
      }
    } finally {
      leave();
    }
  }

  /** A flush of every leg, through the queue (so it follows the writes queued before it). */
  async flush(): Promise<void> {
    const { io, done } = newFlushIo();
    await this.#admitAndWait([io], [done]);
  }

  /** Queues the pieces of one span and waits for all of them; throws the first error. */
  async #admitAndWait(ios: readonly WriteQueueIo[], dones: readonly Promise<void>[]): Promise<void> {
    assert(ios.length === dones.length, 'one completion per piece');
    await this.#admit(ios);
    const results = await Promise.allSettled(dones);
    for (const result of results) if (result.status === 'rejected') throw result.reason;
  }

  /** Queues the pieces of one span; resolves once they are in the queue (at once when they fit). */
  #admit(ios: readonly WriteQueueIo[]): Promise<void> {
    assert(ios.length > 0 && ios.length <= spanPiecesMax, 'a span has 1..spanPiecesMax pieces');
    this.#wake();
    if (this.#waiting.length === 0 && this.#queue.length + ios.length <= writeQueueMax) {
      for (const io of ios) this.#queue.push(io);
      return Promise.resolve();
    }
    return new Promise<void>((admitted) => this.#waiting.push({ ios, admitted }));
  }

  /** Takes every queued piece for a pass, then admits waiting spans while they fit. */
  takeAll(): WriteQueueIo[] {
    const taken = this.#queue;
    this.#queue = [];
    for (let next = this.#waiting[0]; next !== undefined; next = this.#waiting[0]) {
      if (this.#queue.length + next.ios.length > writeQueueMax) break;
      this.#waiting.shift();
      for (const io of next.ios) this.#queue.push(io);
      next.admitted();
    }
    if (this.#queue.length > 0) this.#wake();
    assert(this.#waiting.length === 0 || this.#queue.length > 0, 'a waiting span always has a pass coming');
    return taken;
  }

  /** Puts delayed writes back at the front (their region's recovery ended) and asks for a pass. */
  requeue(ios: readonly RegionWriteIo[]): void {
    this.#queue.unshift(...ios);
    this.#wake();
  }
}
