/**
 * endCheckedDevice: the block layer's end-of-device check (bio_check_eod) for a device that a table maps
 * past its end. dm core checks a target's area only on a device with at least one whole sector
 * (device_area_is_invalid skips dev_size 0), so the kernel accepts `0 8 linear tiny 0` over a 100-byte
 * image or an empty file, and every I/O then fails with EIO ("attempt to access beyond end of device";
 * test/scenario/oracle/tiny-devices.out). Targets wrap such a device with this: it presents the size the
 * table maps (`mappedBytes`), so the target's geometry holds, and fails every read, write, trim or zero
 * that reaches past the device's last whole sector with BlockError EIO before the device sees it. Flush
 * passes through, as a flush has no sectors. close() closes the device.
 *
 * Who calls it: createMirrorSet (legs) and the linear target builder, only when the area does not fit.
 */
import { assert, assertCount } from '../assert.js';
import { BlockError } from '../errors.js';
import { sectorBytes } from '../limits.js';
import type { BlockDevice } from './block-device.js';
import { forwardingDevice, type DeviceOp } from './forwarding-device.js';

/** The device as is when `mappedBytes` fits in its whole sectors; else the end-checked wrapper. */
export function endCheckedDevice(device: BlockDevice, options: { mappedBytes: number }): BlockDevice {
  assertCount(options.mappedBytes, 'mappedBytes');
  const endBytes = Math.floor(device.sizeBytes / sectorBytes) * sectorBytes;
  if (options.mappedBytes <= endBytes) return device;
  const verbs: Readonly<Record<DeviceOp, string>> = { read: 'read', write: 'write', flush: 'flush', trim: 'trim', zero: 'write zeroes to' };
  const check = (op: DeviceOp, offsetBytes: number, lengthBytes: number): Promise<void> => {
    if (offsetBytes + lengthBytes <= endBytes) return Promise.resolve();
    return Promise.reject(
      new BlockError(
        'EIO',
        `Cannot ${verbs[op]} ${device.name}: attempt to access beyond end of device ` +
          `(sector ${Math.floor(offsetBytes / sectorBytes)}, ${Math.ceil(lengthBytes / sectorBytes)} sectors, limit ${endBytes / sectorBytes})`,
      ),
    );
  };
  const wrapped = forwardingDevice(device, {
    sizeBytes: options.mappedBytes,
    // A flush has no sectors: it always passes.
    around: (op, bytes, run, offsetBytes) => (op === 'flush' ? run() : check(op, offsetBytes, bytes).then(run)),
    close: () => device.close(),
  });
  assert(wrapped.sizeBytes > endBytes, 'only a device the area does not fit is wrapped');
  return wrapped;
}
