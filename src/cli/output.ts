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
