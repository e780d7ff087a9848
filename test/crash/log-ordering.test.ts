/**
 * Write ordering of the disk dirty log under a MirrorSet, proven at the device level: the log device and
 * both legs are recording probes on one journal (ProbeDevice, plus the data of every log write), and a
 * replay of the journal checks, for every request:
 *
 *   - a data write to region r starts only when bit r is 0 (dirty) in the log's *durable* image: the
 *     bytes of log writes that ended before a log flush that has completed;
 *   - a log write that turns bit r to 1 (clean) starts only when no data write to r is in flight and
 *     every leg completed a flush that started after that leg's last write to r ended;
 *   - a batch of writes costs one log flush, and only the changed bitmap blocks are written;
 *   - the log device bytes equal the kernel's (whole-buffer mode, and the format laid out by hand).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { BlockDevice, WriteOptions } from '../../src/block/block-device.js';
import { MemoryBlockDevice } from '../../src/block/memory-block-device.js';
import type { DiskLogWriteMode } from '../../src/dirty-log/disk-dirty-log.js';
import { diskLogBitsOffsetBytes, diskLogMagic } from '../../src/dirty-log/disk-log-format.js';
import { sectorBytes } from '../../src/limits.js';
import { createMirrorSet } from '../../src/mirror/create-mirror-set.js';
import type { MirrorSet } from '../../src/mirror/mirror-set.js';
import { Journal, ProbeDevice, type JournalEntry } from '../helpers/probe-device.js';
import { pattern } from '../conformance/block-device.suite.js';
import { mulberry32 as prng } from '../../src/block/faulty-block-device.js';

/** A ProbeDevice that also keeps the data of every write, by the journal seq of its start entry. */
class DataProbeDevice extends ProbeDevice {
  readonly data = new Map<number, Buffer>();

  override write(offsetBytes: number, data: Uint8Array, options?: WriteOptions): Promise<void> {
    const done = super.write(offsetBytes, data, options);
    // Without a gate the start entry is journaled synchronously, before the first await.
    const start = this.journal.entries.at(-1);
    assert.ok(start !== undefined && start.who === this.name && start.what === 'start' && start.op === 'write');
    this.data.set(start.seq, Buffer.from(data));
    return done;
  }
}

const regionSectors = 2;
const regionBytes = regionSectors * sectorBytes;

interface OrderingSet {
  readonly mirror: MirrorSet;
  readonly journal: Journal;
  readonly log: DataProbeDevice;
  readonly logMemory: MemoryBlockDevice;
  readonly legs: readonly ProbeDevice[];
}

async function orderingSet(options: {
  regionCount: number;
  writeMode?: DiskLogWriteMode;
  lazyCleanMs?: number;
}): Promise<OrderingSet> {
  const journal = new Journal();
  const lengthSectors = options.regionCount * regionSectors;
  const legs = [0, 1].map(
    (i) => new ProbeDevice(new MemoryBlockDevice({ sizeBytes: lengthSectors * sectorBytes, name: `l${i}` }), { name: `l${i}`, journal }),
  );
  const logMemory = new MemoryBlockDevice({ sizeBytes: 64 * 1024, name: 'log' });
  const log = new DataProbeDevice(logMemory, { name: 'log', journal });
  const devices = new Map<string, BlockDevice>([
    ['l0', legs[0] as BlockDevice],
    ['l1', legs[1] as BlockDevice],
    ['log', log],
  ]);
  const open = (name: string): Promise<BlockDevice> => {
    const device = devices.get(name);
    return device === undefined ? Promise.reject(new Error(`no device ${name}`)) : Promise.resolve(device);
  };
  // nosync: every region starts clean, so no recovery I/O mixes with the client writes.
  const mirror = await createMirrorSet({
    args: `disk 3 log ${regionSectors} nosync 2 l0 0 l1 0`.split(' '),
    lengthSectors,
    openDevice: open,
    log: { writeMode: options.writeMode ?? 'changed-blocks', lazyCleanMs: options.lazyCleanMs ?? 0 },
  });
  await mirror.resume();
  return { mirror, journal, log, logMemory, legs };
}

function bit(image: Uint8Array, regionIndex: number): boolean {
  return ((image[diskLogBitsOffsetBytes + (regionIndex >>> 3)] ?? 0) & (1 << (regionIndex & 7))) !== 0;
}

function regionsOf(entry: JournalEntry): number[] {
  const offset = entry.offsetBytes ?? 0;
  const first = Math.floor(offset / regionBytes);
  const last = Math.floor((offset + Math.max(entry.lengthBytes ?? 0, 1) - 1) / regionBytes);
  return Array.from({ length: last - first + 1 }, (_, i) => first + i);
}

