/**
 * targetBuilder: the composition of tables with devices. A disk log's warnings (the kernel's
 * "device-mapper: dirty region log:" lines) reach the caller with the device's name.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryBlockDevice } from '../../src/block/memory-block-device.js';
import type { BlockDevice } from '../../src/block/block-device.js';
import { targetBuilder } from '../../src/control/build-target.js';
import { diskLogMagic, encodeDiskLogHeader } from '../../src/dirty-log/disk-log-format.js';
import { MappedDevice } from '../../src/target/mapped-device.js';
import { MirrorSet } from '../../src/mirror/mirror-set.js';
import { recoveryParallelMax } from '../../src/limits.js';
import { shared } from '../helpers/mirror-fixture.js';

test('targetBuilder routes disk-log warnings to onLogWarning with the device name', async () => {
  const MiB = 2 ** 20;
  const devices = new Map<string, BlockDevice>([
    ['log', new MemoryBlockDevice({ sizeBytes: MiB, name: 'log' })],
    ['a', new MemoryBlockDevice({ sizeBytes: MiB, name: 'a' })],
    ['b', new MemoryBlockDevice({ sizeBytes: MiB, name: 'b' })],
  ]);
  // A header with an unknown version: the kernel warns "incompatible disk log version" and fails the log.
  const header = Buffer.alloc(1024);
  encodeDiskLogHeader({ magic: diskLogMagic, version: 3, nrRegions: 2 }, header);
  await devices.get('log')?.write(0, header);
  const warnings: string[] = [];
  const md = new MappedDevice({
    name: 'vol',
    buildTarget: targetBuilder({
      resolver: {
        open: (name) => {
          const device = devices.get(name);
          return device === undefined ? Promise.reject(new Error(`no ${name}`)) : Promise.resolve(shared(device));
        },
      },
      onLogWarning: (device, line) => warnings.push(`${device}: ${line}`),
    }),
  });
  await md.load('0 2048 mirror disk 2 log 1024 2 a 0 b 0');
  await md.resume();
  assert.deepEqual(warnings, ['vol: incompatible disk log version', 'vol: log: Failed to read header on dirty region log device']);
  assert.match(md.status(), / D\n$/, 'the log device is reported failed');
  await md.close();
});

test('targetBuilder takes recoveryParallel within limits.ts bounds and gives it to every mirror', async () => {
  const open = (): Promise<BlockDevice> => Promise.resolve(new MemoryBlockDevice({ sizeBytes: 2 ** 20, name: 'x' }));
  for (const recoveryParallel of [0, recoveryParallelMax + 1, 1.5]) {
    assert.throws(() => targetBuilder({ resolver: { open }, recoveryParallel }), RangeError, String(recoveryParallel));
  }
  const md = new MappedDevice({ name: 'vol', buildTarget: targetBuilder({ resolver: { open }, recoveryParallel: 3 }) });
  await md.load('0 2048 mirror core 1 1024 2 a 0 b 0');
  const mirror = md.segments({ inactive: true })[0]?.target;
  assert.ok(mirror instanceof MirrorSet);
  assert.equal(mirror.recoveryParallelMax, 3);
  await md.close();
});
