/**
 * The client side of the fixed-newstyle handshake, with no I/O: server bytes go in through `push`, and
 * `next()` says what to do — send bytes, upgrade the socket to TLS, or stop with the negotiated export
 * or an error. The connection (client-connection.ts) owns the socket and the timer.
 *
 *   greeting --(NBDMAGIC IHAVEOPT flags)--> send client flags + first option
 *     tls:    startTlsReply --(ACK)--> tlsPending --tlsEstablished()--> structuredReply
 *     no tls: structuredReply
 *   structuredReply --(ACK: structured | error reply: simple replies)--> send GO(name, [BLOCK_SIZE])
 *   goReplies --(INFO...)--> goReplies --(ACK)--> done
 *             --(ERR_UNSUP: an old server without GO)--> send EXPORT_NAME --> exportNameReply --> done
 *   any state --(bad magic, reply for another option, oversized or malformed reply)--> failed (EIO)
 *
 * Failures carry a BlockError: EIO for a protocol violation, ENOTSUP for a server we cannot talk to
 * (oldstyle, no fixed newstyle, TLS required or refused), EINVAL for an unknown export, EPERM for a
 * policy refusal, EOVERFLOW for a size past 2^53. TLS: the STARTTLS step is here so that nbds:// only
 * needs the socket upgrade in the connection; with `tls: false` it is never taken.
 */
import { assert } from '../assert.js';
import { BlockError, type Errno } from '../errors.js';
import { nbdClientMinimumBlockBytesMax } from '../limits.js';
import { ByteQueue } from './byte-queue.js';
import { decodeOptionReplyHeader, encodeClientFlags, encodeGoPayload, encodeOption, readU64 } from './client-codec.js';
import type { BlockSizes } from './codec.js';
import {
  clientFlag,
  handshakeFlag,
  info,
  isOptionReplyError,
  magic,
  option,
  optionBytesMax,
  optionReply,
  stringBytesMax,
  wireBytes,
} from './protocol.js';

/** What the handshake learned about the export. */
export interface ClientNegotiated {
  readonly exportName: string;
  readonly sizeBytes: number;
  readonly transmissionFlags: number;
  readonly structuredReplies: boolean;
  /** The server's NBD_INFO_BLOCK_SIZE, or undefined when it sent none (then any alignment, 32 MiB max). */
  readonly blockSizes: BlockSizes | undefined;
}

export type ClientHandshakeStep =
  | { readonly kind: 'send'; readonly data: Buffer }
  | { readonly kind: 'startTls' }
  | { readonly kind: 'done'; readonly negotiated: ClientNegotiated }
  | { readonly kind: 'failed'; readonly error: BlockError };

export type ClientHandshakeState =
  | 'greeting'
  | 'startTlsReply'
  | 'tlsPending'
  | 'structuredReply'
  | 'goReplies'
  | 'exportNameReply'
  | 'done'
  | 'failed';

/** "IHAVEOPT" is newstyle; this second magic is the oldstyle greeting, which we do not speak. */
const oldstyleMagicHi = 0x00004202;
const oldstyleMagicLo = 0x81861253;
const exportInfoBytes = 12;
/** The option whose replies each state reads. */
const pendingOption: Partial<Record<ClientHandshakeState, number>> = {
  startTlsReply: option.startTls,
  structuredReply: option.structuredReply,
  goReplies: option.go,
};
const blockSizeInfoBytes = 14;

export class NbdClientHandshake {
  readonly #exportName: string;
  readonly #tls: boolean;
  readonly #queue = new ByteQueue();
  readonly #steps: ClientHandshakeStep[] = [];
  #state: ClientHandshakeState = 'greeting';
  #noZeroes = false;
  #structuredReplies = false;
  #sizeBytes: number | undefined;
  #transmissionFlags = 0;
  #blockSizes: BlockSizes | undefined;

  constructor(options: { exportName: string; tls: boolean }) {
    assert(Buffer.byteLength(options.exportName, 'utf8') <= stringBytesMax, 'export name within the spec limit');
    this.#exportName = options.exportName;
    this.#tls = options.tls;
  }

  get state(): ClientHandshakeState {
    return this.#state;
  }

