/**
 * CLI output helpers: kernel-style table error reporting (as dmsetup prints it) and the resync words of
 * a status line (progress.ts draws them).
 */
import { TableError } from '../errors.js';
import { kernelTableLogLines } from '../target/table-lines.js';
import { mdstatBar, mdstatLine, type ProgressRate } from './progress.js';

const errnoText: Record<string, string> = {
  EINVAL: 'Invalid argument',
  ENODEV: 'No such device',
  ENXIO: 'No such device or address',
  ENOENT: 'No such file or directory',
  EEXIST: 'File exists',
  EBUSY: 'Device or resource busy',
  EIO: 'Input/output error',
};

export function errnoMessage(code: string): string {
  return errnoText[code] ?? code;
}

/** What dmsetup and the kernel print when a table is rejected. */
export function tableErrorLines(err: TableError, options: { device: string; targetType?: string }): string[] {
  return [
    `device-mapper: reload ioctl on ${options.device} failed: ${errnoMessage(err.code)}`,
    ...kernelTableLogLines(err, { deviceNumber: options.device, targetType: options.targetType ?? 'mirror' }).map((line) => `kmsg: ${line}`),
    'Command failed.',
  ];
}

/** The sync state of one mirror segment, as progress displays need it. */
export interface SyncCounts {
  readonly syncRegions: number;
  readonly regionCount: number;
  /** The status health letters ("AA", "AD", ...). */
  readonly health: string;
  /** The segment's size; the bytes in sync are estimated as sizeBytes * syncRegions / regionCount. */
  readonly sizeBytes: number;
}

export interface SyncTotals {
  readonly synced: number;
  readonly total: number;
  readonly syncedBytes: number;
  readonly totalBytes: number;
}

/** Regions (and bytes) in sync and in all over a device's mirror segments. */
export function syncTotals(mirrors: readonly SyncCounts[]): SyncTotals {
  let synced = 0;
  let total = 0;
  let syncedBytes = 0;
  let totalBytes = 0;
  for (const m of mirrors) {
    synced += m.syncRegions;
    total += m.regionCount;
    totalBytes += m.sizeBytes;
    syncedBytes += m.regionCount === 0 ? m.sizeBytes : Math.floor((m.sizeBytes * m.syncRegions) / m.regionCount);
  }
  return { synced, total, syncedBytes, totalBytes };
}

/** True when every leg of every mirror is alive, so out-of-sync regions are being resynced. */
export function resyncing(mirrors: readonly SyncCounts[]): boolean {
  return mirrors.every((m) => /^A+$/.test(m.health));
}

/**
 * The resync words for a device out of sync: mdstat's bar and line while recovering
 * (`[====>...............]  resync = 27.1% (556/2048) finish=0.4min speed=231MiB/s`), or, when a leg
 * failed (out-of-sync regions then wait for a table reload instead of resyncing), how many are in sync.
 * `rate` is sampled with the bytes in sync; it gives the speed and the finish time.
 */
export function syncProgressText(totals: SyncTotals, options: { resyncing: boolean; rate?: ProgressRate }): string {
  const { synced, total } = totals;
  if (!options.resyncing) return `out of sync (a leg failed): ${synced}/${total} regions in sync, waiting for a new table`;
  const line = mdstatLine({
    action: 'resync',
    done: synced,
    total,
    remainingBytes: totals.totalBytes - totals.syncedBytes,
    bytesPerSecond: options.rate?.bytesPerSecond(),
  });
  return `${mdstatBar(synced, total)}  ${line}`;
}

/**
 * The suffix of a status line: two spaces and the resync words while out of sync (syncProgressText),
 * empty when in sync. A `rate`, when given, is sampled first (call it once per reading).
 */
export function syncSuffix(mirrors: readonly SyncCounts[], options: { rate?: ProgressRate; nowMs?: number } = {}): string {
  const totals = syncTotals(mirrors);
  options.rate?.sample({ atMs: options.nowMs ?? performance.now(), doneBytes: totals.syncedBytes });
  if (totals.total === 0 || totals.synced >= totals.total) return '';
  return `  ${syncProgressText(totals, { resyncing: resyncing(mirrors), ...(options.rate === undefined ? {} : { rate: options.rate }) })}`;
}
