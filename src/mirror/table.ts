/**
 * The mirror target's table arguments: parsing with the kernel's exact ti->error strings (dm-raid1.c
 * mirror_ctr, create_dirty_log, get_mirror, parse_features) and canonical re-emission (mirror_status).
 * Pure: no I/O. parseMirrorArgs() checks a whole line (with optional synchronous hooks for the log and the
 * leg lookups); the mirror target's constructor (create-mirror-set.ts) runs the same steps one by one
 * (takeMirrorLogArgs, takeLegCount, takeLegSpec, takeFeatures) with the real, asynchronous log creation
 * and leg lookups in between, and checkLegFits() / deviceLookupFailure() give the errors of those.
 *
 *   <log_type> <#log_args> <log_args...> <#legs> [<dev> <offset>]{#legs} [<#features> <features...>]
 *
 * Checks, in the kernel's order (the first failing one wins):
 *   1. fewer than 2 args                        -> "Insufficient mirror log arguments"
 *   2. #log_args not %u                         -> "Invalid mirror log argument count"
 *   3. #log_args > args left                    -> "Insufficient mirror log arguments"
 *   4. the log is created: validateLog(log), or createDirtyLog opening the disk log's device
 *      (dm_dirty_log_create)                    -> whatever it throws ("Error creating mirror dirty log")
 *   5. #legs missing, not %u, < 2 or > 9        -> "Invalid number of mirrors"
 *   6. fewer than 2 x #legs args left           -> "Too few mirror arguments"
 *   7. per leg: offset not %llu                 -> "Invalid offset"
 *      per leg: lookupLeg(device) (optional)    -> "Device lookup failure" (ENODEV), see deviceLookupFailure
 *   8. #features not %u                         -> "Invalid number of features"
 *      #features > args left                    -> "Not enough arguments to support feature count"
 *      a feature other than handle_errors/keep_log -> "Unrecognised feature requested"
 *      keep_log without handle_errors           -> "keep_log feature requires the handle_errors feature"
 *   9. anything left over                       -> "Too many mirror arguments"
 *  10. dm core, once every target of the table was constructed: each leg's area fits its device
 *      (checkLegFits)                           -> "<dev> too small for target: ..."
 * So `disk 2 /missing 1024 1 a 0` is a log error, and a missing leg beats a bad feature, which beats a
 * leg too small (test/scenario/oracle/table-order.out).
 *
 * Re-emission (STATUSTYPE_TABLE) is canonical: features are flags, so `0` disappears, duplicates merge
 * and handle_errors always precedes keep_log.
 */
import { assert, assertCount } from '../assert.js';
import type { LogSpec } from '../dirty-log/dirty-log.js';
import { TableError } from '../errors.js';
import { legsMax, legsMin } from '../limits.js';
import { checkDeviceArea, scanOffsetSectors, scanUnsigned32, type DeviceArea } from '../target/device-area.js';

export interface MirrorLegSpec {
  readonly device: string;
  readonly offsetSectors: number;
}

export interface MirrorFeatures {
  readonly handleErrors: boolean;
  readonly keepLog: boolean;
}

export interface MirrorTableArgs {
  readonly log: LogSpec;
  readonly legs: readonly MirrorLegSpec[];
  readonly features: MirrorFeatures;
}

/** dm-raid1's target version, as `dmsetup targets` and the IMA string print it. */
export const mirrorTargetVersion = '1.14.0';

/** The fewest legs a mirror set takes (the bound lives in limits.ts; re-exported for the CLI). */
export { legsMin };

export interface ParseMirrorArgsOptions {
  /** The segment length (ti->len); passed on for the log's region-size check. */
  readonly lengthSectors: number;
  /** dm_dirty_log_create: throws the log's TableError ("Error creating mirror dirty log"). */
  readonly validateLog?: (log: LogSpec) => void;
  /** dm_get_device for one leg, right after its offset is checked; throws deviceLookupFailure(). */
  readonly lookupLeg?: (device: string) => void;
}

