/**
 * The data loss of issue 11 and its fix, the leg generation record: a leg that missed acknowledged
 * writes must never be the resync source after a restart, whatever the table order.
 *
 *   Table `disk 3 log 1024 nosync 2 <leg0> 0 <leg1> 0`, no handle_errors. Write 0x11 and flush; leg0
 *   starts failing; write 0x22 over the same 4 MiB and flush (acknowledged: the default leg moved to
 *   leg1). Stop cleanly, heal leg0, start again with the same table. Expected: the volume reads 0x22
 *   (before the fix: 0x11, the resync copied leg0, the default by table order, over leg1).
 *
 * Twice: in process with Faulty devices (mirrorFixture), and through a real `umirror serve` whose
 * first leg is a real file that fails with EIO (test/helpers/failing-leg.ts: nbdkit's error filter
 * behind nbdfuse), driven by qemu-io. The second skips locally without nbdkit/nbdfuse (fails under CI).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { mirrorFixture, waitInSync } from '../helpers/mirror-fixture.js';
import { startFailingLeg } from '../helpers/failing-leg.js';
import { runOk } from '../helpers/nbd-tools.js';
import { startServe } from '../helpers/serve-process.js';
import { requireTools } from '../helpers/tools.js';

const MiB = 1024 * 1024;
const sizeBytes = 8 * MiB;
const lengthSectors = sizeBytes / 512;

test('MirrorSet after a restart never resyncs from a leg that missed acknowledged writes (in process, Faulty legs)', async () => {
  const options = { lengthSectors, regionSectors: 1024, log: 'disk 3 log 1024 nosync' } as const;
  const first = await mirrorFixture(options);
  await first.mirror.write(0, Buffer.alloc(4 * MiB, 0x11));
  await first.mirror.flush();
  first.legs[0]?.setFaults({ errors: [{ ops: ['read', 'write', 'flush'] }] });
  await first.mirror.write(0, Buffer.alloc(4 * MiB, 0x22));
  await first.mirror.flush();
  assert.equal(first.mirror.healthLetters(), 'DA');
  assert.equal(first.mirror.defaultLegIndex, 1);
  await first.mirror.destroy();
  first.legs[0]?.setFaults({});

  const again = await mirrorFixture({ ...options, reuse: { legs: first.legs, memories: first.memories, logDevice: first.logDevice } });
  assert.equal(again.mirror.defaultLegIndex, 1, 'the stale first leg is not the default leg');
  await waitInSync(again.mirror);
  const data = await again.mirror.read(0, 4 * MiB);
  assert.equal(data.findIndex((byte) => byte !== 0x22), -1, 'the volume reads the acknowledged 0x22');
  const leg0 = await again.memories[0]?.read(0, 4 * MiB);
  assert.equal(leg0?.findIndex((byte) => byte !== 0x22), -1, 'the resync copied leg1 onto leg0');
  assert.ok(again.messages.some((line) => /^l0 missed writes before the last stop: resyncing from l1$/.test(line)), again.messages.join('\n'));
  assert.deepEqual(again.mirror.log.legGenerations?.legs.map((leg) => leg.stale), [false, false], 'current again after the resync');
  await again.mirror.destroy();
});

test('umirror serve after a restart never resyncs from a leg that failed for real (nbdkit error filter)', async (t) => {
  if (!requireTools(t, ['nbdkit', 'nbdfuse', 'fusermount3', 'qemu-io'])) return;
  const dir = await mkdtemp(join(tmpdir(), 'umirror-generations-'));
  const failing = await startFailingLeg({ sizeBytes });
  t.after(async () => {
    await failing.heal();
    await failing.close();
    await rm(dir, { recursive: true, force: true });
  });
  const [log, good] = [join(dir, 'log.img'), join(dir, 'good.img')];
  for (const [path, bytes] of [[log, MiB], [good, sizeBytes]] as const) {
    await writeFile(path, '');
    await truncate(path, bytes);
  }
  const table = `0 ${lengthSectors} mirror disk 3 ${log} 1024 nosync 2 ${failing.path} 0 ${good} 0`;
  const args = ['--table', table, '--nbd', `unix:${join(dir, 'vol.sock')}`];
  const first = await startServe(args);
  t.after(() => first.stop());
  await runOk('qemu-io', ['-f', 'raw', '-c', 'write -P 0x11 0 4M', '-c', 'flush', first.uri]);
  await failing.fail();
  await runOk('qemu-io', ['-f', 'raw', '-c', 'write -P 0x22 0 4M', '-c', 'flush', first.uri]);
  const stopped = await first.stop();
  assert.equal(stopped.code, 0, stopped.stderr);
  await failing.heal();

  const second = await startServe(args);
  t.after(() => second.stop());
  await second.waitForOutput(/^status: .* 16\/16 1 AA 3 disk/m, 60_000);
  await runOk('qemu-io', ['-f', 'raw', '-c', 'read -P 0x22 0 4M', second.uri]);
  assert.match(second.stdout() + second.stderr(), /missed writes before the last stop: resyncing from /);
  const exit = await second.stop();
  assert.equal(exit.code, 0, exit.stderr);
  const onGood = await readFile(good);
  assert.equal(onGood.subarray(0, 4 * MiB).findIndex((byte) => byte !== 0x22), -1, 'the good leg still holds 0x22');
});