  push(chunk: Buffer): void {
    if (this.#state === 'done' || this.#state === 'failed') return;
    this.#queue.push(chunk);
  }

  /** The socket now speaks TLS (after a startTls step); the handshake continues with STRUCTURED_REPLY. */
  tlsEstablished(): void {
    assert(this.#state === 'tlsPending', `tlsEstablished in state ${this.#state}`);
    if (this.#queue.length > 0) {
      this.#fail('EIO', 'server sent data between STARTTLS and the TLS handshake');
      return;
    }
    this.#sendOption(option.structuredReply);
    this.#state = 'structuredReply';
  }

  /** The next thing to do, or undefined when more server bytes are needed (or after done/failed). */
  next(): ClientHandshakeStep | undefined {
    for (;;) {
      const queued = this.#steps.shift();
      if (queued !== undefined) return queued;
      if (!this.#advance()) return undefined;
    }
  }

  /** Parses one unit of server input; false when nothing could be parsed. */
  #advance(): boolean {
    switch (this.#state) {
      case 'greeting':
        return this.#greeting();
      case 'startTlsReply':
      case 'structuredReply':
      case 'goReplies':
        return this.#optionReply();
      case 'exportNameReply':
        return this.#exportNameReply();
      case 'tlsPending':
      case 'done':
      case 'failed':
        return false;
    }
  }

  #greeting(): boolean {
    if (this.#queue.length < wireBytes.greeting) return false;
    this.#queue.contiguous(wireBytes.greeting);
    const { view, viewAt } = this.#queue;
    const nbdMagic = view.readUInt32BE(viewAt) === magic.nbdMagicHi && view.readUInt32BE(viewAt + 4) === magic.nbdMagicLo;
    const hi = view.readUInt32BE(viewAt + 8);
    const lo = view.readUInt32BE(viewAt + 12);
    const flags = view.readUInt16BE(viewAt + 16);
    this.#queue.consume(wireBytes.greeting);
    if (!nbdMagic) return this.#fail('EIO', 'not an NBD server (bad greeting magic)');
    if (hi === oldstyleMagicHi && lo === oldstyleMagicLo) return this.#fail('ENOTSUP', 'the server speaks oldstyle NBD, which is not supported');
    if (hi !== magic.iHaveOptHi || lo !== magic.iHaveOptLo) return this.#fail('EIO', 'bad greeting magic');
    if ((flags & handshakeFlag.fixedNewstyle) === 0) return this.#fail('ENOTSUP', 'the server does not speak fixed newstyle NBD');
    this.#noZeroes = (flags & handshakeFlag.noZeroes) !== 0;
    const clientFlags = clientFlag.fixedNewstyle | (this.#noZeroes ? clientFlag.noZeroes : 0);
    this.#steps.push({ kind: 'send', data: encodeClientFlags(clientFlags) });
    if (this.#tls) {
      this.#sendOption(option.startTls);
      this.#state = 'startTlsReply';
    } else {
      this.#sendOption(option.structuredReply);
      this.#state = 'structuredReply';
    }
    return true;
  }

  #optionReply(): boolean {
    if (this.#queue.length < wireBytes.optionReplyHeader) return false;
    this.#queue.contiguous(wireBytes.optionReplyHeader);
    const header = decodeOptionReplyHeader(this.#queue.view, this.#queue.viewAt);
    if (header === undefined) return this.#fail('EIO', 'bad option reply magic');
    if (header.lengthBytes > optionBytesMax) return this.#fail('EIO', `option reply of ${header.lengthBytes} bytes is over ${optionBytesMax}`);
    if (this.#queue.length < wireBytes.optionReplyHeader + header.lengthBytes) return false;
    this.#queue.consume(wireBytes.optionReplyHeader);
    const payload = this.#queue.take(header.lengthBytes);
    const expected = this.#expectedOption();
    if (header.option !== expected) return this.#fail('EIO', `reply for option ${header.option} while waiting for option ${expected}`);
    const { replyType } = header;
    if (replyType === optionReply.errTlsReqd) return this.#fail('ENOTSUP', `the server requires TLS (use nbds://)${said(payload)}`);

    switch (this.#state) {
      case 'startTlsReply':
        if (replyType !== optionReply.ack) {
          const code: Errno = replyType === optionReply.errPolicy ? 'EPERM' : 'ENOTSUP';
          return this.#fail(code, `the server refused TLS${said(payload)}`);
        }
        if (payload.length !== 0) return this.#fail('EIO', 'STARTTLS ACK with data');
        this.#steps.push({ kind: 'startTls' });
        this.#state = 'tlsPending';
        return true;
      case 'structuredReply':
        if (replyType === optionReply.ack) {
          if (payload.length !== 0) return this.#fail('EIO', 'STRUCTURED_REPLY ACK with data');
          this.#structuredReplies = true;
        } else if (!isOptionReplyError(replyType)) {
          return this.#fail('EIO', `unexpected reply type ${replyType} to STRUCTURED_REPLY`);
        }
        // An error reply means simple replies only: every server must support those.
        this.#sendOption(option.go, encodeGoPayload(this.#exportName, [info.blockSize]));
        this.#state = 'goReplies';
        return true;
      default:
        assert(this.#state === 'goReplies', `option reply in state ${this.#state}`);
        return this.#goReply(replyType, payload);
    }
  }

  #goReply(replyType: number, payload: Buffer): boolean {
    if (replyType === optionReply.info) return this.#info(payload);
    if (replyType === optionReply.ack) {
      if (payload.length !== 0) return this.#fail('EIO', 'GO ACK with data');
      if (this.#sizeBytes === undefined) return this.#fail('EIO', 'GO acknowledged without NBD_INFO_EXPORT');
      return this.#done();
    }
    if (replyType === optionReply.errUnsup) {
      // A server from before NBD_OPT_GO: EXPORT_NAME still works (without error messages or block sizes).
      this.#steps.push({ kind: 'send', data: encodeOption(option.exportName, Buffer.from(this.#exportName, 'utf8')) });
      this.#sizeBytes = undefined;
      this.#blockSizes = undefined;
      this.#state = 'exportNameReply';
      return true;
    }
    if (replyType === optionReply.errUnknown) return this.#fail('EINVAL', `the server has no export "${this.#exportName}"${said(payload)}`);
    if (replyType === optionReply.errPolicy) return this.#fail('EPERM', `the server refused export "${this.#exportName}"${said(payload)}`);
    if (isOptionReplyError(replyType)) return this.#fail('EIO', `the server failed GO with reply type 0x${replyType.toString(16)}${said(payload)}`);
    return this.#fail('EIO', `unexpected reply type ${replyType} to GO`);
  }

  #info(payload: Buffer): boolean {
    if (payload.length < 2) return this.#fail('EIO', 'NBD_REP_INFO without an info type');
    const type = payload.readUInt16BE(0);
    if (type === info.export) {
      if (payload.length !== exportInfoBytes) return this.#fail('EIO', `NBD_INFO_EXPORT of ${payload.length} bytes`);
      return this.#setExport(readU64(payload, 2), payload.readUInt16BE(10));
    }
    if (type === info.blockSize) {
      if (payload.length !== blockSizeInfoBytes) return this.#fail('EIO', `NBD_INFO_BLOCK_SIZE of ${payload.length} bytes`);
      const sizes = { minimumBytes: payload.readUInt32BE(2), preferredBytes: payload.readUInt32BE(6), maximumBytes: payload.readUInt32BE(10) };
      const problem = blockSizeProblem(sizes);
      if (problem !== undefined) return this.#fail('EIO', `the server sent invalid block sizes: ${problem}`);
      this.#blockSizes = sizes;
      return true;
    }
    return true; // NAME, DESCRIPTION and types from later extensions carry nothing we need.
  }

  #exportNameReply(): boolean {
    const bytes = wireBytes.exportNameReply + (this.#noZeroes ? 0 : wireBytes.exportNameZeroes);
    if (this.#queue.length < bytes) return false;
    this.#queue.contiguous(wireBytes.exportNameReply);
    const sizeBytes = readU64(this.#queue.view, this.#queue.viewAt);
    const flags = this.#queue.view.readUInt16BE(this.#queue.viewAt + 8);
    this.#queue.consume(bytes);
    if (!this.#setExport(sizeBytes, flags)) return true;
    return this.#done();
  }

  #setExport(sizeBytes: number, flags: number): boolean {
    if (!Number.isSafeInteger(sizeBytes)) return this.#fail('EOVERFLOW', 'the export is larger than 2^53 bytes');
    this.#sizeBytes = sizeBytes;
    this.#transmissionFlags = flags;
    return true;
  }

  #done(): boolean {
    if (this.#queue.length > 0) return this.#fail('EIO', 'the server sent data before the first request');
    assert(this.#sizeBytes !== undefined);
    const negotiated: ClientNegotiated = {
      exportName: this.#exportName,
      sizeBytes: this.#sizeBytes,
      transmissionFlags: this.#transmissionFlags,
      structuredReplies: this.#structuredReplies,
      blockSizes: this.#blockSizes,
    };
    this.#steps.push({ kind: 'done', negotiated });
    this.#state = 'done';
    return true;
  }

  #expectedOption(): number {
    const expected = pendingOption[this.#state];
    assert(expected !== undefined, `no option is pending in state ${this.#state}`);
    return expected;
  }

  #sendOption(code: number, payload?: Buffer): void {
    this.#steps.push({ kind: 'send', data: encodeOption(code, payload) });
  }

  /** Records the failure as the last step; returns true so `next()` delivers it. */
  #fail(code: Errno, message: string): boolean {
    this.#steps.push({ kind: 'failed', error: new BlockError(code, `NBD handshake failed: ${message}`) });
    this.#state = 'failed';
    return true;
  }
}

/** Why a BLOCK_SIZE info is unusable, or undefined (the spec's constraints, leniently for the maximum). */
export function blockSizeProblem(sizes: BlockSizes): string | undefined {
  const { minimumBytes, preferredBytes, maximumBytes } = sizes;
  const powerOfTwo = (n: number): boolean => n > 0 && (n & (n - 1)) === 0;
  if (!powerOfTwo(minimumBytes) || minimumBytes > nbdClientMinimumBlockBytesMax) {
    return `minimum ${minimumBytes} is not a power of two up to ${nbdClientMinimumBlockBytesMax}`;
  }
  if (!powerOfTwo(preferredBytes) || preferredBytes < minimumBytes) return `preferred ${preferredBytes} is not a power of two >= ${minimumBytes}`;
  if (maximumBytes < minimumBytes) return `maximum ${maximumBytes} is below the minimum ${minimumBytes}`;
  return undefined;
}

/** ": <the server's message>" for an error reply's payload, printable and clipped; "" when empty. */
function said(payload: Buffer): string {
  if (payload.length === 0) return '';
  const text = payload.toString('utf8', 0, Math.min(payload.length, 256)).replace(/[^\x20-\x7e]/g, '?');
  return `: ${text}`;
}
