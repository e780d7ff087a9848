/**
 * The main job's images: fresh folders get sparse legs and a nosync disk log; a restart reuses the images
 * as they are (size taken from leg0.img when --size is not given) and trusts the log (no nosync).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseSize, prepareImages, removeImages } from '../../src/control/images.js';
import { imageBytesDefault } from '../../src/limits.js';
import { ControlError } from '../../src/errors.js';

async function withDir(body: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'umirror-images-'));
  try {
    await body(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const base = { legCount: 2, regionSectors: 1024, log: 'disk', handleErrors: true } as const;

describe('prepareImages', () => {
  test('a fresh folder gets sparse legs of the default size and a nosync disk log', async () => {
    await withDir(async (dir) => {
      const images = await prepareImages({ dataDir: dir, ...base });
      assert.equal(images.created.length, 3);
      assert.equal((await stat(join(dir, 'leg0.img'))).size, imageBytesDefault);
      assert.match(images.table, /^0 2097152 mirror disk 3 \S+log\.img 1024 nosync 2 \S+leg0\.img 0 \S+leg1\.img 0 1 handle_errors$/);
    });
  });

  test('a restart without a size reuses the existing legs\' size and trusts the log', async () => {
    await withDir(async (dir) => {
      await prepareImages({ dataDir: dir, ...base, sizeBytes: parseSize('64M') });
      const again = await prepareImages({ dataDir: dir, ...base });
      assert.deepEqual(again.created, []);
      assert.match(again.table, /^0 131072 mirror disk 2 \S+log\.img 1024 2 /);
    });
  });

  test('a size larger than the existing legs is refused, never truncating or growing them', async () => {
    await withDir(async (dir) => {
      await prepareImages({ dataDir: dir, ...base, sizeBytes: parseSize('64M') });
      await assert.rejects(prepareImages({ dataDir: dir, ...base, sizeBytes: parseSize('128M') }), /exists but is smaller/);
      assert.equal((await stat(join(dir, 'leg1.img'))).size, 64 * 2 ** 20);
    });
  });

  test('parseSize takes binary suffixes and refuses sizes that are not whole sectors', () => {
    assert.equal(parseSize('1G'), 2 ** 30);
    assert.equal(parseSize('64KiB'), 65536);
    assert.throws(() => parseSize('100'), ControlError);
    assert.throws(() => parseSize('lots'), ControlError);
  });

  test('removeImages removes what a start created and names what it could not remove', async () => {
    await withDir(async (dir) => {
      const data = join(dir, 'made', 'data');
      await mkdir(data, { recursive: true });
      const image = join(data, 'leg0.img');
      await writeFile(image, Buffer.alloc(512));
      // A path that cannot go: a folder with a file in it (rm without recursive refuses it).
      const stuck = join(data, 'stuck');
      await mkdir(stuck);
      await writeFile(join(stuck, 'keep'), 'x');
      const left = await removeImages({ dataDir: data, created: [image, stuck], madeDir: join(dir, 'made') });
      assert.equal(left.length, 1, left.join('; '));
      assert.match(left[0] ?? '', /stuck: E/);
      await assert.rejects(stat(image), { code: 'ENOENT' });
      // The folders stay (not empty), and that is not reported: it is on purpose.
      assert.ok((await stat(stuck)).isDirectory());
      assert.deepEqual(await removeImages({ dataDir: data, created: [image], madeDir: join(dir, 'made') }), [], 'a path already gone is no failure');
    });
  });
});
