/**
 * Device resolvers: how a table's device names become BlockDevices. A name is a path (an image file or
 * a block device); the daemon adds names of its own devices on top (stacking). Every open returns a new
 * handle, so closing it never closes a device someone else holds.
 */
import { FileBlockDevice } from '../block/file-block-device.js';
import type { BlockDevice } from '../block/block-device.js';
import type { DeviceResolver } from './build-target.js';

/** Opens table names as paths. */
export function fileResolver(options: { displayName?: (name: string) => string } = {}): DeviceResolver {
  return {
    open: (name: string): Promise<BlockDevice> => FileBlockDevice.open(name),
    ...(options.displayName === undefined ? {} : { displayName: options.displayName }),
  };
}
