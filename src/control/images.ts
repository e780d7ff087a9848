/**
 * Leg and log images for the main job: sparse image files under a data folder, and the mirror table
 * that uses them. Existing images are reused as they are (never truncated), so a restart finds its
 * disk log and resyncs only what was dirty. When every image was just created (all zeroes, identical),
 * the disk log is created `nosync`, so a fresh volume needs no initial copy.
 */
import { mkdir, rm, rmdir, stat } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { FileBlockDevice } from '../block/file-block-device.js';
import { assert, isPowerOfTwo } from '../assert.js';
import { ControlError } from '../errors.js';
import { rethrowProgrammerError } from '../fail-fast.js';
import {
  imageBytesDefault,
  legsMax,
  legsMin,
  logImageBlockBytes,
  logImageBytesMin,
  regionCountMax,
  regionSizeSectorsMax,
  regionSizeSectorsMin,
  sectorBytes,
} from '../limits.js';
import { diskLogBufferBytes } from '../dirty-log/disk-log-format.js';

export interface ImageSetOptions {
  readonly dataDir: string;
  /** Leg size; when absent, the size of an existing leg0.img, else {@link imageBytesDefault}. */
  readonly sizeBytes?: number;
  readonly legCount: number;
  readonly regionSectors: number;
  readonly log: 'disk' | 'core';
  readonly handleErrors: boolean;
}

export interface ImageSet {
  /** The data folder, resolved. */
  readonly dataDir: string;
  readonly legPaths: readonly string[];
  readonly logPath: string | undefined;
  readonly created: readonly string[];
  /** The first folder this call created (mkdir -p), if any. */
  readonly madeDir?: string;
  readonly table: string;
}

/** Parses sizes like 1G, 512M, 64KiB, 1048576. @throws ControlError EINVAL for anything else. */
export function parseSize(text: string): number {
  const match = /^(\d+)\s*([kmgt]?)(i?b)?$/i.exec(text.trim());
  if (match === null) throw new ControlError('EINVAL', `invalid size "${text}" (examples: 1G, 512M, 65536)`);
  const units: Record<string, number> = { '': 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 };
  const unit = units[(match[2] ?? '').toLowerCase()];
  assert(unit !== undefined);
  const bytes = Number(match[1]) * unit;
  if (!Number.isSafeInteger(bytes)) throw new ControlError('EINVAL', `size "${text}" is larger than umirror can address (2^53 bytes)`);
  if (bytes <= 0 || bytes % sectorBytes !== 0) throw new ControlError('EINVAL', `size "${text}" must be a positive multiple of 512 bytes`);
  return bytes;
}

/** The size of an existing file, or undefined when there is none. */
async function existingBytes(path: string): Promise<number | undefined> {
  try {
    return (await stat(path)).size;
  } catch (err) {
    if (typeof err === 'object' && err !== null && 'code' in err && err.code === 'ENOENT') return undefined;
    throw err;
  }
}

/** Refuses an existing image smaller than it must be (images are never truncated or grown). */
async function checkImage(path: string, sizeBytes: number): Promise<void> {
  const bytes = await existingBytes(path);
  if (bytes !== undefined && bytes < sizeBytes) {
    throw new ControlError('EINVAL', `${path} exists but is smaller (${bytes} bytes) than ${sizeBytes} bytes`);
  }
}

/** Creates the image unless it exists (checked by checkImage). */
async function ensureImage(path: string, sizeBytes: number, created: string[]): Promise<void> {
  if ((await existingBytes(path)) !== undefined) return;
  const device = await FileBlockDevice.create(path, sizeBytes);
  await device.close();
  created.push(path);
}

/**
 * Refuses a region size the kernel would refuse for this size (larger than the device) and a region
 * count no dirty log can hold, naming the smallest region size that fits.
 */
function checkRegions(options: { lengthSectors: number; regionSectors: number }): number {
  const { lengthSectors, regionSectors } = options;
  if (regionSectors > lengthSectors) {
    throw new ControlError('EINVAL', `--region-size ${regionSectors} is larger than the device (${lengthSectors} sectors)`);
  }
  const regionCount = Math.ceil(lengthSectors / regionSectors);
  if (regionCount > regionCountMax) {
    let fits = regionSectors;
    while (Math.ceil(lengthSectors / fits) > regionCountMax) fits *= 2;
    throw new ControlError(
      'EINVAL',
      `${lengthSectors} sectors in regions of ${regionSectors} sectors make ${regionCount} regions, more than a dirty log holds ` +
        `(${regionCountMax}): use --region-size ${fits} or more`,
    );
  }
  return regionCount;
}

