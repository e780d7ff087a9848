/**
 * Image locks inside one process (src/block/image-lock.ts through FileBlockDevice's `lockHolder`): a
 * holder shares its lock between its opens (a table reload opens the images again), another holder is
 * refused with EBUSY naming the holder, the last close releases the lock, read-only opens take none, and
 * the lock is qemu's: byte 100/101/201/203 read locks that F_OFD_GETLK from another description sees.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openSync, closeSync } from 'node:fs';
import { FileBlockDevice } from '../../src/block/file-block-device.js';
import { ImageLockError, findImageLockError, heldImageLocks } from '../../src/block/image-lock.js';
import { nativeAddon } from '../../src/block/native.js';
import { TableError } from '../../src/errors.js';

let dir = '';
let fileCount = 0;
async function image(): Promise<string> {
  const path = join(dir, `image-${fileCount++}.img`);
  await (await FileBlockDevice.create(path, 64 * 1024)).close();
  return path;
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'umirror-lock-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

function isLockedAt(path: string, byte: number): boolean {
  const fd = openSync(path, 'r');
  try {
    const held = nativeAddon().testLock(fd, 2, byte, 1);
    assert.ok(held >= 0, `testLock failed: ${held}`);
    return held === 1;
  } finally {
    closeSync(fd);
  }
}

test('FileBlockDevice lockHolder: opens by the same holder share the lock; the last close releases it', async () => {
  const path = await image();
  const first = await FileBlockDevice.open(path, { lockHolder: 'vol' });
  const second = await FileBlockDevice.open(path, { lockHolder: 'vol' });
  assert.deepEqual(heldImageLocks().filter((l) => l.path === path), [{ path, holder: 'vol', refs: 2 }]);
  for (const byte of [100, 101, 201, 203]) assert.ok(isLockedAt(path, byte), `byte ${byte} is locked`);
  for (const byte of [102, 200, 202]) assert.ok(!isLockedAt(path, byte), `byte ${byte} is free`);
  await first.close();
  assert.ok(isLockedAt(path, 101), 'still held by the second open');
  await second.close();
  assert.ok(!isLockedAt(path, 101), 'released by the last close');
  assert.deepEqual(heldImageLocks().filter((l) => l.path === path), []);
});

test('FileBlockDevice lockHolder: another holder is refused with EBUSY naming the holder, also through a symlink', async () => {
  const path = await image();
  const alias = join(dir, `alias-${fileCount++}.img`);
  await symlink(path, alias);
  const held = await FileBlockDevice.open(path, { lockHolder: 'a' });
  await assert.rejects(FileBlockDevice.open(alias, { lockHolder: 'b' }), (err: unknown) => {
    assert.ok(err instanceof ImageLockError);
    assert.equal(err.code, 'EBUSY');
    assert.equal(err.message, `${alias} is in use by device a (lock held)`);
    return true;
  });
  // Read-only openers and openers without a holder take no lock and are not refused.
  const reader = await FileBlockDevice.open(alias, { readOnly: true, lockHolder: 'b' });
  await reader.close();
  await held.close();
  const after = await FileBlockDevice.open(alias, { lockHolder: 'b' });
  await after.close();
});

test('FileBlockDevice lockHolder: an image another open file description locked is in use by another process', async () => {
  const path = await image();
  // What qemu-io/qemu-nbd hold on an image they write: read locks on bytes 100 and 101.
  const fd = openSync(path, 'r');
  try {
    assert.equal(nativeAddon().setLock(fd, 1, 100, 2), 0);
    await assert.rejects(FileBlockDevice.open(path, { lockHolder: 'vol' }), (err: unknown) => {
      assert.ok(err instanceof ImageLockError);
      assert.equal(err.message, `${path} is in use by another process (lock held)`);
      return true;
    });
    assert.ok(!isLockedAt(path, 201), 'the refused open left no lock behind');
  } finally {
    closeSync(fd);
  }
  const dev = await FileBlockDevice.open(path, { lockHolder: 'vol' });
  await dev.close();
});

test('findImageLockError finds the lock error inside a table error', () => {
  const lock = new ImageLockError('EBUSY', 'x is in use');
  assert.equal(findImageLockError(new TableError({ kernelError: 'Device lookup failure', cause: lock })), lock);
  assert.equal(findImageLockError(new TableError({ kernelError: 'Device lookup failure' })), undefined);
});
