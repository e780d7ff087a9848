/**
 * The process-wide metrics of the daemon, from prom-client (the Prometheus client for Node): its
 * default collectors (process_cpu_seconds_total, process_resident_memory_bytes, process_open_fds,
 * process_start_time_seconds, nodejs_eventloop_lag_seconds, nodejs_heap_size_used_bytes,
 * nodejs_gc_duration_seconds, ...; unprefixed, as every Node exporter names them) and
 * `umirror_build_info{version,node} 1`, the usual way to put a version on a dashboard.
 *
 * The device families stay in metrics.ts: they are read from live objects at scrape time (counters the
 * mirror sets own, devices that come and go, a histogram whose buckets MeteredDevice counts), which
 * prom-client's metric objects, fed by inc()/observe(), do not model. Both parts use the same text
 * format (0.0.4) and are served as one body (metrics-server.ts).
 *
 * One RuntimeMetrics per metrics server: its own prom-client Registry (never the global one), so a
 * library user's registry is not touched.
 */
import { Gauge, Registry, collectDefaultMetrics } from 'prom-client';

export class RuntimeMetrics {
  readonly #registry = new Registry();

  constructor(options: { version: string }) {
    collectDefaultMetrics({ register: this.#registry });
    const buildInfo = new Gauge({
      name: 'umirror_build_info',
      help: 'Always 1; the labels say which umirror and which Node.js run.',
      labelNames: ['version', 'node'],
      registers: [this.#registry],
    });
    buildInfo.set({ version: options.version, node: process.version }, 1);
  }

  /** The families in the text exposition format, ending with a new line. */
  async text(): Promise<string> {
    const text = await this.#registry.metrics();
    return text.endsWith('\n') ? text : `${text}\n`;
  }
}
