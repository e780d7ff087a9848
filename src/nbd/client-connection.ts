/**
 * NbdClientConnection: one socket to one NBD export, the I/O half of the NBD client. It runs the pure
 * handshake (client-handshake.ts) and reply parser (client-codec.ts) over a TCP or Unix socket and turns
 * wire requests into promises. It knows nothing of BlockDevice semantics: NbdBlockDevice splits, aligns
 * and chooses commands; this class sends exactly the requests it is given.
 *
 * States (one object per socket; a new socket is a new object):
 *
 *   connect() --(socket up, handshake done)--> ready --close()--> closing --(in flight drained, DISC
 *   sent, socket closed)--> closed
 *   ready | closing --(socket error or end, protocol error, request timeout, destroy())--> failed
 *   connect() rejects (no object) when the socket, the handshake or the connect timeout fails.
 *
 * It owns: the in-flight table (cookie -> request, at most `inFlightMax` requests and `inFlightBytesMax`
 * payload bytes; further requests wait in a FIFO of at most nbdClientWaitingMax, beyond which they fail
 * with ENOMEM), one timer per request in flight when `requestTimeoutMs` is set, and the `ended` promise.
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
 * handshake sends STARTTLS before any other option. On its ACK the socket is handed to node:tls
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
import { type PendingRequest, ReadReplyAssembler, encodeRequest, NbdReplyParser, type ReplyFrame } from './client-codec.js';
import { type ClientNegotiated, NbdClientHandshake } from './client-handshake.js';
import { checkNbdTlsPeer, loadNbdTlsCredentials, type NbdTlsCredentials, startNbdTls, tlsHandshakeError } from './client-tls.js';
import type { NbdTarget } from './client-uri.js';
import type { Cookie } from './codec.js';
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

interface InFlight extends PendingRequest {
  readonly cookieLo: number;
  readonly payloadBytes: number;
  readonly resolve: (data: Buffer | undefined) => void;
  readonly reject: (err: BlockError) => void;
  readonly assembler: ReadReplyAssembler | undefined;
  timer: NodeJS.Timeout | undefined;
  /** The first error chunk of a structured reply; the request fails with it at DONE. */
  error: { readonly value: number; readonly message: string } | undefined;
}

