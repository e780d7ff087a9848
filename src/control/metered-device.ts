/**
 * MeteredDevice: the device an NBD export serves, wrapped to count requests, bytes and latency per
 * operation for the metrics endpoint. Latency is kept as a cumulative histogram over fixed buckets
 * (Prometheus' own default buckets, in seconds), so memory per device is constant.
 */
import type { BlockDevice } from '../block/block-device.js';
import { forwardingDevice, type DeviceOp } from '../block/forwarding-device.js';

export const REQUEST_OPS: readonly DeviceOp[] = ['read', 'write', 'flush', 'trim', 'zero'];
export type RequestOp = DeviceOp;

/** Upper bounds of the latency buckets, seconds (Prometheus client defaults); +Inf is implied. */
export const latencyBucketsSeconds: readonly number[] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export interface RequestStats {
  requestsTotal: number;
  errorsTotal: number;
  bytesTotal: number;
  durationSecondsSum: number;
  /** Per bucket of latencyBucketsSeconds: requests at most that long (not cumulative here). */
  readonly bucketCounts: number[];
}

function emptyStats(): RequestStats {
  return { requestsTotal: 0, errorsTotal: 0, bytesTotal: 0, durationSecondsSum: 0, bucketCounts: latencyBucketsSeconds.map(() => 0) };
}

/** Counts and times every operation of `device`; serve `metered.device` (its close() is a no-op). */
export class MeteredDevice {
  readonly stats: Readonly<Record<RequestOp, RequestStats>> = {
    read: emptyStats(),
    write: emptyStats(),
    flush: emptyStats(),
    trim: emptyStats(),
    zero: emptyStats(),
  };
  /** The view to export: the daemon, not the export, removes the device. */
  readonly device: BlockDevice;

  constructor(device: BlockDevice) {
    this.device = forwardingDevice(device, { around: (op, bytes, run) => this.#timed(op, bytes, run) });
  }

  async #timed<T>(op: RequestOp, bytes: number, run: () => Promise<T>): Promise<T> {
    const started = process.hrtime.bigint();
    const stats = this.stats[op];
    let failed = true;
    try {
      const result = await run();
      failed = false;
      return result;
    } finally {
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      stats.requestsTotal += 1;
      if (failed) stats.errorsTotal += 1;
      else stats.bytesTotal += bytes;
      stats.durationSecondsSum += seconds;
      const bucket = latencyBucketsSeconds.findIndex((bound) => seconds <= bound);
      if (bucket >= 0) stats.bucketCounts[bucket] = (stats.bucketCounts[bucket] ?? 0) + 1;
    }
  }
}
