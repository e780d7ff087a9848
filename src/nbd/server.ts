/**
 * NbdServer: serves BlockDevices over NBD (fixed newstyle, structured replies, block status) on any
 * number of TCP and Unix-socket listeners. Who calls it: `umirror serve` and the daemon, with the mirror
 * set as the device; tests, with a MemoryBlockDevice.
 *
 *   const server = new NbdServer({ exports: [{ name: 'vol0', device }] });
 *   const listener = await server.listen({ path: '/run/umirror/vol0.sock' });
 *   console.log(listener.uri);            // nbd+unix:///vol0?socket=/run/umirror/vol0.sock
 *   await server.close({ graceful: true });
 *
 * States: open --close()--> closed. Listeners and connections are tracked in sets; closing a listener
 * stops accepting and shuts its connections down; closing the server closes every listener. The server
 * never closes the devices: their owner does, after the server has closed.
 *
 * Start-up order: `listen(address, { start: false })` binds (a busy address throws ListenError, a stale
 * Unix socket file is replaced) and holds connections unanswered; the owner resumes its device, then
 * calls `listener.start()`. A client must finish the handshake within `handshakeTimeoutMs` (10 s, as
 * qemu-nbd) or it is dropped; until it finishes it does not count as a client (`clientCount`).
 *
 * Security (docs/security.md): `tls` makes every listener offer (mode on) or require (mode require)
 * TLS after NBD_OPT_STARTTLS, with one set of credentials (server-tls.ts); a listener's URI is then
 * nbds:// or nbds+unix://. Bounds per client (limits.ts): at most `connectionsPerExportMax` connections
 * in transmission per export (one more GO answers NBD_REP_ERR_POLICY), at most
 * nbdHandshakingConnectionsMax connections still in the handshake per server (one more is closed before
 * the greeting), and each connection's requests in flight are bounded by inFlightMax and
 * inFlightBytesMax. A connection refused so leaves every other one untouched. `socket` options give a
 * Unix listener's socket file its mode and group (owner-only, 0600, by default; held-listener.ts).
 */
import type { Socket } from 'node:net';
import { assert } from '../assert.js';
import { detach } from '../fail-fast.js';
import {
  handshakeTimeoutMsDefault,
  inFlightMax,
  nbdConnectionsPerExportDefault,
  nbdConnectionsPerExportMax,
  nbdHandshakingConnectionsMax,
  writeQueueMax,
} from '../limits.js';
import { NbdConnection, type NbdClientEvent } from './connection.js';
import { HeldListener, type ListenAddress, type SocketAccess } from './held-listener.js';
import { type ExportResolver, type NbdExport, StaticExportResolver } from './nbd-export.js';
import type { NbdServerTls } from './server-tls.js';

export type { ListenAddress } from './held-listener.js';
export type { NbdClientEvent } from './connection.js';

// Every request the per-export bound admits fits in one mirror write queue at once.
assert(nbdConnectionsPerExportMax * inFlightMax <= writeQueueMax, 'the NBD bounds fit the mirror write queue');

export interface NbdListener {
  /** URI of the default export (its name when the server has exactly one export). */
  readonly uri: string;
  /** The bound address: the port is the real one when 0 was asked. */
  readonly address: ListenAddress;
  uriFor(exportName: string): string;
  /** Starts answering the connections held since the bind (a listener bound with `start: false`). */
  start(): void;
  /** Stops accepting and shuts this listener's connections down. */
  close(options?: { graceful?: boolean }): Promise<void>;
}

export interface NbdServerOptions {
  readonly exports: ExportResolver | ReadonlyMap<string, NbdExport> | readonly NbdExport[];
  /** Log sink for dropped clients, rejected requests and unexpected errors. Default: silent. */
  readonly log?: (message: string) => void;
  /** A client that has not finished the handshake by then is dropped; 0: no limit. Default 10 s. */
  readonly handshakeTimeoutMs?: number;
  /** TLS offered or required on every listener (loadNbdServerTls). Default: none (NOTLS). */
  readonly tls?: NbdServerTls;
  /** Connections in transmission per export, 1..nbdConnectionsPerExportMax. Default 16. */
  readonly connectionsPerExportMax?: number;
  /** Clients connecting (handshake finished) and disconnecting, for the logs. Default: none. */
  readonly onClient?: (event: NbdClientEvent) => void;
}

