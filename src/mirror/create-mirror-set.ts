/**
 * createMirrorSet: the mirror target's constructor (mirror_ctr) from a table line's arguments.
 *
 * Order, as the kernel's (test/scenario/oracle/table-order.out): the log's argument words, then the log
 * is created (dm_dirty_log_create: a disk log opens its device and checks its own arguments), then the
 * leg count, then leg by leg its offset and its lookup (get_mirror), then the features; last, each leg's
 * area is checked against its device (dm core's device_area_is_invalid; the kernel runs it after every
 * constructor of the table, and MappedDevice keeps this error until the other lines are built). So a missing log device beats a bad leg count, a missing leg beats a bad
 * feature, and a bad feature beats a leg too small. On any failure everything opened so far is closed
 * again and a TableError with the kernel's message is thrown.
 *
 * A leg with no whole sector (a 100-byte image, an empty file) has no area to check, as in the kernel:
 * the table is accepted and every I/O to the leg fails with EIO (endCheckedDevice), so the leg fails.
 */
import { assert } from '../assert.js';
import type { BlockDevice } from '../block/block-device.js';
import { endCheckedDevice } from '../block/end-checked-device.js';
import { createDirtyLog, type CreateDirtyLogOptions } from '../dirty-log/create-dirty-log.js';
import type { DirtyLog } from '../dirty-log/dirty-log.js';
import { rethrowProgrammerError, settleOperating } from '../fail-fast.js';
import { sectorBytes } from '../limits.js';
import type { Copier } from '../copy/copier.js';
import type { DeviceArea } from '../target/device-area.js';
import { MirrorSet, type KernelLogLevel, type ReadPolicy } from './mirror-set.js';
import type { RateLimiter } from './rate-limit.js';
import { checkLegFits, deviceLookupFailure, takeFeatures, takeLegCount, takeLegSpec, takeMirrorLogArgs, type MirrorLegSpec } from './table.js';

export interface CreateMirrorSetOptions {
  /** The words after `<start> <len> mirror`. */
  readonly args: readonly string[];
  readonly lengthSectors: number;
  /** Opens a leg or log device by its table name; throws when there is no such device. */
  readonly openDevice: (name: string) => Promise<BlockDevice>;
  /** How status lines show a device; default: its table name. */
  readonly displayName?: (name: string) => string;
  readonly name?: string;
  readonly recoveryParallelMax?: number;
  readonly recoveryBusyBytesPerSecond?: number | null;
  /** MirrorSetOptions' busy parallelism, resync cap and read repair (`--resync-rate`, `--read-repair`). */
  readonly recoveryBusyParallelMax?: number;
  readonly resyncBytesPerSecondMax?: number | null;
  readonly readRepair?: boolean;
  readonly readPolicy?: ReadPolicy;
  readonly copier?: Copier;
  readonly log?: CreateDirtyLogOptions;
  readonly onMessage?: (level: KernelLogLevel, message: string) => void;
  readonly raiseEvent?: () => void;
  readonly messageLimiter?: RateLimiter;
  /** Monotonic clock in ms for the mirror set (MirrorSetOptions.now). */
  readonly now?: () => number;
}

export async function createMirrorSet(options: CreateMirrorSetOptions): Promise<MirrorSet> {
  const lengthSectors = options.lengthSectors;
  const displayName = options.displayName ?? ((name: string) => name);
  const { log: logSpec, rest: afterLog } = takeMirrorLogArgs(options.args);
  // The log's callbacks need the mirror set, which needs the log: bind late.
  let mirror: MirrorSet | undefined;
  const log: DirtyLog = await createDirtyLog(
    logSpec,
    {
      targetLengthSectors: lengthSectors,
      flushData: () => (mirror === undefined ? Promise.resolve() : mirror.flushLegs()),
      raiseEvent: () => mirror?.logDeviceFailed(),
      openDevice: options.openDevice,
      displayName,
    },
    options.log ?? {},
  );
  const opened: BlockDevice[] = [];
  try {
    const { legCount, rest } = takeLegCount(afterLog);
    const specs: MirrorLegSpec[] = [];
    for (let index = 0; index < legCount; index++) {
      const spec = takeLegSpec(rest, { index, lengthSectors });
      try {
        opened.push(await options.openDevice(spec.device));
      } catch (err) {
        rethrowProgrammerError(err);
        throw deviceLookupFailure(err);
      }
      specs.push(spec);
    }
    const features = takeFeatures(rest.slice(legCount * 2));
    // dm core's check, last (a mapped device keeps this error until every other line is constructed).
    for (const area of legAreas({ devices: opened, specs, lengthSectors })) checkLegFits(area);
    mirror = new MirrorSet({
      lengthSectors,
      log,
      legs: specs.map((spec, index) => {
        const device = opened[index];
        assert(device !== undefined, 'one opened device per leg');
        return {
          device: endCheckedDevice(device, { mappedBytes: (spec.offsetSectors + lengthSectors) * sectorBytes }),
          tableName: spec.device,
          offsetSectors: spec.offsetSectors,
          displayName: displayName(spec.device),
        };
      }),
      features,
      ...(options.name === undefined ? {} : { name: options.name }),
      ...(options.recoveryParallelMax === undefined ? {} : { recoveryParallelMax: options.recoveryParallelMax }),
      ...(options.readPolicy === undefined ? {} : { readPolicy: options.readPolicy }),
      ...(options.recoveryBusyBytesPerSecond === undefined ? {} : { recoveryBusyBytesPerSecond: options.recoveryBusyBytesPerSecond }),
      ...(options.recoveryBusyParallelMax === undefined ? {} : { recoveryBusyParallelMax: options.recoveryBusyParallelMax }),
      ...(options.resyncBytesPerSecondMax === undefined ? {} : { resyncBytesPerSecondMax: options.resyncBytesPerSecondMax }),
      ...(options.readRepair === undefined ? {} : { readRepair: options.readRepair }),
      ...(options.copier === undefined ? {} : { copier: options.copier }),
      ...(options.onMessage === undefined ? {} : { onMessage: options.onMessage }),
      ...(options.raiseEvent === undefined ? {} : { raiseEvent: options.raiseEvent }),
      ...(options.messageLimiter === undefined ? {} : { messageLimiter: options.messageLimiter }),
      ...(options.now === undefined ? {} : { now: options.now }),
    });
    return mirror;
  } catch (err) {
    await settleOperating([log.close(), ...opened.map((device) => device.close())]);
    throw err;
  }
}

/**
 * The areas of a mirror's legs, in table order (mirror_iterate_devices). The kernel names the block
 * device here (%pg: "vdb"), not its maj:min: the opened device's name.
 */
export function legAreas(options: {
  devices: readonly BlockDevice[];
  specs: readonly MirrorLegSpec[];
  lengthSectors: number;
}): DeviceArea[] {
  assert(options.devices.length === options.specs.length, 'one device per leg');
  return options.specs.map((spec, index) => {
    const device = options.devices[index];
    assert(device !== undefined);
    return {
      deviceName: device.name,
      deviceSectors: Math.floor(device.sizeBytes / sectorBytes),
      offsetSectors: spec.offsetSectors,
      lengthSectors: options.lengthSectors,
    };
  });
}