/**
 * Parses the mirror target's arguments (everything after `<start> <len> mirror`).
 * @throws TableError with the kernel's ti->error, in the kernel's order (see the banner).
 */
export function parseMirrorArgs(args: readonly string[], options: ParseMirrorArgsOptions): MirrorTableArgs {
  assertCount(options.lengthSectors, 'lengthSectors');
  const { log, rest: afterLog } = takeMirrorLogArgs(args);
  options.validateLog?.(log);
  const { legCount, rest } = takeLegCount(afterLog);
  const legs: MirrorLegSpec[] = [];
  for (let index = 0; index < legCount; index++) {
    const leg = takeLegSpec(rest, { index, lengthSectors: options.lengthSectors });
    options.lookupLeg?.(leg.device);
    legs.push(leg);
  }
  const features = takeFeatures(rest.slice(legCount * 2));
  assert(legs.length === legCount, 'one spec per leg');
  return { log, legs, features };
}

/**
 * Steps 1-3 (create_dirty_log's own checks): the log's type and arguments, and the words after them.
 * The caller creates the log next (dm_dirty_log_create), before it looks at anything else.
 * @throws TableError "Insufficient mirror log arguments" / "Invalid mirror log argument count".
 */
export function takeMirrorLogArgs(args: readonly string[]): { log: LogSpec; rest: readonly string[] } {
  if (args.length < 2) throw targetError('Insufficient mirror log arguments');
  const logArgCount = scanUnsigned32(args[1]);
  if (logArgCount === null) throw targetError('Invalid mirror log argument count');
  if (logArgCount > args.length - 2) throw targetError('Insufficient mirror log arguments');
  return { log: { type: args[0] ?? '', args: args.slice(2, 2 + logArgCount) }, rest: args.slice(2 + logArgCount) };
}

/**
 * Steps 5-6: the leg count, and the words from the first leg on (at least two per leg).
 * @throws TableError "Invalid number of mirrors" / "Too few mirror arguments".
 */
export function takeLegCount(afterLog: readonly string[]): { legCount: number; rest: readonly string[] } {
  const legCount = scanUnsigned32(afterLog[0]);
  if (legCount === null || legCount < legsMin || legCount > legsMax) throw targetError('Invalid number of mirrors');
  const rest = afterLog.slice(1);
  if (rest.length < legCount * 2) throw targetError('Too few mirror arguments');
  return { legCount, rest };
}

/**
 * Step 7, one leg (get_mirror before its dm_get_device): the device name and its offset (bounded so the
 * leg's area stays addressable, see scanOffsetSectors).
 * @throws TableError "Invalid offset".
 */
export function takeLegSpec(legWords: readonly string[], options: { index: number; lengthSectors: number }): MirrorLegSpec {
  const { index } = options;
  assertCount(index, 'index');
  assert(2 * index + 1 < legWords.length, 'takeLegCount made room for every leg');
  const offsetSectors = scanOffsetSectors(legWords[2 * index + 1], { lengthSectors: options.lengthSectors });
  if (offsetSectors === null) throw targetError('Invalid offset');
  return { device: legWords[2 * index] ?? '', offsetSectors };
}

/**
 * Steps 8-9 (parse_features): the words after the legs are the feature block and nothing else.
 * @throws TableError with parse_features' messages, or "Too many mirror arguments".
 */
export function takeFeatures(afterLegs: readonly string[]): MirrorFeatures {
  const { features, used } = parseFeatures(afterLegs);
  if (afterLegs.length > used) throw targetError('Too many mirror arguments');
  assert(!features.keepLog || features.handleErrors, 'keep_log implies handle_errors');
  return features;
}

/**
 * The table params as the kernel re-emits them: `<logTable> <#legs> <dev> <offset>... [<n> features]`.
 * `logTable` is the log's statusTable() ("core 1 1024"); `displayName` maps a table device to what the
 * status shows (the kernel prints maj:min).
 */
