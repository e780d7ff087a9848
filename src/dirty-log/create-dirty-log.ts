/**
 * Builds a dirty log from the log part of a mirror table (`core 1 1024`, `disk 3 /dev/vdc 1024 nosync`),
 * the kernel's dm_dirty_log_create + core_ctr/disk_ctr + create_log_context, with its exact messages.
 *
 * Check order (it decides which message a bad table gets):
 *   1. the type: core or disk, else `Module for logging type "foo" not found.`
 *   2. disk: 2..3 arguments; then the log device is opened (a failure has no dirty-log line)
 *   3. 1..2 arguments after the device (`wrong number of arguments to dirty region log`)
 *   4. the sync argument (`unrecognised sync argument to dirty region log: X`)
 *   5. the region size: sscanf("%u%c") == 1, limits.ts isRegionSizeSectors (a power of two >= 2),
 *      <= target length
 *   6. the region count fits the kernel's unsigned int (`region count exceeds limit of 4294967295`)
 *   7. disk: header + bits fit on the device (`log device X too small: need N bytes`)
 *   8. the bitsets fit our memory bound, limits.ts regionCountMax: beyond it we answer as the kernel does
 *      when vmalloc fails (`couldn't allocate clean bitset`, disk: `couldn't allocate disk log buffer`)
 * Every rejection is TableError { kernelError: 'Error creating mirror dirty log', logLines, source: 'log' }.
 *
 * The log is not resumed here: the owner (the mirror) calls resume() when the table goes live.
 */
import { TableError } from '../errors.js';
import { rethrowProgrammerError } from '../fail-fast.js';
import { CoreDirtyLog } from './core-dirty-log.js';
import type { DirtyLog, DirtyLogContext, LogSpec, LogSyncMode } from './dirty-log.js';
import { DiskDirtyLog } from './disk-dirty-log.js';
import { diskLogBufferBytes } from './disk-log-format.js';
import type { DiskLogWriteMode } from './disk-log-writer.js';
import { isRegionSizeSectors, kernelRegionCountMax, regionCountMax } from '../limits.js';

export const dirtyLogErrorMessage = 'Error creating mirror dirty log';

export interface ParsedLogSpec {
  readonly type: 'core' | 'disk';
  /** The disk log's device name as written in the table. */
  readonly device?: string;
  readonly regionSizeSectors: number;
  readonly syncMode: LogSyncMode;
}

/** Our options past the kernel's table (not part of the table text). */
export interface CreateDirtyLogOptions {
  readonly lazyCleanMs?: number;
  readonly writeMode?: DiskLogWriteMode;
  readonly onWarning?: (line: string) => void;
}

function logError(line?: string, cause?: unknown): TableError {
  return new TableError({
    kernelError: dirtyLogErrorMessage,
    logLines: line === undefined ? [] : [line],
    source: 'log',
    cause,
  });
}

/** Region count of a target: ceil(len / regionSize), the last region may be short. */
export function regionCountOf(options: { targetLengthSectors: number; regionSizeSectors: number }): number {
  return Math.ceil(options.targetLengthSectors / options.regionSizeSectors);
}

/** The kernel's sscanf(arg, "%u%c") == 1: decimal digits only, no sign, nothing after; wraps at 2^32. */
function parseRegionSize(text: string): number | null {
  if (!/^[0-9]+$/.test(text)) return null;
  return Number(BigInt(text) % 2n ** 32n);
}

function checkDiskArgCount(spec: LogSpec): void {
  if (spec.args.length < 2 || spec.args.length > 3) {
    throw logError('wrong number of arguments to disk dirty region log');
  }
}

function checkType(spec: LogSpec): 'core' | 'disk' {
  if (spec.type === 'core' || spec.type === 'disk') return spec.type;
  throw logError(`Module for logging type "${spec.type}" not found.`);
}

/**
 * Parses and validates the log part of a table (pure; no device is opened).
 * @throws TableError 'Error creating mirror dirty log' with the kernel's dm-log line.
 */
