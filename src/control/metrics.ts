/**
 * Prometheus metrics of the daemon's devices, in the text exposition format (version 0.0.4).
 * renderMetrics() reads the registry's devices at scrape time; nothing is stored. Rates are left to
 * PromQL: `rate(umirror_mirror_recovery_bytes_total[1m])` is the resync speed. The process and Node
 * runtime families and umirror_build_info come from prom-client (runtime-metrics.ts).
 *
 * Families (labels: device, segment = the segment's start sector, leg = the leg's table name):
 *   umirror_devices, umirror_device_{suspended,open_count,size_bytes}, umirror_device_events_total
 *   umirror_mirror_{regions,regions_in_sync,held_writes}
 *   umirror_mirror_{reads,read_bytes,writes,write_bytes,recovered_regions,recovery_bytes}_total
 *   umirror_leg_{reads,read_bytes,writes,write_bytes,flushes}_total, umirror_leg_errors_total{kind}
 *   umirror_leg_valid, umirror_log_{flushes,writes,bytes_written,flush_failures}_total
 *   umirror_scrub_{mismatched_regions,last_completed_timestamp_seconds,running} (after a scrub; running always)
 *   umirror_mirror_corrected_read_errors_total, umirror_leg_corrected_read_errors_total (read repair)
 *   umirror_mirror_resync_busy (the rate controller's mode; its throttle is in status --json, rates are PromQL's)
 *   umirror_nbd_connections, umirror_nbd_{requests,request_errors,request_bytes}_total{op}
 *   umirror_nbd_request_duration_seconds (histogram){op}
 * Counters restart from zero when a table is replaced (Prometheus handles counter resets).
 */
import { MirrorSet } from '../mirror/mirror-set.js';
import type { DeviceRegistry } from './device-registry.js';
import { REQUEST_OPS, latencyBucketsSeconds } from './metered-device.js';

type Labels = Readonly<Record<string, string>>;
type MetricType = 'counter' | 'gauge' | 'histogram';

/** Collects samples per family, printed with one HELP and TYPE line each. */
class Exposition {
  readonly #families = new Map<string, { help: string; type: MetricType; lines: string[] }>();

  add(options: { name: string; help: string; type: MetricType; labels?: Labels; value: number; suffix?: string }): void {
    let family = this.#families.get(options.name);
    if (family === undefined) {
      family = { help: options.help, type: options.type, lines: [] };
      this.#families.set(options.name, family);
    }
    family.lines.push(`${options.name}${options.suffix ?? ''}${formatLabels(options.labels ?? {})} ${formatValue(options.value)}`);
  }

  text(): string {
    const out: string[] = [];
    for (const [name, family] of this.#families) {
      out.push(`# HELP ${name} ${family.help}`, `# TYPE ${name} ${family.type}`, ...family.lines);
    }
    return out.join('\n') + '\n';
  }
}

function formatLabels(labels: Labels): string {
  const entries = Object.entries(labels);
  if (entries.length === 0) return '';
  const escape = (value: string): string => value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
  return `{${entries.map(([key, value]) => `${key}="${escape(value)}"`).join(',')}}`;
}

function formatValue(value: number): string {
  if (value === Infinity) return '+Inf';
  return Number.isFinite(value) ? String(value) : 'NaN';
}

export function renderMetrics(registry: DeviceRegistry): string {
  const out = new Exposition();
  const entries = registry.entries();
  out.add({ name: 'umirror_devices', help: 'Devices held by the daemon.', type: 'gauge', value: entries.length });
  for (const entry of entries) {
    const device = { device: entry.name };
    const info = registry.info(entry.name);
    out.add({ name: 'umirror_device_suspended', help: '1 while the device is suspended.', type: 'gauge', labels: device, value: info.state === 'SUSPENDED' ? 1 : 0 });
    out.add({ name: 'umirror_device_events_total', help: 'Device events: leg and log failures, sync complete (the event number of dmsetup info and wait).', type: 'counter', labels: device, value: info.eventNr });
    out.add({ name: 'umirror_device_open_count', help: 'Stacked devices and NBD clients holding the device open.', type: 'gauge', labels: device, value: info.openCount });
    out.add({ name: 'umirror_device_size_bytes', help: 'Device size.', type: 'gauge', labels: device, value: entry.md.sizeBytes });
    for (const segment of entry.md.segments()) {
      const mirror = segment.target;
      if (mirror instanceof MirrorSet) addMirror(out, { labels: { ...device, segment: String(segment.line.startSectors) }, mirror });
    }
    const nbdSockets = registry.nbdSocketCount(entry);
    out.add({ name: 'umirror_nbd_connections', help: 'Open NBD client connections.', type: 'gauge', labels: device, value: nbdSockets ?? 0 });
    if (nbdSockets === undefined) continue;
    for (const op of REQUEST_OPS) {
      const stats = entry.metered.stats[op];
      const labels = { ...device, op };
      out.add({ name: 'umirror_nbd_requests_total', help: 'NBD requests served.', type: 'counter', labels, value: stats.requestsTotal });
      out.add({ name: 'umirror_nbd_request_errors_total', help: 'NBD requests answered with an error.', type: 'counter', labels, value: stats.errorsTotal });
      out.add({ name: 'umirror_nbd_request_bytes_total', help: 'Payload bytes of successful NBD requests.', type: 'counter', labels, value: stats.bytesTotal });
      const histogram = { name: 'umirror_nbd_request_duration_seconds', help: 'NBD request latency.', type: 'histogram' as const };
      let cumulative = 0;
      latencyBucketsSeconds.forEach((bound, index) => {
        cumulative += stats.bucketCounts[index] ?? 0;
        out.add({ ...histogram, suffix: '_bucket', labels: { ...labels, le: String(bound) }, value: cumulative });
      });
      out.add({ ...histogram, suffix: '_bucket', labels: { ...labels, le: '+Inf' }, value: stats.requestsTotal });
      out.add({ ...histogram, suffix: '_sum', labels, value: stats.durationSecondsSum });
      out.add({ ...histogram, suffix: '_count', labels, value: stats.requestsTotal });
    }
  }
  return out.text();
}

