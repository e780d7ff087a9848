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
