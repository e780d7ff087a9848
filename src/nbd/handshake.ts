/**
 * The fixed-newstyle option haggling of one connection, with no I/O: each client option goes in, the
 * bytes to send and what to do next come out. The connection calls `handleClientFlags` once, then
 * `handleOption` for every option, in order, and sends the replies before reading the next option.
 *
 *   option               reply
 *   EXPORT_NAME          size + flags (+124 zeroes) and transmission; unknown export: hard disconnect
 *   ABORT                ACK, then close
 *   LIST                 one SERVER per export, ACK (payload must be empty: ERR_INVALID)
 *   INFO / GO            INFO_EXPORT always; NAME, DESCRIPTION, BLOCK_SIZE when asked (BLOCK_SIZE also
 *                        when the minimum is above 1); ACK; GO then enters transmission.
 *                        Unknown export: ERR_UNKNOWN; malformed: ERR_INVALID
 *   STRUCTURED_REPLY     ACK (payload must be empty)
 *   LIST/SET_META_CTX    META_CONTEXT per match, ACK; needs structured replies (ERR_INVALID)
 *   STARTTLS             TLS off: ERR_UNSUP (the spec's NOTLS mode, as nbdkit without TLS). TLS on or
 *                        required: ACK and 'startTls' (the connection upgrades the socket); once TLS
 *                        runs: ERR_INVALID. Payload: ERR_INVALID.
 *   anything else        ERR_UNSUP
 *
 * TLS required (FORCEDTLS), before STARTTLS: ABORT is ACKed, EXPORT_NAME closes the connection, and
 * every other option answers ERR_TLS_REQD without looking at its payload, so no export name, size,
 * description or context leaves the server in plaintext. After STARTTLS the haggling starts again
 * (the spec: the server MUST NOT keep STRUCTURED_REPLY or SET_META_CONTEXT sent before it).
 *
 * Admission: GO and EXPORT_NAME ask `admit(export)` first (the server's per-export connection bound):
 * a refusal answers GO with ERR_POLICY and the reason, and closes an EXPORT_NAME connection (that
 * option cannot answer an error).
 *
 * A client that did not set FIXED_NEWSTYLE may only send EXPORT_NAME; anything else closes the
 * connection (plain newstyle has no way to report an error). Unknown client flags close it too. With
 * TLS required such a client is closed at once: it can never send STARTTLS.
 */
import { assert } from '../assert.js';
import { requestBytesMax } from '../limits.js';
import {
  type BlockSizes,
  encodeExportNameReply,
  encodeInfoBlockSize,
  encodeInfoExport,
  encodeInfoString,
  encodeMetaContextEntry,
  encodeOptionReply,
  encodeServerEntry,
} from './codec.js';
import { contextsOf, type ExportResolver, matchContexts, type NbdExport, type NbdMetaContext } from './nbd-export.js';
import type { NbdTlsMode } from './server-tls.js';
import {
  clientFlag,
  clientFlagsKnown,
  info,
  infoRequestsMax,
  metaQueriesMax,
  option,
  optionReply,
  optionsPerConnectionMax,
  stringBytesMax,
  transmissionFlag,
} from './protocol.js';

export const preferredBlockBytes = 4096;

/** What the handshake learned, handed to transmission. */
export interface Negotiated {
  readonly nbdExport: NbdExport;
  readonly transmissionFlags: number;
  readonly structuredReplies: boolean;
  /** Selected contexts with their ids, in id order. */
  readonly contexts: readonly { readonly id: number; readonly context: NbdMetaContext }[];
  readonly blockSizes: BlockSizes;
}

export type HandshakeStep =
  | { readonly next: 'continue'; readonly replies: readonly Buffer[] }
  /** Write the replies (the STARTTLS ACK), then start the TLS handshake; nothing is read in between. */
  | { readonly next: 'startTls'; readonly replies: readonly Buffer[] }
  | { readonly next: 'close'; readonly replies: readonly Buffer[]; readonly reason: string }
  | { readonly next: 'transmission'; readonly replies: readonly Buffer[]; readonly negotiated: Negotiated };

