import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, stat, writeFile, readFile, chmod } from 'node:fs/promises';
import fs from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
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
    // fdatasync for flush and FUA, no hole punching or fast zeroing (file-block-device.ts).
    flush: true,
    fua: false,
    trim: false,
    writeZeroes: false,
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

/**
 * Runs `body` with node:fs's callback `read`, `write` and `fdatasync` replaced (FileBlockDevice imports
 * them by name; syncBuiltinESMExports makes the replacement visible to it), then restores them.
 */
async function withPatchedFs(
  patch: { read?: typeof fs.read; write?: typeof fs.write; fdatasync?: typeof fs.fdatasync },
  body: () => Promise<void>,
): Promise<void> {
  const saved = { read: fs.read, write: fs.write, fdatasync: fs.fdatasync };
  Object.assign(fs, patch);
  syncBuiltinESMExports();
  try {
    await body();
  } finally {
    Object.assign(fs, saved);
    syncBuiltinESMExports();
  }
}

test('FileBlockDevice continues after short reads and short writes until the whole range is done', async () => {
  const path = nextPath();
  const data = pattern(10_000, 9);
  await writeFile(path, Buffer.alloc(16_384));
  const dev = await FileBlockDevice.open(path);
  const original = { read: fs.read, write: fs.write };
  let reads = 0;
  let writes = 0;
  // At most 1000 bytes per call, as a signal-interrupted or FUSE-backed file may answer.
  const read = ((fd: number, buffer: Buffer, offset: number, length: number, position: number, cb: (err: NodeJS.ErrnoException | null, n: number, b: Buffer) => void) => {
    reads += 1;
    original.read(fd, buffer, offset, Math.min(length, 1000), position, cb);
  }) as unknown as typeof fs.read;
  const write = ((fd: number, buffer: Uint8Array, offset: number, length: number, position: number, cb: (err: NodeJS.ErrnoException | null, n: number, b: Uint8Array) => void) => {
    writes += 1;
    original.write(fd, buffer, offset, Math.min(length, 1000), position, cb);
  }) as unknown as typeof fs.write;
  await withPatchedFs({ read, write }, async () => {
    await dev.write(100, data);
    assert.deepEqual(await dev.read(100, 10_000), data);
  });
  assert.equal(writes, 10);
  assert.equal(reads, 10);
  await dev.close();
  assert.deepEqual((await readFile(path)).subarray(100, 10_100), data);
});

test('FileBlockDevice zeroes the part of a read past the end of the file, whatever the buffer held', async () => {
  const path = nextPath();
  await writeFile(path, pattern(1000, 3));
  const dev = await FileBlockDevice.open(path, { sizeBytes: 1024 * 1024 });
  // Reads go into unzeroed memory: make that memory visibly dirty for this test.
  const allocUnsafe = Buffer.allocUnsafe;
  Buffer.allocUnsafe = (size: number) => allocUnsafe(size).fill(0xee);
  try {
    const across = await dev.read(500, 1000);
    assert.deepEqual(across.subarray(0, 500), pattern(1000, 3).subarray(500));
    assert.deepEqual(across.subarray(500), Buffer.alloc(500));
    assert.deepEqual(await dev.read(4096, 100_000), Buffer.alloc(100_000));
  } finally {
    Buffer.allocUnsafe = allocUnsafe;
  }
  await dev.close();
});

test('FileBlockDevice runs fdatasync after a FUA write has completed, and only for FUA writes and flushes', async () => {
  const path = nextPath();
  const dev = await FileBlockDevice.create(path, 1024 * 1024);
  const original = { write: fs.write, fdatasync: fs.fdatasync };
  const events: string[] = [];
  const write = ((fd: number, buffer: Uint8Array, offset: number, length: number, position: number, cb: (err: NodeJS.ErrnoException | null, n: number, b: Uint8Array) => void) => {
    original.write(fd, buffer, offset, length, position, (err, n, b) => {
      events.push(`write ${position}`);
      cb(err, n, b);
    });
  }) as unknown as typeof fs.write;
  const fdatasync = ((fd: number, cb: (err: NodeJS.ErrnoException | null) => void) => {
    events.push('fdatasync');
    original.fdatasync(fd, cb);
  }) as typeof fs.fdatasync;
  await withPatchedFs({ write, fdatasync }, async () => {
    await dev.write(0, pattern(512, 1));
    await dev.write(4096, pattern(512, 2), { fua: true });
    await dev.flush();
  });
  assert.deepEqual(events, ['write 0', 'write 4096', 'fdatasync', 'fdatasync']);
  await dev.close();
});

test('FileBlockDevice fails a FUA write and a flush with the fdatasync errno', async () => {
  const path = nextPath();
  const dev = await FileBlockDevice.create(path, 1024 * 1024);
  const fdatasync = ((fd: number, cb: (err: NodeJS.ErrnoException | null) => void) => {
    void fd;
    const err: NodeJS.ErrnoException = new Error('EIO: i/o error, fdatasync');
    err.code = 'EIO';
    setImmediate(() => cb(err));
  }) as typeof fs.fdatasync;
  await withPatchedFs({ fdatasync }, async () => {
    await rejectsWithCode(dev.write(0, pattern(512, 1), { fua: true }), 'EIO');
    await rejectsWithCode(dev.flush(), 'EIO');
  });
  await dev.close();
});
