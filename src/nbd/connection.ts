/**
 * NbdConnection: one client socket, from greeting to close. It owns the parser, the handshake session,
 * the in-flight count and the socket; the protocol decisions live in handshake.ts and transmission.ts.
 *
 * States:
 *   handshake ──STARTTLS ACK──> (TLS handshake: nothing read as NBD) ──secure──> handshake (inside TLS)
 *   handshake ──GO/EXPORT_NAME──> transmission ──DISC / client EOF / shutdown(graceful)──> draining ──> closed
 *       │                              │
 *       └── protocol error, ABORT, ────┴──> closed (socket destroyed; in-flight replies are dropped)
 *           unknown client flags,
 *           shutdown(not graceful)
 *
 * Ordering rules:
 *   - Options are handled one at a time, in order; each option's replies are written before the next.
 *   - Requests start in arrival order and may complete in any order (replies carry the cookie). Replies are
 *     queued whole and written once per event-loop turn (cork/uncork: one writev for all of them), so
 *     replies never interleave and the socket ends only after the queued ones.
 *   - Backpressure: at most `inFlightMax` requests (and about `inFlightBytesMax` payload bytes) run at once;
 *     beyond that, and while the socket's write buffer wants a drain, we stop taking frames from the parser
 *     and pause the socket.
 *   - draining: no new request starts; requests already parsed get ESHUTDOWN (on shutdown) or are dropped
 *     (after DISC, the client sends nothing more); the socket ends when in-flight reaches zero.
 *   - The handshake must reach transmission within `handshakeTimeoutMs` (0: no limit), or the socket is
 *     destroyed: a client that takes the greeting and waits must not hold the export open.
 *   - STARTTLS (server-tls.ts): the ACK is written and flushed on the plain socket, then the socket is
 *     wrapped; a client that sent bytes after STARTTLS, before its ACK could arrive, is dropped (those
 *     bytes were not protected by TLS and must never be taken as options: the STARTTLS injection hole).
 *     A failed TLS handshake, or a peer the credentials do not accept, closes the connection; the
 *     handshake timeout covers the TLS handshake too.
 *   - `isClient`: in transmission and the client has not hung up. A client that went away while a request
 *     of its is held by the device no longer counts, though the connection lives until that request ends.
 */
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { assert } from '../assert.js';
import { detach } from '../fail-fast.js';
import { closeGraceMs, inFlightBytesMax, inFlightMax, requestBytesMax } from '../limits.js';
import { assertRequest, encodeGreeting, NbdServerParser, type NbdRequest } from './codec.js';
import { HandshakeSession, type Negotiated } from './handshake.js';
import type { ExportResolver, NbdExport } from './nbd-export.js';
import { command, handshakeFlag, nbdErrno } from './protocol.js';
import type { NbdServerTls } from './server-tls.js';
import { errorReply, executeRequest, type ReplyBuffers, validateRequest } from './transmission.js';

export { inFlightBytesMax } from '../limits.js';

/** Reply buffers queued for one socket write before they are written without waiting for the turn's end. */
export const outgoingBuffersMax = 1024;

export type ConnectionState = 'handshake' | 'transmission' | 'draining' | 'closed';

export interface NbdConnectionOptions {
  readonly socket: Socket;
  readonly resolver: ExportResolver;
  readonly log: (message: string) => void;
  readonly handshakeTimeoutMs?: number;
  /** TLS credentials and mode; none: the spec's NOTLS mode. */
  readonly tls?: NbdServerTls;
  /** The server's admission check before GO/EXPORT_NAME (see handshake.ts). */
  readonly admit?: (nbdExport: NbdExport) => string | undefined;
  /** Clients finishing the handshake and, later, disconnecting (for the logs). */
  readonly onClient?: (event: NbdClientEvent) => void;
}

/**
 * A client that finished the handshake ('connect') and, later, its connection closing ('disconnect');
 * a client dropped during the handshake has neither. `peer` is HOST:PORT, or "unix" for a Unix socket.
 */
export interface NbdClientEvent {
  readonly kind: 'connect' | 'disconnect';
  readonly peer: string;
  readonly exportName: string;
  readonly structuredReplies: boolean;
}

