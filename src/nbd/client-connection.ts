/**
 * NbdClientConnection: one socket to one NBD export, the I/O half of the NBD client. It connects through
 * client-socket-handshake.ts, runs the pure reply parser (client-reply-parser.ts) over the TCP or Unix
 * socket and turns wire requests into promises. Callers: block/nbd-block-device.ts and
 * block/reconnecting-block-device.ts. It knows nothing of BlockDevice semantics: NbdBlockDevice splits, aligns
 * and chooses commands; this class sends exactly the requests it is given.
 *
 * States (one object per socket; a new socket is a new object):
 *
 *   connect() --(socket up, handshake done)--> ready --close()--> closing --(in flight drained, DISC
 *   sent, socket closed)--> closed
 *   ready | closing --(socket error or end, protocol error, request timeout, destroy())--> failed
 *   connect() rejects (no object) when the socket, the handshake or the connect timeout fails.
 *
 * It owns: the socket, the state above, the request table (client-request-table.ts: cookie -> request, at
 * most `inFlightMax` requests and `inFlightBytesMax` payload bytes; further requests wait in a FIFO of at
 * most nbdClientWaitingMax, beyond which they fail with ENOMEM), one timer per request in flight when
 * `requestTimeoutMs` is set, and the `ended` promise.
 *
 * Failure rule: whatever ends a ready connection except close() fails it as a whole. Every request in
 * flight or waiting is rejected with EIO, every later request with EIO, the socket is destroyed and
 * `ended` resolves with the cause. A request that outlives `requestTimeoutMs` fails the connection the
 * same way: its reply may still come, so the stream can no longer be trusted (nbd-client and qemu do the
 * same). Server errors in replies are not failures of the connection: they reject that one request with
 * the mapped errno (fromNbdError).
 *
 * Reconnect is block/reconnecting-block-device.ts: it watches `ended`, connects a new
 * NbdClientConnection with the same target and checks that the export's size is unchanged; nothing in
 * here survives a socket, so no state needs resetting.
 *
 * TLS (nbds://, nbds+unix://): `connect` loads the credentials first (client-tls.ts), then the
 * handshake (client-socket-handshake.ts) sends STARTTLS before any other option. On its ACK the socket is handed to node:tls
 * (`tls.connect({socket})`), and once the TLS handshake is done and the peer is checked, the option
 * haggling continues over the TLS socket, which from then on is the connection's socket. A server that
 * refuses STARTTLS fails the connect (ENOTSUP, or EPERM for a policy refusal): there is never a fallback
 * to plaintext. A plaintext connect to a server that requires TLS fails with its TLS_REQD as ENOTSUP.
 */
import { connect as netConnect, type Socket } from 'node:net';
import { assert, assertCount } from '../assert.js';
import { BlockError } from '../errors.js';
import {
  nbdClientConnectTimeoutMsDefault,
  nbdClientInFlightBytesMax,
  nbdClientInFlightMax,
  nbdClientWaitingMax,
} from '../limits.js';
import { encodeRequest } from './client-codec.js';
import type { ClientNegotiated } from './client-handshake.js';
import { NbdReplyParser, ReadReplyAssembler, type ReplyFrame } from './client-reply-parser.js';
import { ClientRequestTable, type InFlight } from './client-request-table.js';
import { runClientHandshake } from './client-socket-handshake.js';
import { loadNbdTlsCredentials } from './client-tls.js';
import type { NbdTarget } from './client-uri.js';
import { fromNbdError } from './errors.js';
import { command, commandName } from './protocol.js';

export interface NbdClientConnectionOptions {
  readonly target: NbdTarget;
  /** A request unanswered this long fails the connection with EIO. 0 or absent: no limit. */
  readonly requestTimeoutMs?: number;
  /** Connect plus handshake must finish within this (default nbdClientConnectTimeoutMsDefault). */
  readonly connectTimeoutMs?: number;
  readonly inFlightMax?: number;
  readonly inFlightBytesMax?: number;
}

export type NbdClientConnectionState = 'ready' | 'closing' | 'closed' | 'failed';

/** Commands this connection sends; DISC is sent only by close(). */
export type ClientCommand = typeof command.read | typeof command.write | typeof command.flush | typeof command.trim | typeof command.writeZeroes;

interface OutgoingRequest {
  readonly type: ClientCommand;
  readonly flags: number;
  readonly offsetBytes: number;
  readonly lengthBytes: number;
  readonly payload: Uint8Array | undefined;
}

/** Bound on waiting for the server to close after DISC, before the socket is destroyed. */
const closeWaitMs = 5000;