function addMirror(out: Exposition, options: { labels: Labels; mirror: MirrorSet }): void {
  const { labels, mirror } = options;
  const gauge = (name: string, help: string, value: number): void => out.add({ name, help, type: 'gauge', labels, value });
  const counter = (name: string, help: string, value: number): void => out.add({ name, help, type: 'counter', labels, value });
  gauge('umirror_mirror_regions', 'Regions of the mirror segment.', mirror.regionCount);
  gauge('umirror_mirror_regions_in_sync', 'Regions whose legs hold the same data.', mirror.syncCount());
  gauge('umirror_mirror_held_writes', 'Writes held after a leg failure until the next suspend.', mirror.heldWrites);
  counter('umirror_mirror_reads_total', 'Reads of the mirror segment.', mirror.stats.readsTotal);
  counter('umirror_mirror_read_bytes_total', 'Bytes read from the mirror segment.', mirror.stats.readBytesTotal);
  counter('umirror_mirror_writes_total', 'Writes to the mirror segment.', mirror.stats.writesTotal);
  counter('umirror_mirror_write_bytes_total', 'Bytes written to the mirror segment.', mirror.stats.writeBytesTotal);
  counter('umirror_mirror_recovered_regions_total', 'Regions recovered (resynced).', mirror.stats.recoveredRegionsTotal);
  counter('umirror_mirror_recovery_bytes_total', 'Bytes copied by recovery.', mirror.stats.recoveryBytesTotal);
  counter('umirror_log_flush_failures_total', 'Dirty log flushes that failed.', mirror.stats.logFlushFailuresTotal);
  counter('umirror_mirror_corrected_read_errors_total', 'Read errors corrected by read repair (the leg stayed A).', mirror.stats.correctedReadErrorsTotal);
  const resync = mirror.resyncRate;
  gauge('umirror_mirror_resync_busy', '1 while clients are busy and the resync yields to them.', resync.mode === 'busy' ? 1 : 0);
  gauge('umirror_scrub_running', '1 while a scrub runs.', mirror.scrubRunning ? 1 : 0);
  const scrub = mirror.lastCompleteScrub;
  if (scrub !== undefined) {
    gauge('umirror_scrub_mismatched_regions', 'Regions whose legs differed in the last complete scrub.', scrub.mismatchedRegions);
    gauge('umirror_scrub_last_completed_timestamp_seconds', 'When the last complete scrub finished (Unix time).', scrub.finishedAtMs / 1000);
  }
  const log = mirror.log.stats;
  counter('umirror_log_flushes_total', 'Dirty log flushes.', log.logFlushesTotal);
  counter('umirror_log_writes_total', 'Writes to the dirty log device.', log.logWritesTotal);
  counter('umirror_log_bytes_written_total', 'Bytes written to the dirty log device.', log.logBytesWritten);
  for (const leg of mirror.legs) {
    const legLabels = { ...labels, leg: leg.tableName };
    const legCounter = (name: string, help: string, value: number): void => out.add({ name, help, type: 'counter', labels: legLabels, value });
    legCounter('umirror_leg_reads_total', 'Reads issued to the leg.', leg.stats.readsTotal);
    legCounter('umirror_leg_read_bytes_total', 'Bytes read from the leg.', leg.stats.readBytesTotal);
    legCounter('umirror_leg_writes_total', 'Writes issued to the leg.', leg.stats.writesTotal);
    legCounter('umirror_leg_write_bytes_total', 'Bytes written to the leg.', leg.stats.writeBytesTotal);
    legCounter('umirror_leg_flushes_total', 'Flushes issued to the leg.', leg.stats.flushesTotal);
    legCounter('umirror_leg_corrected_read_errors_total', 'Read errors of the leg corrected by read repair.', leg.stats.correctedReadErrorsTotal);
    out.add({ name: 'umirror_leg_valid', help: '1 while the leg has no recorded error (status letter A).', type: 'gauge', labels: legLabels, value: leg.valid ? 1 : 0 });
    for (const [kind, value] of Object.entries(leg.stats.errorsTotal)) {
      out.add({ name: 'umirror_leg_errors_total', help: 'Leg errors by kind (write, flush, sync, read).', type: 'counter', labels: { ...legLabels, kind }, value });
    }
  }
}
