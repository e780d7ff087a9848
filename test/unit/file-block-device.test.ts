import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, stat, writeFile, readFile, chmod } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FileBlockDevice } from '../../src/block/file-block-device.js';
import { BlockError } from '../../src/errors.js';
import type { BlockDevice } from '../../src/block/block-device.js';
import { blockDeviceSuite, pattern, rejectsWithCode } from '../conformance/block-device.suite.js';

let dir = '';
let fileCount = 0;
const nextPath = (): string => join(dir, `image-${fileCount++}.img`);

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'umirror-file-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

blockDeviceSuite({
  name: 'FileBlockDevice',
  create: (sizeBytes) => FileBlockDevice.create(nextPath(), sizeBytes),
  supports: {
    persistent: true,
    reopen: (dev: BlockDevice) => {
      assert.ok(dev instanceof FileBlockDevice);
      return FileBlockDevice.open(dev.path);
    },
  },
});

test('FileBlockDevice.create makes a sparse file of the requested size', async () => {
  const path = nextPath();
  const dev = await FileBlockDevice.create(path, 256 * 1024 * 1024);
  const info = await stat(path);
  assert.equal(info.size, 256 * 1024 * 1024);
  assert.ok(info.blocks * 512 < 1024 * 1024, `only ${info.blocks} blocks allocated`);
  assert.equal(dev.sizeBytes, 256 * 1024 * 1024);
  assert.equal(dev.logicalBlockBytes, 512);
  assert.equal(dev.name, path);
  await dev.close();
});

test('FileBlockDevice.create refuses to overwrite an existing file', async () => {
  const path = nextPath();
  await writeFile(path, 'precious');
  await assert.rejects(FileBlockDevice.create(path, 4096), BlockError);
  assert.equal(await readFile(path, 'utf8'), 'precious');
});

test('FileBlockDevice.open takes the size from the file, or from the option', async () => {
  const path = nextPath();
  await writeFile(path, pattern(3000, 1));
  const natural = await FileBlockDevice.open(path);
  assert.equal(natural.sizeBytes, 3000);
  assert.deepEqual(await natural.read(0, 3000), pattern(3000, 1));
  await natural.close();
  // A larger sizeBytes reads the part past the end of the file as zeroes and writes extend it.
  const larger = await FileBlockDevice.open(path, { sizeBytes: 8192, logicalBlockBytes: 4096 });
  assert.equal(larger.logicalBlockBytes, 4096);
  const back = await larger.read(2990, 20);
  assert.deepEqual(back.subarray(0, 10), pattern(3000, 1).subarray(2990));
  assert.deepEqual(back.subarray(10), Buffer.alloc(10));
  await larger.write(8000, Buffer.from('tail'));
  await larger.close();
  assert.equal((await stat(path)).size, 8004);
});

test('FileBlockDevice writes reach the file and FUA writes go through fdatasync', async () => {
  const path = nextPath();
  const dev = await FileBlockDevice.create(path, 1024 * 1024);
  const data = pattern(5000, 5);
  await dev.write(12345, data, { fua: true });
  await dev.writeZeroes(12345 + 100, 50, { fua: true });
  await dev.flush();
  const onDisk = await readFile(path);
  const expected = Buffer.from(data);
  expected.fill(0, 100, 150);
  assert.deepEqual(onDisk.subarray(12345, 12345 + 5000), expected);
  await dev.close();
});

test('FileBlockDevice read-only fails writes, trims and zeroes with EPERM and still reads', async () => {
  const path = nextPath();
  const rw = await FileBlockDevice.create(path, 64 * 1024);
  await rw.write(0, Buffer.from('keep'));
  await rw.close();
  const ro = await FileBlockDevice.open(path, { readOnly: true });
  assert.equal(ro.readOnly, true);
  await rejectsWithCode(ro.write(0, Buffer.from('gone')), 'EPERM');
  await rejectsWithCode(ro.writeZeroes(0, 4), 'EPERM');
  await rejectsWithCode(ro.trim(0, 4), 'EPERM');
  assert.deepEqual(await ro.read(0, 4), Buffer.from('keep'));
  await ro.flush();
  await ro.close();
});

test('FileBlockDevice.open maps fs errors to BlockError with the errno and cause', async () => {
  const missing = join(dir, 'missing.img');
  await assert.rejects(FileBlockDevice.open(missing), (err: unknown) => {
    assert.ok(err instanceof BlockError);
    assert.equal(err.code, 'EIO', 'ENOENT is not one of ours, so EIO');
    assert.equal((err.cause as { code?: unknown } | undefined)?.code, 'ENOENT');
    return true;
  });
  await assert.rejects(FileBlockDevice.open(dir), BlockError, 'a directory is not a device');
});

test('FileBlockDevice.open rejects a read-write open of an unwritable file as EPERM or EACCES', async () => {
  const path = nextPath();
  await writeFile(path, Buffer.alloc(512));
  await chmod(path, 0o444);
  if (process.getuid?.() === 0) {
    // root bypasses file modes: the open succeeds, which is what the kernel allows.
    const dev = await FileBlockDevice.open(path);
    await dev.close();
    return;
  }
  await assert.rejects(FileBlockDevice.open(path), BlockError);
});

test('FileBlockDevice.close waits for requests in flight', async () => {
  const dev = await FileBlockDevice.create(nextPath(), 4 * 1024 * 1024);
  const data = pattern(4 * 1024 * 1024, 8);
  const writing = dev.write(0, data);
  const closing = dev.close();
  await writing;
  await closing;
  const again = await FileBlockDevice.open(dev.path);
  assert.deepEqual(await again.read(0, data.length), data);
  await again.close();
});
