/**
 * The values of umirror's options and arguments, each checked against its bound in limits.ts before the
 * command creates, opens or binds anything. A bad value is ControlError EINVAL with a one-line message
 * that names the option and the range; main.ts prints it as `umirror VERB: MESSAGE` and exits 1.
 * (Options the parser does not know, or without their value, are usage errors: see main.ts.)
 *
 * Numbers are decimal digits only: no sign, no exponent, no hex, nothing after them, so `--legs 2x`,
 * `--lazy-clean 1e3` and `--legs -1` are all refused rather than read as something else.
 */
import { checkDeviceName } from '../control/control-protocol.js';
import { parseSize } from '../control/images.js';
import { ControlError } from '../errors.js';
import {
  eventNrMax,
  handshakeLimitMsMax,
  lazyCleanMsMax,
  legTimeoutMsMax,
  legTimeoutMsMin,
  quotedInputCharsMax,
  legsMax,
  legsMin,
  rateMiBPerSecondMax,
  rateMiBPerSecondMin,
  recoveryParallelMax,
  recoveryParallelMin,
  scrubEveryHoursMax,
  regionSizeSectorsMax,
  regionSizeSectorsMin,
  unixSocketPathBytesMax,
} from '../limits.js';

function invalid(message: string): ControlError {
  return new ControlError('EINVAL', message);
}

/** Quotes a value for a message, cut to a readable length. */
function shown(text: string): string {
  return JSON.stringify(text.length > quotedInputCharsMax ? `${text.slice(0, quotedInputCharsMax)}...` : text);
}

/** A decimal integer in [min, max]. */
export function integerOption(options: { option: string; text: string; min: number; max: number; unit?: string }): number {
  const { option, text, min, max } = options;
  const unit = options.unit === undefined ? '' : ` ${options.unit}`;
  const value = /^[0-9]+$/.test(text) ? Number(text) : Number.NaN;
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw invalid(`${option} must be an integer from ${min} to ${max}${unit}, got ${shown(text)}`);
  }
  return value;
}

/** `--legs N`: legsMin..legsMax (the kernel's mirror count bounds). */
export function legCountOption(text: string): number {
  return integerOption({ option: '--legs', text, min: legsMin, max: legsMax });
}

/** `--region-size SECTORS`: a power of two, as dm-log requires. */
export function regionSizeOption(text: string): number {
  const value = /^[0-9]+$/.test(text) ? Number(text) : Number.NaN;
  const powerOfTwo = Number.isSafeInteger(value) && value > 0 && (value & (value - 1)) === 0;
  if (!powerOfTwo || value < regionSizeSectorsMin || value > regionSizeSectorsMax) {
    throw invalid(`--region-size must be a power of two from ${regionSizeSectorsMin} to ${regionSizeSectorsMax} sectors, got ${shown(text)}`);
  }
  return value;
}

/** `--recovery-parallel N`: regions resynced at once. */
export function recoveryParallelOption(text: string): number {
  return integerOption({ option: '--recovery-parallel', text, min: recoveryParallelMin, max: recoveryParallelMax });
}

/** `--rate MiB/s` (scrub), `--resync-rate MiB/s`: a decimal number (1.5 allowed) in MiB/s. */
export function rateOption(option: string, text: string): number {
  const value = /^[0-9]+(\.[0-9]+)?$/.test(text) ? Number(text) : Number.NaN;
  if (!Number.isFinite(value) || value < rateMiBPerSecondMin || value > rateMiBPerSecondMax) {
    throw invalid(`${option} must be a number from ${rateMiBPerSecondMin} to ${rateMiBPerSecondMax} MiB/s, got ${shown(text)}`);
  }
  return value;
}

/** `serve --scrub-every HOURS`: a whole number of hours, 1 to scrubEveryHoursMax. */
export function scrubEveryOption(text: string): number {
  return integerOption({ option: '--scrub-every', text, min: 1, max: scrubEveryHoursMax, unit: 'hours' });
}

/** `--lazy-clean MS`: 0 (clean at the next pass) up to lazyCleanMsMax. */
export function lazyCleanOption(text: string): number {
  return integerOption({ option: '--lazy-clean', text, min: 0, max: lazyCleanMsMax, unit: 'milliseconds' });
}

