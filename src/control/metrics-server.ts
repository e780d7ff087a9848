/**
 * The metrics endpoint: plain node:http, `GET /metrics` answers renderMetrics() in the Prometheus text
 * format; any other path is 404, any other method 405. Bound to the address given (127.0.0.1 by
 * default: the metrics name devices and paths).
 */
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { assert } from '../assert.js';
import type { DeviceRegistry } from './device-registry.js';
import { renderMetrics, type ResyncRateSampler } from './metrics.js';

export const metricsContentType = 'text/plain; version=0.0.4; charset=utf-8';

export class MetricsServer {
  readonly #http: Server;

  private constructor(http: Server) {
    this.#http = http;
  }

  static async listen(options: { host: string; port: number; registry: DeviceRegistry; sampler: ResyncRateSampler }): Promise<MetricsServer> {
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
    http.listen(options.port, options.host);
    await Promise.race([once(http, 'listening'), once(http, 'error').then(([err]) => Promise.reject(err as Error))]);
    return new MetricsServer(http);
  }

  get address(): { host: string; port: number } {
    const bound = this.#http.address();
    assert(bound !== null && typeof bound !== 'string', 'a TCP listener');
    const info: AddressInfo = bound;
    return { host: info.address, port: info.port };
  }

  close(): Promise<void> {
    this.#http.closeAllConnections();
    return new Promise((resolve) => this.#http.close(() => resolve()));
  }
}
