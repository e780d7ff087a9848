import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { MemoryBlockDevice } from '../../src/block/memory-block-device.js';
import { CoreDirtyLog } from '../../src/dirty-log/core-dirty-log.js';
import { createDirtyLog, parseLogSpec } from '../../src/dirty-log/create-dirty-log.js';
import type { DirtyLogContext, LogSpec } from '../../src/dirty-log/dirty-log.js';
import { DiskDirtyLog } from '../../src/dirty-log/disk-dirty-log.js';
import { BlockError, TableError } from '../../src/errors.js';
import { regionCountMax } from '../../src/limits.js';
import { TestFailingDevice } from '../helpers/dlog-devices.js';

const len = 32768;

function spec(text: string): LogSpec {
  const [type = '', , ...args] = text.split(' ');
  return { type, args };
}

function rejectsWith(error: unknown, lines: string[]): boolean {
  assert.ok(error instanceof TableError, `expected TableError, got ${String(error)}`);
  assert.equal(error.kernelError, 'Error creating mirror dirty log');
  assert.equal(error.source, 'log');
  assert.equal(error.code, 'EINVAL');
  assert.deepEqual(error.logLines, lines);
  return true;
}

function context(devices: Record<string, MemoryBlockDevice>, opened: string[] = []): DirtyLogContext {
  return {
    targetLengthSectors: len,
    flushData: () => Promise.resolve(),
    raiseEvent: () => undefined,
    openDevice: (name) => {
      const device = devices[name];
      if (device === undefined) return Promise.reject(new BlockError('EINVAL', `no device ${name}`));
      opened.push(name);
      return Promise.resolve(new TestFailingDevice(device));
    },
    displayName: (name) => (name === '/dev/vdc' ? '254:32' : name),
  };
}

// Every dm-log rejection of oracle/reference/invalid.out: the log part of the table -> the kernel line.
const rejected: [string, string][] = [
  ['core 1 1000', 'invalid region size 1000'],
  ['core 1 0', 'invalid region size 0'],
  ['core 1 1', 'invalid region size 1'],
  ['core 1 65536', 'invalid region size 65536'],
  ['core 1 abc', 'invalid region size abc'],
  ['core 1 1024x', 'invalid region size 1024x'],
  ['core 1 -1024', 'invalid region size -1024'],
  ['foo 1 1024', 'Module for logging type "foo" not found.'],
  ['core 0', 'wrong number of arguments to dirty region log'],
  ['core 3 1024 nosync extra', 'wrong number of arguments to dirty region log'],
  ['core 2 1024 bogus', 'unrecognised sync argument to dirty region log: bogus'],
  ['core 2 1024 2', 'unrecognised sync argument to dirty region log: 2'],
  ['core 5 1024 2 /dev/vda 0 /dev/vdb', 'wrong number of arguments to dirty region log'],
  ['disk 1 /dev/vdc', 'wrong number of arguments to disk dirty region log'],
  ['disk 3 /dev/vdc 1024 bogus', 'unrecognised sync argument to dirty region log: bogus'],
  ['disk 2 /dev/vdc 1000', 'invalid region size 1000'],
];

describe('parseLogSpec', () => {
  for (const [text, line] of rejected) {
    test(`parseLogSpec rejects "${text}" with "${line}"`, () => {
      assert.throws(() => parseLogSpec(spec(text), { targetLengthSectors: len }), (err) => rejectsWith(err, [line]));
    });
  }

  test('parseLogSpec accepts the accepted forms', () => {
    assert.deepEqual(parseLogSpec(spec('core 1 1024'), { targetLengthSectors: len }), {
      type: 'core',
      regionSizeSectors: 1024,
      syncMode: 'default',
    });
    assert.deepEqual(parseLogSpec(spec('core 2 2 nosync'), { targetLengthSectors: len }), {
      type: 'core',
      regionSizeSectors: 2,
      syncMode: 'nosync',
    });
    assert.deepEqual(parseLogSpec(spec('disk 3 /dev/vdc 32768 sync'), { targetLengthSectors: len }), {
      type: 'disk',
      device: '/dev/vdc',
      regionSizeSectors: 32768,
      syncMode: 'sync',
    });
  });

  test('parseLogSpec takes the region size as the kernel sscanf("%u") does (leading zeros, 32-bit wrap)', () => {
    assert.equal(parseLogSpec(spec('core 1 01024'), { targetLengthSectors: len }).regionSizeSectors, 1024);
    assert.equal(parseLogSpec(spec('core 1 4294968320'), { targetLengthSectors: len }).regionSizeSectors, 1024);
    assert.throws(() => parseLogSpec(spec('core 1 +1024'), { targetLengthSectors: len }), TableError);
  });
});