/** Replays the journal and throws on the first ordering violation. Returns counts for the caller. */
function checkOrdering(set: OrderingSet, fromSeq: number): { dataWrites: number; cleanMarks: number } {
  const bufferBytes = 64 * 1024;
  const volatile = new Uint8Array(bufferBytes);
  let durable: Uint8Array = new Uint8Array(bufferBytes);
  const logFlushSnapshots: Uint8Array[] = [];
  // Per leg: writes in flight by region, the seq each region's last write ended, open flush starts and
  // the start seq of the last completed flush (it covers writes that ended before it started).
  const legState = new Map<string, { inFlight: Map<number, number>; lastEnd: Map<number, number>; openFlushes: number[]; covered: number }>();
  for (const leg of set.legs) legState.set(leg.name, { inFlight: new Map(), lastEnd: new Map(), openFlushes: [], covered: -1 });
  let dataWrites = 0;
  let cleanMarks = 0;
  for (const e of set.journal.entries) {
    if (e.who === 'log') {
      if (e.op === 'write' && e.what === 'start') {
        const data = set.log.data.get(e.seq);
        assert.ok(data !== undefined);
        const offset = e.offsetBytes ?? 0;
        if (e.seq >= fromSeq) {
          for (let i = 0; i < data.length; i++) {
            const at = offset + i;
            if (at < diskLogBitsOffsetBytes) continue;
            const before = volatile[at] ?? 0;
            const turnedClean = (data[i] ?? 0) & ~before;
            for (let b = 0; b < 8; b++) {
              if ((turnedClean & (1 << b)) === 0) continue;
              const r = (at - diskLogBitsOffsetBytes) * 8 + b;
              cleanMarks++;
              for (const [name, leg] of legState) {
                assert.equal(leg.inFlight.get(r) ?? 0, 0, `clean mark of region ${r} written while a write to it is in flight on ${name}`);
                const lastEnd = leg.lastEnd.get(r);
                if (lastEnd !== undefined) {
                  assert.ok(leg.covered > lastEnd, `clean mark of region ${r} written before ${name} was flushed after its last write`);
                }
              }
            }
          }
        }
        // The bytes are in the device (volatile) once the write ends; written in start order here,
        // which is safe because the log never has two writes of one block in flight.
        volatile.set(data, offset);
      } else if (e.op === 'flush' && e.what === 'start') {
        logFlushSnapshots.push(volatile.slice());
      } else if (e.op === 'flush' && e.what === 'end') {
        const snapshot = logFlushSnapshots.shift();
        assert.ok(snapshot !== undefined);
        durable = snapshot;
      }
      continue;
    }
    const leg = legState.get(e.who);
    assert.ok(leg !== undefined, `unexpected device ${e.who}`);
    if (e.op === 'flush') {
      if (e.what === 'start') leg.openFlushes.push(e.seq);
      else leg.covered = Math.max(leg.covered, leg.openFlushes.shift() ?? -1);
      continue;
    }
    if (e.op !== 'write') continue;
    for (const r of regionsOf(e)) {
      if (e.what === 'start') {
        if (e.seq >= fromSeq) {
          dataWrites++;
          assert.equal(bit(durable, r), false, `data write to region ${r} on ${e.who} started before its dirty mark was durable`);
        }
        leg.inFlight.set(r, (leg.inFlight.get(r) ?? 0) + 1);
      } else {
        leg.inFlight.set(r, (leg.inFlight.get(r) ?? 0) - 1);
        leg.lastEnd.set(r, e.seq);
      }
    }
  }
  return { dataWrites, cleanMarks };
}

