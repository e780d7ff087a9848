/**
 * deviceHandle: one opener's view of a device held by the daemon (stacking: a leg or a log on another
 * mapped device). Opening counts in the device's open count (dm's open count of a device another table
 * holds); closing the handle releases that count once and never closes the device itself, which stays
 * with the daemon until `remove`. I/O after the handle's close fails with ESHUTDOWN.
 */
import { assert } from '../assert.js';
import type { BlockDevice } from '../block/block-device.js';
import { forwardingDevice } from '../block/forwarding-device.js';
import { BlockError } from '../errors.js';
import type { MappedDevice } from '../target/mapped-device.js';

export function deviceHandle(device: MappedDevice, options: { onClose?: () => void } = {}): BlockDevice {
  device.holdOpen();
  let open = true;
  return forwardingDevice(device, {
    around: (op, _bytes, run) => (open ? run() : Promise.reject(new BlockError('ESHUTDOWN', `Cannot ${op} ${device.name}: handle is closed`))),
    close: () => {
      if (open) {
        open = false;
        device.releaseOpen();
        options.onClose?.();
        assert(device.info().openCount >= 0, 'open count never goes negative');
      }
      return Promise.resolve();
    },
  });
}
