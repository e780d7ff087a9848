/**
 * Builds mirror sets over in-memory (optionally faulty) legs for unit, conformance and property tests.
 * Devices are named by table name ("l0", "l1", ...; "log" for a disk log device) and held in `devices`
 * so a test can inject faults or inspect leg contents directly.
 */
import { FaultyBlockDevice } from '../../src/block/faulty-block-device.js';
import { MemoryBlockDevice } from '../../src/block/memory-block-device.js';
import { forwardingDevice } from '../../src/block/forwarding-device.js';
import type { BlockDevice } from '../../src/block/block-device.js';
import { createMirrorSet, type CreateMirrorSetOptions } from '../../src/mirror/create-mirror-set.js';
import type { MirrorSet } from '../../src/mirror/mirror-set.js';
import { sectorBytes } from '../../src/limits.js';
import { RateLimiter } from '../../src/mirror/rate-limit.js';

/** A limiter that lets every message through (the default one allows 10 per 5 s, as the kernel). */
export function unlimitedMessages(): RateLimiter {
  return new RateLimiter({ burst: Number.MAX_SAFE_INTEGER });
}

export interface MirrorFixture {
  readonly mirror: MirrorSet;
  /** Faulty wrappers around the memory legs, by table name. */
  readonly legs: readonly FaultyBlockDevice[];
  readonly memories: readonly MemoryBlockDevice[];
  /** The device a disk log ("log" in the table) lives on. */
  readonly logDevice: MemoryBlockDevice;
  readonly messages: string[];
  readonly open: (name: string) => Promise<BlockDevice>;
}

export interface MirrorFixtureOptions {
  readonly legCount?: number;
  readonly lengthSectors?: number;
  readonly regionSectors?: number;
  /** The log words, e.g. "core 1 1024"; default core with regionSectors. */
  readonly log?: string;
  readonly features?: string;
  /** Extra sectors on each leg device past lengthSectors (for offsets). */
  readonly legOffsetSectors?: number;
  readonly resume?: boolean;
  readonly extra?: Partial<CreateMirrorSetOptions>;
  /** Reuse these legs (and log device) to reload a table over the same devices. */
  readonly reuse?: { legs: readonly FaultyBlockDevice[]; memories: readonly MemoryBlockDevice[]; logDevice?: MemoryBlockDevice };
}

/** A device handle whose close() does not close the shared device underneath (for table reloads). */
export function shared(device: BlockDevice): BlockDevice {
  return forwardingDevice(device);
}

export async function mirrorFixture(options: MirrorFixtureOptions = {}): Promise<MirrorFixture> {
  const legCount = options.legCount ?? 2;
  const lengthSectors = options.lengthSectors ?? 2048;
  const regionSectors = options.regionSectors ?? 128;
  const offset = options.legOffsetSectors ?? 0;
  const memories =
    options.reuse?.memories ??
    Array.from({ length: legCount }, (_, i) => new MemoryBlockDevice({ sizeBytes: (lengthSectors + offset) * sectorBytes, name: `l${i}` }));
  const legs = options.reuse?.legs ?? memories.map((m, i) => new FaultyBlockDevice(m, { name: `l${i}` }));
  const logDevice = options.reuse?.logDevice ?? new MemoryBlockDevice({ sizeBytes: 1024 * 1024, name: 'log' });
  const open = (name: string): Promise<BlockDevice> => {
    if (name === 'log') return Promise.resolve(shared(logDevice));
    const index = Number(name.replace(/^l/, ''));
    const leg = legs[index];
    if (leg === undefined || !/^l\d+$/.test(name)) return Promise.reject(new Error(`no device ${name}`));
    return Promise.resolve(shared(leg));
  };
  const logWords = options.log ?? `core 1 ${regionSectors}`;
  const legWords = legs.map((_, i) => `l${i} ${offset}`).join(' ');
  const text = `${logWords} ${legCount} ${legWords}${options.features === undefined ? '' : ` ${options.features}`}`;
  const messages: string[] = [];
  const mirror = await createMirrorSet({
    args: text.split(/\s+/),
    lengthSectors,
    openDevice: open,
    onMessage: (_level, message) => messages.push(message),
    // Tests count kernel messages per region: no rate limit unless a test brings its own limiter.
    messageLimiter: unlimitedMessages(),
    ...options.extra,
  });
  if (options.resume !== false) await mirror.resume();
  return { mirror, legs, memories, logDevice, messages, open };
}

/** Waits until the mirror set is in sync (all regions) or the time runs out. */
export async function waitInSync(mirror: MirrorSet, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (mirror.syncCount() < mirror.regionCount || !mirror.inSync) {
    if (Date.now() > deadline) throw new Error(`not in sync after ${timeoutMs} ms: ${mirror.statusInfo()}`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

/** Waits for a condition, polling. */
export async function waitFor(condition: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}
