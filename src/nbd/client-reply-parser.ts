/**
 * The transmission-phase reply side of the NBD client, pure like codec.ts: the `NbdReplyParser` (reply
 * bytes in, checked reply frames out) and the `ReadReplyAssembler` (the chunks of one READ put back
 * together). State it owns: the parser, the unparsed bytes of one connection and the header being
 * completed by its payload; the assembler, the covered ranges and the buffer of one READ. Callers:
 * client-connection.ts (one parser per connection, one assembler per structured READ in flight) and the
 * unit tests. No I/O: the connection feeds bytes in and acts on the frames. The fixed-header decoders
 * and the request encoders are in client-codec.ts.
 *
 * Reply parser states (one connection, after the handshake):
 *
 *   header --(16 bytes, simple magic; error, or not a READ)--> frame 'simple' --> header
 *          --(16 bytes, simple magic, READ ok, simple replies)--> simplePayload --(length bytes)--> header
 *          --(20 bytes, chunk magic, checked)--> chunkPayload --(length bytes, checked)--> frame --> header
 *   any state --(violation)--> dead: one 'protocolError' frame, then nothing
 *
 * Every check happens before a payload is buffered, so a hostile server cannot make us hold more than
 * the request it answers (plus an 8-byte offset, or a 4 KiB message). Violations, each fatal to the
 * connection: an unknown magic; a cookie not in flight (`lookup` says so); a simple reply to a READ with
 * structured replies on; NONE with data or without DONE; OFFSET_DATA or OFFSET_HOLE for a command other
 * than READ, of the wrong size, or outside the request; ERROR/ERROR_OFFSET with error 0 or a message
 * length that disagrees with the chunk; any other non-error chunk type (we never ask for block status).
 * The assembler adds the checks that need the whole reply: no overlap, full coverage when the reply
 * succeeds, and a bounded number of fragments.
 */
import { assert, assertCount } from '../assert.js';
import { nbdClientReplyFragmentsMax } from '../limits.js';
import { ByteQueue } from './byte-queue.js';
import { decodeReplyHeader, readU64 } from './client-codec.js';
import type { Cookie } from './codec.js';
import { command, magic, replyFlag, replyType, stringBytesMax, wireBytes } from './protocol.js';

/** What the reply parser must know about the request a cookie names. */
export interface PendingRequest {
  readonly type: number;
  readonly offsetBytes: number;
  readonly lengthBytes: number;
}

export type ReplyFrame =
  | ({ readonly kind: 'simple'; readonly error: number; readonly data: Buffer | undefined } & Cookie)
  | ({ readonly kind: 'data'; readonly done: boolean; readonly offsetBytes: number; readonly data: Buffer } & Cookie)
  | ({ readonly kind: 'hole'; readonly done: boolean; readonly offsetBytes: number; readonly holeBytes: number } & Cookie)
  | ({ readonly kind: 'none'; readonly done: true } & Cookie)
  | ({
      readonly kind: 'error';
      readonly done: boolean;
      readonly error: number;
      readonly message: string;
      readonly offsetBytes: number | undefined;
    } & Cookie)
  | { readonly kind: 'protocolError'; readonly message: string };

export type ReplyParserState = 'header' | 'simplePayload' | 'chunkPayload' | 'dead';

const errorChunkBit = 0x8000;
/** Fixed part of an ERROR chunk: error(4) + message length(2). */
const errorFixedBytes = 6;
/** Offset field of OFFSET_DATA, OFFSET_HOLE and ERROR_OFFSET. */
const offsetFieldBytes = 8;
const holePayloadBytes = 12;

export class NbdReplyParser {
  readonly #queue = new ByteQueue();
  readonly #structuredReplies: boolean;
  readonly #lookup: (cookie: Cookie) => PendingRequest | undefined;
  #state: ReplyParserState = 'header';
  /** The header being completed by a payload (simplePayload and chunkPayload states). */
  #cookie: Cookie = { cookieHi: 0, cookieLo: 0 };
  #request: PendingRequest = { type: 0, offsetBytes: 0, lengthBytes: 0 };
  #chunk = { flags: 0, type: 0, lengthBytes: 0 };

  constructor(options: { structuredReplies: boolean; lookup: (cookie: Cookie) => PendingRequest | undefined }) {
    this.#structuredReplies = options.structuredReplies;
    this.#lookup = options.lookup;
  }

