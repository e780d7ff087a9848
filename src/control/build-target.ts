/**
 * buildTarget: the target registry of dm core (dm_get_target_type + ctr). Given a table line, it builds
 * the mirror, linear, zero or error target, opening devices through the caller's resolver. It is the
 * only place that knows every target type, so MappedDevice stays free of mirror knowledge.
 */
import type { BlockDevice } from '../block/block-device.js';
import type { CreateDirtyLogOptions } from '../dirty-log/create-dirty-log.js';
import { TableError } from '../errors.js';
import { rethrowProgrammerError } from '../fail-fast.js';
import { recoveryParallelMax, recoveryParallelMin } from '../limits.js';
import { createMirrorSet } from '../mirror/create-mirror-set.js';
import type { KernelLogLevel, ReadPolicy } from '../mirror/mirror-set.js';
import { ErrorTarget } from '../target/error-target.js';
import { LinearTarget, linearLookupFailure, parseLinearArgs } from '../target/linear-target.js';
import type { TargetContext } from '../target/mapped-device.js';
import type { TableLine } from '../target/table-lines.js';
import type { Target } from '../target/target.js';
import { ZeroTarget, parseZeroArgs } from '../target/zero-target.js';

export interface DeviceResolver {
  /** Opens a device by its table name (a path, or a device held by the same daemon). */
  readonly open: (name: string) => Promise<BlockDevice>;
  /** How status and table lines show a device (the kernel prints maj:min). */
  readonly displayName?: (name: string) => string;
}

export interface BuildTargetOptions {
  readonly resolver: DeviceResolver;
  /** Regions each mirror recovers at once (`--recovery-parallel`), recoveryParallelMin..recoveryParallelMax. */
  readonly recoveryParallel?: number;
  readonly readPolicy?: ReadPolicy;
  /** md's read repair (`--read-repair`) and the resync cap in bytes/s (`--resync-rate`), for every mirror. */
  readonly readRepair?: boolean;
  readonly resyncBytesPerSecondMax?: number;
  readonly log?: CreateDirtyLogOptions;
  readonly onMessage?: (device: string, level: KernelLogLevel, message: string) => void;
  /** The disk log's warnings (the kernel's "device-mapper: dirty region log:" lines). */
  readonly onLogWarning?: (device: string, line: string) => void;
}

/** The dirty-log options of one device: the caller's, with its warnings routed to onLogWarning. */
function logOptions(options: BuildTargetOptions, deviceName: string): CreateDirtyLogOptions {
  const onLogWarning = options.onLogWarning;
  if (onLogWarning === undefined) return options.log ?? {};
  return { ...options.log, onWarning: (line: string) => onLogWarning(deviceName, line) };
}

/** Returns a MappedDevice `buildTarget` function bound to a resolver and mirror options. */
export function targetBuilder(options: BuildTargetOptions): (line: TableLine, context: TargetContext) => Promise<Target> {
  const displayName = options.resolver.displayName ?? ((name: string) => name);
  const parallel = options.recoveryParallel;
  if (parallel !== undefined && !(Number.isSafeInteger(parallel) && parallel >= recoveryParallelMin && parallel <= recoveryParallelMax)) {
    throw new RangeError(`recoveryParallel must be an integer from ${recoveryParallelMin} to ${recoveryParallelMax}, got ${parallel}`);
  }
  return async (line, context) => {
    switch (line.type) {
      case 'mirror':
        return createMirrorSet({
          args: line.args,
          lengthSectors: line.lengthSectors,
          openDevice: options.resolver.open,
          displayName,
          name: context.deviceName,
          raiseEvent: context.raiseEvent,
          // FIXME(#10): the mirror side still calls the setting recoveryParallelMax (the ceiling's name in limits.ts).
          ...(options.recoveryParallel === undefined ? {} : { recoveryParallelMax: options.recoveryParallel }),
          ...(options.readPolicy === undefined ? {} : { readPolicy: options.readPolicy }),
          ...(options.readRepair === true && { readRepair: true }),
          ...(options.resyncBytesPerSecondMax === undefined ? {} : { resyncBytesPerSecondMax: options.resyncBytesPerSecondMax }),
          ...(options.log === undefined && options.onLogWarning === undefined ? {} : { log: logOptions(options, context.deviceName) }),
          ...(options.onMessage === undefined
            ? {}
            : { onMessage: (level: KernelLogLevel, message: string) => options.onMessage?.(context.deviceName, level, message) }),
        });
      case 'linear': {
        const args = parseLinearArgs(line.args, { lengthSectors: line.lengthSectors });
        let device: BlockDevice;
        try {
          device = await options.resolver.open(args.device);
        } catch (err) {
          rethrowProgrammerError(err);
          throw linearLookupFailure(err);
        }
        try {
          return new LinearTarget({
            device,
            displayName: displayName(args.device),
            offsetSectors: args.offsetSectors,
            lengthSectors: line.lengthSectors,
            release: () => device.close(),
          });
        } catch (err) {
          await device.close();
          throw err;
        }
      }
      case 'zero':
        parseZeroArgs(line.args);
        return new ZeroTarget({ lengthSectors: line.lengthSectors });
      case 'error':
        return new ErrorTarget({ lengthSectors: line.lengthSectors });
      default:
        throw new TableError({ kernelError: `unknown target type ${line.type}`, source: 'core' });
    }
  };
}