/** The size (whole sectors) of an existing leg image, or undefined when there is none. */
async function existingLegBytes(path: string): Promise<number | undefined> {
  try {
    const bytes = (await stat(path)).size;
    const whole = bytes - (bytes % sectorBytes);
    if (whole <= 0) throw new ControlError('EINVAL', `${path} exists but holds less than one sector`);
    return whole;
  } catch (err) {
    if (typeof err === 'object' && err !== null && 'code' in err && err.code === 'ENOENT') return undefined;
    throw err;
  }
}

/**
 * Creates (or finds) the images and returns the mirror table over them. Everything is checked before
 * anything is created, and a failure part way (no space, EFBIG) removes what this call created.
 * @throws ControlError EINVAL for sizes and region sizes the table could not take; fs errors as they come.
 */
export async function prepareImages(options: ImageSetOptions): Promise<ImageSet> {
  assert(options.legCount >= legsMin && options.legCount <= legsMax, 'legCount in range');
  assert(isPowerOfTwo(options.regionSectors), 'regionSectors: a power of two');
  assert(options.regionSectors >= regionSizeSectorsMin && options.regionSectors <= regionSizeSectorsMax, 'regionSectors in range');
  const dir = resolve(options.dataDir);
  const legPaths = Array.from({ length: options.legCount }, (_, i) => join(dir, `leg${i}.img`));
  const sizeBytes = options.sizeBytes ?? (await existingLegBytes(legPaths[0] ?? '')) ?? imageBytesDefault;
  const lengthSectors = sizeBytes / sectorBytes;
  assert(Number.isSafeInteger(lengthSectors) && lengthSectors > 0, 'whole sectors');
  const regionCount = checkRegions({ lengthSectors, regionSectors: options.regionSectors });
  const logPath = options.log === 'disk' ? join(dir, 'log.img') : undefined;
  const logBytes = Math.max(diskLogBufferBytes({ regionCount, logicalBlockBytes: logImageBlockBytes }), logImageBytesMin);
  for (const path of legPaths) await checkImage(path, sizeBytes);
  if (logPath !== undefined) await checkImage(logPath, logBytes);

  const madeDir = await mkdir(dir, { recursive: true });
  const created: string[] = [];
  try {
    for (const path of legPaths) await ensureImage(path, sizeBytes, created);
    if (logPath !== undefined) await ensureImage(logPath, logBytes, created);
  } catch (err) {
    const left = await removeImages({ dataDir: dir, created, madeDir });
    if (left.length === 0) throw err;
    const reason = err instanceof Error ? err.message : String(err);
    throw new ControlError('EIO', `${reason}; could not remove what this start created: ${left.join(', ')}`, { cause: err });
  }
  let logWords = `core 1 ${options.regionSectors}`;
  if (logPath !== undefined) {
    // Images made just now are all zeroes, so the legs are already identical: skip the initial copy.
    // Only then: a later start must trust the log's bits (default sync), to resync what a crash left dirty.
    const fresh = legPaths.every((path) => created.includes(path)) && created.includes(logPath);
    logWords = fresh ? `disk 3 ${logPath} ${options.regionSectors} nosync` : `disk 2 ${logPath} ${options.regionSectors}`;
  }
  const legWords = legPaths.map((path) => `${path} 0`).join(' ');
  const features = options.handleErrors ? ' 1 handle_errors' : '';
  const table = `0 ${lengthSectors} mirror ${logWords} ${options.legCount} ${legWords}${features}`;
  return { dataDir: dir, legPaths, logPath, created, table, ...(madeDir === undefined ? {} : { madeDir }) };
}

/**
 * Removes the images (and the folders) a prepareImages call created, for a start that failed before it
 * served anything. Best effort: what cannot be removed stays, and the start's own error is what counts;
 * returns one line per path left behind ("PATH: CODE") for the caller to print. A folder that is not
 * empty (someone put a file there meanwhile) is kept on purpose and not reported.
 */
export async function removeImages(options: { dataDir: string; created: readonly string[]; madeDir?: string | undefined }): Promise<string[]> {
  const left: string[] = [];
  const leftBehind = (path: string, expected: readonly string[]) => (err: unknown): void => {
    rethrowProgrammerError(err);
    const code = typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string' ? err.code : String(err);
    if (!expected.includes(code)) left.push(`${path}: ${code}`);
  };
  await Promise.all(options.created.map((path) => rm(path, { force: true }).catch(leftBehind(path, []))));
  const top = options.madeDir;
  if (top === undefined) return left;
  // The folders this start made, deepest first, each only when empty (rmdir refuses anything else).
  for (let dir = options.dataDir; dir.startsWith(top); dir = dirname(dir)) {
    await rmdir(dir).catch(leftBehind(dir, ['ENOTEMPTY', 'EEXIST', 'ENOENT']));
    if (dir === top) break;
  }
  return left;
}
