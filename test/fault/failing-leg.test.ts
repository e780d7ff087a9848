import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FileBlockDevice } from '../../src/block/file-block-device.js';
import { BlockError } from '../../src/errors.js';
import { startFailingLeg } from '../helpers/failing-leg.js';
import { requireTools } from '../helpers/tools.js';
import { pattern, rejectsWithCode } from '../conformance/block-device.suite.js';

const tools = ['nbdkit', 'nbdfuse', 'fusermount3'];

test('failing leg: a FileBlockDevice on the nbdfuse file fails with EIO while the trigger exists, then heals', async (t) => {
  if (!requireTools(t, tools)) return;
  const leg = await startFailingLeg({ sizeBytes: 16 * 1024 * 1024 });
  let dev: FileBlockDevice | undefined;
  // One hook, in order: the device must be closed before the mount goes away.
  t.after(async () => {
    await dev?.close();
    await leg.close();
  });
  dev = await FileBlockDevice.open(leg.path, { direct: true });
  assert.equal(dev.sizeBytes, 16 * 1024 * 1024);

  // Healthy: unaligned I/O round-trips.
  const data = pattern(70 * 1024 + 3, 1);
  await dev.write(4097, data);
  await dev.flush();
  assert.deepEqual(await dev.read(4097, data.length), data);

  // Failing: the same range (cached pages included) and a fresh range fail with EIO.
  await leg.fail();
  await rejectsWithCode(dev.read(4097, data.length), 'EIO');
  await rejectsWithCode(dev.read(8 * 1024 * 1024, 512), 'EIO');
  await rejectsWithCode(dev.write(0, Buffer.from('lost')), 'EIO');
  await assert.rejects(dev.write(1024 * 1024, pattern(4096, 2), { fua: true }), (err: unknown) => {
    assert.ok(err instanceof BlockError);
    assert.equal(err.code, 'EIO');
    assert.ok(err.cause !== undefined, 'the fs error is kept as cause');
    return true;
  });

  // Healed: old data intact, the failed writes wrote nothing, new writes land.
  await leg.heal();
  assert.deepEqual(await dev.read(4097, data.length), data);
  assert.deepEqual(await dev.read(0, 4), Buffer.alloc(4));
  await dev.write(0, Buffer.from('back'), { fua: true });
  assert.deepEqual(await dev.read(0, 4), Buffer.from('back'));
});

test('failing leg: a fresh buffered open also sees EIO, and a second leg is independent', async (t) => {
  if (!requireTools(t, tools)) return;
  const [a, b] = await Promise.all([startFailingLeg({ sizeBytes: 1024 * 1024 }), startFailingLeg({ sizeBytes: 1024 * 1024 })]);
  const devs: FileBlockDevice[] = [];
  t.after(async () => {
    await Promise.all(devs.map((dev) => dev.close()));
    await Promise.all([a.close(), b.close()]);
  });
  await a.fail();
  const devA = await FileBlockDevice.open(a.path);
  devs.push(devA);
  const devB = await FileBlockDevice.open(b.path);
  devs.push(devB);
  await rejectsWithCode(devA.read(0, 4096), 'EIO');
  await rejectsWithCode(devA.write(0, Buffer.alloc(512, 1)), 'EIO');
  await devB.write(0, Buffer.alloc(512, 1));
  assert.deepEqual(await devB.read(0, 512), Buffer.alloc(512, 1));
});

test('failing leg: the delay filter slows requests down', async (t) => {
  if (!requireTools(t, tools)) return;
  const leg = await startFailingLeg({ sizeBytes: 1024 * 1024, delayMs: { read: 100, write: 100 } });
  let dev: FileBlockDevice | undefined;
  // One hook, in order: the device must be closed before the mount goes away.
  t.after(async () => {
    await dev?.close();
    await leg.close();
  });
  dev = await FileBlockDevice.open(leg.path, { direct: true });
  const started = performance.now();
  await dev.write(0, Buffer.alloc(4096, 3));
  assert.deepEqual(await dev.read(0, 4096), Buffer.alloc(4096, 3));
  const elapsedMs = performance.now() - started;
  assert.ok(elapsedMs >= 180, `a delayed write and read took ${elapsedMs} ms`);
});

test('failing leg: close unmounts and removes everything, and may be called twice', async (t) => {
  if (!requireTools(t, tools)) return;
  const leg = await startFailingLeg({ sizeBytes: 1024 * 1024 });
  const { access } = await import('node:fs/promises');
  await access(leg.path);
  await Promise.all([leg.close(), leg.close()]);
  await assert.rejects(access(leg.path), { code: 'ENOENT' });
  await assert.rejects(access(leg.socketPath), { code: 'ENOENT' });
});
