/**
 * Memory per device (DESIGN §7): a 16 TiB mirror with 512 KiB regions must fit in tens of MiB.
 * Builds 2-leg mirror sets over sparse in-memory 16 TiB legs with a core log and with a disk log,
 * resumes them, writes to a few thousand regions, and prints the memory they hold
 * (heap + array buffers, measured after a forced GC; node must run with --expose-gc).
 * Each log is measured in a process of its own (this script runs itself with `--log core|disk`), so
 * the memory one leaves behind for the collector cannot hide the next one's (the disk log's figure
 * was negative when both ran in one process).
 * Run: npm run bench:memory
 */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { MemoryBlockDevice } from '../src/block/memory-block-device.js';
import { createMirrorSet } from '../src/mirror/create-mirror-set.js';
import type { BlockDevice } from '../src/block/block-device.js';

const TiB = 2 ** 40;
const sizeBytes = 16 * TiB;
const regionSectors = 1024; // 512 KiB

function usedBytes(): number {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc === undefined) throw new Error('run node with --expose-gc');
  gc();
  const usage = process.memoryUsage();
  return usage.heapUsed + usage.arrayBuffers;
}

async function measure(log: 'core' | 'disk'): Promise<{ log: string; regions: number; mib: number }> {
  const before = usedBytes();
  const devices = new Map<string, BlockDevice>([
    ['a', new MemoryBlockDevice({ sizeBytes, name: 'a' })],
    ['b', new MemoryBlockDevice({ sizeBytes, name: 'b' })],
    ['log', new MemoryBlockDevice({ sizeBytes: 8 * 2 ** 20, name: 'log' })],
  ]);
  const logWords = log === 'core' ? `core 2 ${regionSectors} nosync` : `disk 3 log ${regionSectors} nosync`;
  const mirror = await createMirrorSet({
    args: `${logWords} 2 a 0 b 0 1 handle_errors`.split(' '),
    lengthSectors: sizeBytes / 512,
    openDevice: async (name) => {
      const device = devices.get(name);
      if (device === undefined) throw new Error(`no ${name}`);
      return device;
    },
  });
  await mirror.resume();
  const data = Buffer.alloc(4096, 7);
  for (let i = 0; i < 4096; i++) await mirror.write(((i * 7919) % mirror.regionCount) * mirror.regionBytes, data);
  const after = usedBytes();
  // The sparse memory legs hold 64 KiB pages for what was written: not the mirror's memory.
  let legPageBytes = 0;
  for (const device of devices.values()) if (device instanceof MemoryBlockDevice) legPageBytes += device.allocatedPages * 64 * 1024;
  const result = { log, regions: mirror.regionCount, mib: (after - before - legPageBytes) / 2 ** 20 };
  await mirror.destroy();
  return result;
}

type Row = Awaited<ReturnType<typeof measure>>;

/** Runs this script for one log in a fresh node process and reads its one JSON line. */
async function measureInChild(log: 'core' | 'disk'): Promise<Row> {
  const script = fileURLToPath(import.meta.url);
  const { stdout } = await promisify(execFile)(process.execPath, ['--expose-gc', script, '--log', log]);
  return JSON.parse(stdout) as Row;
}

const at = process.argv.indexOf('--log');
const only = at >= 0 ? process.argv[at + 1] : undefined;
if (only === 'core' || only === 'disk') {
  console.log(JSON.stringify(await measure(only)));
} else {
  if (only !== undefined) throw new RangeError(`--log must be core or disk, got "${only}"`);
  const rows = [await measureInChild('core'), await measureInChild('disk')];
  console.log('16 TiB mirror, 512 KiB regions, 2 legs, 4096 regions written (memory of the mirror set and its log; leg data pages excluded)');
  console.log('log   regions     memory');
  for (const row of rows) console.log(`${row.log.padEnd(5)} ${String(row.regions).padEnd(11)} ${row.mib.toFixed(1)} MiB`);
}
