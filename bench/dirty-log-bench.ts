/**
 * Dirty-log write cost: log bytes written and log-device flushes per 1000 random region writes, driving
 * the log as the mirror does (mark, flush, write the data, clear, flush), with a hot/cold mix: 90% of
 * writes go to 1% of the regions. Compares the kernel's behaviour (whole buffer per log write, clean at
 * the next flush) with ours (changed blocks only, lazy clean 100 ms) on a fake clock: each write
 * advances time by `gapMs`, so no real waiting is involved.
 *
 * A second table drives a real MirrorSet (memory legs and log, 8 writes in flight, real time, counted
 * from resume to the end of a clean suspend), where the worker's group commit batches the marks of
 * concurrent writes into one log write and flush.
 *
 * Run: npm run bench:log   (npx tsc -p tsconfig.test.json && node build/bench/dirty-log-bench.js)
 * Never part of npm test.
 */
import { MemoryBlockDevice } from '../src/block/memory-block-device.js';
import type { DirtyLogStats } from '../src/dirty-log/dirty-log.js';
import { DiskDirtyLog, type DiskLogWriteMode } from '../src/dirty-log/disk-dirty-log.js';
import { createMirrorSet } from '../src/mirror/create-mirror-set.js';
import { mulberry32 as prng } from '../src/block/faulty-block-device.js';

interface Variant {
  readonly name: string;
  readonly writeMode: DiskLogWriteMode;
  readonly lazyCleanMs: number;
}

interface Scenario {
  readonly name: string;
  readonly regionCount: number;
  readonly logicalBlockBytes: number;
  readonly gapMs: number;
}

const writes = 1000;
const variants: Variant[] = [
  { name: 'kernel (whole buffer)', writeMode: 'whole-buffer', lazyCleanMs: 0 },
  { name: 'changed blocks', writeMode: 'changed-blocks', lazyCleanMs: 0 },
  { name: 'changed blocks + lazy 100ms', writeMode: 'changed-blocks', lazyCleanMs: 100 },
];
const scenarios: Scenario[] = [
  { name: '16 GiB / 512 KiB regions (32K regions), 512 B blocks', regionCount: 32 * 1024, logicalBlockBytes: 512, gapMs: 1 },
  { name: '1 TiB / 512 KiB regions (2M regions), 4 KiB blocks', regionCount: 2 * 1024 * 1024, logicalBlockBytes: 4096, gapMs: 1 },
  { name: '1 TiB, slow writer (one write every 50 ms)', regionCount: 2 * 1024 * 1024, logicalBlockBytes: 4096, gapMs: 50 },
];

interface Cost {
  readonly bytes: number;
  readonly writes: number;
  readonly flushes: number;
  readonly ms: number;
}

function costBetween(base: DirtyLogStats, end: DirtyLogStats, ms: number): Cost {
  return {
    bytes: end.logBytesWritten - base.logBytesWritten,
    writes: end.logWritesTotal - base.logWritesTotal,
    flushes: end.logFlushesTotal - base.logFlushesTotal,
    ms,
  };
}

async function run(scenario: Scenario, variant: Variant): Promise<Cost> {
  const bufferBytesMax = 1024 + Math.ceil(scenario.regionCount / 8) + 8192;
  const device = new MemoryBlockDevice({ sizeBytes: bufferBytesMax, logicalBlockBytes: scenario.logicalBlockBytes });
  let now = 0;
  const log = new DiskDirtyLog({
    device,
    displayName: 'bench',
    regionCount: scenario.regionCount,
    regionSizeSectors: 1024,
    syncMode: 'nosync',
    flushData: () => Promise.resolve(),
    raiseEvent: () => undefined,
    writeMode: variant.writeMode,
    lazyCleanMs: variant.lazyCleanMs,
    lazyCleanTimer: false,
    now: () => now,
  });
  await log.resume();
  const base = log.stats;
  const random = prng(42);
  const hotCount = 32; // A journal and some metadata: a few hot regions.
  const started = performance.now();
  for (let i = 0; i < writes; i++) {
    const hot = random() < 0.9;
    const regionIndex = hot ? Math.floor(random() * hotCount) : Math.floor(random() * scenario.regionCount);
    // The mirror's worker pass: mark (if clean), flush before the data write.
    if (log.isClean(regionIndex)) log.markRegion(regionIndex);
    await log.flush();
    // The data write completes; on a later pass the region is cleared and the log flushed again.
    now += scenario.gapMs;
    log.clearRegion(regionIndex);
    await log.flush();
  }
  const ms = performance.now() - started;
  const end = log.stats;
  await log.postsuspend();
  await log.close();
  return costBetween(base, end, ms);
}