describe('createDirtyLog', () => {
  test('createDirtyLog builds a core log with the region count rounded up', async () => {
    const log = await createDirtyLog(spec('core 1 1024'), { ...context({}), targetLengthSectors: 30000 });
    assert.ok(log instanceof CoreDirtyLog);
    assert.equal(log.regionCount, 30);
    assert.equal(log.statusTable(), 'core 1 1024');
  });

  test('createDirtyLog builds a disk log that is not resumed yet', async () => {
    const vdc = new MemoryBlockDevice({ sizeBytes: 1024 * 1024 });
    const log = await createDirtyLog(spec('disk 3 /dev/vdc 128 nosync'), { ...context({ '/dev/vdc': vdc }), targetLengthSectors: 30000 });
    assert.ok(log instanceof DiskDirtyLog);
    assert.equal(log.regionCount, 235);
    assert.equal(log.statusTable(), 'disk 3 254:32 128 nosync');
    assert.equal(log.statusInfo(), '3 disk 254:32 A');
    assert.equal((await vdc.read(0, 4)).toString('hex'), '00000000', 'nothing written before resume');
    await log.resume();
    assert.equal((await vdc.read(0, 4)).toString('hex'), '7252694d');
  });

  test('createDirtyLog: a log device that cannot be opened gives no dirty-log line', async () => {
    await assert.rejects(createDirtyLog(spec('disk 2 /dev/nonexistent 1024'), context({})), (err) => rejectsWith(err, []));
  });

  test('createDirtyLog opens the device before checking the remaining arguments (disk_ctr order)', async () => {
    const opened: string[] = [];
    await assert.rejects(
      createDirtyLog(spec('disk 2 /dev/nonexistent 1000'), context({}, opened)),
      (err) => rejectsWith(err, []),
    );
    const vdc = new MemoryBlockDevice({ sizeBytes: 1024 * 1024 });
    await assert.rejects(
      createDirtyLog(spec('disk 3 /dev/vdc 1024 bogus'), context({ '/dev/vdc': vdc }, opened)),
      (err) => rejectsWith(err, ['unrecognised sync argument to dirty region log: bogus']),
    );
    assert.deepEqual(opened, ['/dev/vdc']);
  });

  test('createDirtyLog rejects a log device too small for header and bits', async () => {
    const tiny = new MemoryBlockDevice({ sizeBytes: 1024 });
    await assert.rejects(
      createDirtyLog(spec('disk 2 /dev/vdc 1024'), context({ '/dev/vdc': tiny })),
      (err) => rejectsWith(err, ['log device 254:32 too small: need 1536 bytes']),
    );
  });

  test('createDirtyLog rejects an unknown type before anything else', async () => {
    await assert.rejects(createDirtyLog(spec('userspace 1 1024'), context({})), (err) =>
      rejectsWith(err, ['Module for logging type "userspace" not found.']),
    );
  });
});

// Region counts (test/scenario/oracle/cli-numbers.out): past 2^32 - 1 the kernel's own line; past our
// memory bound (limits.ts regionCountMax) the kernel's allocation failure, after the size check.
describe('createDirtyLog region count bounds', () => {
  const huge = (targetLengthSectors: number, devices: Record<string, MemoryBlockDevice> = {}): DirtyLogContext => ({
    ...context(devices),
    targetLengthSectors,
  });

  test('parseLogSpec refuses more regions than the kernel counts (2^43 - 1 regions)', () => {
    assert.throws(() => parseLogSpec(spec('core 1 2'), { targetLengthSectors: 2 ** 44 - 2 }), (err) =>
      rejectsWith(err, ['region count exceeds limit of 4294967295']),
    );
    assert.throws(() => parseLogSpec(spec('disk 2 /dev/vdc 2'), { targetLengthSectors: 2 ** 33 }), (err) =>
      rejectsWith(err, ['region count exceeds limit of 4294967295']),
    );
  });

  test('createDirtyLog answers a core log past regionCountMax as a failed bitset allocation', async () => {
    assert.equal(regionCountMax, 2 ** 29);
    await assert.rejects(createDirtyLog(spec('core 1 2'), huge(2 * (regionCountMax + 1))), (err) =>
      rejectsWith(err, ["couldn't allocate clean bitset"]),
    );
    const log = await createDirtyLog(spec('core 1 2'), huge(2 * regionCountMax));
    assert.equal(log.regionCount, regionCountMax);
  });

  test('createDirtyLog checks a disk log device\'s size before its allocation', async () => {
    const small = new MemoryBlockDevice({ sizeBytes: 1024 * 1024 });
    await assert.rejects(createDirtyLog(spec('disk 2 /dev/vdc 2'), huge(2 ** 32, { '/dev/vdc': small })), (err) =>
      rejectsWith(err, ['log device 254:32 too small: need 268436480 bytes']),
    );
    const big = new MemoryBlockDevice({ sizeBytes: 2 ** 30 });
    await assert.rejects(createDirtyLog(spec('disk 2 /dev/vdc 2'), huge(2 ** 32, { '/dev/vdc': big })), (err) =>
      rejectsWith(err, ["couldn't allocate disk log buffer"]),
    );
  });
});
