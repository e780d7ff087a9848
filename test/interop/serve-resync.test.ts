/**
 * `umirror serve --table` resyncing a fresh disk log while a real client watches: leg 0 is an image file
 * full of random bytes, leg 1 an nbdfuse file over `nbdkit memory` slowed by the delay filter (so the
 * resync takes seconds, not milliseconds). `nbdinfo --map=umirror:sync` must show out-of-sync regions
 * while the resync runs, never more as it goes on, and none at the end; the legs are then identical.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { startFailingLeg } from '../helpers/failing-leg.js';
import { requireTools } from '../helpers/nbd-tools.js';
import { assertCleanExit, startServe } from '../helpers/serve-process.js';
import { assertSameBytes, nbdMap, outOfSyncBytes } from '../helpers/sync-map.js';

const MiB = 1024 * 1024;
const sizeBytes = 64 * MiB;
const regionCount = sizeBytes / (512 * 1024);

test('umirror serve shows a running resync in nbdinfo --map=umirror:sync and ends with identical legs', async (t) => {
  if (!requireTools(t, 'nbdkit', 'nbdfuse', 'fusermount3', 'nbdinfo', 'cmp')) return;
  const dir = await mkdtemp(join(tmpdir(), 'umirror-resync-'));
  const slow = await startFailingLeg({ sizeBytes, delayMs: { write: 20 } });
  t.after(async () => {
    await slow.close();
    await rm(dir, { recursive: true, force: true });
  });
  const leg0 = join(dir, 'leg0.img');
  const log = join(dir, 'log.img');
  await writeFile(leg0, randomBytes(sizeBytes));
  await writeFile(log, '');
  await truncate(log, MiB);
  // A zeroed disk log: no valid header, so every region starts out of sync and is copied from leg 0.
  const table = `0 ${sizeBytes / 512} mirror disk 2 ${log} 1024 2 ${leg0} 0 ${slow.path} 0 1 handle_errors`;
  const serve = await startServe(['--table', table, '--nbd', `unix:${join(dir, 'nbd.sock')}`, '--recovery-parallel', '1']);
  t.after(() => serve.stop().then(() => undefined));

  const samples: number[] = [];
  for (let bytes = await outOfSyncBytes(serve.uri); bytes > 0; bytes = await outOfSyncBytes(serve.uri)) {
    samples.push(bytes);
    if (samples.length === 1) {
      const extents = await nbdMap(serve.uri, 'umirror:sync');
      assert.equal(extents.reduce((sum, e) => sum + e.length, 0), sizeBytes);
      assert.equal(extents.at(-1)?.type, 1, 'the last regions are still to be copied');
    }
    assert.ok(samples.length < 600, `resync still running after ${samples.length} samples: ${samples.join(' ')}`);
    await sleep(200);
  }
  t.diagnostic(`out-of-sync bytes seen: ${samples.join(' ')}`);
  assert.ok(samples.length >= 2, `the resync was seen running (${samples.length} samples)`);
  assert.ok(samples.every((bytes, i) => i === 0 || bytes <= (samples[i - 1] ?? 0)), `out-of-sync bytes never grow: ${samples.join(' ')}`);
  assert.ok((samples[0] ?? 0) % (512 * 1024) === 0, 'whole regions');

  await serve.waitForOutput(new RegExp(` ${regionCount}/${regionCount} 1 AA 3 disk ${log} A$`, 'm'));
  await serve.waitForOutput(/resync = \d+\.\d% \(\d+\/128\)/);
  await assertSameBytes([leg0, slow.path]);
  const exit = await serve.stop();
  assertCleanExit(exit);
  assert.match(exit.stderr, /device-mapper: raid1: umirror: sync complete/);
});