export class NbdConnection {
  /** The plain socket, then the TLS socket wrapping it after STARTTLS. */
  #socket: Socket;
  readonly #tls: NbdServerTls | undefined;
  readonly #log: (message: string) => void;
  readonly #onClient: (event: NbdClientEvent) => void;
  #closeSeen = false;
  readonly #peer: string;
  readonly #parser = new NbdServerParser({ payloadBytesMax: requestBytesMax, skipBytesMax: 2 * requestBytesMax });
  readonly #session: HandshakeSession;
  readonly #closed: Promise<void>;
  #state: ConnectionState = 'handshake';
  #negotiated: Negotiated | undefined;
  #inFlight = 0;
  #inFlightBytes = 0;
  #waitingForDrain = false;
  #shutdownReplies = false;
  #clientEnded = false;
  /** socket.end() was called: our side is closed and incoming bytes are dropped. */
  #ourSideEnded = false;
  /** Reply buffers queued in this event-loop turn, written together by #flushOutgoing. */
  #outgoing: Buffer[] = [];
  #flushScheduled = false;
  #handshakeTimer: NodeJS.Timeout | undefined;
  /** Between the STARTTLS ACK and the end of the TLS handshake: nothing is parsed. */
  #tlsHandshaking = false;
  /** We dropped the client (and said why): later failures of its socket are not news. */
  #aborted = false;
  #resolveClosed: () => void = () => undefined;

