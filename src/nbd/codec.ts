/**
 * The NBD codec, server half: pure, no I/O. `NbdServerParser` turns whatever byte chunks the socket
 * delivers into client frames; the `encode*` functions build what the server sends. The client half
 * (what a client sends, reply header decoders) is client-codec.ts. Any split of a valid byte stream
 * parses to the same frames.
 *
 * Parser states (one connection):
 *
 *   clientFlags --(4 bytes)--> optionHeader --(16 bytes)--> optionPayload --(length bytes)--> optionHeader
 *        enterTransmission() (called by the server after GO/EXPORT_NAME succeeded)
 *   requestHeader --(28 bytes, WRITE)--> writePayload --(length bytes)--> requestHeader
 *                 --(28 bytes, WRITE over payloadBytesMax)--> skipPayload --(length bytes)--> requestHeader
 *   any state --(bad magic, option over optionBytesMax, write over skipBytesMax)--> dead
 *
 * A frame is returned only when complete, so the server never sees a half request. The parser never
 * throws on client input: a violation becomes a `protocolError` frame and the parser is dead. Offsets are
 * u64 on the wire; values past 2^53 come out imprecise but still larger than any device, so the server's
 * bounds check rejects them.
 */
import { assert, assertCount } from '../assert.js';
import { ByteQueue } from './byte-queue.js';
import { command, magic, optionBytesMax, replyFlag, replyType, wireBytes } from './protocol.js';

const twoTo32 = 0x1_0000_0000;

/** The 8-byte request cookie ("handle"), kept as two u32 halves so nothing is allocated for it. */
export interface Cookie {
  readonly cookieHi: number;
  readonly cookieLo: number;
}

export interface NbdRequest extends Cookie {
  readonly flags: number;
  readonly type: number;
  readonly offsetBytes: number;
  readonly lengthBytes: number;
  /** WRITE payload; undefined for other commands and for oversized writes whose payload was skipped. */
  readonly payload: Buffer | undefined;
  /** An oversized WRITE whose payload was read and dropped. */
  readonly payloadSkipped: boolean;
}

export type ClientFrame =
  | { readonly kind: 'clientFlags'; readonly flags: number }
  | { readonly kind: 'option'; readonly option: number; readonly payload: Buffer }
  | { readonly kind: 'request'; readonly request: NbdRequest }
  | { readonly kind: 'protocolError'; readonly message: string };

export type ParserState =
  | 'clientFlags'
  | 'optionHeader'
  | 'optionPayload'
  | 'requestHeader'
  | 'writePayload'
  | 'skipPayload'
  | 'dead';

export interface NbdServerParserOptions {
  /** Largest WRITE payload delivered to the server (requestBytesMax). */
  readonly payloadBytesMax: number;
  /** Largest oversized WRITE payload we read and drop; beyond it the connection is dropped. */
  readonly skipBytesMax: number;
  /** Largest option payload. */
  readonly optionBytesMax?: number;
}

export class NbdServerParser {
  readonly #queue = new ByteQueue();
  readonly #payloadBytesMax: number;
  readonly #skipBytesMax: number;
  readonly #optionBytesMax: number;
  #state: ParserState = 'clientFlags';
  #option = 0;
  #optionLength = 0;
  #pending: Omit<NbdRequest, 'payload' | 'payloadSkipped'> | undefined;
  #skipLeft = 0;

  constructor(options: NbdServerParserOptions) {
    assertCount(options.payloadBytesMax, 'payloadBytesMax');
    assert(options.skipBytesMax >= options.payloadBytesMax);
    this.#payloadBytesMax = options.payloadBytesMax;
    this.#skipBytesMax = options.skipBytesMax;
    this.#optionBytesMax = options.optionBytesMax ?? optionBytesMax;
  }

  get state(): ParserState {
    return this.#state;
  }

  /** Bytes received and not yet parsed. */
  get bufferedBytes(): number {
    return this.#queue.length;
  }

