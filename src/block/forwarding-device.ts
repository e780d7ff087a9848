/**
 * forwardingDevice: a BlockDevice that passes every call to another one, with an optional hook around
 * each operation (to count, time or refuse it), its own close() and optionally its own size. Used for
 * handles that must not close the device they share (a stacked device, an NBD export's view of a daemon
 * device) and for the end-of-device check (end-checked-device.ts).
 * Argument checks stay with the inner device (BlockDeviceBase), so they happen once.
 */
import type { BlockDevice } from './block-device.js';

export type DeviceOp = 'read' | 'write' | 'flush' | 'trim' | 'zero';

export interface ForwardingOptions {
  /**
   * Runs one operation of `bytes` payload bytes at `offsetBytes` (both 0 for flush); default: runs it
   * as it is.
   */
  readonly around?: <T>(op: DeviceOp, bytes: number, run: () => Promise<T>, offsetBytes: number) => Promise<T>;
  /** The size the handle presents; default: the inner device's. */
  readonly sizeBytes?: number;
  /** The handle's close(); default: resolves without touching the inner device. */
  readonly close?: () => Promise<void>;
}

export function forwardingDevice(device: BlockDevice, options: ForwardingOptions = {}): BlockDevice {
  const around = options.around ?? (<T>(_op: DeviceOp, _bytes: number, run: () => Promise<T>): Promise<T> => run());
  const { sizeBytes } = options;
  return {
    get sizeBytes() {
      return sizeBytes ?? device.sizeBytes;
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
    read: (offsetBytes, lengthBytes, opts) => around('read', lengthBytes, () => device.read(offsetBytes, lengthBytes, opts), offsetBytes),
    write: (offsetBytes, data, opts) => around('write', data.length, () => device.write(offsetBytes, data, opts), offsetBytes),
    flush: () => around('flush', 0, () => device.flush(), 0),
    trim: (offsetBytes, lengthBytes, opts) => around('trim', lengthBytes, () => device.trim(offsetBytes, lengthBytes, opts), offsetBytes),
    writeZeroes: (offsetBytes, lengthBytes, opts) =>
      around('zero', lengthBytes, () => device.writeZeroes(offsetBytes, lengthBytes, opts), offsetBytes),
    close: options.close ?? (() => Promise.resolve()),
  };
}