/** `--log disk|core`. */
export function logTypeOption(text: string): 'disk' | 'core' {
  if (text !== 'disk' && text !== 'core') throw invalid(`--log must be disk or core, got ${shown(text)}`);
  return text;
}

/** `--size SIZE`: a positive whole number of sectors (1G, 512M, 65536). */
export function sizeOption(text: string): number {
  try {
    return parseSize(text);
  } catch (err) {
    if (err instanceof ControlError) throw invalid(`--size: ${err.message}`);
    throw err;
  }
}

/** A folder option (`--data DIR`): not empty. */
export function folderOption(option: string, text: string): string {
  if (text === '' || text.includes('\0')) throw invalid(`${option} needs a folder path, got ${shown(text)}`);
  return text;
}

/** A device name (`--name NAME`, the verbs' NAME): what dmsetup accepts. */
export function deviceNameOption(text: string): string {
  checkDeviceName(text);
  return text;
}

/** A Unix socket path (`--socket PATH`, `unix:PATH`): not empty and short enough for sun_path. */
export function socketPathOption(option: string, text: string): string {
  if (text === '' || text.includes('\0')) throw invalid(`${option} needs a socket path, got ${shown(text)}`);
  const bytes = Buffer.byteLength(text);
  if (bytes > unixSocketPathBytesMax) {
    throw invalid(`${option} path is ${bytes} bytes long; a Unix socket path holds at most ${unixSocketPathBytesMax}`);
  }
  return text;
}

/** `wait NAME [EVENT_NR]`: dm's event counter is 32 bits. */
export function eventNrArgument(text: string): number {
  return integerOption({ option: 'EVENT_NR', text, min: 0, max: eventNrMax });
}

/**
 * `message NAME SECTOR`: dmsetup reads SECTOR with strtoull and says "Invalid sector." unless the whole
 * argument is a number that fits in 64 bits. Sectors past 2^53 lie past every device umirror can hold:
 * they are sent as the largest safe integer, so the daemon answers "Target message sector outside device."
 * as the kernel does for them. @returns null for dmsetup's "Invalid sector.".
 */
export function sectorArgument(text: string): number | null {
  if (!/^[0-9]+$/.test(text)) return null;
  const value = BigInt(text);
  if (value > 2n ** 64n - 1n) return null;
  return value > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(value);
}

/** `--handshake-limit SECONDS` (qemu-nbd's flag): seconds, fractions allowed, 0 for no limit; in ms. */
export function handshakeLimitOption(text: string): number {
  const ms = /^[0-9]+(\.[0-9]+)?$/.test(text) ? Math.round(Number(text) * 1000) : Number.NaN;
  if (!Number.isSafeInteger(ms) || ms > handshakeLimitMsMax) {
    throw invalid(`--handshake-limit must be a number of seconds from 0 to ${handshakeLimitMsMax / 1000} (0: no limit), got ${shown(text)}`);
  }
  return ms;
}

/**
 * The first sentence of node:util parseArgs' message ("Unknown option '--bogus'"), without the advice
 * on '--' that follows it, which is about positionals and only confuses a mistyped option.
 */
export function parseArgsMessage(message: string): string {
  const end = message.indexOf('. ');
  return end === -1 ? message.replace(/\.$/, '') : message.slice(0, end);
}

/**
 * `--leg-timeout SECONDS`: how long a request to a remote (NBD URI) leg may stay unanswered before the
 * connection is dropped and the leg fails; fractions allowed, legTimeoutMsMin..legTimeoutMsMax. No 0:
 * a leg without a timeout would wait on a network partition for ever. @returns milliseconds.
 */
export function legTimeoutOption(text: string): number {
  const ms = /^[0-9]+(\.[0-9]+)?$/.test(text) ? Math.round(Number(text) * 1000) : Number.NaN;
  if (!Number.isSafeInteger(ms) || ms < legTimeoutMsMin || ms > legTimeoutMsMax) {
    throw invalid(`--leg-timeout must be a number of seconds from ${legTimeoutMsMin / 1000} to ${legTimeoutMsMax / 1000}, got ${shown(text)}`);
  }
  return ms;
}
