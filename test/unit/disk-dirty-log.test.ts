import assert from 'node:assert/strict';
import { mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { BlockDevice } from '../../src/block/block-device.js';
import { FileBlockDevice } from '../../src/block/file-block-device.js';
import { MemoryBlockDevice } from '../../src/block/memory-block-device.js';
import { DiskDirtyLog, type DiskDirtyLogOptions } from '../../src/dirty-log/disk-dirty-log.js';
import type { DirtyLog } from '../../src/dirty-log/dirty-log.js';
import { BlockError } from '../../src/errors.js';
import { dirtyLogSuite, type DirtyLogFactoryOptions } from '../conformance/dirty-log.suite.js';
import { TestFailingDevice } from '../helpers/dlog-devices.js';
import { ProbeDevice } from '../helpers/probe-device.js';

const sector = 512;

function makeLog(device: BlockDevice, options: Partial<DiskDirtyLogOptions> & DirtyLogFactoryOptions): DiskDirtyLog {
  return new DiskDirtyLog({
    device,
    displayName: '254:32',
    flushData: () => Promise.resolve(),
    raiseEvent: () => undefined,
    ...options,
  });
}

/** Regions of a target of `lengthSectors` with `regionSizeSectors` regions (ceil). */
function regions(lengthSectors: number, regionSizeSectors: number): number {
  return Math.ceil(lengthSectors / regionSizeSectors);
}

async function bytesAt(device: BlockDevice, offset: number, length: number): Promise<string> {
  return (await device.read(offset, length)).toString('hex');
}

/** Creates, resumes, resyncs and cleans every region, then suspends: a log in sync on disk. */
async function cleanRun(device: BlockDevice, options: DirtyLogFactoryOptions): Promise<DiskDirtyLog> {
  const log = makeLog(new TestFailingDevice(device), options);
  await log.resume();
  for (let r = log.getResyncWork(); r !== null; r = log.getResyncWork()) {
    log.setRegionSync(r, true);
    log.clearRegion(r);
  }
  await log.flush();
  await log.postsuspend();
  return log;
}

// ---- conformance: over memory and over a real file --------------------------------------------

const memoryOf = new WeakMap<DirtyLog, MemoryBlockDevice>();
dirtyLogSuite({
  name: 'DiskDirtyLog on memory',
  create: (options) => {
    const memory = new MemoryBlockDevice({ sizeBytes: 1024 * 1024 });
    const log = makeLog(new TestFailingDevice(memory), options);
    memoryOf.set(log, memory);
    return Promise.resolve(log);
  },
  supports: {
    persistent: true,
    reopen: async (log, options) => {
      const memory = memoryOf.get(log);
      assert.ok(memory !== undefined);
      await log.close();
      const again = makeLog(new TestFailingDevice(memory), options);
      memoryOf.set(again, memory);
      return again;
    },
  },
});

let dir = '';
let fileSeq = 0;
const pathOf = new WeakMap<DirtyLog, string>();
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'umirror-dlog-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});
dirtyLogSuite({
  name: 'DiskDirtyLog on a file',
  create: async (options) => {
    const path = join(dir, `log-${fileSeq++}.img`);
    await writeFile(path, '');
    await truncate(path, 1024 * 1024);
    const log = makeLog(await FileBlockDevice.open(path), options);
    pathOf.set(log, path);
    return log;
  },
  supports: {
    persistent: true,
    reopen: async (log, options) => {
      const path = pathOf.get(log);
      assert.ok(path !== undefined);
      await log.close();
      const again = makeLog(await FileBlockDevice.open(path), options);
      pathOf.set(again, path);
      return again;
    },
  },
});

// ---- the kernel's bytes (oracle reference disklog.out, disklog-resize.out) ----------------------

const header32 = '7252694d' + '02000000' + '2000000000000000';

describe('DiskDirtyLog matches the kernel bytes of disklog.out', () => {
  test('DiskDirtyLog writes a fresh header at resume, with no region clean yet (0/32)', async () => {
    const memory = new MemoryBlockDevice({ sizeBytes: 1024 * 1024 });
    const device = new TestFailingDevice(memory);
    const log = makeLog(device, { regionCount: regions(32768, 1024), regionSizeSectors: 1024, syncMode: 'default' });
    await log.resume();
    assert.equal(log.syncCount(), 0);
    assert.equal(await bytesAt(memory, 0, 16), header32);
    assert.equal(await bytesAt(memory, 1024, 4), '00000000');
    // One write of header + bits, rounded to the sector: bytes 0..1535 and nothing beyond.
    assert.deepEqual(device.writes, [{ offsetBytes: 0, lengthBytes: 3 * sector }]);
    assert.equal(device.flushes, 1);
    assert.equal(log.statusInfo(), '3 disk 254:32 A');
    assert.equal(log.statusTable(), 'disk 2 254:32 1024');
  });

  test('DiskDirtyLog after resync: ffff ffff at 0x400, and 32/32 at the next activation', async () => {
    const memory = new MemoryBlockDevice({ sizeBytes: 1024 * 1024 });
    const opts = { regionCount: 32, regionSizeSectors: 1024, syncMode: 'default' as const };
    await (await cleanRun(memory, opts)).close();
    assert.equal(await bytesAt(memory, 0, 16), header32);
    assert.equal(await bytesAt(memory, 1024, 8), 'ffffffff00000000');
    const again = makeLog(new MemoryBlockDeviceView(memory), opts);
    await again.resume();
    assert.equal(again.syncCount(), 32);
    assert.equal(again.getResyncWork(), null);
  });

  test('DiskDirtyLog with a write in flight to region 4: efff ffff, then ffff ffff when it completes', async () => {
    const memory = new MemoryBlockDevice({ sizeBytes: 1024 * 1024 });
    const opts = { regionCount: 32, regionSizeSectors: 1024, syncMode: 'default' as const };
    await cleanRun(memory, opts);
    const log = makeLog(new MemoryBlockDeviceView(memory), opts);
    await log.resume();
    log.markRegion(4); // dd seek=5000 sectors: region 5000 / 1024 = 4.
    await log.flush();
    assert.equal(await bytesAt(memory, 1024, 4), 'efffffff');
    log.clearRegion(4);
    await log.flush();
    assert.equal(await bytesAt(memory, 1024, 4), 'ffffffff');
  });

  test('DiskDirtyLog with sync forces a fresh log (0/32) over a clean one', async () => {
    const memory = new MemoryBlockDevice({ sizeBytes: 1024 * 1024 });
    await cleanRun(memory, { regionCount: 32, regionSizeSectors: 1024, syncMode: 'default' });
    const log = makeLog(memory, { regionCount: 32, regionSizeSectors: 1024, syncMode: 'sync' });
    await log.resume();
    assert.equal(log.syncCount(), 0);
    assert.equal(await bytesAt(memory, 0, 16), header32);
    assert.equal(await bytesAt(memory, 1024, 4), '00000000');
    assert.equal(log.statusTable(), 'disk 3 254:32 1024 sync');
  });

  test('DiskDirtyLog log B: 235 regions of 128 sectors, all clean = 29 x ff then 07', async () => {
    const memory = new MemoryBlockDevice({ sizeBytes: 1024 * 1024 });
    const log = await cleanRun(memory, { regionCount: regions(30000, 128), regionSizeSectors: 128, syncMode: 'default' });
    assert.equal(log.regionCount, 235);
    assert.equal(log.syncCount(), 235);
    assert.equal(await bytesAt(memory, 0, 16), '7252694d02000000eb00000000000000');
    assert.equal(await bytesAt(memory, 1024, 32), 'ff'.repeat(29) + '07' + '0000');
  });

  test('DiskDirtyLog log C: nosync on a fresh device writes every region clean (32/32)', async () => {
    const memory = new MemoryBlockDevice({ sizeBytes: 1024 * 1024 });
    const log = makeLog(memory, { regionCount: 32, regionSizeSectors: 1024, syncMode: 'nosync' });
    await log.resume();
    assert.equal(log.syncCount(), 32);
    assert.equal(await bytesAt(memory, 1024, 8), 'ffffffff00000000');
    assert.equal(log.statusTable(), 'disk 3 254:32 1024 nosync');
  });
});

describe('DiskDirtyLog matches the kernel on reuse (disklog-resize.out)', () => {
  test('DiskDirtyLog grown 16 -> 32 regions shows 16/32 and keeps ffff 0000', async () => {
    const memory = new MemoryBlockDevice({ sizeBytes: 1024 * 1024 });
    await cleanRun(memory, { regionCount: 16, regionSizeSectors: 1024, syncMode: 'default' });
    assert.equal(await bytesAt(memory, 1024, 4), 'ffff0000');
    const log = makeLog(memory, { regionCount: 32, regionSizeSectors: 1024, syncMode: 'default' });
    await log.resume();
    assert.equal(log.syncCount(), 16);
    assert.equal(await bytesAt(memory, 0, 16), header32);
    assert.equal(await bytesAt(memory, 1024, 4), 'ffff0000');
    assert.equal(log.getResyncWork(), 16);
  });

  test('DiskDirtyLog shrunk 32 -> 20 regions: ffff 0f00, 20/20', async () => {
    const memory = new MemoryBlockDevice({ sizeBytes: 1024 * 1024 });
    await cleanRun(memory, { regionCount: 32, regionSizeSectors: 1024, syncMode: 'default' });
    const log = makeLog(memory, { regionCount: regions(20000, 1024), regionSizeSectors: 1024, syncMode: 'default' });
    await log.resume();
    assert.equal(log.syncCount(), 20);
    assert.equal(await bytesAt(memory, 0, 16), '7252694d020000001400000000000000');
    assert.equal(await bytesAt(memory, 1024, 8), 'ffff0f0000000000');
  });

  test('DiskDirtyLog clears stale bits past the last region up to a 64-bit boundary (BITS_PER_LONG), as the kernel', async () => {
    // A 40-region log in sync (ffff ffff ff), reused by a 32-region 'sync' table (disklog-resize.out,
    // last section). Expected: bits 32..63 cleared on disk (ffff ffff 0000 0000 after resync), byte
    // 0x404 no longer ff; a 20-region table clears bits 20..63 only (bytes past 0x408 untouched).
    const memory = new MemoryBlockDevice({ sizeBytes: 1024 * 1024 });
    await cleanRun(memory, { regionCount: 40, regionSizeSectors: 512, syncMode: 'default' });
    assert.equal(await bytesAt(memory, 1024, 8), 'ffffffffff000000');
    await cleanRun(memory, { regionCount: 32, regionSizeSectors: 1024, syncMode: 'sync' });
    assert.equal(await bytesAt(memory, 1024, 8), 'ffffffff00000000');
    await memory.write(1024, Buffer.concat([Buffer.alloc(10, 0xff), Buffer.alloc(502)]));
    const log = makeLog(memory, { regionCount: 20, regionSizeSectors: 1024, syncMode: 'default' });
    await log.resume();
    assert.equal(log.syncCount(), 20);
    assert.equal(await bytesAt(memory, 1024, 10), 'ffff0f0000000000ffff');
  });

  test('DiskDirtyLog reused with region size 512 reinterprets 20 bits as 20/40', async () => {
    const memory = new MemoryBlockDevice({ sizeBytes: 1024 * 1024 });
    await cleanRun(memory, { regionCount: 20, regionSizeSectors: 1024, syncMode: 'default' });
    const log = makeLog(memory, { regionCount: regions(20000, 512), regionSizeSectors: 512, syncMode: 'default' });
    await log.resume();
    assert.equal(log.regionCount, 40);
    assert.equal(log.syncCount(), 20);
    assert.equal(await bytesAt(memory, 0, 16), '7252694d020000002800000000000000');
    assert.equal(await bytesAt(memory, 1024, 8), 'ffff0f0000000000');
    for (let r = log.getResyncWork(); r !== null; r = log.getResyncWork()) {
      log.setRegionSync(r, true);
      log.clearRegion(r);
    }
    await log.flush();
    assert.equal(log.syncCount(), 40);
    assert.equal(await bytesAt(memory, 1024, 8), 'ffffffffff000000');
  });

  test('DiskDirtyLog treats a bad magic as a fresh log (0/40)', async () => {
    const memory = new MemoryBlockDevice({ sizeBytes: 1024 * 1024 });
    const opts = { regionCount: 40, regionSizeSectors: 512, syncMode: 'default' as const };
    await cleanRun(memory, opts);
    await memory.write(0, Buffer.from('XXXX'));
    const log = makeLog(memory, opts);
    await log.resume();
    assert.equal(log.syncCount(), 0);
    assert.equal(log.health, 'A');
    assert.equal(await bytesAt(memory, 0, 16), '7252694d020000002800000000000000');
  });

  test('DiskDirtyLog accepts header version 1 and rewrites it as 2 at resume (40/40)', async () => {
    const memory = new MemoryBlockDevice({ sizeBytes: 1024 * 1024 });
    const opts = { regionCount: 40, regionSizeSectors: 512, syncMode: 'default' as const };
    await cleanRun(memory, opts);
    await memory.write(4, Buffer.from([1, 0, 0, 0]));
    const log = makeLog(memory, opts);
    await log.resume();
    assert.equal(log.syncCount(), 40);
    assert.equal(log.health, 'A');
    assert.equal(await bytesAt(memory, 0, 16), '7252694d020000002800000000000000');
  });

  test('DiskDirtyLog rejects header version 3: incompatible, log D, one event, 0/40', async () => {
    const memory = new MemoryBlockDevice({ sizeBytes: 1024 * 1024 });
    const opts = { regionCount: 40, regionSizeSectors: 512, syncMode: 'default' as const };
    await cleanRun(memory, opts);
    await memory.write(4, Buffer.from([3, 0, 0, 0]));
    const warnings: string[] = [];
    let events = 0;
    const log = makeLog(memory, { ...opts, onWarning: (line) => warnings.push(line), raiseEvent: () => events++ });
    await log.resume();
    assert.equal(log.syncCount(), 0);
    assert.equal(log.health, 'D');
    assert.equal(log.statusInfo(), '3 disk 254:32 D');
    assert.equal(events, 1);
    assert.deepEqual(warnings, [
      'incompatible disk log version',
      '254:32: Failed to read header on dirty region log device',
    ]);
  });
});

/** Another handle on the same memory (closing it leaves the memory alone). */
class MemoryBlockDeviceView extends TestFailingDevice {}

// ---- failures ------------------------------------------------------------------------------------

describe('DiskDirtyLog failures', () => {
  test('DiskDirtyLog clears every clean bit when the leg flush fails (flush_failed), log stays A', async () => {
    const memory = new MemoryBlockDevice({ sizeBytes: 1024 * 1024 });
    const opts = { regionCount: 32, regionSizeSectors: 1024, syncMode: 'default' as const };
    await cleanRun(memory, opts);
    let failLegs = false;
    let flushDataCalls = 0;
    const log = makeLog(memory, {
      ...opts,
      flushData: () => {
        flushDataCalls++;
        return failLegs ? Promise.reject(new BlockError('EIO', 'leg flush failed')) : Promise.resolve();
      },
    });
    await log.resume();
    log.markRegion(0);
    await log.flush();
    assert.equal(flushDataCalls, 0, 'a flush of marks only needs no leg flush');
    failLegs = true;
    log.clearRegion(0);
    await log.flush(); // The kernel does not fail the log flush for this.
    assert.equal(flushDataCalls, 1);
    assert.equal(log.flushFailed, true);
    assert.equal(log.health, 'A');
    assert.equal(log.syncCount(), 32, 'the in-memory sync count stays 32/32');
    assert.equal(await bytesAt(memory, 1024, 4), '00000000');
    // Clears are ignored from now on.
    failLegs = false;
    log.clearRegion(20);
    await log.flush();
    assert.equal(log.isClean(20), false);
    assert.equal(await bytesAt(memory, 1024, 4), '00000000');
  });

  test('DiskDirtyLog write failure: log D, one event, flush throws BlockError', async () => {
    const device = new TestFailingDevice(new MemoryBlockDevice({ sizeBytes: 1024 * 1024 }));
    let events = 0;
    const log = makeLog(device, { regionCount: 32, regionSizeSectors: 1024, syncMode: 'nosync', raiseEvent: () => events++ });
    await log.resume();
    device.failWrites = true;
    log.markRegion(3);
    await assert.rejects(log.flush(), (err: unknown) => err instanceof BlockError && err.code === 'EIO');
    assert.equal(log.health, 'D');
    assert.equal(events, 1);
    log.markRegion(4);
    await assert.rejects(log.flush(), BlockError);
    await assert.rejects(log.postsuspend(), BlockError);
    assert.equal(events, 1, 'fail_log_device raises the event once');
    assert.equal(log.statusInfo(), '3 disk 254:32 D');
    // The device heals: the retried flush writes the marks that failed.
    device.failWrites = false;
    await log.flush();
    assert.equal(await bytesAt(device, 1024, 4), 'e7ffffff');
    assert.equal(log.health, 'D', 'D is sticky as fail_log_device');
  });

  test('DiskDirtyLog log flush failure: log F (wins over D), flush throws', async () => {
    const device = new TestFailingDevice(new MemoryBlockDevice({ sizeBytes: 1024 * 1024 }));
    let events = 0;
    const log = makeLog(device, { regionCount: 32, regionSizeSectors: 1024, syncMode: 'nosync', raiseEvent: () => events++ });
    await log.resume();
    device.failFlushes = true;
    log.markRegion(0);
    await assert.rejects(log.flush(), BlockError);
    assert.equal(log.health, 'F');
    assert.equal(events, 1);
    assert.equal(await bytesAt(device, 1024, 4), 'feffffff', 'the write itself succeeded');
  });

  test('DiskDirtyLog resume on a dead log device: D, all regions out of sync, resume throws', async () => {
    const device = new TestFailingDevice(new MemoryBlockDevice({ sizeBytes: 1024 * 1024 }));
    await cleanRun(device, { regionCount: 32, regionSizeSectors: 1024, syncMode: 'default' });
    device.failReads = true;
    device.failWrites = true;
    const warnings: string[] = [];
    let events = 0;
    const log = makeLog(device, {
      regionCount: 32,
      regionSizeSectors: 1024,
      syncMode: 'default',
      raiseEvent: () => events++,
      onWarning: (line) => warnings.push(line),
    });
    await assert.rejects(log.resume(), BlockError);
    assert.equal(log.health, 'D');
    assert.equal(events, 1);
    assert.equal(log.syncCount(), 0);
    assert.deepEqual(warnings, [
      '254:32: Failed to read header on dirty region log device',
      '254:32: Failed to write header on dirty region log device',
    ]);
  });
});

// ---- past the kernel: changed blocks, 4 KiB blocks, lazy clean -----------------------------------

describe('DiskDirtyLog writes less than the kernel', () => {
  test('DiskDirtyLog writes only the changed 512-byte block of a large bitmap', async () => {
    const device = new TestFailingDevice(new MemoryBlockDevice({ sizeBytes: 1024 * 1024 }));
    const log = makeLog(device, { regionCount: 100_000, regionSizeSectors: 2, syncMode: 'nosync' });
    await log.resume();
    assert.equal(log.bufferBytes, 27 * 512); // 1024 + 12500 bytes of bits, rounded up.
    device.writes.length = 0;
    log.markRegion(50_000); // Byte 1024 + 6250 -> block 14.
    await log.flush();
    assert.deepEqual(device.writes, [{ offsetBytes: 14 * 512, lengthBytes: 512 }]);
    assert.deepEqual(log.stats, { logBytesWritten: log.bufferBytes + 512, logWritesTotal: 2, logFlushesTotal: 2 });
    // Two neighbouring blocks are written as one run.
    device.writes.length = 0;
    log.markRegion(4096 * 3 + 1); // Byte 1024 + 1536 -> block 5.
    log.markRegion(4096 * 4 + 1); // Byte 1024 + 2048 -> block 6.
    await log.flush();
    assert.deepEqual(device.writes, [{ offsetBytes: 5 * 512, lengthBytes: 1024 }]);
  });

  test('DiskDirtyLog in whole-buffer mode writes the whole buffer like the kernel', async () => {
    const device = new TestFailingDevice(new MemoryBlockDevice({ sizeBytes: 1024 * 1024 }));
    const log = makeLog(device, { regionCount: 100_000, regionSizeSectors: 2, syncMode: 'nosync', writeMode: 'whole-buffer' });
    await log.resume();
    device.writes.length = 0;
    log.markRegion(50_000);
    await log.flush();
    assert.deepEqual(device.writes, [{ offsetBytes: 0, lengthBytes: log.bufferBytes }]);
  });

  test('DiskDirtyLog on a 4096-byte device rounds the buffer and writes 4 KiB blocks', async () => {
    const memory = new MemoryBlockDevice({ sizeBytes: 1024 * 1024, logicalBlockBytes: 4096 });
    const device = new TestFailingDevice(memory);
    const log = makeLog(device, { regionCount: 40_000, regionSizeSectors: 2, syncMode: 'nosync' });
    await log.resume();
    assert.equal(log.bufferBytes, 8192);
    assert.deepEqual(device.writes, [{ offsetBytes: 0, lengthBytes: 8192 }]);
    device.writes.length = 0;
    log.markRegion(39_999); // Byte 1024 + 4999 -> block 1.
    await log.flush();
    assert.deepEqual(device.writes, [{ offsetBytes: 4096, lengthBytes: 4096 }]);
    assert.equal(await bytesAt(memory, 1024 + 4999, 1), '7f');
  });

  test('DiskDirtyLog with no change does no I/O on flush', async () => {
    const device = new TestFailingDevice(new MemoryBlockDevice({ sizeBytes: 1024 * 1024 }));
    const log = makeLog(device, { regionCount: 32, regionSizeSectors: 1024, syncMode: 'nosync' });
    await log.resume();
    device.writes.length = 0;
    const flushesBefore = device.flushes;
    await log.flush();
    log.clearRegion(3); // Already clean.
    await log.flush();
    assert.equal(device.writes.length, 0);
    assert.equal(device.flushes, flushesBefore);
  });

  test('DiskDirtyLog does not write a clean that arrives while the legs are being flushed', async () => {
    const memory = new MemoryBlockDevice({ sizeBytes: 1024 * 1024 });
    let release: () => void = () => undefined;
    let started: () => void = () => undefined;
    const flushStarted = new Promise<void>((resolve) => (started = resolve));
    let hold = true;
    const log = makeLog(memory, {
      regionCount: 32,
      regionSizeSectors: 1024,
      syncMode: 'nosync',
      flushData: () => {
        if (!hold) return Promise.resolve();
        started();
        return new Promise<void>((resolve) => (release = resolve));
      },
    });
    await log.resume();
    log.markRegion(1);
    log.markRegion(5);
    await log.flush();
    log.clearRegion(1);
    const flushing = log.flush();
    await flushStarted;
    log.clearRegion(5); // Its writes may not be covered by the leg flush already running.
    hold = false;
    release();
    await flushing;
    assert.equal(await bytesAt(memory, 1024, 1), 'df', 'region 1 clean on disk, region 5 still dirty');
    await log.flush();
    assert.equal(await bytesAt(memory, 1024, 1), 'ff');
  });

  test('DiskDirtyLog lazy clean holds a clean until the region was idle lazyCleanMs', async () => {
    const device = new TestFailingDevice(new MemoryBlockDevice({ sizeBytes: 1024 * 1024 }));
    let now = 0;
    let flushDataCalls = 0;
    const log = makeLog(device, {
      regionCount: 32,
      regionSizeSectors: 1024,
      syncMode: 'nosync',
      lazyCleanMs: 100,
      lazyCleanTimer: false,
      now: () => now,
      flushData: () => {
        flushDataCalls++;
        return Promise.resolve();
      },
    });
    await log.resume();
    log.markRegion(2);
    await log.flush();
    device.writes.length = 0;
    log.clearRegion(2);
    assert.equal(log.isClean(2), true);
    now = 50;
    await log.flush();
    assert.equal(device.writes.length, 0, 'not idle long enough: no write');
    assert.equal(await bytesAt(device, 1024, 1), 'fb');
    // Marked again within the window: nothing to write at all.
    now = 60;
    log.markRegion(2);
    await log.flush();
    assert.equal(device.writes.length, 0);
    now = 70;
    log.clearRegion(2);
    now = 169;
    await log.flush();
    assert.equal(device.writes.length, 0);
    now = 170;
    await log.flush();
    assert.equal(device.writes.length, 1);
    assert.equal(flushDataCalls, 1);
    assert.equal(await bytesAt(device, 1024, 1), 'ff');
  });

  test('DiskDirtyLog postsuspend writes pending lazy cleans regardless of age', async () => {
    const memory = new MemoryBlockDevice({ sizeBytes: 1024 * 1024 });
    const log = makeLog(memory, { regionCount: 32, regionSizeSectors: 1024, syncMode: 'nosync', lazyCleanMs: 60_000 });
    await log.resume();
    log.markRegion(0);
    await log.flush();
    log.clearRegion(0);
    await log.flush();
    assert.equal(await bytesAt(memory, 1024, 1), 'fe');
    assert.equal(log.pendingCleanCount, 1);
    await log.postsuspend();
    assert.equal(await bytesAt(memory, 1024, 1), 'ff');
    assert.equal(log.pendingCleanCount, 0);
    await log.close();
  });

  test('DiskDirtyLog lazy clean timer writes the clean once the region is idle', async () => {
    const memory = new MemoryBlockDevice({ sizeBytes: 1024 * 1024 });
    const log = makeLog(memory, { regionCount: 32, regionSizeSectors: 1024, syncMode: 'nosync', lazyCleanMs: 20 });
    await log.resume();
    log.markRegion(0);
    await log.flush();
    log.clearRegion(0);
    await log.flush();
    assert.equal(await bytesAt(memory, 1024, 1), 'fe');
    // Due after 20 ms; allow for a loaded machine, but it must come without another flush.
    const deadline = Date.now() + 2000;
    while ((await bytesAt(memory, 1024, 1)) !== 'ff' && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    assert.equal(await bytesAt(memory, 1024, 1), 'ff');
    await log.close();
  });
});


// ---- clears off the mark path ----------------------------------------------------------------------

describe('DiskDirtyLog background cleans', () => {
  test('DiskDirtyLog flush with background cleans makes a mark durable while the leg flush of a clean still runs', async () => {
    const memory = new MemoryBlockDevice({ sizeBytes: 1024 * 1024 });
    let release: () => void = () => undefined;
    let legFlushes = 0;
    const log = makeLog(memory, {
      regionCount: 32,
      regionSizeSectors: 1024,
      syncMode: 'nosync',
      flushData: () => {
        legFlushes++;
        return new Promise<void>((resolve) => (release = resolve));
      },
    });
    await log.resume();
    log.markRegion(1);
    await log.flush();
    log.clearRegion(1);
    await log.flush({ cleans: 'background' });
    assert.equal(legFlushes, 1, 'the clean step is waiting for the legs');
    log.markRegion(2);
    await log.flush({ cleans: 'background' }); // Resolves with the leg flush still running.
    assert.equal(await bytesAt(memory, 1024, 1), 'f9', 'region 2 dirty on disk, region 1 not clean yet');
    assert.equal(log.pendingCleanCount, 1);
    release();
    await log.postsuspend();
    assert.equal(await bytesAt(memory, 1024, 1), 'fb', 'region 1 clean after its leg flush');
    assert.equal(legFlushes, 1);
    await log.close();
  });

  test('DiskDirtyLog a clean whose block write is in flight, raced by a new mark of the region, ends dirty', async () => {
    for (const writeMode of ['changed-blocks', 'whole-buffer'] as const) {
      const memory = new MemoryBlockDevice({ sizeBytes: 1024 * 1024 });
      const probe = new ProbeDevice(memory);
      const log = makeLog(probe, { regionCount: 32, regionSizeSectors: 1024, syncMode: 'nosync', writeMode });
      await log.resume();
      log.markRegion(3);
      await log.flush();
      probe.hold({ ops: ['write'] });
      log.clearRegion(3);
      await log.flush({ cleans: 'background' });
      while (probe.waiting === 0) await new Promise((resolve) => setImmediate(resolve));
      log.markRegion(3); // A new write to region 3 while its clean bit is being written.
      const marked = log.flush({ cleans: 'background' });
      probe.release();
      await marked;
      assert.equal(log.isClean(3), false);
      assert.equal(await bytesAt(memory, 1024, 1), 'f7', `region 3 dirty on disk (${writeMode})`);
      await log.flush();
      assert.equal(await bytesAt(memory, 1024, 1), 'f7', `region 3 still dirty (${writeMode})`);
      await log.close();
    }
  });
});