export class NbdClientConnection {
  readonly target: NbdTarget;
  readonly negotiated: ClientNegotiated;
  /** Resolves once the socket is gone: undefined after close(), the cause after a failure. Never rejects. */
  readonly ended: Promise<BlockError | undefined>;
  readonly #socket: Socket;
  readonly #parser: NbdReplyParser;
  readonly #requestTimeoutMs: number;
  readonly #requests: ClientRequestTable;
  #state: NbdClientConnectionState = 'ready';
  #failure: BlockError | undefined;
  #resolveEnded: (cause: BlockError | undefined) => void = () => undefined;
  #drained: (() => void) | undefined;
  #closing: Promise<void> | undefined;
  #discSent = false;

  private constructor(options: {
    target: NbdTarget;
    socket: Socket;
    negotiated: ClientNegotiated;
    requestTimeoutMs: number;
    inFlightMax: number;
    inFlightBytesMax: number;
  }) {
    this.target = options.target;
    this.negotiated = options.negotiated;
    this.#socket = options.socket;
    this.#requestTimeoutMs = options.requestTimeoutMs;
    this.#requests = new ClientRequestTable({ inFlightMax: options.inFlightMax, inFlightBytesMax: options.inFlightBytesMax });
    this.ended = new Promise((resolve) => {
      this.#resolveEnded = resolve;
    });
    this.#parser = new NbdReplyParser({
      structuredReplies: options.negotiated.structuredReplies,
      lookup: (cookie) => this.#requests.lookup(cookie),
    });
    const socket = this.#socket;
    socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    socket.on('error', (err) => {
      // After DISC the server may reset instead of closing: that is still a clean close.
      if (this.#discSent) return;
      this.#fail(new BlockError('EIO', `NBD connection to ${this.target.uri} failed: ${err.message}`, { cause: err }));
    });
    socket.on('end', () => {
      if (this.#discSent) return;
      this.#fail(new BlockError('EIO', `NBD server ${this.target.uri} closed the connection`));
    });
    socket.on('close', () => this.#onClose());
    socket.resume();
  }

  /**
   * Connects and negotiates. @throws BlockError: EIO (unreachable, refused, handshake violation, TLS
   * handshake failure, timeout), ENOTSUP (a server we cannot talk to: TLS required by it or refused by
   * it), EINVAL (no such export, a bad TLS file), EPERM (refused by policy, a key file others can read).
   */
  static async connect(options: NbdClientConnectionOptions): Promise<NbdClientConnection> {
    const { target } = options;
    const requestTimeoutMs = options.requestTimeoutMs ?? 0;
    const connectTimeoutMs = options.connectTimeoutMs ?? nbdClientConnectTimeoutMsDefault;
    const inFlightMax = options.inFlightMax ?? nbdClientInFlightMax;
    const inFlightBytesMax = options.inFlightBytesMax ?? nbdClientInFlightBytesMax;
    assertCount(requestTimeoutMs, 'requestTimeoutMs');
    assert(connectTimeoutMs > 0, 'connectTimeoutMs is positive');
    assert(inFlightMax >= 1 && inFlightMax <= nbdClientWaitingMax, `inFlightMax ${inFlightMax} out of range`);
    assert(inFlightBytesMax >= 1, 'inFlightBytesMax is positive');
    // Files first: a bad key file fails without a connection (and is read again on every reconnect).
    const credentials = target.tls === undefined ? undefined : await loadNbdTlsCredentials(target);
    const raw = target.endpoint.kind === 'unix' ? netConnect({ path: target.endpoint.path }) : netConnect({ host: target.endpoint.host, port: target.endpoint.port });
    if (target.endpoint.kind === 'tcp') raw.setNoDelay(true);
    const { negotiated, socket } = await runClientHandshake({ target, socket: raw, credentials, timeoutMs: connectTimeoutMs });
    return new NbdClientConnection({ target, socket, negotiated, requestTimeoutMs, inFlightMax, inFlightBytesMax });
  }

  get state(): NbdClientConnectionState {
    return this.#state;
  }

  /** Why the connection failed; undefined unless state is 'failed'. */
  get failure(): BlockError | undefined {
    return this.#failure;
  }

  /** Requests sent and not yet answered. */
  get inFlightCount(): number {
    return this.#requests.inFlightCount;
  }

  /** READ: resolves with exactly `lengthBytes` bytes. @throws BlockError (server error, or EIO). */
  async read(options: { offsetBytes: number; lengthBytes: number; flags?: number }): Promise<Buffer> {
    const data = await this.#request({ type: command.read, flags: options.flags ?? 0, offsetBytes: options.offsetBytes, lengthBytes: options.lengthBytes, payload: undefined });
    assert(data !== undefined && data.length === options.lengthBytes, 'a READ resolves with the requested length');
    return data;
  }

  /** WRITE. @throws BlockError (server error, or EIO). */
  async write(options: { offsetBytes: number; data: Uint8Array; flags?: number }): Promise<void> {
    await this.#request({ type: command.write, flags: options.flags ?? 0, offsetBytes: options.offsetBytes, lengthBytes: options.data.length, payload: options.data });
  }

  /** FLUSH, TRIM or WRITE_ZEROES (no payload either way). @throws BlockError (server error, or EIO). */
  async command(options: { type: typeof command.flush | typeof command.trim | typeof command.writeZeroes; offsetBytes: number; lengthBytes: number; flags?: number }): Promise<void> {
    await this.#request({ type: options.type, flags: options.flags ?? 0, offsetBytes: options.offsetBytes, lengthBytes: options.lengthBytes, payload: undefined });
  }

  /**
   * Graceful close: new requests fail with ESHUTDOWN, requests in flight or waiting complete, then DISC
   * is sent and the socket closed. A failed connection closes at once. Idempotent.
   */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  /** Fails the connection now (every request in flight fails with EIO). Idempotent. */
  destroy(reason = 'connection destroyed by its owner'): void {
    this.#fail(new BlockError('EIO', `NBD connection to ${this.target.uri}: ${reason}`));
  }

  async #close(): Promise<void> {
    if (this.#state !== 'ready') return;
    this.#state = 'closing';
    if (!this.#requests.idle) {
      await new Promise<void>((resolve) => {
        this.#drained = resolve;
      });
    }
    // Some failure may have ended the socket while we drained: the failure has reported itself.
    if (this.#state !== 'closing') return;
    this.#discSent = true;
    this.#socket.end(encodeRequest({ flags: 0, type: command.disc, cookieHi: 0, cookieLo: 0, offsetBytes: 0, lengthBytes: 0 }));
    const timer = setTimeout(() => this.#socket.destroy(), closeWaitMs);
    timer.unref();
    await this.ended;
    clearTimeout(timer);
  }

  async #request(options: OutgoingRequest): Promise<Buffer | undefined> {
    const { type, offsetBytes, lengthBytes, payload } = options;
    assertCount(offsetBytes, 'offsetBytes');
    assertCount(lengthBytes, 'lengthBytes');
    assert(lengthBytes <= 0xffffffff, 'an NBD length fits in 32 bits');
    assert((payload !== undefined) === (type === command.write), 'only WRITE carries a payload');
    if (payload !== undefined) assert(payload.length === lengthBytes, 'a WRITE payload has the request length');
    this.#checkUsable(type);
    const payloadBytes = type === command.read || type === command.write ? lengthBytes : 0;
    return new Promise<Buffer | undefined>((resolve, reject) => {
      const send = (): void => this.#send({ request: options, payloadBytes, resolve, reject });
      if (!this.#requests.admit({ payloadBytes, send, reject })) {
        reject(new BlockError('ENOMEM', `Cannot queue ${commandName[type] ?? type} to ${this.target.uri}: ${nbdClientWaitingMax} requests are waiting`));
      }
    });
  }

  /** Registers the request in flight and writes it to the socket, synchronously. */
  #send(options: {
    request: OutgoingRequest;
    payloadBytes: number;
    resolve: (data: Buffer | undefined) => void;
    reject: (err: BlockError) => void;
  }): void {
    const { type, offsetBytes, lengthBytes, payload, flags } = options.request;
    assert(this.#state === 'ready' || this.#state === 'closing', `send in state ${this.#state}`);
    const record = this.#requests.add({
      type,
      offsetBytes,
      lengthBytes,
      payloadBytes: options.payloadBytes,
      resolve: options.resolve,
      reject: options.reject,
      assembler: type === command.read && this.negotiated.structuredReplies ? new ReadReplyAssembler({ offsetBytes, lengthBytes }) : undefined,
      timer: undefined,
      error: undefined,
    });
    if (this.#requestTimeoutMs > 0) {
      record.timer = setTimeout(() => this.#timedOut(record), this.#requestTimeoutMs);
      record.timer.unref();
    }
    const header = encodeRequest({ flags, type, cookieHi: 0, cookieLo: record.cookieLo, offsetBytes, lengthBytes });
    if (payload === undefined) {
      this.#socket.write(header);
    } else {
      this.#socket.cork();
      this.#socket.write(header);
      this.#socket.write(payload);
      this.#socket.uncork();
    }
  }

  #checkUsable(type: number): void {
    const what = commandName[type] ?? `command ${type}`;
    if (this.#state === 'failed') {
      throw new BlockError('EIO', `Cannot send ${what} to ${this.target.uri}: ${this.#failure?.message ?? 'connection failed'}`, { cause: this.#failure });
    }
    if (this.#state !== 'ready') throw new BlockError('ESHUTDOWN', `Cannot send ${what} to ${this.target.uri}: connection is closing`);
  }

  #onData(chunk: Buffer): void {
    if (this.#state !== 'ready' && this.#state !== 'closing') return;
    this.#parser.push(chunk);
    for (let frame = this.#parser.next(); frame !== undefined; frame = this.#parser.next()) {
      this.#apply(frame);
      if (this.#state !== 'ready' && this.#state !== 'closing') return;
    }
  }

  /** Applies one reply frame to its request. Ordering: the parser checked the cookie and the bounds. */
  #apply(frame: ReplyFrame): void {
    if (frame.kind === 'protocolError') {
      this.#fail(new BlockError('EIO', `NBD protocol error from ${this.target.uri}: ${frame.message}`));
      return;
    }
    const record = this.#requests.lookup(frame);
    assert(record !== undefined, 'the parser only passes cookies in flight');
    switch (frame.kind) {
      case 'simple':
        if (frame.error !== 0) record.error = { value: frame.error, message: '' };
        this.#complete(record, frame.data);
        return;
      case 'data':
      case 'hole': {
        assert(record.assembler !== undefined, 'the parser only passes data chunks for a READ');
        const problem = frame.kind === 'data' ? record.assembler.addData(frame.offsetBytes, frame.data) : record.assembler.addHole(frame.offsetBytes, frame.holeBytes);
        if (problem !== undefined) {
          this.#fail(new BlockError('EIO', `NBD protocol error from ${this.target.uri}: ${problem}`));
          return;
        }
        if (frame.done) this.#complete(record, undefined);
        return;
      }
      case 'error':
        record.error ??= { value: frame.error, message: frame.message };
        if (frame.done) this.#complete(record, undefined);
        return;
      case 'none':
        this.#complete(record, undefined);
        return;
    }
  }

  /** The reply to `record` is complete: settle it, free its slot, admit waiters. */
  #complete(record: InFlight, simpleData: Buffer | undefined): void {
    let data = simpleData;
    if (record.error === undefined && record.assembler !== undefined) {
      const assembled = record.assembler.finish();
      if ('problem' in assembled) {
        this.#fail(new BlockError('EIO', `NBD protocol error from ${this.target.uri}: ${assembled.problem}`));
        return;
      }
      data = assembled.data;
    }
    this.#release(record);
    if (record.error !== undefined) {
      const { value, message } = record.error;
      const what = commandName[record.type] ?? `command ${record.type}`;
      const detail = message === '' ? `error ${value}` : message.replace(/[^\x20-\x7e]/g, '?').slice(0, 200);
      record.reject(new BlockError(fromNbdError(value), `${what} of ${record.lengthBytes} bytes at ${record.offsetBytes} failed on ${this.target.uri}: ${detail}`));
      return;
    }
    if (record.type === command.read) assert(data !== undefined && data.length === record.lengthBytes, 'a READ reply has the requested length');
    record.resolve(data);
  }

  #release(record: InFlight): void {
    this.#requests.release(record);
    if (this.#state === 'closing' && this.#requests.idle) this.#drained?.();
  }

  #timedOut(record: InFlight): void {
    const what = commandName[record.type] ?? `command ${record.type}`;
    this.#fail(new BlockError('EIO', `${what} of ${record.lengthBytes} bytes at ${record.offsetBytes} on ${this.target.uri} got no reply within ${this.#requestTimeoutMs} ms; connection dropped`));
  }

  #fail(cause: BlockError): void {
    if (this.#state === 'failed' || this.#state === 'closed') return;
    this.#state = 'failed';
    this.#failure = cause;
    this.#socket.destroy();
    const { inFlight, waiting } = this.#requests.takeAll();
    for (const record of inFlight) {
      if (record.timer !== undefined) clearTimeout(record.timer);
      const what = commandName[record.type] ?? `command ${record.type}`;
      record.reject(new BlockError('EIO', `${what} of ${record.lengthBytes} bytes at ${record.offsetBytes} failed: ${cause.message}`, { cause }));
    }
    for (const waiter of waiting) waiter.reject(new BlockError('EIO', cause.message, { cause }));
    this.#drained?.();
    this.#resolveEnded(cause);
  }

  #onClose(): void {
    if (this.#state === 'closing' && this.#discSent) {
      this.#state = 'closed';
      this.#resolveEnded(undefined);
      return;
    }
    this.#fail(new BlockError('EIO', `NBD connection to ${this.target.uri} closed`));
  }
}
