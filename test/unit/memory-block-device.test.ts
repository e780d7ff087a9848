import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryBlockDevice } from '../../src/block/memory-block-device.js';
import { blockDeviceSuite, pattern, supportsAll } from '../conformance/block-device.suite.js';

blockDeviceSuite({ name: 'MemoryBlockDevice', create: (sizeBytes) => Promise.resolve(new MemoryBlockDevice({ sizeBytes })), supports: supportsAll });

test('MemoryBlockDevice allocates pages only where data was written', async () => {
  const dev = new MemoryBlockDevice({ sizeBytes: 64 * 1024 * 1024 });
  assert.equal(dev.allocatedPages, 0);
  await dev.write(10 * 1024 * 1024 + 5, pattern(100, 1));
  assert.equal(dev.allocatedPages, 1);
  await dev.writeZeroes(10 * 1024 * 1024, 64 * 1024);
  assert.equal(dev.allocatedPages, 0, 'zeroing a whole page frees it');
  await dev.close();
});

test('MemoryBlockDevice uses the name and block size it was given', async () => {
  const dev = new MemoryBlockDevice({ sizeBytes: 8192, logicalBlockBytes: 4096, name: 'scratch' });
  assert.equal(dev.name, 'scratch');
  assert.equal(dev.logicalBlockBytes, 4096);
  await dev.close();
});
