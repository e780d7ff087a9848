/**
 * CLI output helpers: kernel-style table error reporting (as dmsetup prints it) and a progress bar.
 */
import { TableError } from '../errors.js';
import { kernelTableLogLines } from '../target/table-lines.js';

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

/** A text progress bar: `[#######.............]  35.0%`. */
export function progressBar(done: number, total: number, width = 30): string {
  const fraction = total === 0 ? 1 : Math.min(1, done / total);
  const filled = Math.round(fraction * width);
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${(fraction * 100).toFixed(1).padStart(5)}%`;
}

/** The sync state of one mirror segment, as progress displays need it. */
export interface SyncCounts {
  readonly syncRegions: number;
  readonly regionCount: number;
  /** The status health letters ("AA", "AD", ...). */
  readonly health: string;
}

/** Regions in sync and in all over a device's mirror segments. */
export function syncTotals(mirrors: readonly SyncCounts[]): { synced: number; total: number } {
  let synced = 0;
  let total = 0;
  for (const m of mirrors) {
    synced += m.syncRegions;
    total += m.regionCount;
  }
  return { synced, total };
}

/**
 * The suffix of a status line: a resync bar while out of sync, labelled as waiting when a leg failed
 * (out-of-sync regions then wait for a table reload instead of resyncing); empty when in sync.
 */
export function syncSuffix(mirrors: readonly SyncCounts[]): string {
  const { synced, total } = syncTotals(mirrors);
  if (total === 0 || synced >= total) return '';
  const recovering = mirrors.every((m) => /^A+$/.test(m.health));
  return `  ${recovering ? 'resync' : 'out of sync (a leg failed)'} ${progressBar(synced, total)}`;
}
