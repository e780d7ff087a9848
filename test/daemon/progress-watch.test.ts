/**
 * `umirror wait --progress` and `umirror status --watch` against a real daemon, with a mirror whose
 * second leg is another device of the daemon built from the `error` target: every recovery write to it
 * fails, the leg is failed (health `AS`) and its regions stay out of sync until a new table is loaded.
 *
 * Regressions (issue 9, item 14): `wait --progress` blocked forever on such a mirror (it must say why and
 * exit 1); `status --watch` without a name failed (it must watch every device, as `status` lists them).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { until } from '../helpers/daemon-process.js';
import { startFailedLegMirror } from '../helpers/failed-leg-mirror.js';

test('umirror wait --progress exits 1 and says why when a failed leg keeps the mirror out of sync', async (t) => {
  const daemon = await startFailedLegMirror(t);
  const waited = await daemon.cli(['wait', '--progress', 'm'], { timeoutMs: 20_000 });
  assert.equal(waited.code, 1, `wait --progress did not end (killed after 20 s) or ended 0\n${waited.stderr}`);
  assert.match(waited.stderr, /^m: out of sync \(a leg failed\): 0\/8 regions in sync, waiting for a new table$/m);
  assert.match(waited.stderr, /^m: a leg failed \(AS\): 8 regions stay out of sync until a new table is loaded$/m);

  const json = await daemon.cli(['wait', '--progress', '--json', 'm'], { timeoutMs: 20_000 });
  assert.equal(json.code, 1, json.stderr);
  assert.equal(json.stdout, '{"syncRegions":0,"regionCount":8}\n');
});

test('umirror status --watch without a name watches every device, each line prefixed by its name', async (t) => {
  const daemon = await startFailedLegMirror(t);
  const watch = daemon.spawnCli(['status', '--watch']);
  let stdout = '';
  watch.child.stdout?.on('data', (chunk: string) => (stdout += chunk));
  t.after(async () => {
    watch.child.kill('SIGINT');
    await watch.done;
  });
  const ended = watch.done.then((result) => result);
  const deadline = Date.now() + 20_000;
  while (!(/^bad: 0 8192 error$/m.test(stdout) && /^m: 0 8192 mirror 2 \S+ bad 0\/8 1 AS 1 core {2}out of sync \(a leg failed\)/m.test(stdout))) {
    const early = await Promise.race([ended, sleep(50, undefined)]);
    assert.equal(early, undefined, `status --watch ended: ${JSON.stringify(early)}`);
    assert.ok(Date.now() < deadline, `status --watch printed:\n${stdout}`);
  }

  // A device removed while watching is reported once; one created appears.
  assert.equal((await daemon.cli(['remove', 'm'])).code, 0);
  assert.equal((await daemon.cli(['create', 'z', '--table', '0 8 zero'])).code, 0);
  await until('the watch to see the change', () => /^m: removed$/m.test(stdout) && /^z: 0 8 zero$/m.test(stdout), 20_000);
});
