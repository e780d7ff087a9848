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
 */
import { once } from 'node:events';
import { createServer, type Server, type Socket } from 'node:net';
import { assert } from '../assert.js';
import { NbdConnection } from './connection.js';
import { type ExportResolver, type NbdExport, StaticExportResolver } from './nbd-export.js';

export type ListenAddress = { readonly host: string; readonly port: number } | { readonly path: string };

export interface NbdListener {
  /** URI of the default export (its name when the server has exactly one export). */
  readonly uri: string;
  /** The bound address: the port is the real one when 0 was asked. */
  readonly address: ListenAddress;
  uriFor(exportName: string): string;
  /** Stops accepting and shuts this listener's connections down. */
  close(options?: { graceful?: boolean }): Promise<void>;
}

export interface NbdServerOptions {
  readonly exports: ExportResolver | ReadonlyMap<string, NbdExport> | readonly NbdExport[];
  /** Log sink for dropped clients, rejected requests and unexpected errors. Default: silent. */
  readonly log?: (message: string) => void;
}

export class NbdServer {
  readonly #resolver: ExportResolver;
  readonly #log: (message: string) => void;
  readonly #listeners = new Set<Listener>();
  #closed = false;

  constructor(options: NbdServerOptions) {
    const { exports } = options;
    this.#resolver = isResolver(exports) ? exports : new StaticExportResolver(exports);
    this.#log = options.log ?? (() => undefined);
  }

  /** Connections currently open across all listeners. */
  get connectionCount(): number {
    let count = 0;
    for (const listener of this.#listeners) count += listener.connections.size;
    return count;
  }

  /** Starts listening. @throws the listen error (EADDRINUSE, EACCES) as Node reports it. */
  async listen(address: ListenAddress): Promise<NbdListener> {
    assert(!this.#closed, 'NbdServer.listen after close');
    const net = createServer({ allowHalfOpen: true, noDelay: true });
    net.listen('path' in address ? { path: address.path } : { host: address.host, port: address.port });
    await Promise.race([once(net, 'listening'), once(net, 'error').then(([err]) => Promise.reject(err as Error))]);
    const listener = new Listener({ net, resolver: this.#resolver, log: this.#log, defaultName: this.#defaultName() });
    this.#listeners.add(listener);
    listener.onClosed = () => this.#listeners.delete(listener);
    return listener;
  }

  /** Closes every listener and connection. Graceful (default): in-flight requests finish first. */
  async close(options: { graceful?: boolean } = {}): Promise<void> {
    this.#closed = true;
    await Promise.all([...this.#listeners].map((listener) => listener.close(options)));
    assert(this.#listeners.size === 0);
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
  readonly #net: Server;
  #closing: Promise<void> | undefined;

  constructor(options: { net: Server; resolver: ExportResolver; log: (message: string) => void; defaultName: string }) {
    this.#net = options.net;
    this.#net.on('connection', (socket: Socket) => {
      const connection = new NbdConnection({ socket, resolver: options.resolver, log: options.log });
      this.connections.add(connection);
      void connection.closed.then(() => this.connections.delete(connection));
    });
    this.#net.on('error', (err) => options.log(`nbd: listener error: ${err.message}`));
    const bound = this.#net.address();
    assert(bound !== null);
    this.address = typeof bound === 'string' ? { path: bound } : { host: bound.address, port: bound.port };
    this.uri = this.uriFor(options.defaultName);
  }

  uriFor(exportName: string): string {
    const name = encodeURIComponent(exportName);
    if ('path' in this.address) {
      const socket = this.address.path.split('/').map(encodeURIComponent).join('/');
      return `nbd+unix:///${name}?socket=${socket}`;
    }
    const host = this.address.host.includes(':') ? `[${this.address.host}]` : this.address.host;
    return `nbd://${host}:${this.address.port}/${name}`;
  }

  close(options: { graceful?: boolean } = {}): Promise<void> {
    if (this.#closing === undefined) {
      const graceful = options.graceful ?? true;
      const stopped = new Promise<void>((resolve) => this.#net.close(() => resolve()));
      const drained = Promise.all([...this.connections].map((c) => c.shutdown({ graceful })));
      this.#closing = Promise.all([stopped, drained]).then(() => this.onClosed());
    }
    return this.#closing;
  }
}