  push(chunk: Buffer): void {
    if (this.#state === 'dead') return;
    this.#queue.push(chunk);
  }

  /** Switches from options to requests; the server calls it once the client has chosen an export. */
  enterTransmission(): void {
    assert(this.#state === 'optionHeader', `enterTransmission in state ${this.#state}`);
    this.#state = 'requestHeader';
  }

  /** The next complete frame, or undefined when more bytes are needed (or the parser is dead). */
  next(): ClientFrame | undefined {
    for (;;) {
      switch (this.#state) {
        case 'dead':
          return undefined;
        case 'clientFlags': {
          if (this.#queue.length < wireBytes.clientFlags) return undefined;
          this.#queue.contiguous(wireBytes.clientFlags);
          const flags = this.#queue.view.readUInt32BE(this.#queue.viewAt);
          this.#queue.consume(wireBytes.clientFlags);
          this.#state = 'optionHeader';
          return { kind: 'clientFlags', flags };
        }
        case 'optionHeader': {
          if (this.#queue.length < wireBytes.optionHeader) return undefined;
          this.#queue.contiguous(wireBytes.optionHeader);
          const { view, viewAt } = this.#queue;
          const hi = view.readUInt32BE(viewAt);
          const lo = view.readUInt32BE(viewAt + 4);
          this.#option = view.readUInt32BE(viewAt + 8);
          this.#optionLength = view.readUInt32BE(viewAt + 12);
          this.#queue.consume(wireBytes.optionHeader);
          if (hi !== magic.iHaveOptHi || lo !== magic.iHaveOptLo) return this.#die('bad option magic');
          if (this.#optionLength > this.#optionBytesMax) {
            return this.#die(`option ${this.#option} length ${this.#optionLength} over ${this.#optionBytesMax}`);
          }
          this.#state = 'optionPayload';
          continue;
        }
        case 'optionPayload': {
          if (this.#queue.length < this.#optionLength) return undefined;
          const payload = this.#queue.take(this.#optionLength);
          this.#state = 'optionHeader';
          assert(payload.length === this.#optionLength);
          return { kind: 'option', option: this.#option, payload };
        }
        case 'requestHeader': {
          if (this.#queue.length < wireBytes.request) return undefined;
          this.#queue.contiguous(wireBytes.request);
          const { view, viewAt } = this.#queue;
          const requestMagic = view.readUInt32BE(viewAt);
          const request = {
            flags: view.readUInt16BE(viewAt + 4),
            type: view.readUInt16BE(viewAt + 6),
            cookieHi: view.readUInt32BE(viewAt + 8),
            cookieLo: view.readUInt32BE(viewAt + 12),
            offsetBytes: view.readUInt32BE(viewAt + 16) * twoTo32 + view.readUInt32BE(viewAt + 20),
            lengthBytes: view.readUInt32BE(viewAt + 24),
          };
          this.#queue.consume(wireBytes.request);
          if (requestMagic !== magic.request) return this.#die(`bad request magic 0x${requestMagic.toString(16)}`);
          if (request.type !== command.write) return requestFrame(request, undefined, false);
          if (request.lengthBytes > this.#skipBytesMax) {
            return this.#die(`write of ${request.lengthBytes} bytes is too large to skip`);
          }
          this.#pending = request;
          if (request.lengthBytes > this.#payloadBytesMax) {
            this.#skipLeft = request.lengthBytes;
            this.#state = 'skipPayload';
          } else {
            this.#state = 'writePayload';
          }
          continue;
        }
        case 'writePayload': {
          const pending = this.#pending;
          assert(pending !== undefined);
          if (this.#queue.length < pending.lengthBytes) return undefined;
          const payload = this.#queue.take(pending.lengthBytes);
          this.#pending = undefined;
          this.#state = 'requestHeader';
          return requestFrame(pending, payload, false);
        }
        case 'skipPayload': {
          const pending = this.#pending;
          assert(pending !== undefined);
          this.#skipLeft -= this.#queue.consume(Math.min(this.#skipLeft, this.#queue.length));
          if (this.#skipLeft > 0) return undefined;
          this.#pending = undefined;
          this.#state = 'requestHeader';
          return requestFrame(pending, undefined, true);
        }
      }
    }
  }

  #die(message: string): ClientFrame {
    this.#state = 'dead';
    return { kind: 'protocolError', message };
  }
}

function requestFrame(
  header: Omit<NbdRequest, 'payload' | 'payloadSkipped'>,
  payload: Buffer | undefined,
  payloadSkipped: boolean,
): ClientFrame {
  // Spelled out rather than spread: one object of one shape per request, built without a copy loop.
  const request: NbdRequest = {
    flags: header.flags,
    type: header.type,
    cookieHi: header.cookieHi,
    cookieLo: header.cookieLo,
    offsetBytes: header.offsetBytes,
    lengthBytes: header.lengthBytes,
    payload,
    payloadSkipped,
  };
  assertRequest(request);
  return { kind: 'request', request };
}

/** Invariants of a decoded request (checked after decode and again before its reply). */
export function assertRequest(request: NbdRequest): void {
  assert(request.flags >= 0 && request.flags <= 0xffff);
  assert(request.type >= 0 && request.type <= 0xffff);
  assert(request.cookieHi >= 0 && request.cookieHi < twoTo32 && request.cookieLo >= 0 && request.cookieLo < twoTo32);
  assert(Number.isFinite(request.offsetBytes) && request.offsetBytes >= 0);
  assert(Number.isSafeInteger(request.lengthBytes) && request.lengthBytes >= 0 && request.lengthBytes < twoTo32);
  if (request.payload !== undefined) {
    assert(request.type === command.write, 'only WRITE carries a payload');
    assert(request.payload.length === request.lengthBytes, 'payload length matches the header');
    assert(!request.payloadSkipped);
  }
  if (request.payloadSkipped) assert(request.type === command.write && request.payload === undefined);
}

// ---------------------------------------------------------------------------------------------------------
// Server -> client encoders.

export function encodeGreeting(handshakeFlags: number): Buffer {
  const out = Buffer.allocUnsafe(wireBytes.greeting);
  out.writeUInt32BE(magic.nbdMagicHi, 0);
  out.writeUInt32BE(magic.nbdMagicLo, 4);
  out.writeUInt32BE(magic.iHaveOptHi, 8);
  out.writeUInt32BE(magic.iHaveOptLo, 12);
  out.writeUInt16BE(handshakeFlags, 16);
  return out;
}

export interface OptionReply {
  readonly option: number;
  readonly replyType: number;
  readonly payload?: Buffer;
}

export function encodeOptionReply(reply: OptionReply): Buffer {
  const payloadBytes = reply.payload?.length ?? 0;
  const out = Buffer.allocUnsafe(wireBytes.optionReplyHeader + payloadBytes);
  out.writeUInt32BE(magic.optionReplyHi, 0);
  out.writeUInt32BE(magic.optionReplyLo, 4);
  out.writeUInt32BE(reply.option, 8);
  out.writeUInt32BE(reply.replyType, 12);
  out.writeUInt32BE(payloadBytes, 16);
  reply.payload?.copy(out, wireBytes.optionReplyHeader);
  return out;
}

/** NBD_REP_SERVER payload: name length, name, then the optional description. */
export function encodeServerEntry(name: string, description: string): Buffer {
  const nameBytes = Buffer.from(name, 'utf8');
  const descriptionBytes = Buffer.from(description, 'utf8');
  const out = Buffer.allocUnsafe(4 + nameBytes.length + descriptionBytes.length);
  out.writeUInt32BE(nameBytes.length, 0);
  nameBytes.copy(out, 4);
  descriptionBytes.copy(out, 4 + nameBytes.length);
  return out;
}

export function encodeInfoExport(sizeBytes: number, transmissionFlags: number): Buffer {
  assertCount(sizeBytes, 'sizeBytes');
  const out = Buffer.allocUnsafe(12);
  out.writeUInt16BE(0, 0);
  writeU64(out, 2, sizeBytes);
  out.writeUInt16BE(transmissionFlags, 10);
  return out;
}

export interface BlockSizes {
  readonly minimumBytes: number;
  readonly preferredBytes: number;
  readonly maximumBytes: number;
}

export function encodeInfoBlockSize(sizes: BlockSizes): Buffer {
  assert(sizes.minimumBytes <= sizes.preferredBytes && sizes.preferredBytes <= sizes.maximumBytes);
  const out = Buffer.allocUnsafe(14);
  out.writeUInt16BE(3, 0);
  out.writeUInt32BE(sizes.minimumBytes, 2);
  out.writeUInt32BE(sizes.preferredBytes, 6);
  out.writeUInt32BE(sizes.maximumBytes, 10);
  return out;
}

/** NBD_INFO_NAME (1) or NBD_INFO_DESCRIPTION (2): type then the string. */
export function encodeInfoString(infoType: number, text: string): Buffer {
  const textBytes = Buffer.from(text, 'utf8');
  const out = Buffer.allocUnsafe(2 + textBytes.length);
  out.writeUInt16BE(infoType, 0);
  textBytes.copy(out, 2);
  return out;
}

export function encodeMetaContextEntry(contextId: number, name: string): Buffer {
  const nameBytes = Buffer.from(name, 'utf8');
  const out = Buffer.allocUnsafe(4 + nameBytes.length);
  out.writeUInt32BE(contextId, 0);
  nameBytes.copy(out, 4);
  return out;
}

/** Reply to NBD_OPT_EXPORT_NAME: size, transmission flags, and 124 zero bytes unless NO_ZEROES. */
export function encodeExportNameReply(options: { sizeBytes: number; transmissionFlags: number; zeroes: boolean }): Buffer {
  const out = Buffer.alloc(wireBytes.exportNameReply + (options.zeroes ? wireBytes.exportNameZeroes : 0));
  writeU64(out, 0, options.sizeBytes);
  out.writeUInt16BE(options.transmissionFlags, 8);
  return out;
}

export function encodeSimpleReply(cookie: Cookie, error: number): Buffer {
  const out = Buffer.allocUnsafe(wireBytes.simpleReply);
  out.writeUInt32BE(magic.simpleReply, 0);
  out.writeUInt32BE(error, 4);
  out.writeUInt32BE(cookie.cookieHi, 8);
  out.writeUInt32BE(cookie.cookieLo, 12);
  return out;
}

function writeChunkHeader(out: Buffer, chunk: { cookie: Cookie; flags: number; type: number; lengthBytes: number }): void {
  out.writeUInt32BE(magic.structuredReply, 0);
  out.writeUInt16BE(chunk.flags, 4);
  out.writeUInt16BE(chunk.type, 6);
  out.writeUInt32BE(chunk.cookie.cookieHi, 8);
  out.writeUInt32BE(chunk.cookie.cookieLo, 12);
  out.writeUInt32BE(chunk.lengthBytes, 16);
}

/** NBD_REPLY_TYPE_NONE with DONE: the final chunk of a successful structured reply. */
export function encodeChunkNone(cookie: Cookie): Buffer {
  const out = Buffer.allocUnsafe(wireBytes.chunkHeader);
  writeChunkHeader(out, { cookie, flags: replyFlag.done, type: replyType.none, lengthBytes: 0 });
  return out;
}

/** Header of an OFFSET_DATA chunk (chunk header + offset); the data follows separately (no copy). */
export function encodeChunkOffsetDataHeader(options: {
  cookie: Cookie;
  offsetBytes: number;
  dataBytes: number;
  done: boolean;
}): Buffer {
  assert(options.dataBytes > 0, 'OFFSET_DATA carries at least one byte');
  const out = Buffer.allocUnsafe(wireBytes.chunkHeader + 8);
  writeChunkHeader(out, {
    cookie: options.cookie,
    flags: options.done ? replyFlag.done : 0,
    type: replyType.offsetData,
    lengthBytes: 8 + options.dataBytes,
  });
  writeU64(out, wireBytes.chunkHeader, options.offsetBytes);
  return out;
}

export function encodeChunkOffsetHole(options: { cookie: Cookie; offsetBytes: number; holeBytes: number; done: boolean }): Buffer {
  assert(options.holeBytes > 0, 'a hole is at least one byte');
  const out = Buffer.allocUnsafe(wireBytes.chunkHeader + 12);
  writeChunkHeader(out, {
    cookie: options.cookie,
    flags: options.done ? replyFlag.done : 0,
    type: replyType.offsetHole,
    lengthBytes: 12,
  });
  writeU64(out, wireBytes.chunkHeader, options.offsetBytes);
  out.writeUInt32BE(options.holeBytes, wireBytes.chunkHeader + 8);
  return out;
}

export interface BlockStatusDescriptor {
  readonly lengthBytes: number;
  readonly flags: number;
}

export function encodeChunkBlockStatus(options: {
  cookie: Cookie;
  contextId: number;
  descriptors: readonly BlockStatusDescriptor[];
  done: boolean;
}): Buffer {
  assert(options.descriptors.length > 0, 'block status carries at least one descriptor');
  const payloadBytes = 4 + 8 * options.descriptors.length;
  const out = Buffer.allocUnsafe(wireBytes.chunkHeader + payloadBytes);
  writeChunkHeader(out, {
    cookie: options.cookie,
    flags: options.done ? replyFlag.done : 0,
    type: replyType.blockStatus,
    lengthBytes: payloadBytes,
  });
  out.writeUInt32BE(options.contextId, wireBytes.chunkHeader);
  let at = wireBytes.chunkHeader + 4;
  for (const descriptor of options.descriptors) {
    assert(descriptor.lengthBytes > 0 && descriptor.lengthBytes < twoTo32, 'descriptor length is a nonzero u32');
    out.writeUInt32BE(descriptor.lengthBytes, at);
    out.writeUInt32BE(descriptor.flags >>> 0, at + 4);
    at += 8;
  }
  return out;
}

/** NBD_REPLY_TYPE_ERROR, or ERROR_OFFSET when offsetBytes is given. The message is cut to fit 16 bits. */
export function encodeChunkError(options: {
  cookie: Cookie;
  error: number;
  message: string;
  offsetBytes?: number;
  done: boolean;
}): Buffer {
  assert(options.error !== 0, 'an error chunk carries a nonzero error');
  let messageBytes = Buffer.from(options.message, 'utf8');
  if (messageBytes.length > 4096) messageBytes = messageBytes.subarray(0, 4096);
  const withOffset = options.offsetBytes !== undefined;
  const payloadBytes = 6 + messageBytes.length + (withOffset ? 8 : 0);
  const out = Buffer.allocUnsafe(wireBytes.chunkHeader + payloadBytes);
  writeChunkHeader(out, {
    cookie: options.cookie,
    flags: options.done ? replyFlag.done : 0,
    type: withOffset ? replyType.errorOffset : replyType.error,
    lengthBytes: payloadBytes,
  });
  out.writeUInt32BE(options.error, wireBytes.chunkHeader);
  out.writeUInt16BE(messageBytes.length, wireBytes.chunkHeader + 4);
  messageBytes.copy(out, wireBytes.chunkHeader + 6);
  if (options.offsetBytes !== undefined) {
    writeU64(out, wireBytes.chunkHeader + 6 + messageBytes.length, options.offsetBytes);
  }
  return out;
}

/** Writes a u64 (a safe integer) big-endian at `at`. */
export function writeU64(out: Buffer, at: number, value: number): void {
  assert(Number.isSafeInteger(value) && value >= 0, `u64 value ${value}`);
  out.writeUInt32BE(Math.floor(value / twoTo32), at);
  out.writeUInt32BE(value % twoTo32, at + 4);
}
