/**
 * endCheckedDevice: bio_check_eod for a device a table maps past its end (a device with no whole
 * sector, which dm core accepts). Expected: a device the area fits comes back as is; otherwise the
 * wrapper has the mapped size and fails every read, write, trim and zero past the last whole sector with
 * EIO before the device sees it, while flush and close pass through.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { endCheckedDevice } from '../../src/block/end-checked-device.js';
import { MemoryBlockDevice } from '../../src/block/memory-block-device.js';
import { BlockError } from '../../src/errors.js';

const eio = (err: unknown): boolean => err instanceof BlockError && err.code === 'EIO' && /beyond end of device/.test(err.message);

test('endCheckedDevice returns the device itself when the mapped area fits its whole sectors', () => {
  const device = new MemoryBlockDevice({ sizeBytes: 4096, name: 'a' });
  assert.equal(endCheckedDevice(device, { mappedBytes: 4096 }), device);
  assert.equal(endCheckedDevice(device, { mappedBytes: 512 }), device);
});

test('endCheckedDevice fails I/O past a 100-byte device with EIO and keeps flush and close', async () => {
  const device = new MemoryBlockDevice({ sizeBytes: 100, name: 'tiny' });
  const checked = endCheckedDevice(device, { mappedBytes: 8 * 512 });
  assert.notEqual(checked, device);
  assert.equal(checked.sizeBytes, 4096);
  assert.equal(checked.name, 'tiny');
  await assert.rejects(checked.read(0, 512), eio);
  await assert.rejects(checked.write(0, new Uint8Array(512)), eio);
  await assert.rejects(checked.trim(512, 512), eio);
  await assert.rejects(checked.writeZeroes(0, 4096), eio);
  await checked.flush();
  await checked.close();
  await assert.rejects(device.read(0, 1), (err: unknown) => err instanceof BlockError && err.code === 'ESHUTDOWN');
});

test('endCheckedDevice passes I/O inside the whole sectors of a 1000-byte device and fails beyond', async () => {
  const device = new MemoryBlockDevice({ sizeBytes: 1000, name: 'k' });
  const checked = endCheckedDevice(device, { mappedBytes: 1024 });
  await checked.write(0, new Uint8Array(512).fill(7));
  assert.equal((await checked.read(0, 512))[511], 7);
  await assert.rejects(checked.read(512, 512), eio);
});