export interface HandshakeSessionOptions {
  /** 'off' unless the server holds TLS credentials. */
  readonly tlsMode?: NbdTlsMode;
  /** Asked before GO/EXPORT_NAME enters transmission: undefined admits, a string is why not. */
  readonly admit?: (nbdExport: NbdExport) => string | undefined;
}

export class HandshakeSession {
  readonly #resolver: ExportResolver;
  readonly #tlsMode: NbdTlsMode;
  readonly #admit: (nbdExport: NbdExport) => string | undefined;
  /** STARTTLS was acknowledged: everything after it travels inside TLS. */
  #tlsStarted = false;
  #fixedNewstyle = false;
  #noZeroes = false;
  #structuredReplies = false;
  #optionCount = 0;
  /** SET_META_CONTEXT result: which export it was for and what it selected. */
  #selection: { nbdExport: NbdExport; ids: readonly number[] } | undefined;

  constructor(resolver: ExportResolver, options: HandshakeSessionOptions = {}) {
    this.#resolver = resolver;
    this.#tlsMode = options.tlsMode ?? 'off';
    this.#admit = options.admit ?? (() => undefined);
  }

  /** True once STARTTLS was acknowledged. */
  get tlsStarted(): boolean {
    return this.#tlsStarted;
  }

  /** @returns an error reason when the flags are unacceptable (the connection then closes). */
  handleClientFlags(flags: number): string | undefined {
    if ((flags & ~clientFlagsKnown) !== 0) return `unknown client flags 0x${flags.toString(16)}`;
    this.#fixedNewstyle = (flags & clientFlag.fixedNewstyle) !== 0;
    this.#noZeroes = (flags & clientFlag.noZeroes) !== 0;
    if (this.#tlsMode === 'require' && !this.#fixedNewstyle) return 'TLS is required and the client cannot negotiate it (no FIXED_NEWSTYLE)';
    return undefined;
  }

  handleOption(code: number, payload: Buffer): HandshakeStep {
    this.#optionCount += 1;
    if (this.#optionCount > optionsPerConnectionMax) return close(`more than ${optionsPerConnectionMax} options`);
    if (!this.#fixedNewstyle && code !== option.exportName) {
      return close(`option ${code} from a client without FIXED_NEWSTYLE`);
    }
    if (code === option.startTls) return this.#startTls(payload);
    if (this.#tlsMode === 'require' && !this.#tlsStarted) return this.#beforeTls(code);
    switch (code) {
      case option.exportName:
        return this.#exportName(payload);
      case option.abort:
        return { next: 'close', replies: [ack(code)], reason: 'client aborted' };
      case option.list:
        return this.#list(payload);
      case option.info:
      case option.go:
        return this.#infoOrGo(code, payload);
      case option.structuredReply:
        if (payload.length !== 0) return proceed(error(code, optionReply.errInvalid, 'STRUCTURED_REPLY takes no data'));
        this.#structuredReplies = true;
        return proceed(ack(code));
      case option.listMetaContext:
      case option.setMetaContext:
        return this.#metaContext(code, payload);
      default:
        return proceed(error(code, optionReply.errUnsup, `option ${code} is not supported`));
    }
  }

  #startTls(payload: Buffer): HandshakeStep {
    const code = option.startTls;
    if (payload.length !== 0) return proceed(error(code, optionReply.errInvalid, 'STARTTLS takes no data'));
    if (this.#tlsMode === 'off') return proceed(error(code, optionReply.errUnsup, 'TLS is not supported by this server'));
    if (this.#tlsStarted) return proceed(error(code, optionReply.errInvalid, 'TLS is already running'));
    this.#tlsStarted = true;
    // The spec: nothing negotiated before STARTTLS survives it (a man in the middle could have sent it).
    this.#structuredReplies = false;
    this.#selection = undefined;
    return { next: 'startTls', replies: [ack(code)] };
  }

  /** FORCEDTLS before STARTTLS: only ABORT works; nothing about the exports is told. */
  #beforeTls(code: number): HandshakeStep {
    assert(this.#tlsMode === 'require' && !this.#tlsStarted);
    switch (code) {
      case option.abort:
        return { next: 'close', replies: [ack(code)], reason: 'client aborted' };
      case option.exportName:
        return close('EXPORT_NAME before STARTTLS, and TLS is required');
      default:
        return proceed(error(code, optionReply.errTlsReqd, 'TLS is required: send NBD_OPT_STARTTLS first'));
    }
  }

  #exportName(payload: Buffer): HandshakeStep {
    if (payload.length > stringBytesMax) return close('export name too long');
    const nbdExport = this.#resolver.get(payload.toString('utf8'));
    if (nbdExport === undefined) return close(`unknown export "${payload.toString('utf8')}"`);
    const refused = this.#admit(nbdExport);
    if (refused !== undefined) return close(refused);
    const negotiated = this.#negotiate(nbdExport);
    const reply = encodeExportNameReply({
      sizeBytes: nbdExport.device.sizeBytes,
      transmissionFlags: negotiated.transmissionFlags,
      zeroes: !this.#noZeroes,
    });
    return { next: 'transmission', replies: [reply], negotiated };
  }

  #list(payload: Buffer): HandshakeStep {
    const code = option.list;
    if (payload.length !== 0) return proceed(error(code, optionReply.errInvalid, 'LIST takes no data'));
    const replies = this.#resolver
      .list()
      .map((e) => encodeOptionReply({ option: code, replyType: optionReply.server, payload: encodeServerEntry(e.name, e.description ?? '') }));
    return { next: 'continue', replies: [...replies, ack(code)] };
  }

  #infoOrGo(code: number, payload: Buffer): HandshakeStep {
    const reader = new PayloadReader(payload);
    const name = reader.string();
    const count = reader.u16();
    if (name === undefined || count === undefined || count > infoRequestsMax) {
      return proceed(error(code, optionReply.errInvalid, 'malformed INFO/GO request'));
    }
    const requests: number[] = [];
    for (let i = 0; i < count; i++) {
      const request = reader.u16();
      if (request === undefined) return proceed(error(code, optionReply.errInvalid, 'truncated INFO/GO request list'));
      requests.push(request);
    }
    if (!reader.done) return proceed(error(code, optionReply.errInvalid, 'trailing bytes in INFO/GO request'));
    const nbdExport = this.#resolver.get(name);
    if (nbdExport === undefined) return proceed(error(code, optionReply.errUnknown, `unknown export "${name}"`));
    if (code === option.go) {
      const refused = this.#admit(nbdExport);
      if (refused !== undefined) return proceed(error(code, optionReply.errPolicy, refused));
    }

    const negotiated = this.#negotiate(nbdExport);
    const infoReply = (data: Buffer): Buffer => encodeOptionReply({ option: code, replyType: optionReply.info, payload: data });
    const replies = [infoReply(encodeInfoExport(nbdExport.device.sizeBytes, negotiated.transmissionFlags))];
    if (requests.includes(info.name)) replies.push(infoReply(encodeInfoString(info.name, nbdExport.name)));
    if (requests.includes(info.description) && nbdExport.description !== undefined) {
      replies.push(infoReply(encodeInfoString(info.description, nbdExport.description)));
    }
    if (requests.includes(info.blockSize) || negotiated.blockSizes.minimumBytes > 1) {
      replies.push(infoReply(encodeInfoBlockSize(negotiated.blockSizes)));
    }
    replies.push(ack(code));
    if (code === option.info) return { next: 'continue', replies };
    return { next: 'transmission', replies, negotiated };
  }

  #metaContext(code: number, payload: Buffer): HandshakeStep {
    if (!this.#structuredReplies) {
      return proceed(error(code, optionReply.errInvalid, 'meta contexts need structured replies first'));
    }
    const reader = new PayloadReader(payload);
    const name = reader.string();
    const count = reader.u32();
    if (name === undefined || count === undefined) return proceed(error(code, optionReply.errInvalid, 'malformed meta context request'));
    if (count > metaQueriesMax) return proceed(error(code, optionReply.errTooBig, `more than ${metaQueriesMax} queries`));
    const queries: string[] = [];
    for (let i = 0; i < count; i++) {
      const query = reader.string();
      if (query === undefined) return proceed(error(code, optionReply.errInvalid, 'truncated meta context query'));
      queries.push(query);
    }
    if (!reader.done) return proceed(error(code, optionReply.errInvalid, 'trailing bytes in meta context request'));
    const nbdExport = this.#resolver.get(name);
    if (nbdExport === undefined) return proceed(error(code, optionReply.errUnknown, `unknown export "${name}"`));

    const contexts = contextsOf(nbdExport);
    let matched: NbdMetaContext[];
    if (queries.length === 0) matched = code === option.listMetaContext ? [...contexts] : [];
    else matched = [...new Set(queries.flatMap((q) => matchContexts(contexts, q)))];
    const ids = matched.map((context) => contexts.indexOf(context) + 1).sort((a, b) => a - b);
    if (code === option.setMetaContext) this.#selection = { nbdExport, ids };
    const replies = ids.map((id) => {
      const context = contexts[id - 1];
      assert(context !== undefined);
      return encodeOptionReply({ option: code, replyType: optionReply.metaContext, payload: encodeMetaContextEntry(id, context.name) });
    });
    return { next: 'continue', replies: [...replies, ack(code)] };
  }