  get state(): ReplyParserState {
    return this.#state;
  }

  /** Bytes received and not parsed yet. */
  get bufferedBytes(): number {
    return this.#queue.length;
  }

  push(chunk: Buffer): void {
    if (this.#state === 'dead') return;
    this.#queue.push(chunk);
  }

  /** The next complete frame, or undefined when more bytes are needed (or the parser is dead). */
  next(): ReplyFrame | undefined {
    switch (this.#state) {
      case 'dead':
        return undefined;
      case 'header':
        return this.#header();
      case 'simplePayload': {
        if (this.#queue.length < this.#request.lengthBytes) return undefined;
        const data = this.#queue.take(this.#request.lengthBytes);
        this.#state = 'header';
        return { kind: 'simple', ...this.#cookie, error: 0, data };
      }
      case 'chunkPayload': {
        if (this.#queue.length < this.#chunk.lengthBytes) return undefined;
        const payload = this.#queue.take(this.#chunk.lengthBytes);
        this.#state = 'header';
        return this.#chunkFrame(payload);
      }
    }
  }

  #header(): ReplyFrame | undefined {
    if (this.#queue.length < 4) return undefined;
    this.#queue.contiguous(4);
    const replyMagic = this.#queue.view.readUInt32BE(this.#queue.viewAt);
    const headerBytes = replyMagic === magic.simpleReply ? wireBytes.simpleReply : wireBytes.chunkHeader;
    if (replyMagic !== magic.simpleReply && replyMagic !== magic.structuredReply) {
      return this.#die(`unknown reply magic 0x${replyMagic.toString(16).padStart(8, '0')}`);
    }
    if (this.#queue.length < headerBytes) return undefined;
    this.#queue.contiguous(headerBytes);
    const header = decodeReplyHeader(this.#queue.view, this.#queue.viewAt);
    this.#queue.consume(headerBytes);
    assert(header !== undefined, 'the magic was checked');
    const cookie = { cookieHi: header.cookieHi, cookieLo: header.cookieLo };
    const request = this.#lookup(cookie);
    if (request === undefined) return this.#die(`reply for cookie ${cookieText(cookie)}, which is not in flight`);
    this.#cookie = cookie;
    this.#request = request;

    if (header.kind === 'simple') {
      if (header.error !== 0) return { kind: 'simple', ...cookie, error: header.error, data: undefined };
      if (request.type !== command.read) return { kind: 'simple', ...cookie, error: 0, data: undefined };
      if (this.#structuredReplies) return this.#die('simple reply to a READ after structured replies were negotiated');
      this.#state = 'simplePayload';
      return this.next();
    }

    const problem = chunkHeaderProblem({ flags: header.flags, type: header.type, lengthBytes: header.lengthBytes }, request);
    if (problem !== undefined) return this.#die(`${chunkName(header.type)} chunk for cookie ${cookieText(cookie)}: ${problem}`);
    if (!this.#structuredReplies) return this.#die('structured reply chunk although structured replies were not negotiated');
    this.#chunk = { flags: header.flags, type: header.type, lengthBytes: header.lengthBytes };
    this.#state = 'chunkPayload';
    return this.next();
  }

  #chunkFrame(payload: Buffer): ReplyFrame {
    const cookie = this.#cookie;
    const request = this.#request;
    const done = (this.#chunk.flags & replyFlag.done) !== 0;
    const type = this.#chunk.type;
    const inside = (offsetBytes: number, lengthBytes: number): boolean =>
      offsetBytes >= request.offsetBytes && offsetBytes + lengthBytes <= request.offsetBytes + request.lengthBytes;
    const name = `${chunkName(type)} chunk for cookie ${cookieText(cookie)}`;
    switch (type) {
      case replyType.none:
        return { kind: 'none', ...cookie, done: true };
      case replyType.offsetData: {
        const offsetBytes = readU64(payload, 0);
        const data = payload.subarray(offsetFieldBytes);
        if (!inside(offsetBytes, data.length)) return this.#die(`${name}: ${data.length} bytes at ${offsetBytes} lie outside the request`);
        return { kind: 'data', ...cookie, done, offsetBytes, data };
      }
      case replyType.offsetHole: {
        const offsetBytes = readU64(payload, 0);
        const holeBytes = payload.readUInt32BE(offsetFieldBytes);
        if (holeBytes === 0) return this.#die(`${name}: empty hole`);
        if (!inside(offsetBytes, holeBytes)) return this.#die(`${name}: ${holeBytes} bytes at ${offsetBytes} lie outside the request`);
        return { kind: 'hole', ...cookie, done, offsetBytes, holeBytes };
      }
      default: {
        assert((type & errorChunkBit) !== 0, 'only error chunks pass the header check');
        const error = payload.readUInt32BE(0);
        const messageBytes = payload.readUInt16BE(4);
        if (error === 0) return this.#die(`${name}: error value 0`);
        const trailerBytes = type === replyType.errorOffset ? offsetFieldBytes : 0;
        const exact = type === replyType.error || type === replyType.errorOffset;
        const fits = errorFixedBytes + messageBytes + trailerBytes;
        if (exact ? fits !== payload.length : fits > payload.length) {
          return this.#die(`${name}: message of ${messageBytes} bytes does not match the chunk length ${payload.length}`);
        }
        const message = payload.toString('utf8', errorFixedBytes, errorFixedBytes + messageBytes);
        let offsetBytes: number | undefined;
        if (type === replyType.errorOffset) {
          offsetBytes = readU64(payload, errorFixedBytes + messageBytes);
          if (!inside(offsetBytes, 1)) return this.#die(`${name}: offset ${offsetBytes} lies outside the request`);
        }
        return { kind: 'error', ...cookie, done, error, message, offsetBytes };
      }
    }
  }

  #die(message: string): ReplyFrame {
    this.#state = 'dead';
    return { kind: 'protocolError', message };
  }
}

/** Why a chunk header is unacceptable before its payload is read, or undefined. */
function chunkHeaderProblem(chunk: { flags: number; type: number; lengthBytes: number }, request: PendingRequest): string | undefined {
  const { type, lengthBytes } = chunk;
  const isRead = request.type === command.read;
  switch (type) {
    case replyType.none:
      if (lengthBytes !== 0) return `length ${lengthBytes}, expected 0`;
      if ((chunk.flags & replyFlag.done) === 0) return 'without the DONE flag';
      return undefined;
    case replyType.offsetData:
      if (!isRead) return 'for a command other than READ';
      if (lengthBytes <= offsetFieldBytes) return `length ${lengthBytes} carries no data`;
      if (lengthBytes > offsetFieldBytes + request.lengthBytes) return `length ${lengthBytes} is larger than the ${request.lengthBytes}-byte request`;
      return undefined;
    case replyType.offsetHole:
      if (!isRead) return 'for a command other than READ';
      if (lengthBytes !== holePayloadBytes) return `length ${lengthBytes}, expected ${holePayloadBytes}`;
      return undefined;
    case replyType.error:
    case replyType.errorOffset: {
      const fixed = errorFixedBytes + (type === replyType.errorOffset ? offsetFieldBytes : 0);
      if (lengthBytes < fixed || lengthBytes > fixed + stringBytesMax) return `length ${lengthBytes} outside ${fixed}..${fixed + stringBytesMax}`;
      return undefined;
    }
    default:
      if ((type & errorChunkBit) === 0) return 'unexpected chunk type';
      // An error type from a later extension: error and message first, some extra data after.
      if (lengthBytes < errorFixedBytes || lengthBytes > errorFixedBytes + stringBytesMax + offsetFieldBytes) return `length ${lengthBytes} out of bounds`;
      return undefined;
  }
}

function chunkName(type: number): string {
  const names: Record<number, string> = {
    [replyType.none]: 'NONE',
    [replyType.offsetData]: 'OFFSET_DATA',
    [replyType.offsetHole]: 'OFFSET_HOLE',
    [replyType.blockStatus]: 'BLOCK_STATUS',
    [replyType.error]: 'ERROR',
    [replyType.errorOffset]: 'ERROR_OFFSET',
  };
  return names[type] ?? `type ${type}`;
}

function cookieText(cookie: Cookie): string {
  return `0x${cookie.cookieHi.toString(16)}:${cookie.cookieLo.toString(16).padStart(8, '0')}`;
}

export type AssembledRead = { readonly data: Buffer } | { readonly problem: string };

/**
 * The pieces of one READ reply, in any order: data copied into place, holes zero-filled. Keeps the
 * covered ranges as sorted, merged, disjoint intervals, so an overlap is caught whatever the order. A
 * single chunk covering the whole request is kept as it came (no copy).
 */
export class ReadReplyAssembler {
  readonly offsetBytes: number;
  readonly lengthBytes: number;
  /** Covered [start, end) intervals relative to offsetBytes, sorted and disjoint, neighbours merged. */
  readonly #covered: { start: number; end: number }[] = [];
  #whole: Buffer | undefined;
  #buffer: Buffer | undefined;

  constructor(options: { offsetBytes: number; lengthBytes: number }) {
    assertCount(options.offsetBytes, 'offsetBytes');
    assertCount(options.lengthBytes, 'lengthBytes');
    this.offsetBytes = options.offsetBytes;
    this.lengthBytes = options.lengthBytes;
  }

  /** Bytes covered so far. */
  get coveredBytes(): number {
    return this.#covered.reduce((sum, c) => sum + (c.end - c.start), 0);
  }

  /** Adds a data piece (inside the request: the parser checked). @returns a problem, or undefined. */
  addData(offsetBytes: number, data: Buffer): string | undefined {
    const start = offsetBytes - this.offsetBytes;
    const problem = this.#cover(start, start + data.length);
    if (problem !== undefined) return problem;
    if (start === 0 && data.length === this.lengthBytes) {
      this.#whole = data;
      return undefined;
    }
    data.copy(this.#target(), start);
    return undefined;
  }

  /** Adds a hole (reads as zeroes). @returns a problem, or undefined. */
  addHole(offsetBytes: number, holeBytes: number): string | undefined {
    const start = offsetBytes - this.offsetBytes;
    const problem = this.#cover(start, start + holeBytes);
    if (problem !== undefined) return problem;
    this.#target().fill(0, start, start + holeBytes);
    return undefined;
  }

  /** The whole read, or why the reply is incomplete. Call once, after the DONE chunk of a successful reply. */
  finish(): AssembledRead {
    const only = this.#covered[0];
    const complete = this.#covered.length === 1 && only !== undefined && only.start === 0 && only.end === this.lengthBytes;
    if (this.lengthBytes > 0 && !complete) {
      return { problem: `READ reply covers ${this.coveredBytes} of ${this.lengthBytes} bytes` };
    }
    const data = this.#whole ?? this.#buffer ?? Buffer.alloc(0);
    assert(data.length === this.lengthBytes, 'an assembled read has the requested length');
    return { data };
  }

  #target(): Buffer {
    if (this.#buffer === undefined) {
      // Every byte is written before finish() returns it: coverage is complete or the read fails.
      this.#buffer = Buffer.allocUnsafe(this.lengthBytes);
      if (this.#whole !== undefined) this.#whole.copy(this.#buffer);
      this.#whole = undefined;
    }
    return this.#buffer;
  }

  #cover(start: number, end: number): string | undefined {
    assert(start >= 0 && end <= this.lengthBytes && start < end, 'the parser keeps pieces inside the request');
    const list = this.#covered;
    // First interval whose end is past start: the only candidates for overlap begin here.
    let lo = 0;
    let hi = list.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      const entry = list[mid];
      assert(entry !== undefined);
      if (entry.end <= start) lo = mid + 1;
      else hi = mid;
    }
    const next = list[lo];
    if (next !== undefined && next.start < end) {
      return `READ reply chunks overlap at ${this.offsetBytes + Math.max(start, next.start)}`;
    }
    const previous = list[lo - 1];
    const joinsPrevious = previous !== undefined && previous.end === start;
    const joinsNext = next !== undefined && next.start === end;
    if (joinsPrevious && joinsNext) {
      previous.end = next.end;
      list.splice(lo, 1);
    } else if (joinsPrevious) {
      previous.end = end;
    } else if (joinsNext) {
      next.start = start;
    } else {
      if (list.length >= nbdClientReplyFragmentsMax) return `READ reply in more than ${nbdClientReplyFragmentsMax} disjoint pieces`;
      list.splice(lo, 0, { start, end });
    }
    return undefined;
  }
}
