/**
 * Device-area checks dm core makes when a table is bound (dm-table.c device_area_is_invalid), and the
 * sector-number parsing targets share. Pure: no I/O. Targets call these after opening a device, so the
 * error comes out in the kernel's order (argument errors first, then lookup, then size).
 *
 *   "<name> too small for target: start=<offset>, len=<len>, dev_size=<size>"  when the area
 *   [offset, offset+len) does not fit in the device (or starts at or beyond its end). A device of size
 *   0 is not checked, as in the kernel.
 */
import { assertCount } from '../assert.js';
import { TableError } from '../errors.js';
import { tableEndSectorsMax } from '../limits.js';

/** One area a target maps on a device (what the kernel's iterate_devices reports). */
export interface DeviceArea {
  /** The block device's name as the kernel prints it (%pg: "vdb"). */
  readonly deviceName: string;
  /** The device's size in whole sectors. */
  readonly deviceSectors: number;
  readonly offsetSectors: number;
  readonly lengthSectors: number;
}

/**
 * Throws the kernel's "too small for target" error when the mapped area does not fit.
 * @throws TableError source 'core', EINVAL.
 */
export function checkDeviceArea(options: DeviceArea): void {
  assertCount(options.deviceSectors, 'deviceSectors');
  assertCount(options.offsetSectors, 'offsetSectors');
  assertCount(options.lengthSectors, 'lengthSectors');
  const { deviceSectors, offsetSectors, lengthSectors } = options;
  if (deviceSectors === 0) return;
  if (offsetSectors >= deviceSectors || offsetSectors + lengthSectors > deviceSectors) {
    throw new TableError({
      source: 'core',
      kernelError:
        `${options.deviceName} too small for target: start=${offsetSectors}, len=${lengthSectors}, ` +
        `dev_size=${deviceSectors}`,
    });
  }
}

/** A TableError of checkDeviceArea (dm core's size check, which runs after every target's constructor). */
export function isDeviceAreaError(error: unknown): error is TableError {
  return error instanceof TableError && error.source === 'core' && error.kernelError.includes(' too small for target: ');
}

/**
 * sscanf("%u%c") == 1: decimal digits only, nothing after them. The kernel stores the value in an
 * unsigned int, so larger values wrap modulo 2^32 as they do there. Returns null when it does not match
 * (a sign, a letter, hex, an empty string).
 */
export function scanUnsigned32(text: string | undefined): number | null {
  if (text === undefined || !/^[0-9]+$/.test(text)) return null;
  return Number(BigInt(text) % 2n ** 32n);
}

/**
 * sscanf("%llu%c") == 1 for a sector number. Values that are not safe integers are refused (the kernel
 * would take them and fail later in the size check; we cannot address them anyway).
 */
export function scanSectors(text: string | undefined): number | null {
  if (text === undefined || !/^[0-9]+$/.test(text)) return null;
  const value = Number(text);
  return Number.isSafeInteger(value) ? value : null;
}

/**
 * scanSectors for the offset of an area of `lengthSectors` on a device: also null when the area would end
 * past the sectors whose byte offsets are safe integers (tableEndSectorsMax). The kernel takes any u64
 * and lets the size check refuse it, except on a device with no whole sector, which is not checked; we
 * cannot address such an area, so it is refused with the offset's own error.
 */
export function scanOffsetSectors(text: string | undefined, options: { lengthSectors: number }): number | null {
  assertCount(options.lengthSectors, 'lengthSectors');
  const value = scanSectors(text);
  if (value === null || value + options.lengthSectors > tableEndSectorsMax) return null;
  return value;
}
