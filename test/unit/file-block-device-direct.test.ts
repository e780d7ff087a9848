/**
 * FileBlockDevice with `direct: true` (O_DIRECT) on ordinary image files of a real file system: the
 * conformance suite, byte-granular I/O at any buffer address (aligned bounce buffers, read-modify-write),
 * concurrent unaligned writes sharing one block (none is lost), and the refusals at open with the reason
 * (a size that is not a multiple of the alignment; a file system without direct I/O, such as an old tmpfs).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { FileBlockDevice } from '../../src/block/file-block-device.js';
import { BlockError } from '../../src/errors.js';
import type { BlockDevice } from '../../src/block/block-device.js';
import { blockDeviceSuite, pattern } from '../conformance/block-device.suite.js';
import { makeDirectIoDir } from '../helpers/direct-io-dir.js';

let dir = '';
let fileCount = 0;
const nextPath = (): string => join(dir, `image-${fileCount++}.img`);

before(async () => {
  dir = await makeDirectIoDir('umirror-direct-');
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function createDirect(sizeBytes: number): Promise<FileBlockDevice> {
  const path = nextPath();
  await (await FileBlockDevice.create(path, sizeBytes)).close();
  return FileBlockDevice.open(path, { direct: true });
}

blockDeviceSuite({
  name: 'FileBlockDevice (O_DIRECT)',
  create: createDirect,
  supports: {
    flush: true,
    fua: false,
    trim: false,
    writeZeroes: false,
    persistent: true,
    reopen: (dev: BlockDevice) => {
      assert.ok(dev instanceof FileBlockDevice);
      return FileBlockDevice.open(dev.path, { direct: true });
    },
  },
});

test('FileBlockDevice O_DIRECT reads and writes any bytes at any buffer address, like the page-cache path', async () => {
  const dev = await createDirect(256 * 1024);
  assert.ok(dev.directAlignBytes >= 512, `alignment ${dev.directAlignBytes}`);
  const model = Buffer.alloc(256 * 1024);
  // Offsets, lengths and buffer addresses off every alignment (a Buffer view at an odd byteOffset).
  const cases: [number, number][] = [[1, 1], [511, 2], [1000, 3000], [4095, 4098], [8192, 4096], [65_537, 70_001], [262_143, 1]];
  let seed = 1;
  for (const [offset, length] of cases) {
    const backing = pattern(length + 3, seed++);
    const data = backing.subarray(3);
    await dev.write(offset, data);
    data.copy(model, offset);
  }
  assert.deepEqual(await dev.read(0, model.length), model);
  for (const [offset, length] of cases) assert.deepEqual(await dev.read(offset, length), model.subarray(offset, offset + length));
  await dev.writeZeroes(3, 10_000);
  model.fill(0, 3, 10_003);
  await dev.flush();
  await dev.close();
  assert.deepEqual(await readFile(dev.path), model, 'the file holds exactly what was written');
});

test('FileBlockDevice O_DIRECT loses no write when unaligned writes share one block concurrently', async () => {
  const dev = await createDirect(64 * 1024);
  // 64 one-sector-apart small writes into the same 4 KiB blocks, all in flight at once: each is a
  // read-modify-write of a shared block, so without ordering most of them would be undone.
  const writes = Array.from({ length: 64 }, (_, i) => dev.write(i * 64 + 7, Buffer.alloc(13, i + 1)));
  await Promise.all(writes);
  const got = await dev.read(0, 64 * 64 + 64);
  for (let i = 0; i < 64; i++) assert.deepEqual(got.subarray(i * 64 + 7, i * 64 + 20), Buffer.alloc(13, i + 1), `write ${i}`);
  await dev.close();
});

test('FileBlockDevice O_DIRECT reads a sparse image past its end as zeroes and extends it on write', async () => {
  const path = nextPath();
  await writeFile(path, pattern(1536, 9));
  const dev = await FileBlockDevice.open(path, { direct: true, sizeBytes: 64 * 1024 });
  const head = await dev.read(1000, 2000);
  assert.deepEqual(head.subarray(0, 536), pattern(1536, 9).subarray(1000));
  assert.deepEqual(head.subarray(536), Buffer.alloc(1464));
  await dev.write(60_000, Buffer.alloc(100, 0xab));
  assert.deepEqual(await dev.read(59_999, 102), Buffer.concat([Buffer.alloc(1), Buffer.alloc(100, 0xab), Buffer.alloc(1)]));
  await dev.close();
});

test('FileBlockDevice O_DIRECT refuses a size that is not a multiple of the alignment, with the reason', async () => {
  const path = nextPath();
  await writeFile(path, Buffer.alloc(1000));
  await assert.rejects(FileBlockDevice.open(path, { direct: true }), (err: unknown) => {
    assert.ok(err instanceof BlockError);
    assert.equal(err.code, 'EINVAL');
    assert.match(err.message, /O_DIRECT.*not a multiple of the direct I\/O alignment/);
    return true;
  });
});

test('FileBlockDevice O_DIRECT on tmpfs either works or is refused at open with the reason', async (t) => {
  if (!existsSync('/dev/shm')) {
    t.skip('no /dev/shm');
    return;
  }
  const shm = await makeShmDir();
  t.after(() => rm(shm, { recursive: true, force: true }));
  const path = join(shm, 'leg.img');
  await (await FileBlockDevice.create(path, 64 * 1024)).close();
  let dev: FileBlockDevice;
  try {
    dev = await FileBlockDevice.open(path, { direct: true });
  } catch (err) {
    // Before Linux 6.6 tmpfs refuses O_DIRECT at open (EINVAL): the message must say so.
    assert.ok(err instanceof BlockError, String(err));
    assert.match(err.message, /with O_DIRECT \(direct I\/O\): its file system (refuses|does not support) direct I\/O/);
    return;
  }
  await dev.write(3, Buffer.from('tmpfs'));
  assert.deepEqual(await dev.read(0, 8), Buffer.from('\0\0\0tmpfs'));
  await dev.close();
});

async function makeShmDir(): Promise<string> {
  const { mkdtemp } = await import('node:fs/promises');
  return mkdtemp('/dev/shm/umirror-direct-');
}
