/**
 * A deliberately simple NBD client over a raw socket, for tests that must send exactly the bytes they
 * choose (malformed input, the kernel's EXPORT_NAME path without structured replies). Reads are exact:
 * `read(n)` waits for n bytes or rejects when the server closes first. `startTls` upgrades the
 * connection after NBD_OPT_STARTTLS (tests of the server's TLS modes); reads and writes then go
 * through TLS.
 */
import { connect, type Socket } from 'node:net';
import { connect as tlsConnect, type ConnectionOptions, type TLSSocket } from 'node:tls';
import {
  decodeOptionReplyHeader,
  decodeReplyHeader,
  encodeClientFlags,
  encodeGoPayload,
  encodeMetaContextPayload,
  encodeOption,
  encodeRequest,
  type ReplyHeader,
  type RequestHeader,
} from '../../src/nbd/client-codec.js';
import { clientFlag, isOptionReplyError, option, optionReply, wireBytes } from '../../src/nbd/protocol.js';

export interface OptionReplyMessage {
  readonly replyType: number;
  readonly payload: Buffer;
}

export class RawNbdClient {
  #socket: Socket;
  #buffered = Buffer.alloc(0);
  #ended = false;
  #waiter: (() => void) | undefined;

  private constructor(socket: Socket) {
    this.#socket = socket;
    this.#attach(socket);
  }

  /** The plain socket, or the TLS socket after `startTls`. */
  get socket(): Socket {
    return this.#socket;
  }

  readonly #onData = (chunk: Buffer): void => {
    this.#buffered = Buffer.concat([this.#buffered, chunk]);
    this.#waiter?.();
  };

  readonly #onEnd = (): void => {
    this.#ended = true;
    this.#waiter?.();
  };

  #attach(socket: Socket): void {
    socket.on('data', this.#onData);
    socket.on('end', this.#onEnd);
    socket.on('close', this.#onEnd);
    socket.on('error', this.#onEnd);
  }

  /**
   * Sends STARTTLS; on ACK runs the TLS handshake with `options` (pskCallback, ca, cert...) and resolves
   * with the TLS socket, or rejects with the option's reply type or the handshake's error.
   */
  async startTls(options: ConnectionOptions): Promise<TLSSocket> {
    const replies = await this.option(option.startTls);
    const reply = replies[0];
    if (reply?.replyType !== optionReply.ack) throw new Error(`STARTTLS answered reply type ${reply?.replyType ?? 'none'}`);
    if (this.#buffered.length !== 0) throw new Error('bytes after the STARTTLS ACK');
    const plain = this.#socket;
    plain.off('data', this.#onData);
    plain.off('end', this.#onEnd);
    plain.off('close', this.#onEnd);
    plain.off('error', this.#onEnd);
    plain.on('error', () => undefined);
    const secure = tlsConnect({ ...options, socket: plain });
    await new Promise<void>((resolve, reject) => {
      secure.once('secureConnect', () => resolve());
      secure.once('error', reject);
      secure.once('close', () => reject(new Error('closed during the TLS handshake')));
    });
    this.#socket = secure;
    this.#attach(secure);
    return secure;
  }

  static connect(address: { path: string } | { host: string; port: number }): Promise<RawNbdClient> {
    return new Promise((resolve, reject) => {
      const socket = connect('path' in address ? { path: address.path } : { host: address.host, port: address.port });
      socket.once('connect', () => resolve(new RawNbdClient(socket)));
      socket.once('error', reject);
    });
  }

  async read(n: number): Promise<Buffer> {
    while (this.#buffered.length < n) {
      if (this.#ended) throw new Error(`server closed with ${this.#buffered.length} of ${n} bytes`);
      await new Promise<void>((resolve) => (this.#waiter = resolve));
      this.#waiter = undefined;
    }
    const out = this.#buffered.subarray(0, n);
    this.#buffered = this.#buffered.subarray(n);
    return out;
  }

  /** Resolves true when the server closes the connection within the timeout with nothing more to read. */
  async closedByServer(timeoutMs = 2000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (!this.#ended && Date.now() < deadline) {
      await new Promise<void>((resolve) => {
        this.#waiter = resolve;
        setTimeout(resolve, 50);
      });
      this.#waiter = undefined;
    }
    return this.#ended;
  }

  write(data: Buffer): void {
    this.#socket.write(data);
  }

  destroy(): void {
    this.#socket.destroy();
  }

  /** Reads the greeting and sends client flags (fixed newstyle + no zeroes by default). */
  async start(flags: number = clientFlag.fixedNewstyle | clientFlag.noZeroes): Promise<{ handshakeFlags: number }> {
    const greeting = await this.read(wireBytes.greeting);
    this.write(encodeClientFlags(flags));
    return { handshakeFlags: greeting.readUInt16BE(16) };
  }

  /** Sends an option and reads replies until ACK or an error reply. */
  async option(code: number, payload?: Buffer): Promise<OptionReplyMessage[]> {
    this.write(encodeOption(code, payload));
    const replies: OptionReplyMessage[] = [];
    for (;;) {
      const header = decodeOptionReplyHeader(await this.read(wireBytes.optionReplyHeader));
      if (header === undefined) throw new Error('bad option reply magic');
      if (header.option !== code) throw new Error(`reply for option ${header.option}, expected ${code}`);
      const replyPayload = await this.read(header.lengthBytes);
      replies.push({ replyType: header.replyType, payload: replyPayload });
      if (header.replyType === optionReply.ack || isOptionReplyError(header.replyType)) return replies;
    }
  }

  /** STRUCTURED_REPLY (optional), SET_META_CONTEXT (optional) and GO; returns size and flags. */
  async go(options: { name?: string; structured?: boolean; contexts?: readonly string[] } = {}): Promise<{
    sizeBytes: number;
    transmissionFlags: number;
    infos: OptionReplyMessage[];
  }> {
    const name = options.name ?? '';
    if (options.structured === true) await this.option(option.structuredReply);
    if (options.contexts !== undefined) await this.option(option.setMetaContext, encodeMetaContextPayload(name, options.contexts));
    const replies = await this.option(option.go, encodeGoPayload(name, [3]));
    const last = replies[replies.length - 1];
    if (last?.replyType !== optionReply.ack) throw new Error(`GO failed with reply type ${last?.replyType}`);
    const exportInfo = replies.find((r) => r.replyType === optionReply.info && r.payload.readUInt16BE(0) === 0);
    if (exportInfo === undefined) throw new Error('GO without NBD_INFO_EXPORT');
    return {
      sizeBytes: Number(exportInfo.payload.readBigUInt64BE(2)),
      transmissionFlags: exportInfo.payload.readUInt16BE(10),
      infos: replies,
    };
  }

  request(header: RequestHeader, payload?: Buffer): void {
    this.write(encodeRequest(header, payload));
  }

  /** Reads one simple reply header, or one chunk header plus its payload. */
  async reply(): Promise<{ header: ReplyHeader; payload: Buffer }> {
    const first = await this.read(wireBytes.simpleReply);
    const peek = decodeReplyHeader(first.length >= 20 ? first : Buffer.concat([first, Buffer.alloc(4)]));
    if (peek === undefined) throw new Error('bad reply magic');
    if (peek.kind === 'simple') return { header: peek, payload: Buffer.alloc(0) };
    const rest = await this.read(4);
    const header = decodeReplyHeader(Buffer.concat([first, rest]));
    if (header === undefined || header.kind !== 'chunk') throw new Error('bad chunk header');
    return { header, payload: await this.read(header.lengthBytes) };
  }
}
