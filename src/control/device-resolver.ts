/**
 * Device resolvers: how a table's device names become BlockDevices. A name is a path (an image file or
 * a block device); the daemon adds names of its own devices on top (stacking). Every open returns a new
 * handle, so closing it never closes a device someone else holds.
 *
 * Every path is opened with the image lock of its device (`lockHolder`, the device name; see
 * src/block/image-lock.ts): a second process on the same images, or a second device of this one, is
 * refused at table load, before anything is resumed or served.
 */
import { FileBlockDevice } from '../block/file-block-device.js';
import type { BlockDevice } from '../block/block-device.js';
import type { DeviceResolver } from './build-target.js';

/** Opens table names as paths, locked for `lockHolder` (the device the table belongs to) when given. */
export function fileResolver(options: { displayName?: (name: string) => string; lockHolder?: string; direct?: boolean } = {}): DeviceResolver {
  const openOptions = {
    ...(options.lockHolder === undefined ? {} : { lockHolder: options.lockHolder }),
    ...(options.direct === true ? { direct: true } : {}),
  };
  return {
    open: (name: string): Promise<BlockDevice> => FileBlockDevice.open(name, openOptions),
    ...(options.displayName === undefined ? {} : { displayName: options.displayName }),
  };
}