interface Waiter {
  readonly payloadBytes: number;
  readonly send: () => void;
  readonly reject: (err: BlockError) => void;
}

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
  readonly #inFlightMax: number;
  readonly #inFlightBytesMax: number;
  readonly #inFlight = new Map<number, InFlight>();
  readonly #waiting: Waiter[] = [];
  #inFlightBytes = 0;
  #nextCookie = 1;
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
    this.#inFlightMax = options.inFlightMax;
    this.#inFlightBytesMax = options.inFlightBytesMax;
    this.ended = new Promise((resolve) => {
      this.#resolveEnded = resolve;
    });
    this.#parser = new NbdReplyParser({
      structuredReplies: options.negotiated.structuredReplies,
      lookup: (cookie) => this.#lookup(cookie),
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
    const { negotiated, socket } = await handshake({ target, socket: raw, credentials, timeoutMs: connectTimeoutMs });
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
    return this.#inFlight.size;
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
    if (this.#inFlight.size > 0 || this.#waiting.length > 0) {
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
      if (this.#waiting.length === 0 && this.#fits(payloadBytes)) {
        send();
      } else if (this.#waiting.length >= nbdClientWaitingMax) {
        reject(new BlockError('ENOMEM', `Cannot queue ${commandName[type] ?? type} to ${this.target.uri}: ${nbdClientWaitingMax} requests are waiting`));
      } else {
        this.#waiting.push({ payloadBytes, send, reject });
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
    const cookieLo = this.#allocateCookie();
    const record: InFlight = {
      cookieLo,
      type,
      offsetBytes,
      lengthBytes,
      payloadBytes: options.payloadBytes,
      resolve: options.resolve,
      reject: options.reject,
      assembler: type === command.read && this.negotiated.structuredReplies ? new ReadReplyAssembler({ offsetBytes, lengthBytes }) : undefined,
      timer: undefined,
      error: undefined,
    };
    this.#inFlight.set(cookieLo, record);
    this.#inFlightBytes += options.payloadBytes;
    assert(this.#inFlight.size <= this.#inFlightMax, 'in-flight requests stay within inFlightMax');
    if (this.#requestTimeoutMs > 0) {
      record.timer = setTimeout(() => this.#timedOut(record), this.#requestTimeoutMs);
      record.timer.unref();
    }
    const header = encodeRequest({ flags, type, cookieHi: 0, cookieLo, offsetBytes, lengthBytes });
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

  #lookup(cookie: Cookie): PendingRequest | undefined {
    if (cookie.cookieHi !== 0) return undefined;
    return this.#inFlight.get(cookie.cookieLo);
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
    const record = this.#inFlight.get(frame.cookieLo);
    assert(record !== undefined && frame.cookieHi === 0, 'the parser only passes cookies in flight');
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
    if (this.#state === 'closing' && this.#inFlight.size === 0 && this.#waiting.length === 0) this.#drained?.();
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
    const inFlight = [...this.#inFlight.values()];
    this.#inFlight.clear();
    this.#inFlightBytes = 0;
    for (const record of inFlight) {
      if (record.timer !== undefined) clearTimeout(record.timer);
      const what = commandName[record.type] ?? `command ${record.type}`;
      record.reject(new BlockError('EIO', `${what} of ${record.lengthBytes} bytes at ${record.offsetBytes} failed: ${cause.message}`, { cause }));
    }
    for (const waiter of this.#waiting.splice(0)) waiter.reject(new BlockError('EIO', cause.message, { cause }));
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

/**
 * Runs the handshake on a connecting socket, upgrading it to TLS when `credentials` are given. Resolves
 * with the socket to use from now on (the TLS socket after an upgrade), paused. @throws BlockError; every
 * socket is destroyed on failure.
 */
function handshake(options: {
  target: NbdTarget;
  socket: Socket;
  credentials: NbdTlsCredentials | undefined;
  timeoutMs: number;
}): Promise<{ negotiated: ClientNegotiated; socket: Socket }> {
  const { target, credentials } = options;
  const raw = options.socket;
  const session = new NbdClientHandshake({ exportName: target.exportName, tls: credentials !== undefined });
  // The socket the handshake reads and writes: `raw` until STARTTLS is acknowledged, then the TLS socket.
  let current: Socket = raw;
  return new Promise((resolve, reject) => {
    let settled = false;
    const finish = (result: { negotiated: ClientNegotiated } | { error: BlockError }): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      current.off('data', onData);
      current.off('error', onError);
      current.off('close', onClose);
      if ('error' in result) {
        // The failure is reported through the rejection; a late socket error has nothing left to fail.
        current.on('error', () => undefined);
        raw.on('error', () => undefined);
        current.destroy();
        raw.destroy();
        reject(result.error);
      } else {
        // Hold incoming bytes until the connection object listens (the handshake left none buffered).
        current.pause();
        resolve({ negotiated: result.negotiated, socket: current });
      }
    };
    const pump = (): void => {
      for (let step = session.next(); step !== undefined && !settled; step = session.next()) {
        switch (step.kind) {
          case 'send':
            current.write(step.data);
            break;
          case 'startTls':
            upgrade();
            return; // Nothing more until the TLS handshake is done.
          case 'failed':
            finish({ error: new BlockError(step.error.code, `Cannot connect to ${target.uri}: ${step.error.message}`, { cause: step.error }) });
            break;
          case 'done':
            finish({ negotiated: step.negotiated });
            break;
        }
      }
    };
    const upgrade = (): void => {
      assert(credentials !== undefined && current === raw, 'STARTTLS is sent only for a TLS target, once');
      raw.off('data', onData);
      raw.off('error', onError);
      raw.off('close', onClose);
      // Errors of the raw socket surface on the TLS socket that wraps it.
      raw.on('error', () => undefined);
      const secure = startNbdTls({ socket: raw, credentials });
      current = secure;
      secure.on('error', onError);
      secure.on('close', onClose);
      secure.once('secureConnect', () => {
        if (settled) return;
        const problem = checkNbdTlsPeer(secure, credentials);
        if (problem !== undefined) {
          finish({ error: new BlockError('EIO', `Cannot connect to ${target.uri}: TLS handshake failed: ${problem}`) });
          return;
        }
        secure.on('data', onData);
        session.tlsEstablished();
        pump();
      });
    };
    const onData = (chunk: Buffer): void => {
      session.push(chunk);
      pump();
    };
    const onError = (err: Error): void => {
      if (current !== raw && session.state === 'tlsPending' && credentials !== undefined) {
        finish({ error: tlsHandshakeError({ err, credentials, uri: target.uri }) });
        return;
      }
      // Under TLS 1.3 a server that refuses our certificate says so only after our side finished.
      const after = current !== raw ? ' after the TLS handshake (the server may have refused our certificate or key)' : '';
      finish({ error: new BlockError('EIO', `Cannot connect to ${target.uri}: ${err.message}${after}`, { cause: err }) });
    };
    const onClose = (): void => {
      const during = session.state === 'tlsPending' ? 'the TLS handshake' : `the handshake (in state ${session.state})`;
      finish({ error: new BlockError('EIO', `Cannot connect to ${target.uri}: the server closed the connection during ${during}`) });
    };
    const timer = setTimeout(() => {
      finish({ error: new BlockError('EIO', `Cannot connect to ${target.uri}: no handshake within ${options.timeoutMs} ms`) });
    }, options.timeoutMs);
    raw.on('data', onData);
    raw.on('error', onError);
    raw.on('close', onClose);
  });
}