  #negotiate(nbdExport: NbdExport): Negotiated {
    const readOnly = nbdExport.readOnly === true;
    let flags = transmissionFlag.hasFlags | transmissionFlag.sendFlush | transmissionFlag.sendFua;
    flags |= transmissionFlag.canMultiConn | transmissionFlag.sendCache;
    if (readOnly) flags |= transmissionFlag.readOnly;
    else flags |= transmissionFlag.sendTrim | transmissionFlag.sendWriteZeroes | transmissionFlag.sendFastZero;
    if (this.#structuredReplies) flags |= transmissionFlag.sendDf;
    const contexts = contextsOf(nbdExport);
    const selection = this.#selection?.nbdExport === nbdExport ? this.#selection.ids : [];
    const minimumBytes = nbdExport.minimumBlockBytes ?? 1;
    assert(minimumBytes >= 1 && minimumBytes <= preferredBlockBytes && Number.isInteger(Math.log2(minimumBytes)));
    return {
      nbdExport,
      transmissionFlags: flags,
      structuredReplies: this.#structuredReplies,
      contexts: selection.map((id) => {
        const context = contexts[id - 1];
        assert(context !== undefined);
        return { id, context };
      }),
      blockSizes: { minimumBytes, preferredBytes: preferredBlockBytes, maximumBytes: requestBytesMax },
    };
  }
}

