/**
 * Leg and log images for the main job: sparse image files under a data folder, and the mirror table
 * that uses them. Existing images are reused as they are (never truncated), so a restart finds its
 * disk log and resyncs only what was dirty. When every image was just created (all zeroes, identical),
 * the disk log is created `nosync`, so a fresh volume needs no initial copy.
 */
import { mkdir, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { FileBlockDevice } from '../block/file-block-device.js';
import { assert } from '../assert.js';
import { sectorBytes } from '../limits.js';
import { diskLogBufferBytes } from '../dirty-log/disk-log-format.js';

export interface ImageSetOptions {
  readonly dataDir: string;
  /** Leg size; when absent, the size of an existing leg0.img, else {@link defaultImageBytes}. */
  readonly sizeBytes?: number;
  readonly legCount: number;
  readonly regionSectors: number;
  readonly log: 'disk' | 'core';
  readonly handleErrors: boolean;
}

export interface ImageSet {
  readonly legPaths: readonly string[];
  readonly logPath: string | undefined;
  readonly created: readonly string[];
  readonly table: string;
}

/** The leg size of a fresh data folder when none is given. */
export const defaultImageBytes = 2 ** 30;

/** Parses sizes like 1G, 512M, 64KiB, 1048576. */
export function parseSize(text: string): number {
  const match = /^(\d+)\s*([kmgt]?)(i?b)?$/i.exec(text.trim());
  if (match === null) throw new RangeError(`invalid size "${text}" (examples: 1G, 512M, 65536)`);
  const units: Record<string, number> = { '': 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 };
  const unit = units[(match[2] ?? '').toLowerCase()];
  assert(unit !== undefined);
  const bytes = Number(match[1]) * unit;
  if (!Number.isSafeInteger(bytes) || bytes <= 0 || bytes % sectorBytes !== 0) {
    throw new RangeError(`size "${text}" must be a positive multiple of 512 bytes`);
  }
  return bytes;
}

async function ensureImage(path: string, sizeBytes: number, created: string[]): Promise<void> {
  try {
    const info = await stat(path);
    if (info.size < sizeBytes) throw new RangeError(`${path} exists but is smaller (${info.size} bytes) than ${sizeBytes} bytes`);
    return;
  } catch (err) {
    if (!(typeof err === 'object' && err !== null && 'code' in err && err.code === 'ENOENT')) throw err;
  }
  const device = await FileBlockDevice.create(path, sizeBytes);
  await device.close();
  created.push(path);
}

/** The size (whole sectors) of an existing leg image, or undefined when there is none. */
async function existingLegBytes(path: string): Promise<number | undefined> {
  try {
    const bytes = (await stat(path)).size;
    const whole = bytes - (bytes % sectorBytes);
    if (whole <= 0) throw new RangeError(`${path} exists but holds less than one sector`);
    return whole;
  } catch (err) {
    if (typeof err === 'object' && err !== null && 'code' in err && err.code === 'ENOENT') return undefined;
    throw err;
  }
}

/** Creates (or finds) the images and returns the mirror table over them. */
export async function prepareImages(options: ImageSetOptions): Promise<ImageSet> {
  assert(options.legCount >= 2 && options.legCount <= 9, 'legCount 2..9');
  const dir = resolve(options.dataDir);
  await mkdir(dir, { recursive: true });
  const created: string[] = [];
  const legPaths = Array.from({ length: options.legCount }, (_, i) => join(dir, `leg${i}.img`));
  const sizeBytes = options.sizeBytes ?? (await existingLegBytes(legPaths[0] ?? '')) ?? defaultImageBytes;
  for (const path of legPaths) await ensureImage(path, sizeBytes, created);
  const lengthSectors = sizeBytes / sectorBytes;
  const regionCount = Math.ceil(lengthSectors / options.regionSectors);
  let logPath: string | undefined;
  let logWords = `core 1 ${options.regionSectors}`;
  if (options.log === 'disk') {
    logPath = join(dir, 'log.img');
    const logBytes = Math.max(diskLogBufferBytes({ regionCount, logicalBlockBytes: 4096 }), 1024 * 1024);
    await ensureImage(logPath, logBytes, created);
    // Images made just now are all zeroes, so the legs are already identical: skip the initial copy.
    // Only then: a later start must trust the log's bits (default sync), to resync what a crash left dirty.
    const fresh = legPaths.every((path) => created.includes(path)) && created.includes(logPath);
    logWords = fresh ? `disk 3 ${logPath} ${options.regionSectors} nosync` : `disk 2 ${logPath} ${options.regionSectors}`;
  }
  const legWords = legPaths.map((path) => `${path} 0`).join(' ');
  const features = options.handleErrors ? ' 1 handle_errors' : '';
  const table = `0 ${lengthSectors} mirror ${logWords} ${options.legCount} ${legWords}${features}`;
  return { legPaths, logPath, created, table };
}