export function formatMirrorTable(
  args: MirrorTableArgs,
  options: { logTable: string; displayName: (device: string) => string },
): string {
  assert(args.legs.length >= legsMin && args.legs.length <= legsMax, 'leg count in range');
  const words: string[] = [options.logTable, String(args.legs.length)];
  for (const leg of args.legs) words.push(options.displayName(leg.device), String(leg.offsetSectors));
  const featureWords = canonicalFeatures(args.features);
  if (featureWords.length > 0) words.push(String(featureWords.length), ...featureWords);
  return words.join(' ');
}

/** STATUSTYPE_INFO params: `2 254:0 254:16 32/32 1 AA 1 core`. */
export function formatMirrorStatus(options: {
  legs: readonly string[];
  syncCount: number;
  regionCount: number;
  health: string;
  logInfo: string;
}): string {
  assert(options.legs.length >= legsMin && options.legs.length <= legsMax, 'leg count in range');
  assert(options.health.length === options.legs.length, 'one health letter per leg');
  assert(/^[AFDSRU]+$/.test(options.health), `health letters are A F D S R U, got ${options.health}`);
  assertCount(options.syncCount, 'syncCount');
  assertCount(options.regionCount, 'regionCount');
  assert(options.syncCount <= options.regionCount, 'syncCount <= regionCount');
  return [
    String(options.legs.length),
    ...options.legs,
    `${options.syncCount}/${options.regionCount}`,
    '1',
    options.health,
    options.logInfo,
  ].join(' ');
}

/**
 * STATUSTYPE_IMA params (`dmsetup measure`): target name and version, legs with their health letter,
 * the feature flags, and the log's IMA status (empty for core and disk).
 */
export function formatMeasure(options: {
  legs: readonly string[];
  health: string;
  features: MirrorFeatures;
  logMeasure?: string;
}): string {
  assert(options.health.length === options.legs.length, 'one health letter per leg');
  const parts = [`target_name=mirror`, `target_version=${mirrorTargetVersion}`, `nr_mirrors=${options.legs.length}`];
  options.legs.forEach((leg, index) => {
    parts.push(`mirror_device_${index}=${leg}`, `mirror_device_${index}_status=${options.health[index] ?? 'U'}`);
  });
  parts.push(`handle_errors=${options.features.handleErrors ? 'y' : 'n'}`);
  parts.push(`keep_log=${options.features.keepLog ? 'y' : 'n'}`);
  parts.push(`log_type_status=${options.logMeasure ?? ''}`);
  return `${parts.join(',')};`;
}

/**
 * dm core's size check for one leg (device_area_is_invalid via mirror_iterate_devices).
 * @throws TableError source 'core': "<name> too small for target: start=.., len=.., dev_size=..".
 */
export function checkLegFits(options: DeviceArea): void {
  checkDeviceArea(options);
}

/** get_mirror's dm_get_device failure: "Device lookup failure", ENODEV (dmsetup: "No such device"). */
export function deviceLookupFailure(cause?: unknown): TableError {
  return new TableError({ code: 'ENODEV', kernelError: 'Device lookup failure', source: 'target', cause });
}

function parseFeatures(rest: readonly string[]): { features: MirrorFeatures; used: number } {
  if (rest.length === 0) return { features: { handleErrors: false, keepLog: false }, used: 0 };
  const count = scanUnsigned32(rest[0]);
  if (count === null) throw targetError('Invalid number of features');
  if (count > rest.length - 1) throw targetError('Not enough arguments to support feature count');
  let handleErrors = false;
  let keepLog = false;
  for (let index = 1; index <= count; index++) {
    const feature = rest[index];
    if (feature === 'handle_errors') handleErrors = true;
    else if (feature === 'keep_log') keepLog = true;
    else throw targetError('Unrecognised feature requested');
  }
  if (keepLog && !handleErrors) throw targetError('keep_log feature requires the handle_errors feature');
  return { features: { handleErrors, keepLog }, used: 1 + count };
}

function canonicalFeatures(features: MirrorFeatures): string[] {
  const words: string[] = [];
  if (features.handleErrors) words.push('handle_errors');
  if (features.keepLog) words.push('keep_log');
  return words;
}

function targetError(kernelError: string): TableError {
  return new TableError({ kernelError, source: 'target' });
}