/** The same write mix through a MirrorSet: 4 KiB writes, 8 in flight, 32K regions of 512 KiB. */
async function runMirror(variant: Variant): Promise<Cost> {
  const regionCount = 32 * 1024;
  const regionSectors = 1024;
  const legs = [0, 1].map((i) => new MemoryBlockDevice({ sizeBytes: regionCount * regionSectors * 512, name: `l${i}` }));
  const logDevice = new MemoryBlockDevice({ sizeBytes: 1024 * 1024, name: 'log' });
  const devices = new Map([['l0', legs[0]], ['l1', legs[1]], ['log', logDevice]]);
  const mirror = await createMirrorSet({
    args: `disk 3 log ${regionSectors} nosync 2 l0 0 l1 0`.split(' '),
    lengthSectors: regionCount * regionSectors,
    openDevice: (name) => {
      const device = devices.get(name);
      return device === undefined ? Promise.reject(new Error(name)) : Promise.resolve(device);
    },
    log: { writeMode: variant.writeMode, lazyCleanMs: variant.lazyCleanMs },
  });
  await mirror.resume();
  const log = mirror.log;
  if (!(log instanceof DiskDirtyLog)) throw new Error('a disk log was expected');
  const base = log.stats;
  const random = prng(42);
  const data = Buffer.alloc(4096, 1);
  let issued = 0;
  const started = performance.now();
  const writer = async (): Promise<void> => {
    while (issued < writes) {
      issued++;
      const hot = random() < 0.9;
      const regionIndex = hot ? Math.floor(random() * 32) : Math.floor(random() * regionCount);
      await mirror.write(regionIndex * regionSectors * 512, data);
    }
  };
  await Promise.all(Array.from({ length: 8 }, () => writer()));
  await mirror.suspend();
  const ms = performance.now() - started;
  const end = log.stats;
  await mirror.destroy();
  return costBetween(base, end, ms);
}

function pad(text: string, width: number): string {
  return text.length >= width ? text : text + ' '.repeat(width - text.length);
}

function printHeader(timeColumn: string): void {
  console.log(`${pad('variant', 30)}${pad('log bytes written', 20)}${pad('log writes', 12)}${pad('log flushes', 13)}${timeColumn}`);
}

function printRow(variant: Variant, r: Cost): void {
  console.log(
    `${pad(variant.name, 30)}${pad(r.bytes.toLocaleString('en-US'), 20)}${pad(String(r.writes), 12)}${pad(String(r.flushes), 13)}${r.ms.toFixed(1)}`,
  );
}

async function main(): Promise<void> {
  console.log(`dirty-log bench: per ${writes} random region writes (90% to 32 hot regions, 10% anywhere)`);
  for (const scenario of scenarios) {
    console.log(`\n${scenario.name}`);
    printHeader('cpu ms');
    for (const variant of variants) printRow(variant, await run(scenario, variant));
  }
  console.log('\nThrough MirrorSet: 16 GiB, 32K regions, 512 B blocks, 4 KiB writes, 8 in flight (real time, until a clean suspend)');
  printHeader('wall ms');
  for (const variant of variants) printRow(variant, await runMirror(variant));
}

await main();