function proceed(reply: Buffer): HandshakeStep {
  return { next: 'continue', replies: [reply] };
}

function close(reason: string): HandshakeStep {
  return { next: 'close', replies: [], reason };
}

function ack(code: number): Buffer {
  return encodeOptionReply({ option: code, replyType: optionReply.ack });
}

function error(code: number, replyType: number, message: string): Buffer {
  return encodeOptionReply({ option: code, replyType, payload: Buffer.from(message, 'utf8') });
}

/** Reads length-prefixed fields of an option payload; every read returns undefined past the end. */
class PayloadReader {
  readonly #buf: Buffer;
  #at = 0;
  constructor(buf: Buffer) {
    this.#buf = buf;
  }
  get done(): boolean {
    return this.#at === this.#buf.length;
  }
  u16(): number | undefined {
    if (this.#buf.length - this.#at < 2) return undefined;
    const value = this.#buf.readUInt16BE(this.#at);
    this.#at += 2;
    return value;
  }
  u32(): number | undefined {
    if (this.#buf.length - this.#at < 4) return undefined;
    const value = this.#buf.readUInt32BE(this.#at);
    this.#at += 4;
    return value;
  }
  /** A u32 length and that many UTF-8 bytes (at most stringBytesMax). */
  string(): string | undefined {
    const length = this.u32();
    if (length === undefined || length > stringBytesMax || this.#buf.length - this.#at < length) return undefined;
    const value = this.#buf.toString('utf8', this.#at, this.#at + length);
    this.#at += length;
    return value;
  }
}
