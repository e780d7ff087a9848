/**
 * The metrics endpoint: plain node:http, `GET /metrics` answers the process and runtime families
 * (runtime-metrics.ts, prom-client) followed by the device families (renderMetrics) in the Prometheus
 * text format; any other path is 404, any other method 405. Bound to the address given (127.0.0.1 by
 * default: the metrics name devices and paths).
 *
 * Start-up: `listen()` binds (a busy port is ListenError, before anything is answered) and holds
 * connections; `start()` hands them to the HTTP server. node:http owns each socket's errors (a client
 * that resets is its 'clientError', which closes that socket); the listener logs accept errors.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { assert } from '../assert.js';
import { HeldListener } from '../nbd/held-listener.js';
import type { DeviceRegistry } from './device-registry.js';
import { renderMetrics } from './metrics.js';
import { RuntimeMetrics } from './runtime-metrics.js';
import { detach } from '../fail-fast.js';

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
    /** umirror's version, for umirror_build_info. */
    version: string;
    log: (message: string) => void;
  }): Promise<MetricsServer> {
    const runtime = new RuntimeMetrics({ version: options.version });
    const answer = async (request: IncomingMessage, response: ServerResponse): Promise<void> => {
      const path = (request.url ?? '/').split('?')[0];
      if (path !== '/metrics') {
        response.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try /metrics\n');
        return;
      }
      if (request.method !== 'GET' && request.method !== 'HEAD') {
        response.writeHead(405, { allow: 'GET, HEAD' }).end();
        return;
      }
      const body = (await runtime.text()) + renderMetrics(options.registry);
      response.writeHead(200, { 'content-type': metricsContentType, 'content-length': Buffer.byteLength(body) });
      response.end(request.method === 'HEAD' ? undefined : body);
    };
    const http = createServer((request, response) => {
      detach(answer(request, response), (err) => {
        options.log(`cannot answer a scrape: ${err instanceof Error ? err.message : String(err)}`);
        response.destroy();
      });
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