  constructor(options: NbdConnectionOptions) {
    this.#socket = options.socket;
    this.#log = options.log;
    this.#tls = options.tls;
    this.#onClient = options.onClient ?? (() => undefined);
    const address = options.socket.remoteAddress;
    this.#peer = address === undefined ? 'unix' : `${address.includes(':') ? `[${address}]` : address}:${options.socket.remotePort ?? 0}`;
    this.#session = new HandshakeSession(options.resolver, {
      tlsMode: options.tls?.mode ?? 'off',
      ...(options.admit !== undefined && { admit: options.admit }),
    });
    this.#socket.setNoDelay(true);
    this.#closed = new Promise((resolve) => {
      this.#resolveClosed = resolve;
    });
    this.#socket.once('close', this.#onClose);
    const handshakeTimeoutMs = options.handshakeTimeoutMs ?? 0;
    assert(Number.isSafeInteger(handshakeTimeoutMs) && handshakeTimeoutMs >= 0);
    if (handshakeTimeoutMs > 0) {
      this.#handshakeTimer = setTimeout(() => {
        this.#handshakeTimer = undefined;
        if (this.#negotiated === undefined && this.#state !== 'closed') this.#abort(`handshake not finished within ${handshakeTimeoutMs} ms`);
      }, handshakeTimeoutMs);
    }
    this.#socket.on('error', this.#onError);
    this.#attach(this.#socket);
    this.#socket.write(encodeGreeting(handshakeFlag.fixedNewstyle | handshakeFlag.noZeroes));
  }

  /** The export this connection holds (after GO/EXPORT_NAME), for the server's per-export count. */
  get nbdExport(): NbdExport | undefined {
    return this.#state === 'closed' ? undefined : this.#negotiated?.nbdExport;
  }

  readonly #onClose = (): void => {
    // After STARTTLS both the plain socket and the TLS socket over it close: the client left once.
    if (this.#closeSeen) return;
    this.#closeSeen = true;
    this.#state = 'closed';
    this.#clearHandshakeTimer();
    if (this.#negotiated !== undefined) this.#clientEvent('disconnect', this.#negotiated);
    this.#resolveClosed();
  };

  readonly #onError = (err: Error & { code?: string }): void => {
    if (err.code !== 'ECONNRESET' && err.code !== 'EPIPE') this.#log(`nbd: socket error: ${err.message}`);
  };

  readonly #onData = (chunk: Buffer): void => {
    if (this.#ourSideEnded) return; // Waiting for the client's end: nothing more is answered.
    this.#parser.push(chunk);
    this.#pump();
  };

  readonly #onEnd = (): void => this.#onClientEnd();

  readonly #onDrain = (): void => {
    this.#waitingForDrain = false;
    this.#pump();
  };

  /** The NBD reading and writing handlers ('close' and 'error' are attached once per socket, apart). */
  #attach(socket: Socket): void {
    socket.on('data', this.#onData);
    socket.on('end', this.#onEnd);
    socket.on('drain', this.#onDrain);
  }

  #detach(socket: Socket): void {
    socket.off('data', this.#onData);
    socket.off('end', this.#onEnd);
    socket.off('drain', this.#onDrain);
  }

  get state(): ConnectionState {
    return this.#state;
  }

  get inFlight(): number {
    return this.#inFlight;
  }

  /** Finished the handshake and the client is still there (see the banner). */
  get isClient(): boolean {
    return this.#state === 'transmission' && !this.#clientEnded;
  }

  /** Resolves when the socket has closed. */
  get closed(): Promise<void> {
    return this.#closed;
  }

  /**
   * Ends the connection. Graceful: requests in flight finish, requests already received get ESHUTDOWN,
   * then the socket ends. Otherwise the socket is destroyed at once. Resolves when it has closed.
   */
  shutdown(options: { graceful: boolean }): Promise<void> {
    if (this.#state === 'closed') return this.#closed;
    if (!options.graceful || this.#state === 'handshake') {
      this.#socket.destroy();
      return this.#closed;
    }
    this.#shutdownReplies = true;
    this.#drain();
    return this.#closed;
  }

  /** Takes frames from the parser while we may; see the backpressure rule in the banner. */
  #pump(): void {
    while ((this.#state === 'handshake' && !this.#tlsHandshaking) || this.#state === 'transmission') {
      const full = this.#inFlight >= inFlightMax || this.#inFlightBytes >= inFlightBytesMax;
      if (this.#state === 'transmission' && (full || this.#waitingForDrain)) {
        this.#socket.pause();
        return;
      }
      const frame = this.#parser.next();
      if (frame === undefined) break;
      switch (frame.kind) {
        case 'protocolError':
          return this.#abort(`protocol error: ${frame.message}`);
        case 'clientFlags': {
          const problem = this.#session.handleClientFlags(frame.flags);
          if (problem !== undefined) return this.#abort(problem);
          break;
        }
        case 'option': {
          assert(this.#state === 'handshake');
          const step = this.#session.handleOption(frame.option, frame.payload);
          if (step.next === 'startTls') return this.#startTls(step.replies);
          this.#write(step.replies);
          if (step.next === 'close') {
            this.#log(`nbd: closing during handshake: ${step.reason}`);
            this.#end();
            this.#state = 'draining';
            return;
          }
          if (step.next === 'transmission') {
            this.#clearHandshakeTimer();
            this.#negotiated = step.negotiated;
            this.#parser.enterTransmission();
            this.#state = 'transmission';
            this.#clientEvent('connect', step.negotiated);
          }
          break;
        }
        case 'request':
          this.#onRequest(frame.request);
          break;
      }
    }
    if (this.#state !== 'handshake' && this.#state !== 'transmission') return;
    if (this.#tlsHandshaking) return;
    if (this.#clientEnded) {
      // Everything the client sent before its EOF has been started; finish those, then close.
      this.#state = 'draining';
      this.#finishIfIdle();
    } else {
      this.#socket.resume();
    }
  }

  /**
   * STARTTLS was acknowledged: flush the ACK on the plain socket, then hand the socket to TLS. Bytes the
   * client sent after STARTTLS (already in the parser) were sent before it could see the ACK: refused.
   */
  #startTls(replies: readonly Buffer[]): void {
    const tls = this.#tls;
    assert(tls !== undefined, 'STARTTLS is acknowledged only with TLS credentials');
    assert(this.#state === 'handshake' && !this.#tlsHandshaking);
    if (this.#parser.bufferedBytes > 0) return this.#abort('bytes after STARTTLS before the TLS handshake');
    this.#tlsHandshaking = true;
    const plain = this.#socket;
    this.#detach(plain);
    plain.pause();
    this.#flushOutgoing();
    plain.write(Buffer.concat(replies), (err) => {
      if (err !== undefined && err !== null) return this.#abort(`cannot send the STARTTLS reply: ${err.message}`);
      if (this.#state === 'closed' || plain.destroyed) return;
      this.#upgrade(tls, plain);
    });
  }

  #upgrade(tls: NbdServerTls, plain: Socket): void {
    tls.upgrade(plain, {
      secure: (secure: TLSSocket) => {
        if (this.#state === 'closed') {
          secure.destroy();
          return;
        }
        this.#socket = secure;
        secure.once('close', this.#onClose);
        secure.on('error', this.#onError);
        this.#tlsHandshaking = false;
        this.#attach(secure);
        this.#pump();
      },
      failed: (reason) => {
        if (!this.#aborted) this.#log(`nbd: TLS handshake failed: ${reason}`);
      },
    });
  }

  #onRequest(request: NbdRequest): void {
    const negotiated = this.#negotiated;
    assert(negotiated !== undefined);
    if (this.#shutdownReplies) {
      if (request.type !== command.disc) {
        this.#write(errorReply({ cookie: request, error: nbdErrno.ESHUTDOWN, message: 'server is shutting down', structured: negotiated.structuredReplies }));
      }
      return;
    }
    assert(this.#state === 'transmission');
    if (request.type === command.disc) {
      this.#drain();
      return;
    }
    const failure = validateRequest(request, negotiated);
    if (failure !== undefined) {
      this.#log(`nbd: rejected ${failure.message}`);
      this.#write(errorReply({ cookie: request, error: failure.error, message: failure.message, structured: negotiated.structuredReplies }));
      return;
    }
    const bytes = payloadBytesOf(request);
    this.#inFlight += 1;
    this.#inFlightBytes += bytes;
    assert(this.#inFlight <= inFlightMax);
    // executeRequest turns every operating error into an error reply; what reaches detach's handler is a
    // failure of our own bookkeeping, after which the connection cannot be trusted: drop it.
    detach(
      executeRequest({ request, negotiated, log: this.#log }).then((replies) => this.#complete(request, replies)),
      (err) => this.#abort(`request failed unexpectedly: ${String(err)}`),
    );
  }

  #complete(request: NbdRequest, replies: ReplyBuffers): void {
    assertRequest(request);
    assert(this.#inFlight > 0);
    this.#inFlight -= 1;
    this.#inFlightBytes -= payloadBytesOf(request);
    assert(this.#inFlightBytes >= 0);
    if (this.#inFlight === 0) assert(this.#inFlightBytes === 0);
    if (this.#state === 'closed') return;
    this.#write(replies);
    if (this.#state === 'draining') this.#finishIfIdle();
    else this.#pump();
  }

  /**
   * Queues a reply (its buffers stay together and in order) and schedules one socket write for every
   * reply queued during this event-loop turn: completions that arrive together (one libuv batch of
   * threadpool results) leave in one writev instead of one syscall each.
   */
  #write(buffers: readonly Buffer[]): void {
    if (this.#state === 'closed' || buffers.length === 0 || this.#socket.destroyed) return;
    for (const buffer of buffers) this.#outgoing.push(buffer);
    // Bounded: a turn that queues this many buffers (a flood of rejected requests) writes them at once.
    if (this.#outgoing.length >= outgoingBuffersMax) this.#flushOutgoing();
    assert(this.#outgoing.length < outgoingBuffersMax, 'the reply queue is bounded');
    if (this.#flushScheduled) return;
    this.#flushScheduled = true;
    setImmediate(this.#flushOutgoing);
  }

  /** Writes every queued reply buffer at once (cork/uncork: one writev). Also called before end(). */
  readonly #flushOutgoing = (): void => {
    this.#flushScheduled = false;
    const buffers = this.#outgoing;
    if (buffers.length === 0) return;
    this.#outgoing = [];
    if (this.#state === 'closed' || this.#socket.destroyed) return;
    this.#socket.cork();
    for (const buffer of buffers) this.#socket.write(buffer);
    this.#socket.uncork();
    if (this.#socket.writableNeedDrain) this.#waitingForDrain = true;
  };

  /**
   * Ends our side after the queued replies. The server allows half-open sockets, so 'close' comes only
   * once the client ends its side too: keep reading (and ignoring) until it does, and destroy the socket
   * if it has not within {@link closeGraceMs} (a client that never hangs up must not hold a shutdown).
   */
  #end(): void {
    this.#flushOutgoing();
    if (this.#ourSideEnded) return;
    this.#ourSideEnded = true;
    this.#socket.end();
    if (this.#clientEnded) return;
    this.#socket.resume();
    const timer = setTimeout(() => this.#socket.destroy(), closeGraceMs);
    this.#socket.once('close', () => clearTimeout(timer));
  }

  /** Stop starting requests; answer what is already received (with ESHUTDOWN on shutdown). */
  #drain(): void {
    if (this.#state === 'transmission' || this.#state === 'handshake') this.#state = 'draining';
    this.#socket.pause();
    if (this.#shutdownReplies && this.#negotiated !== undefined) {
      for (let frame = this.#parser.next(); frame !== undefined; frame = this.#parser.next()) {
        if (frame.kind === 'request') this.#onRequest(frame.request);
      }
    }
    this.#finishIfIdle();
  }

  #finishIfIdle(): void {
    if (this.#state !== 'draining' || this.#inFlight > 0) return;
    this.#end();
  }

  #onClientEnd(): void {
    // A client may close without DISC; that is normal. We answer what it sent, then close our side.
    this.#clientEnded = true;
    if (this.#state === 'handshake' || this.#state === 'transmission') this.#pump();
    else this.#finishIfIdle();
  }

  #clientEvent(kind: NbdClientEvent['kind'], negotiated: Negotiated): void {
    this.#onClient({ kind, peer: this.#peer, exportName: negotiated.nbdExport.name, structuredReplies: negotiated.structuredReplies });
  }

  #clearHandshakeTimer(): void {
    if (this.#handshakeTimer === undefined) return;
    clearTimeout(this.#handshakeTimer);
    this.#handshakeTimer = undefined;
  }

  #abort(reason: string): void {
    this.#aborted = true;
    this.#log(`nbd: dropping client: ${reason}`);
    this.#state = 'closed';
    this.#socket.destroy();
  }
}

function payloadBytesOf(request: NbdRequest): number {
  return request.type === command.read || request.type === command.write ? request.lengthBytes : 0;
}
