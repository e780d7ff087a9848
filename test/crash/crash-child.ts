/**
 * The crash test's child process: a MirrorSet with a disk log on real image files (FileBlockDevice)
 * under a random write load, reporting to the parent (crash-harness.ts) on stdout. The parent SIGKILLs
 * it at a random moment; SIGTERM asks for a clean shutdown instead (stop the load, wait for the writes
 * in flight, suspend and close: the log is left clean).
 *
 * Usage: node build/test/crash/crash-child.js '<json CrashChildOptions>'
 *
 * Ordering the parent relies on: `I` is in the pipe before the write is handed to the mirror; `A` is
 * written in the continuation of the write's promise, i.e. in the same microtask drain as the write's
 * completion, before any later worker pass (a macrotask) can clear its region in the log. A leg write's
 * `S` precedes the leg write and its `E` follows its completion in the same way (ProbeDevice journal).
 * Lines are written with writeSync on a blocking pipe, so none is lost when the process is killed
 * after writing it.
 */
import { writeSync } from 'node:fs';
import { FileBlockDevice } from '../../src/block/file-block-device.js';
import type { BlockDevice } from '../../src/block/block-device.js';
import { sectorBytes } from '../../src/limits.js';
import { createMirrorSet } from '../../src/mirror/create-mirror-set.js';
import { Journal, ProbeDevice, type JournalEntry } from '../helpers/probe-device.js';
import { mulberry32 as prng } from '../../src/block/faulty-block-device.js';
import { stampedData } from './crash-stamp.js';

export interface CrashChildOptions {
  readonly legPaths: readonly string[];
  readonly logPath: string;
  readonly lengthSectors: number;
  readonly regionSectors: number;
  /** The first generation this life may use (generations are unique across lives). */
  readonly genStart: number;
  readonly seed: number;
  /** Writes in flight at once. */
  readonly concurrency: number;
  /** Sectors per write, at most. */
  readonly writeSectorsMax: number;
  readonly lazyCleanMs: number;
}

function report(line: string): void {
  writeSync(1, `${line}\n`);
}

/** Reports data writes to the legs (not reads or flushes) as S/E lines; keeps nothing in memory. */
class ReportingJournal extends Journal {
  readonly #legs: ReadonlyMap<string, number>;
  #seq = 0;

  constructor(legs: ReadonlyMap<string, number>) {
    super();
    this.#legs = legs;
  }

  override add(entry: Omit<JournalEntry, 'seq'>): number {
    const leg = this.#legs.get(entry.who);
    const isData = entry.op === 'write' || entry.op === 'zero' || entry.op === 'trim';
    if (leg !== undefined && isData && (entry.what === 'start' || entry.what === 'end')) {
      report(`${entry.what === 'start' ? 'S' : 'E'} ${leg} ${entry.offsetBytes ?? 0} ${entry.lengthBytes ?? 0}`);
    }
    return this.#seq++;
  }
}

async function main(options: CrashChildOptions): Promise<void> {
  const legNames = new Map(options.legPaths.map((path, index) => [path, index] as const));
  const journal = new ReportingJournal(legNames);
  const legDevices: FileBlockDevice[] = [];
  const open = async (path: string): Promise<BlockDevice> => {
    const device = await FileBlockDevice.open(path);
    if (!legNames.has(path)) return device;
    legDevices.push(device); // ProbeDevice.close() leaves the inner device open: closed below.
    return new ProbeDevice(device, { name: path, journal });
  };
  const legWords = options.legPaths.flatMap((path) => [path, '0']);
  const args = ['disk', '2', options.logPath, String(options.regionSectors), String(options.legPaths.length), ...legWords];
  const mirror = await createMirrorSet({
    args,
    lengthSectors: options.lengthSectors,
    openDevice: open,
    log: { lazyCleanMs: options.lazyCleanMs },
  });
  await mirror.resume();
  report(`R ${mirror.regionCount}`);

  const random = prng(options.seed);
  const hotRegions = Math.min(4, mirror.regionCount);
  let gen = options.genStart;
  let stopping = false;
  // Overlapping writes are never in flight together: the mirror, like dm-raid1 and a disk, gives two
  // overlapping writes in flight no order, so the legs could keep them in different orders. A write
  // overlapping one in flight waits for it (as a filesystem orders its own writes).
  const inFlight = new Set<{ start: number; end: number }>();
  const pick = (): { start: number; end: number } => {
    const sectors = 1 + Math.floor(random() * options.writeSectorsMax);
    // Half the writes go to a few hot regions (clean-list races), half anywhere.
    const startSector =
      random() < 0.5
        ? Math.floor(random() * hotRegions) * options.regionSectors + Math.floor(random() * options.regionSectors)
        : Math.floor(random() * options.lengthSectors);
    const start = Math.min(startSector, options.lengthSectors - sectors);
    return { start, end: start + sectors };
  };
  const worker = async (): Promise<void> => {
    while (!stopping) {
      let range = pick();
      while ([...inFlight].some((other) => range.start < other.end && other.start < range.end)) {
        await new Promise((resolve) => setImmediate(resolve));
        range = pick();
      }
      inFlight.add(range);
      const offsetBytes = range.start * sectorBytes;
      const lengthBytes = (range.end - range.start) * sectorBytes;
      const thisGen = gen++;
      const data = stampedData({ gen: thisGen, offsetBytes, lengthBytes });
      report(`I ${thisGen} ${offsetBytes} ${lengthBytes}`);
      await mirror.write(offsetBytes, data);
      report(`A ${thisGen}`);
      inFlight.delete(range);
      if (random() < 0.05) await mirror.flush();
    }
  };
  const workers = Array.from({ length: options.concurrency }, () => worker());
  process.once('SIGTERM', () => {
    stopping = true;
  });
  await Promise.all(workers);
  await mirror.destroy();
  await Promise.all(legDevices.map((device) => device.close()));
  report('C');
}

const json = process.argv[2];
if (json === undefined) {
  process.stderr.write('usage: crash-child.js <json options>\n');
  process.exit(2);
}
await main(JSON.parse(json) as CrashChildOptions);
