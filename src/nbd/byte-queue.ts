/**
 * ByteQueue: the receive buffer of an NBD connection. Socket chunks are appended as they come and consumed
 * from the front; nothing is concatenated until a caller needs a contiguous range that spans chunks, and
 * then that range alone is copied once (pg-protocol's buffer reader idea, without its growing buffer).
 *
 * Fixed headers are read through `view`/`viewAt` after `contiguous(n)`: the front chunk itself when it
 * holds n bytes (no allocation), else a small scratch buffer. Callers must read the view before the next
 * call on the queue. Payloads come out of `take(n)` as one Buffer: a zero-copy subarray when they lie in
 * one chunk, one copy otherwise.
 */
import { assert, assertCount } from '../assert.js';

const scratchBytes = 64;

export class ByteQueue {
  #chunks: Buffer[] = [];
  /** Bytes of #chunks[0] already consumed. */
  #frontOffset = 0;
  #length = 0;
  readonly #scratch = Buffer.allocUnsafe(scratchBytes);
  /** After contiguous(n): a buffer holding the next n bytes at viewAt. */
  view: Buffer = this.#scratch;
  viewAt = 0;

  /** Bytes available. */
  get length(): number {
    return this.#length;
  }

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.#chunks.push(chunk);
    this.#length += chunk.length;
  }

  /** Makes the next n bytes readable at view[viewAt..]; does not consume them. */
  contiguous(n: number): void {
    assert(n > 0 && n <= scratchBytes, `contiguous(${n}) is for small headers`);
    assert(n <= this.#length, `contiguous(${n}) with only ${this.#length} bytes`);
    const front = this.#chunks[0];
    assert(front !== undefined);
    if (front.length - this.#frontOffset >= n) {
      this.view = front;
      this.viewAt = this.#frontOffset;
      return;
    }
    this.#copyOut(this.#scratch, n);
    this.view = this.#scratch;
    this.viewAt = 0;
  }

  /** Consumes n bytes (after reading them through view, or to skip them). Returns n. */
  consume(n: number): number {
    assertCount(n, 'consume bytes');
    assert(n <= this.#length, `consume(${n}) with only ${this.#length} bytes`);
    let left = n;
    while (left > 0) {
      const front = this.#chunks[0];
      assert(front !== undefined);
      const inFront = front.length - this.#frontOffset;
      if (left < inFront) {
        this.#frontOffset += left;
        left = 0;
      } else {
        left -= inFront;
        this.#chunks.shift();
        this.#frontOffset = 0;
      }
    }
    this.#length -= n;
    return n;
  }

  /** Removes and returns the next n bytes as one Buffer (zero-copy when they lie in one chunk). */
  take(n: number): Buffer {
    assertCount(n, 'take bytes');
    assert(n <= this.#length, `take(${n}) with only ${this.#length} bytes`);
    if (n === 0) return Buffer.alloc(0);
    const front = this.#chunks[0];
    assert(front !== undefined);
    let out: Buffer;
    if (front.length - this.#frontOffset >= n) {
      out = front.subarray(this.#frontOffset, this.#frontOffset + n);
    } else {
      out = Buffer.allocUnsafe(n);
      this.#copyOut(out, n);
    }
    this.consume(n);
    assert(out.length === n);
    return out;
  }

  /** Copies the next n bytes into target[0..n) without consuming them. */
  #copyOut(target: Buffer, n: number): void {
    let copied = 0;
    let offset = this.#frontOffset;
    for (const chunk of this.#chunks) {
      const count = Math.min(chunk.length - offset, n - copied);
      chunk.copy(target, copied, offset, offset + count);
      copied += count;
      offset = 0;
      if (copied === n) break;
    }
    assert(copied === n);
  }
}
