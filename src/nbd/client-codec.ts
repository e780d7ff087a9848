/**
 * The client half of the NBD codec, pure like codec.ts: what a client sends (client flags, options,
 * requests) and decoders for the fixed reply headers it receives. Holds no state. Used by the raw-socket
 * tests, by the NBD client (client-handshake.ts, client-connection.ts) and by the transmission-phase reply
 * parser (client-reply-parser.ts), which turns reply bytes into checked frames. No I/O.
 */
import { assert } from '../assert.js';
import { type Cookie, writeU64 } from './codec.js';
import { magic, wireBytes } from './protocol.js';

const twoTo32 = 0x1_0000_0000;

export function encodeClientFlags(flags: number): Buffer {
  const out = Buffer.allocUnsafe(4);
  out.writeUInt32BE(flags >>> 0, 0);
  return out;
}

export function encodeOption(optionCode: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const out = Buffer.allocUnsafe(wireBytes.optionHeader + payload.length);
  out.writeUInt32BE(magic.iHaveOptHi, 0);
  out.writeUInt32BE(magic.iHaveOptLo, 4);
  out.writeUInt32BE(optionCode, 8);
  out.writeUInt32BE(payload.length, 12);
  payload.copy(out, wireBytes.optionHeader);
  return out;
}

/** INFO/GO payload: name length, name, count of info requests, the u16 requests. */
export function encodeGoPayload(name: string, infoRequests: readonly number[]): Buffer {
  const nameBytes = Buffer.from(name, 'utf8');
  const out = Buffer.allocUnsafe(4 + nameBytes.length + 2 + 2 * infoRequests.length);
  out.writeUInt32BE(nameBytes.length, 0);
  nameBytes.copy(out, 4);
  out.writeUInt16BE(infoRequests.length, 4 + nameBytes.length);
  infoRequests.forEach((request, index) => out.writeUInt16BE(request, 6 + nameBytes.length + 2 * index));
  return out;
}

/** LIST/SET_META_CONTEXT payload: export name, count of queries, each query with its length. */
export function encodeMetaContextPayload(name: string, queries: readonly string[]): Buffer {
  const parts: Buffer[] = [];
  const nameBytes = Buffer.from(name, 'utf8');
  const head = Buffer.allocUnsafe(4);
  head.writeUInt32BE(nameBytes.length, 0);
  parts.push(head, nameBytes);
  const count = Buffer.allocUnsafe(4);
  count.writeUInt32BE(queries.length, 0);
  parts.push(count);
  for (const query of queries) {
    const queryBytes = Buffer.from(query, 'utf8');
    const length = Buffer.allocUnsafe(4);
    length.writeUInt32BE(queryBytes.length, 0);
    parts.push(length, queryBytes);
  }
  return Buffer.concat(parts);
}

export interface RequestHeader extends Cookie {
  readonly flags: number;
  readonly type: number;
  readonly offsetBytes: number;
  readonly lengthBytes: number;
}

export function encodeRequest(request: RequestHeader, payload?: Buffer): Buffer {
  const out = Buffer.allocUnsafe(wireBytes.request + (payload?.length ?? 0));
  out.writeUInt32BE(magic.request, 0);
  out.writeUInt16BE(request.flags, 4);
  out.writeUInt16BE(request.type, 6);
  out.writeUInt32BE(request.cookieHi, 8);
  out.writeUInt32BE(request.cookieLo, 12);
  writeU64(out, 16, request.offsetBytes);
  out.writeUInt32BE(request.lengthBytes, 24);
  payload?.copy(out, wireBytes.request);
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// Client-side decoders of fixed reply headers (tests, and the NBD client leg).

export interface OptionReplyHeader {
  readonly option: number;
  readonly replyType: number;
  readonly lengthBytes: number;
}

/** Decodes a 20-byte option reply header; undefined when the magic is wrong. */
export function decodeOptionReplyHeader(buf: Buffer, at = 0): OptionReplyHeader | undefined {
  assert(buf.length - at >= wireBytes.optionReplyHeader);
  if (buf.readUInt32BE(at) !== magic.optionReplyHi || buf.readUInt32BE(at + 4) !== magic.optionReplyLo) return undefined;
  return { option: buf.readUInt32BE(at + 8), replyType: buf.readUInt32BE(at + 12), lengthBytes: buf.readUInt32BE(at + 16) };
}

export type ReplyHeader =
  | ({ readonly kind: 'simple'; readonly error: number } & Cookie)
  | ({ readonly kind: 'chunk'; readonly flags: number; readonly type: number; readonly lengthBytes: number } & Cookie);

/** Decodes a simple reply (16 bytes) or chunk header (20 bytes); undefined on a bad magic. */
export function decodeReplyHeader(buf: Buffer, at = 0): ReplyHeader | undefined {
  assert(buf.length - at >= wireBytes.simpleReply);
  const replyMagic = buf.readUInt32BE(at);
  if (replyMagic === magic.simpleReply) {
    return { kind: 'simple', error: buf.readUInt32BE(at + 4), cookieHi: buf.readUInt32BE(at + 8), cookieLo: buf.readUInt32BE(at + 12) };
  }
  if (replyMagic === magic.structuredReply) {
    assert(buf.length - at >= wireBytes.chunkHeader);
    return {
      kind: 'chunk',
      flags: buf.readUInt16BE(at + 4),
      type: buf.readUInt16BE(at + 6),
      cookieHi: buf.readUInt32BE(at + 8),
      cookieLo: buf.readUInt32BE(at + 12),
      lengthBytes: buf.readUInt32BE(at + 16),
    };
  }
  return undefined;
}

export function readU64(buf: Buffer, at: number): number {
  return buf.readUInt32BE(at) * twoTo32 + buf.readUInt32BE(at + 4);
}
