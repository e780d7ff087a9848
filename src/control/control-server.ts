/**
 * ControlServer: the daemon's control socket. Accepts connections on a Unix socket, decodes JSON-lines
 * requests (control-protocol.ts), runs each verb against the DeviceRegistry and writes one response per
 * request. Nothing a client sends can stop the daemon: every failure becomes an error response, and
 * anything that is not a ControlError is reported as EIO (and logged).
 *
 * Per connection:  open --client EOF / error / close()--> closed
 *   - requests run concurrently (a `wait` must not hold up a `status`), at most controlRequestsInFlightMax at
 *     once (plus the rest of the chunk being decoded); beyond that, and while the client does not read
 *     its answers (the write buffer wants a drain), the socket is paused;
 *   - a line longer than controlLineBytesMax gets one EINVAL response (id null) and is skipped;
 *   - when the connection closes, its pending `wait`s are aborted and their answers dropped.
 * Connections are bounded by controlConnectionsMax; one more gets an EBUSY response and is closed (after the
 * line drained, or closeGraceMs at most). Every socket has an 'error' handler, the refused ones too: a
 * client that resets or goes away unread never takes the daemon down.
 *
 * Start-up: `listen()` binds (a socket path left by a dead daemon is replaced; a path where a daemon
 * answers is ListenError EADDRINUSE, so two daemons never share a socket) and holds connections
 * unanswered; `start()` answers them. The daemon binds every listener before it starts any.
 */
import { mkdir, unlink } from 'node:fs/promises';
import type { Socket } from 'node:net';
import { dirname } from 'node:path';
import { makeSocketFolderPrivate, type SocketAccess } from '../nbd/held-listener.js';
import { assert, unreachable } from '../assert.js';
import { ControlError } from '../errors.js';
import { detach, rethrowProgrammerError } from '../fail-fast.js';
import { closeGraceMs, controlConnectionsMax, controlLineBytesMax, controlRequestsInFlightMax, heldConnectionsMax } from '../limits.js';
import { HeldListener, toListenError } from '../nbd/held-listener.js';
import {
  LineDecoder,
  encodeLine,
  errorResponse,
  okResponse,
  decodeRequestLine,
  parseRequestValue,
  requestIdOf,
  type ControlRequest,
  type ControlResponse,
  type RequestId,
} from './control-protocol.js';
import type { DeviceRegistry, RegistryLog } from './device-registry.js';

export interface ControlServerOptions {
  readonly registry: DeviceRegistry;
  readonly log: RegistryLog;
}

export class ControlServer {
  readonly #registry: DeviceRegistry;
  readonly #log: RegistryLog;
  readonly #connections = new Set<Socket>();
  /** Refused sockets waiting for their EBUSY line to drain. */
  readonly #refused = new Set<Socket>();
  #held: HeldListener | undefined;
  #path: string | undefined;

  constructor(options: ControlServerOptions) {
    this.#registry = options.registry;
    this.#log = options.log;
  }

  get connectionCount(): number {
    return this.#connections.size;
  }