export function parseLogSpec(spec: LogSpec, options: { targetLengthSectors: number }): ParsedLogSpec {
  const type = checkType(spec);
  let args = spec.args;
  let device: string | undefined;
  if (type === 'disk') {
    checkDiskArgCount(spec);
    device = args[0];
    args = args.slice(1);
  }
  if (args.length < 1 || args.length > 2) throw logError('wrong number of arguments to dirty region log');
  let syncMode: LogSyncMode = 'default';
  const syncArg = args[1];
  if (syncArg !== undefined) {
    if (syncArg === 'sync') syncMode = 'sync';
    else if (syncArg === 'nosync') syncMode = 'nosync';
    else throw logError(`unrecognised sync argument to dirty region log: ${syncArg}`);
  }
  const regionText = args[0] ?? '';
  const regionSizeSectors = parseRegionSize(regionText);
  // _check_region_size: the one rule of limits.ts (power of two, >= 2), and no larger than the target.
  if (regionSizeSectors === null || !isRegionSizeSectors(regionSizeSectors) || regionSizeSectors > options.targetLengthSectors) {
    throw logError(`invalid region size ${regionText}`);
  }
  const regionCount = regionCountOf({ targetLengthSectors: options.targetLengthSectors, regionSizeSectors });
  if (regionCount > kernelRegionCountMax) throw logError(`region count exceeds limit of ${kernelRegionCountMax}`);
  if (type === 'core' && regionCount > regionCountMax) throw logError("couldn't allocate clean bitset");
  return device === undefined ? { type, regionSizeSectors, syncMode } : { type, device, regionSizeSectors, syncMode };
}

/**
 * Parses the spec and builds the log (opening the disk log's device through the context).
 * @throws TableError 'Error creating mirror dirty log'.
 */
export async function createDirtyLog(
  spec: LogSpec,
  ctx: DirtyLogContext,
  options: CreateDirtyLogOptions = {},
): Promise<DirtyLog> {
  const type = checkType(spec);
  if (type === 'core') {
    const parsed = parseLogSpec(spec, { targetLengthSectors: ctx.targetLengthSectors });
    return new CoreDirtyLog({
      regionCount: regionCountOf({ targetLengthSectors: ctx.targetLengthSectors, regionSizeSectors: parsed.regionSizeSectors }),
      regionSizeSectors: parsed.regionSizeSectors,
      syncMode: parsed.syncMode,
    });
  }
  // disk_ctr: the count first, then the device, then the rest of the arguments.
  checkDiskArgCount(spec);
  const deviceName = spec.args[0] ?? '';
  let device;
  try {
    device = await ctx.openDevice(deviceName);
  } catch (err) {
    rethrowProgrammerError(err);
    throw logError(undefined, err);
  }
  const displayName = ctx.displayName?.(deviceName) ?? deviceName;
  try {
    const parsed = parseLogSpec(spec, { targetLengthSectors: ctx.targetLengthSectors });
    const regionCount = regionCountOf({
      targetLengthSectors: ctx.targetLengthSectors,
      regionSizeSectors: parsed.regionSizeSectors,
    });
    const needBytes = diskLogBufferBytes({ regionCount, logicalBlockBytes: device.logicalBlockBytes });
    if (needBytes > device.sizeBytes) throw logError(`log device ${displayName} too small: need ${needBytes} bytes`);
    if (regionCount > regionCountMax) throw logError("couldn't allocate disk log buffer");
    return new DiskDirtyLog({
      device,
      displayName,
      regionCount,
      regionSizeSectors: parsed.regionSizeSectors,
      syncMode: parsed.syncMode,
      flushData: ctx.flushData,
      raiseEvent: ctx.raiseEvent,
      ...(options.lazyCleanMs === undefined ? {} : { lazyCleanMs: options.lazyCleanMs }),
      ...(options.writeMode === undefined ? {} : { writeMode: options.writeMode }),
      ...(options.onWarning === undefined ? {} : { onWarning: options.onWarning }),
    });
  } catch (err) {
    await device.close();
    throw err;
  }
}