describe('disk log ordering under MirrorSet (device level)', () => {
  for (const lazyCleanMs of [0, 5]) {
    test(`MirrorSet + DiskDirtyLog: dirty marks are durable before data, clean marks follow leg flushes (lazyCleanMs ${lazyCleanMs})`, async () => {
      // 300 random writes, 8 in flight, half to 4 hot regions, some client flushes; then suspend.
      // Expected: the replay finds every data write behind a durable dirty mark and every clean mark
      // behind a leg flush; after suspend every bit is clean again.
      const set = await orderingSet({ regionCount: 4096, lazyCleanMs });
      const random = prng(lazyCleanMs + 11);
      const start = set.journal.entries.length;
      let next = 0;
      const worker = async (): Promise<void> => {
        while (next < 300) {
          next++;
          const region = random() < 0.5 ? Math.floor(random() * 4) : Math.floor(random() * 4096);
          const sectors = 1 + Math.floor(random() * 4);
          const offset = Math.min(region * regionBytes + Math.floor(random() * regionSectors) * sectorBytes, set.mirror.sizeBytes - sectors * sectorBytes);
          await set.mirror.write(offset, pattern(sectors * sectorBytes, next));
          if (random() < 0.05) await set.mirror.flush();
        }
      };
      await Promise.all(Array.from({ length: 8 }, () => worker()));
      await set.mirror.suspend();
      const { dataWrites, cleanMarks } = checkOrdering(set, start);
      assert.ok(dataWrites >= 600, `every write reached both legs (${dataWrites} leg writes)`);
      assert.ok(cleanMarks > 0, 'regions were cleaned');
      const image = await set.logMemory.read(0, 4096);
      for (let r = 0; r < 4096; r++) assert.equal(bit(image, r), true, `region ${r} clean after suspend`);
      await set.mirror.destroy();
    });
  }

  test('MirrorSet + DiskDirtyLog: one log flush per worker batch, one log write per changed block run', async () => {
    // 16 writes issued at once: 8 regions whose bits share a block, 8 in a block two blocks further.
    // Expected before the first leg data write: one log flush, two log writes (one per block), each
    // one logical block long.
    const set = await orderingSet({ regionCount: 16384 });
    const start = set.journal.entries.length;
    const bitsPerBlock = 512 * 8;
    const regions = [...Array.from({ length: 8 }, (_, i) => 100 + i * 7), ...Array.from({ length: 8 }, (_, i) => 2 * bitsPerBlock + 300 + i * 5)];
    await Promise.all(regions.map((r) => set.mirror.write(r * regionBytes, pattern(regionBytes, r))));
    const entries = set.journal.entries.slice(start);
    const firstData = entries.findIndex((e) => e.who !== 'log' && e.op === 'write' && e.what === 'start');
    assert.ok(firstData > 0);
    const before = entries.slice(0, firstData).filter((e) => e.who === 'log' && e.what === 'start');
    assert.equal(before.filter((e) => e.op === 'flush').length, 1, 'one log flush for the batch');
    const writes = before.filter((e) => e.op === 'write');
    assert.deepEqual(
      writes.map((e) => [e.offsetBytes, e.lengthBytes]),
      [
        [diskLogBitsOffsetBytes + Math.floor(100 / bitsPerBlock) * 512, 512],
        [diskLogBitsOffsetBytes + 2 * 512, 512],
      ],
      'only the two changed bitmap blocks are written',
    );
    checkOrdering(set, start);
    await set.mirror.destroy();
  });

  test('DiskDirtyLog changed-blocks writes fewer bytes than the kernel yet leaves identical log bytes', async () => {
    // The same held write (leg l1 gated on region 5000) and then a suspend, in both modes. Expected:
    // identical log device bytes at both points, equal to the format laid out by hand (magic, version 2,
    // nr_regions LE, region 5000 dirty, then every bit clean); changed-blocks writes fewer bytes.
    const regionCount = 16384;
    const images: Uint8Array[][] = [];
    const bytesWritten: number[] = [];
    for (const writeMode of ['whole-buffer', 'changed-blocks'] as const) {
      const set = await orderingSet({ regionCount, writeMode });
      const start = set.journal.entries.length;
      const l1 = set.legs[1];
      assert.ok(l1 !== undefined);
      l1.hold({ ops: ['write'], range: { offsetBytes: 5000 * regionBytes, lengthBytes: regionBytes } });
      const write = set.mirror.write(5000 * regionBytes, pattern(regionBytes, 1));
      while (l1.waiting === 0) await new Promise((resolve) => setImmediate(resolve));
      const held = await set.logMemory.read(0, 4096);
      l1.release();
      await write;
      await set.mirror.suspend();
      const after = await set.logMemory.read(0, 4096);
      images.push([held, after]);
      bytesWritten.push(
        set.journal.entries
          .slice(start)
          .filter((e) => e.who === 'log' && e.op === 'write' && e.what === 'start')
          .reduce((sum, e) => sum + (e.lengthBytes ?? 0), 0),
      );
      checkOrdering(set, start);
      await set.mirror.destroy();
    }
    const [kernel, ours] = images;
    assert.ok(kernel !== undefined && ours !== undefined);
    assert.deepEqual(ours[0], kernel[0], 'same bytes with the write held');
    assert.deepEqual(ours[1], kernel[1], 'same bytes after suspend');
    // The format by hand: header, bits from byte 1024, LSB first, 1 = clean.
    const expected = Buffer.alloc(4096);
    expected.writeUInt32LE(diskLogMagic, 0);
    expected.writeUInt32LE(2, 4);
    expected.writeBigUInt64LE(BigInt(regionCount), 8);
    expected.fill(0xff, diskLogBitsOffsetBytes, diskLogBitsOffsetBytes + regionCount / 8);
    assert.deepEqual(Buffer.from(kernel[1] ?? []), expected, 'all clean after suspend');
    expected[diskLogBitsOffsetBytes + (5000 >>> 3)] = 0xff & ~(1 << (5000 & 7));
    assert.deepEqual(Buffer.from(kernel[0] ?? []), expected, 'region 5000 dirty while its write is held');
    const [kernelBytes = 0, ourBytes = 0] = bytesWritten;
    assert.ok(ourBytes * 4 < kernelBytes, `changed blocks wrote ${ourBytes} bytes, the kernel's way ${kernelBytes}`);
  });
});
