/**
 * deviceHandle: one opener's view of a device held by the daemon (stacking: a leg or a log on another
 * mapped device). Opening counts in the device's open count (dm's open count of a device another table
 * holds); closing the handle releases that count once and never closes the device itself, which stays
 * with the daemon until `remove`.
 */
import { assert } from '../assert.js';
import type { BlockDevice } from '../block/block-device.js';
import { BlockError } from '../errors.js';
import type { MappedDevice } from '../target/mapped-device.js';

export function deviceHandle(device: MappedDevice, options: { onClose?: () => void } = {}): BlockDevice {
  device.holdOpen();
  let open = true;
  const live = (op: string): void => {
    if (!open) throw new BlockError('ESHUTDOWN', `Cannot ${op} ${device.name}: handle is closed`);
  };
  return {
    get sizeBytes() {
      return device.sizeBytes;
    },
    get logicalBlockBytes() {
      return device.logicalBlockBytes;
    },
    get capabilities() {
      return device.capabilities;
    },
    get name() {
      return device.name;
    },
    read: async (offsetBytes, lengthBytes, options) => {
      live('read');
      return device.read(offsetBytes, lengthBytes, options);
    },
    write: async (offsetBytes, data, options) => {
      live('write');
      return device.write(offsetBytes, data, options);
    },
    flush: async () => {
      live('flush');
      return device.flush();
    },
    trim: async (offsetBytes, lengthBytes, options) => {
      live('trim');
      return device.trim(offsetBytes, lengthBytes, options);
    },
    writeZeroes: async (offsetBytes, lengthBytes, options) => {
      live('write zeroes to');
      return device.writeZeroes(offsetBytes, lengthBytes, options);
    },
    close: () => {
      if (open) {
        open = false;
        device.releaseOpen();
        options.onClose?.();
        assert(device.info().openCount >= 0, 'open count never goes negative');
      }
      return Promise.resolve();
    },
  };
}
