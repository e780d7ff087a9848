/**
 * The metrics endpoint: plain node:http, `GET /metrics` answers renderMetrics() in the Prometheus text
 * format; any other path is 404, any other method 405. Bound to the address given (127.0.0.1 by
 * default: the metrics name devices and paths).
 *
 * Start-up: `listen()` binds (a busy port is ListenError, before anything is answered) and holds
 * connections; `start()` hands them to the HTTP server. node:http owns each socket's errors (a client
 * that resets is its 'clientError', which closes that socket); the listener logs accept errors.
 */
import { createServer, type Server } from 'node:http';
import { assert } from '../assert.js';
import { HeldListener } from '../nbd/held-listener.js';
import type { DeviceRegistry } from './device-registry.js';
import { renderMetrics, type ResyncRateSampler } from './metrics.js';

export const metricsContentType = 'text/plain; version=0.0.4; charset=utf-8';

export class MetricsServer {
  readonly #http: Server;
  readonly #held: HeldListener;

  private constructor(http: Server, held: HeldListener) {
    this.#http = http;
    this.#held = held;
  }

  /** Binds HOST:PORT; answers nothing until `start()`. @throws ListenError. */
  static async listen(options: {
    host: string;
    port: number;
    registry: DeviceRegistry;
    sampler: ResyncRateSampler;
    log: (message: string) => void;
  }): Promise<MetricsServer> {
    const http = createServer((request, response) => {
      const path = (request.url ?? '/').split('?')[0];
      if (path !== '/metrics') {
        response.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try /metrics\n');
        return;
      }
      if (request.method !== 'GET' && request.method !== 'HEAD') {
        response.writeHead(405, { allow: 'GET, HEAD' }).end();
        return;
      }
      const body = renderMetrics(options.registry, options.sampler);
      response.writeHead(200, { 'content-type': metricsContentType, 'content-length': Buffer.byteLength(body) });
      response.end(request.method === 'HEAD' ? undefined : body);
    });
    const held = await HeldListener.listen({ host: options.host, port: options.port }, { log: options.log });
    return new MetricsServer(http, held);
  }

  get address(): { host: string; port: number } {
    const bound = this.#held.address;
    assert(!('path' in bound), 'a TCP listener');
    return { host: bound.host, port: bound.port };
  }

  /** Answers the connections held since `listen()`, and every new one. */
  start(): void {
    this.#held.start((socket) => this.#http.emit('connection', socket));
  }

  async close(): Promise<void> {
    await this.#held.close();
    this.#http.closeAllConnections();
  }
}
