/**
 * createMirrorSet: the mirror target's constructor (mirror_ctr) from a table line's arguments.
 *
 * Order, as the kernel's: parse and validate the log arguments, the leg count, the leg arguments and
 * the features (table.ts + dirty-log's parseLogSpec, all pure), then build the log (a disk log opens
 * its device), then open every leg and check it is large enough. On any failure everything opened so
 * far is closed again and a TableError with the kernel's message is thrown.
 */
import type { BlockDevice } from '../block/block-device.js';
import { createDirtyLog, parseLogSpec, type CreateDirtyLogOptions } from '../dirty-log/create-dirty-log.js';
import type { DirtyLog } from '../dirty-log/dirty-log.js';
import { TableError } from '../errors.js';
import { rethrowProgrammerError, settleOperating } from '../fail-fast.js';
import { sectorBytes } from '../limits.js';
import type { Copier } from '../copy/copier.js';
import { MirrorSet, type KernelLogLevel, type ReadPolicy } from './mirror-set.js';
import type { RateLimiter } from './rate-limit.js';
import { checkLegFits, deviceLookupFailure, parseMirrorArgs } from './table.js';

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
  readonly readPolicy?: ReadPolicy;
  readonly copier?: Copier;
  readonly log?: CreateDirtyLogOptions;
  readonly onMessage?: (level: KernelLogLevel, message: string) => void;
  readonly raiseEvent?: () => void;
  readonly messageLimiter?: RateLimiter;
}

export async function createMirrorSet(options: CreateMirrorSetOptions): Promise<MirrorSet> {
  const lengthSectors = options.lengthSectors;
  const table = parseMirrorArgs(options.args, {
    lengthSectors,
    validateLog: (log) => void parseLogSpec(log, { targetLengthSectors: lengthSectors }),
  });
  const displayName = options.displayName ?? ((name: string) => name);
  // The log's callbacks need the mirror set, which needs the log: bind late.
  let mirror: MirrorSet | undefined;
  const log: DirtyLog = await createDirtyLog(
    table.log,
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
    for (const leg of table.legs) {
      let device: BlockDevice;
      try {
        device = await options.openDevice(leg.device);
      } catch (err) {
        rethrowProgrammerError(err);
        throw deviceLookupFailure(err);
      }
      opened.push(device);
      checkLegFits({
        // The kernel names the block device here (%pg: "vdb"), not its maj:min: the opened device's name.
        deviceName: device.name,
        deviceSectors: Math.floor(device.sizeBytes / sectorBytes),
        offsetSectors: leg.offsetSectors,
        lengthSectors,
      });
    }
    mirror = new MirrorSet({
      lengthSectors,
      log,
      legs: table.legs.map((leg, index) => {
        const device = opened[index];
        if (device === undefined) throw new TableError({ kernelError: 'Device lookup failure', code: 'ENODEV' });
        return { device, tableName: leg.device, offsetSectors: leg.offsetSectors, displayName: displayName(leg.device) };
      }),
      features: table.features,
      ...(options.name === undefined ? {} : { name: options.name }),
      ...(options.recoveryParallelMax === undefined ? {} : { recoveryParallelMax: options.recoveryParallelMax }),
      ...(options.readPolicy === undefined ? {} : { readPolicy: options.readPolicy }),
      ...(options.recoveryBusyBytesPerSecond === undefined ? {} : { recoveryBusyBytesPerSecond: options.recoveryBusyBytesPerSecond }),
      ...(options.copier === undefined ? {} : { copier: options.copier }),
      ...(options.onMessage === undefined ? {} : { onMessage: options.onMessage }),
      ...(options.raiseEvent === undefined ? {} : { raiseEvent: options.raiseEvent }),
      ...(options.messageLimiter === undefined ? {} : { messageLimiter: options.messageLimiter }),
    });
    return mirror;
  } catch (err) {
    await settleOperating([log.close(), ...opened.map((device) => device.close())]);
    throw err;
  }
}
