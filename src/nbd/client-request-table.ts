/**
 * The in-flight bookkeeping of one NBD client connection (client-connection.ts is its only caller).
 * State it owns: the in-flight table (cookie -> request, at most `inFlightMax` requests and
 * `inFlightBytesMax` payload bytes, except that one request always fits when nothing is in flight), the
 * running byte count, the cookie counter, and the FIFO of requests waiting for room (at most
 * nbdClientWaitingMax). No I/O and no timers of its own: the connection sends, arms the per-request
 * timer (kept in the record so that release can clear it) and settles the promises.
 *
 * Admission is strict FIFO: a request waits while any other waits, and the head of the queue waits for
 * room even when a smaller request behind it would fit.
 */
import { assert } from '../assert.js';
import type { BlockError } from '../errors.js';
import { nbdClientWaitingMax } from '../limits.js';
import type { ReadReplyAssembler, PendingRequest } from './client-reply-parser.js';
import type { Cookie } from './codec.js';

/** One request sent and not yet answered. */
export interface InFlight extends PendingRequest {
  readonly cookieLo: number;
  readonly payloadBytes: number;
  readonly resolve: (data: Buffer | undefined) => void;
  readonly reject: (err: BlockError) => void;
  readonly assembler: ReadReplyAssembler | undefined;
  timer: NodeJS.Timeout | undefined;
  /** The first error chunk of a structured reply; the request fails with it at DONE. */
  error: { readonly value: number; readonly message: string } | undefined;
}

/** One request waiting for room; `send` registers it in flight (through `add`) and writes it. */
export interface Waiter {
  readonly payloadBytes: number;
  readonly send: () => void;
  readonly reject: (err: BlockError) => void;
}

export class ClientRequestTable {
  readonly #inFlightMax: number;
  readonly #inFlightBytesMax: number;
  readonly #inFlight = new Map<number, InFlight>();
  readonly #waiting: Waiter[] = [];
  #inFlightBytes = 0;
  #nextCookie = 1;

  constructor(options: { inFlightMax: number; inFlightBytesMax: number }) {
    this.#inFlightMax = options.inFlightMax;
    this.#inFlightBytesMax = options.inFlightBytesMax;
  }

  /** Requests sent and not yet answered. */
  get inFlightCount(): number {
    return this.#inFlight.size;
  }

  /** Nothing in flight and nothing waiting. */
  get idle(): boolean {
    return this.#inFlight.size === 0 && this.#waiting.length === 0;
  }

  /**
   * Sends `waiter` now when nothing waits and it fits, else queues it. @returns false (and does nothing)
   * when nbdClientWaitingMax requests are waiting already: the caller fails the request.
   */
  admit(waiter: Waiter): boolean {
    if (this.#waiting.length === 0 && this.#fits(waiter.payloadBytes)) {
      waiter.send();
    } else if (this.#waiting.length >= nbdClientWaitingMax) {
      return false;
    } else {
      this.#waiting.push(waiter);
    }
    return true;
  }

  /** Registers a request in flight under a fresh cookie. @returns its record. */
  add(fields: Omit<InFlight, 'cookieLo'>): InFlight {
    const record: InFlight = { cookieLo: this.#allocateCookie(), ...fields };
    this.#inFlight.set(record.cookieLo, record);
    this.#inFlightBytes += record.payloadBytes;
    assert(this.#inFlight.size <= this.#inFlightMax, 'in-flight requests stay within inFlightMax');
    return record;
  }

  /** The request a reply cookie names, if it is in flight (what the reply parser's `lookup` asks). */
  lookup(cookie: Cookie): InFlight | undefined {
    if (cookie.cookieHi !== 0) return undefined;
    return this.#inFlight.get(cookie.cookieLo);
  }

  /** Frees the slot of a completed request (clearing its timer) and sends the waiters that now fit. */
  release(record: InFlight): void {
    const removed = this.#inFlight.delete(record.cookieLo);
    assert(removed, 'a request completes once');
    if (record.timer !== undefined) clearTimeout(record.timer);
    this.#inFlightBytes -= record.payloadBytes;
    assert(this.#inFlightBytes >= 0, 'in-flight bytes never go negative');
    // FIFO: the head waits for room even when a smaller request behind it would fit.
    for (let head = this.#waiting[0]; head !== undefined && this.#fits(head.payloadBytes); head = this.#waiting[0]) {
      this.#waiting.shift();
      head.send();
    }
  }

  /** Empties the table (the connection failed): @returns what was in flight and what was waiting. */
  takeAll(): { inFlight: InFlight[]; waiting: Waiter[] } {
    const inFlight = [...this.#inFlight.values()];
    this.#inFlight.clear();
    this.#inFlightBytes = 0;
    return { inFlight, waiting: this.#waiting.splice(0) };
  }

  #fits(payloadBytes: number): boolean {
    if (this.#inFlight.size >= this.#inFlightMax) return false;
    return this.#inFlight.size === 0 || this.#inFlightBytes + payloadBytes <= this.#inFlightBytesMax;
  }

  #allocateCookie(): number {
    for (;;) {
      const cookie = this.#nextCookie;
      this.#nextCookie = cookie >= 0xffffffff ? 1 : cookie + 1;
      if (!this.#inFlight.has(cookie)) return cookie;
    }
  }
}