export class NbdServer {
  readonly #resolver: ExportResolver;
  readonly #log: (message: string) => void;
  readonly #handshakeTimeoutMs: number;
  readonly #tls: NbdServerTls | undefined;
  readonly #connectionsPerExportMax: number;
  readonly #onClient: ((event: NbdClientEvent) => void) | undefined;
  readonly #listeners = new Set<Listener>();
  #closed = false;

  constructor(options: NbdServerOptions) {
    const { exports } = options;
    this.#resolver = isResolver(exports) ? exports : new StaticExportResolver(exports);
    this.#log = options.log ?? (() => undefined);
    this.#handshakeTimeoutMs = options.handshakeTimeoutMs ?? handshakeTimeoutMsDefault;
    this.#onClient = options.onClient;
    assert(Number.isSafeInteger(this.#handshakeTimeoutMs) && this.#handshakeTimeoutMs >= 0, 'handshakeTimeoutMs is a whole number of ms');
    this.#tls = options.tls;
    this.#connectionsPerExportMax = options.connectionsPerExportMax ?? nbdConnectionsPerExportDefault;
    const max = this.#connectionsPerExportMax;
    assert(Number.isSafeInteger(max) && max >= 1 && max <= nbdConnectionsPerExportMax, `connectionsPerExportMax ${max} is within 1..${nbdConnectionsPerExportMax}`);
  }

  /** Sockets currently open across all listeners, in any state (handshake, transmission, draining). */
  get connectionCount(): number {
    let count = 0;
    for (const listener of this.#listeners) count += listener.connections.size;
    return count;
  }

  /**
   * Clients holding an export open: connections that finished the handshake and whose client has not
   * hung up. A client in the handshake, or gone while a request of its is still held, is not one.
   */
  get clientCount(): number {
    let count = 0;
    for (const listener of this.#listeners) for (const connection of listener.connections) if (connection.isClient) count++;
    return count;
  }

  /** Connections (in transmission or draining) that negotiated `nbdExport`. */
  connectionCountOf(nbdExport: NbdExport): number {
    let count = 0;
    for (const connection of this.#connections()) if (connection.nbdExport === nbdExport) count++;
    return count;
  }

  /** Clients (see clientCount) of one export: a server with many exports counts them per export. */
  clientCountOf(nbdExport: NbdExport): number {
    let count = 0;
    for (const connection of this.#connections()) if (connection.nbdExport === nbdExport && connection.isClient) count++;
    return count;
  }

  /**
   * Shuts down every connection that negotiated `nbdExport`, on every listener (its device goes away;
   * the resolver must no longer name it, so no new connection reaches it). Graceful: as close().
   */
  disconnect(nbdExport: NbdExport, options: { graceful?: boolean } = {}): Promise<void> {
    const graceful = options.graceful ?? true;
    const closing = [...this.#connections()].filter((c) => c.nbdExport === nbdExport).map((c) => c.shutdown({ graceful }));
    return Promise.all(closing).then(() => undefined);
  }

  /**
   * Binds a listener. With `start: false` its connections are held, unanswered, until `listener.start()`
   * (bind before the device resumes, answer after). @throws ListenError; nothing is left bound then.
   */
  async listen(address: ListenAddress, options: { start?: boolean; socket?: SocketAccess } = {}): Promise<NbdListener> {
    assert(!this.#closed, 'NbdServer.listen after close');
    const held = await HeldListener.listen(address, {
      allowHalfOpen: true,
      noDelay: true,
      log: this.#log,
      ...(options.socket !== undefined && { socket: options.socket }),
    });
    const log = this.#log;
    const listener = new Listener({
      held,
      defaultName: this.#defaultName(),
      scheme: this.#tls === undefined ? 'nbd' : 'nbds',
      connect: (socket) => {
        if (this.#handshakingCount() >= nbdHandshakingConnectionsMax) {
          log(`nbd: refusing a connection: ${nbdHandshakingConnectionsMax} clients are already in the handshake`);
          socket.on('error', () => undefined);
          socket.destroy();
          return undefined;
        }
        return new NbdConnection({
          socket,
          resolver: this.#resolver,
          log,
          handshakeTimeoutMs: this.#handshakeTimeoutMs,
          ...(this.#tls !== undefined && { tls: this.#tls }),
          admit: (nbdExport) => this.#admit(nbdExport),
          ...(this.#onClient === undefined ? {} : { onClient: this.#onClient }),
        });
      },
      log,
    });
    this.#listeners.add(listener);
    listener.onClosed = () => this.#listeners.delete(listener);
    if (options.start ?? true) listener.start();
    return listener;
  }

  /** Closes every listener and connection. Graceful (default): in-flight requests finish first. */
  async close(options: { graceful?: boolean } = {}): Promise<void> {
    this.#closed = true;
    await Promise.all([...this.#listeners].map((listener) => listener.close(options)));
    assert(this.#listeners.size === 0);
  }

  /** Connections that have not reached transmission (plaintext or TLS handshake), across listeners. */
  #handshakingCount(): number {
    let count = 0;
    for (const listener of this.#listeners) for (const connection of listener.connections) if (connection.state === 'handshake') count++;
    return count;
  }

  /** The per-export bound, asked before GO/EXPORT_NAME enters transmission. */
  #admit(nbdExport: NbdExport): string | undefined {
    let count = 0;
    for (const listener of this.#listeners) for (const connection of listener.connections) if (connection.nbdExport === nbdExport) count++;
    assert(count <= this.#connectionsPerExportMax, 'the bound was checked before every admission');
    if (count < this.#connectionsPerExportMax) return undefined;
    this.#log(`nbd: refusing a client of export "${nbdExport.name}": it has ${count} connections (--max-connections ${this.#connectionsPerExportMax})`);
    return `export "${nbdExport.name}" has the most connections allowed (${this.#connectionsPerExportMax}); try again later`;
  }

  *#connections(): Generator<NbdConnection> {
    for (const listener of this.#listeners) yield* listener.connections;
  }

  #defaultName(): string {
    const all = this.#resolver.list();
    const only = all[0];
    return all.length === 1 && only !== undefined ? only.name : '';
  }
}

function isResolver(value: NbdServerOptions['exports']): value is ExportResolver {
  return !(value instanceof Map) && !Array.isArray(value);
}

class Listener implements NbdListener {
  readonly connections = new Set<NbdConnection>();
  readonly address: ListenAddress;
  readonly uri: string;
  onClosed: () => void = () => undefined;
  readonly #held: HeldListener;
  readonly #connect: (socket: Socket) => void;
  #closing: Promise<void> | undefined;

  readonly #scheme: 'nbd' | 'nbds';

  constructor(options: {
    held: HeldListener;
    defaultName: string;
    scheme: 'nbd' | 'nbds';
    /** Makes the connection for an accepted socket, or refuses it (undefined: the socket is closed). */
    connect: (socket: Socket) => NbdConnection | undefined;
    log: (message: string) => void;
  }) {
    this.#held = options.held;
    this.#scheme = options.scheme;
    this.#connect = (socket: Socket): void => {
      const connection = options.connect(socket);
      if (connection === undefined) return;
      this.connections.add(connection);
      detach(
        connection.closed.then(() => this.connections.delete(connection)),
        (err) => options.log(`nbd: connection bookkeeping failed: ${String(err)}`),
      );
    };
    this.address = this.#held.address;
    this.uri = this.uriFor(options.defaultName);
  }

  start(): void {
    assert(this.#closing === undefined, 'start before close');
    this.#held.start(this.#connect);
  }

  uriFor(exportName: string): string {
    const name = encodeURIComponent(exportName);
    if ('path' in this.address) {
      const socket = this.address.path.split('/').map(encodeURIComponent).join('/');
      return `${this.#scheme}+unix:///${name}?socket=${socket}`;
    }
    const host = this.address.host.includes(':') ? `[${this.address.host}]` : this.address.host;
    return `${this.#scheme}://${host}:${this.address.port}/${name}`;
  }

  close(options: { graceful?: boolean } = {}): Promise<void> {
    if (this.#closing === undefined) {
      const graceful = options.graceful ?? true;
      const stopped = this.#held.close();
      const drained = Promise.all([...this.connections].map((c) => c.shutdown({ graceful })));
      this.#closing = Promise.all([stopped, drained]).then(() => this.onClosed());
    }
    return this.#closing;
  }
}
