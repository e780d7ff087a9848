/**
 * Dirty-log write cost: log bytes written and log-device flushes per 1000 random region writes, driving
 * the log as the mirror does (mark, flush, write the data, clear, flush), with a hot/cold mix: 90% of
 * writes go to 1% of the regions. Compares the kernel's behaviour (whole buffer per log write, clean at
 * the next flush) with ours (changed blocks only, lazy clean 100 ms) on a fake clock: each write
 * advances time by `gapMs`, so no real waiting is involved.
 *
 * Run: npx tsc -p tsconfig.test.json && node build/bench/dirty-log-bench.js
 * Never part of npm test.
 */
import { MemoryBlockDevice } from '../src/block/memory-block-device.js';
import { DiskDirtyLog, type DiskLogWriteMode } from '../src/dirty-log/disk-dirty-log.js';

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

/** Deterministic PRNG (mulberry32) so every variant sees the same writes. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

async function run(scenario: Scenario, variant: Variant): Promise<{ bytes: number; writes: number; flushes: number; ms: number }> {
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
  return {
    bytes: end.logBytesWritten - base.logBytesWritten,
    writes: end.logWritesTotal - base.logWritesTotal,
    flushes: end.logFlushesTotal - base.logFlushesTotal,
    ms,
  };
}

function pad(text: string, width: number): string {
  return text.length >= width ? text : text + ' '.repeat(width - text.length);
}

async function main(): Promise<void> {
  console.log(`dirty-log bench: per ${writes} random region writes (90% to 32 hot regions, 10% anywhere)`);
  for (const scenario of scenarios) {
    console.log(`\n${scenario.name}`);
    console.log(
      `${pad('variant', 30)}${pad('log bytes written', 20)}${pad('log writes', 12)}${pad('log flushes', 13)}cpu ms`,
    );
    for (const variant of variants) {
      const r = await run(scenario, variant);
      console.log(
        `${pad(variant.name, 30)}${pad(r.bytes.toLocaleString('en-US'), 20)}${pad(String(r.writes), 12)}${pad(String(r.flushes), 13)}${r.ms.toFixed(1)}`,
      );
    }
  }
}

await main();