  /**
   * Binds `path` (creating its folder, mode 0700) and holds connections until `start()`. The socket is
   * 0600 unless `socket` says otherwise (HeldListener creates it so). `privateFolder` (the per-user
   * default path): the folder must be a real folder of ours, and is made 0700 if it is not (a folder
   * someone else made first, in /tmp, is refused).
   * @throws ListenError when another daemon answers there or the path cannot be used.
   */
  async listen(path: string, options: { socket?: SocketAccess; privateFolder?: boolean } = {}): Promise<void> {
    assert(this.#held === undefined, 'listen once');
    try {
      await mkdir(dirname(path), { recursive: true, mode: 0o700 });
      if (options.privateFolder === true) await makeSocketFolderPrivate(path);
    } catch (err) {
      rethrowProgrammerError(err);
      throw toListenError(err, { path });
    }
    const log = (message: string): void => this.#log.error({}, `control socket: ${message}`);
    this.#held = await HeldListener.listen({ path }, { log, ...(options.socket !== undefined && { socket: options.socket }) });
    this.#path = path;
  }

  /** Answers the connections held since `listen()`, and every new one. */
  start(): void {
    const held = this.#held;
    assert(held !== undefined, 'listen before start');
    held.start((socket) => this.#accept(socket));
  }

  /** Stops accepting, closes every connection and removes the socket file. */
  async close(): Promise<void> {
    const held = this.#held;
    if (held === undefined) return;
    this.#held = undefined;
    const stopped = held.close();
    for (const socket of [...this.#connections, ...this.#refused]) socket.destroy();
    await stopped;
    if (this.#path !== undefined) {
      const path = this.#path;
      await unlink(path).catch((err: unknown) => {
        rethrowProgrammerError(err);
        // Usually already gone (libuv removes the path it bound); anything else leaves a stale socket file.
        if (!(typeof err === 'object' && err !== null && 'code' in err && err.code === 'ENOENT')) {
          this.#log.error({ err, path }, 'cannot remove the control socket');
        }
      });
    }
  }

  #accept(socket: Socket): void {
    socket.on('error', (err) => this.#log.info({ err: err.message }, 'control connection error'));
    if (this.#connections.size >= controlConnectionsMax) {
      this.#refuse(socket);
      return;
    }
    this.#connections.add(socket);
    const aborter = new AbortController();
    const decoder = new LineDecoder({ lineBytesMax: controlLineBytesMax });
    let inFlight = 0;
    // Read only while fewer than controlRequestsInFlightMax requests run and the client reads its answers:
    // a client that sends without reading must not make the daemon buffer answers without bound.
    const gate = (): void => {
      if (socket.destroyed) return;
      if (inFlight >= controlRequestsInFlightMax || socket.writableNeedDrain) socket.pause();
      else socket.resume();
    };
    const send = (response: ControlResponse): void => {
      if (!socket.destroyed && socket.writable) socket.write(encodeLine(response));
    };
    socket.on('drain', gate);
    socket.on('data', (chunk: Buffer) => {
      for (const item of decoder.push(chunk)) {
        if (item.kind === 'overflow') {
          send(errorResponse(null, new ControlError('EINVAL', `Request line longer than ${controlLineBytesMax} bytes`)));
          continue;
        }
        if (item.text.trim() === '') continue;
        inFlight++;
        const answered = this.#handle(item.text, aborter.signal).then((response) => {
          inFlight--;
          if (!aborter.signal.aborted) send(response);
          gate();
        });
        // #handle answers every operating error itself; anything else is logged and drops the connection.
        detach(answered, (err) => {
          this.#log.error({ err }, 'control request failed unexpectedly');
          socket.destroy();
        });
      }
      gate();
    });
    socket.on('close', () => {
      this.#connections.delete(socket);
      aborter.abort(new ControlError('EIO', 'control connection closed'));
    });
  }

  /**
   * One EBUSY line, then the socket closes: once the line drained and the client hung up, or after
   * closeGraceMs. Refused sockets are bounded too (heldConnectionsMax); beyond that they close at once.
   */
  #refuse(socket: Socket): void {
    if (this.#refused.size >= heldConnectionsMax) {
      socket.destroy();
      return;
    }
    this.#refused.add(socket);
    const timer = setTimeout(() => socket.destroy(), closeGraceMs);
    socket.once('close', () => {
      clearTimeout(timer);
      this.#refused.delete(socket);
    });
    socket.on('data', () => undefined); // A request already sent is read and dropped, so close is clean.
    socket.end(encodeLine(errorResponse(null, new ControlError('EBUSY', `Too many control connections (${controlConnectionsMax})`))));
  }

  /** One request line -> its response; never throws (an AssertionError excepted). */
  async #handle(line: string, signal: AbortSignal): Promise<ControlResponse> {
    let id: RequestId = null;
    const startMs = performance.now();
    let verb = 'unknown';
    let device: string | undefined;
    try {
      const value = decodeRequestLine(line);
      id = requestIdOf(value);
      const request = parseRequestValue(value);
      verb = request.verb;
      device = 'name' in request ? request.name : undefined;
      const result = await this.#run(request, signal);
      this.#log.debug({ verb, device, ms: Math.round(performance.now() - startMs) }, 'control request done');
      return okResponse(id, result);
    } catch (err) {
      rethrowProgrammerError(err);
      if (err instanceof ControlError) {
        this.#log.debug({ verb, device, ms: Math.round(performance.now() - startMs), code: err.code, err: err.message }, 'control request failed');
        return errorResponse(id, err);
      }
      this.#log.error({ err }, 'control request failed');
      const message = err instanceof Error ? err.message : String(err);
      return errorResponse(id, new ControlError('EIO', message, { cause: err }));
    }
  }

  async #run(request: ControlRequest, signal: AbortSignal): Promise<unknown> {
    const registry = this.#registry;
    switch (request.verb) {
      case 'create':
        return registry.create(request.nbd === undefined ? request : { ...request, nbd: request.nbd });
      case 'load':
        return done(registry.load(request));
      case 'clear':
        return done(registry.clear(request.name));
      case 'suspend':
        return done(registry.suspend(request));
      case 'resume':
        return done(registry.resume(request.name));
      case 'remove':
        return done(registry.remove(request.name));
      case 'status':
      case 'table':
        return registry.view({ name: request.name, kind: request.verb, inactive: request.inactive });
      case 'info':
        return registry.info(request.name);
      case 'ls':
        return { devices: registry.list() };
      case 'wait':
        return { eventNr: await registry.wait({ name: request.name, afterNr: request.eventNr, signal }) };
      case 'message':
        return { output: registry.message(request) };
      case 'scrub':
        // Closing the connection (Ctrl-C on the CLI) stops the scrub after its region in hand.
        return registry.scrub({ ...request, signal });
      default:
        return unreachable(request);
    }
  }
}

/** A verb with nothing to report answers `{}`. */
async function done(operation: Promise<void>): Promise<object> {
  await operation;
  return {};
}
