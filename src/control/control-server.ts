/**
 * ControlServer: the daemon's control socket. Accepts connections on a Unix socket, decodes JSON-lines
 * requests (control-protocol.ts), runs each verb against the DeviceRegistry and writes one response per
 * request. Nothing a client sends can stop the daemon: every failure becomes an error response, and
 * anything that is not a ControlError is reported as EIO (and logged).
 *
 * Per connection:  open --client EOF / error / close()--> closed
 *   - requests run concurrently (a `wait` must not hold up a `status`), at most requestsInFlightMax at
 *     once; beyond that the socket is paused until one completes;
 *   - a line longer than controlLineBytesMax gets one EINVAL response (id null) and is skipped;
 *   - when the connection closes, its pending `wait`s are aborted and their answers dropped.
 * Connections are bounded by connectionsMax; one more gets an EBUSY response and is closed.
 *
 * Start-up: a socket path left by a dead daemon (connect fails with ECONNREFUSED) is unlinked; a path
 * where a daemon answers is an error (EADDRINUSE), so two daemons never share a socket.
 */
import { chmod, mkdir, unlink } from 'node:fs/promises';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { dirname } from 'node:path';
import { assert, unreachable } from '../assert.js';
import { ControlError } from '../errors.js';
import {
  LineDecoder,
  controlLineBytesMax,
  encodeLine,
  errorResponse,
  okResponse,
  parseRequest,
  requestIdOf,
  type ControlRequest,
  type ControlResponse,
  type RequestId,
} from './control-protocol.js';
import type { DeviceRegistry, RegistryLog } from './device-registry.js';

export const requestsInFlightMax = 16;
export const connectionsMax = 64;

export interface ControlServerOptions {
  readonly registry: DeviceRegistry;
  readonly log: RegistryLog;
}

export class ControlServer {
  readonly #registry: DeviceRegistry;
  readonly #log: RegistryLog;
  readonly #connections = new Set<Socket>();
  #net: Server | undefined;
  #path: string | undefined;

  constructor(options: ControlServerOptions) {
    this.#registry = options.registry;
    this.#log = options.log;
  }

  get connectionCount(): number {
    return this.#connections.size;
  }

  /** Listens on `path` (creating its folder, mode 0700). @throws when another daemon answers there. */
  async listen(path: string): Promise<void> {
    assert(this.#net === undefined, 'listen once');
    await mkdir(dirname(path), { recursive: true, mode: 0o700 });
    await removeStaleSocket(path);
    const net = createServer({ allowHalfOpen: false }, (socket) => this.#accept(socket));
    await new Promise<void>((resolve, reject) => {
      net.once('error', reject);
      net.listen(path, () => {
        net.off('error', reject);
        resolve();
      });
    });
    net.on('error', (err) => this.#log.error({ err }, 'control socket error'));
    await chmod(path, 0o600);
    this.#net = net;
    this.#path = path;
  }

  /** Stops accepting, closes every connection and removes the socket file. */
  async close(): Promise<void> {
    const net = this.#net;
    if (net === undefined) return;
    this.#net = undefined;
    const stopped = new Promise<void>((resolve) => net.close(() => resolve()));
    for (const socket of this.#connections) socket.destroy();
    await stopped;
    if (this.#path !== undefined) await unlink(this.#path).catch(() => undefined);
  }

  #accept(socket: Socket): void {
    if (this.#connections.size >= connectionsMax) {
      socket.end(encodeLine(errorResponse(null, new ControlError('EBUSY', `Too many control connections (${connectionsMax})`))));
      return;
    }
    this.#connections.add(socket);
    const aborter = new AbortController();
    const decoder = new LineDecoder({ lineBytesMax: controlLineBytesMax });
    let inFlight = 0;
    const send = (response: ControlResponse): void => {
      if (!socket.destroyed && socket.writable) socket.write(encodeLine(response));
    };
    socket.on('data', (chunk: Buffer) => {
      for (const item of decoder.push(chunk)) {
        if (item.kind === 'overflow') {
          send(errorResponse(null, new ControlError('EINVAL', `Request line longer than ${controlLineBytesMax} bytes`)));
          continue;
        }
        if (item.text.trim() === '') continue;
        inFlight++;
        if (inFlight >= requestsInFlightMax) socket.pause();
        void this.#handle(item.text, aborter.signal).then((response) => {
          inFlight--;
          if (inFlight < requestsInFlightMax && !socket.destroyed) socket.resume();
          if (!aborter.signal.aborted) send(response);
        });
      }
    });
    socket.on('error', (err) => this.#log.info({ err: err.message }, 'control connection error'));
    socket.on('close', () => {
      this.#connections.delete(socket);
      aborter.abort(new ControlError('EIO', 'control connection closed'));
    });
  }

  /** One request line -> its response; never throws (an AssertionError excepted). */
  async #handle(line: string, signal: AbortSignal): Promise<ControlResponse> {
    let id: RequestId = null;
    try {
      id = requestIdOf(safeJson(line));
      const request = parseRequest(line);
      return okResponse(id, await this.#run(request, signal));
    } catch (err) {
      if (err instanceof ControlError) return errorResponse(id, err);
      if (isProgrammerError(err)) throw err;
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

function safeJson(line: string): unknown {
  try {
    return JSON.parse(line);
  } catch {
    return undefined; // parseRequest reports it.
  }
}

function isProgrammerError(err: unknown): boolean {
  return err instanceof Error && err.name === 'AssertionError';
}

/** Unlinks a socket no daemon answers on; throws EADDRINUSE when one does. */
async function removeStaleSocket(path: string): Promise<void> {
  const answer = await new Promise<'live' | 'stale' | 'none'>((resolve) => {
    const probe = connect(path);
    probe.once('connect', () => {
      probe.destroy();
      resolve('live');
    });
    probe.once('error', (err: Error & { code?: string }) => resolve(err.code === 'ENOENT' ? 'none' : 'stale'));
  });
  if (answer === 'live') {
    throw Object.assign(new Error(`another umirror daemon is listening on ${path}`), { code: 'EADDRINUSE' });
  }
  if (answer === 'stale') await unlink(path).catch(() => undefined);
}
