/**
 * `umirror serve` with handle_errors when a leg fails for real (an nbdfuse file over nbdkit's error
 * filter): the failed write is held, as the kernel holds it for dmeventd. Ctrl-C must still stop serve
 * cleanly: the suspend releases the held write with EIO (a plain suspend, as the kernel's), the client
 * gets the error, and the log records the region out of sync (serve's stop line says so), so the next
 * start resyncs it onto the healed leg and the legs end up identical. An idle client that keeps its connection open (nbdfuse)
 * must not keep Ctrl-C from finishing either.
 *
 * Regression: a graceful shutdown used to end our side and pause the socket, so the client's FIN was
 * never read and 'close' never came (an idle client hung serve; after the held write the event loop ran
 * dry and serve exited 0 without removing the device). A drained connection now reads until the client
 * hangs up and is destroyed after a grace period.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { startFailingLeg } from '../helpers/failing-leg.js';
import { mountNbdfuse } from '../helpers/nbdfuse-file.js';
import { requireTools, run } from '../helpers/nbd-tools.js';
import { assertCleanExit, startServe } from '../helpers/serve-process.js';
import { assertLegsIdentical } from '../helpers/sync-map.js';

const MiB = 1024 * 1024;
const sizeBytes = 64 * MiB;
const stopTimeoutMs = 10_000;

test('umirror serve stops cleanly on SIGINT while a write is held after a leg failure, and resyncs the region on restart', async (t) => {
  if (!requireTools(t, 'nbdkit', 'nbdfuse', 'fusermount3', 'qemu-io', 'nbdinfo', 'cmp')) return;
  const dir = await mkdtemp(join(tmpdir(), 'umirror-fail-'));
  const failing = await startFailingLeg({ sizeBytes });
  t.after(async () => {
    await failing.heal();
    await failing.close();
    await rm(dir, { recursive: true, force: true });
  });
  const good = join(dir, 'good.img');
  const log = join(dir, 'log.img');
  for (const [path, bytes] of [[good, sizeBytes], [log, MiB]] as const) {
    await writeFile(path, '');
    await truncate(path, bytes);
  }
  const legs = `2 ${good} 0 ${failing.path} 0 1 handle_errors`;
  const socket = `unix:${join(dir, 'nbd.sock')}`;
  let serve = await startServe(['--table', `0 ${sizeBytes / 512} mirror disk 3 ${log} 1024 nosync ${legs}`, '--nbd', socket]);
  t.after(() => serve.stop().then(() => undefined));

  await failing.fail();
  const writing = run('qemu-io', ['-f', 'raw', serve.uri, '-c', 'write -P 0x55 0 64k'], { timeoutMs: 120_000 });
  await serve.waitForOutput(/^status: .* 127\/128 1 AD 3 disk \S+ A/m);
  // The stop line says what is true: the held write's region stays dirty (regression: it said "the log
  // is clean" here, issue 9 item 14).
  const stopLine = /^device suspended; the next start resyncs 1 of 128 regions \(a leg failed: AD; 1 out of sync; 1 held write failed\)$/m;
  assertCleanExit(await serve.stop({ timeoutMs: stopTimeoutMs }), stopLine);
  const written = await writing;
  assert.notEqual(written.code, 0, 'the held write was not acknowledged');
  assert.match(written.stdout + written.stderr, /Input\/output error/);

  await failing.heal();
  serve = await startServe(['--table', `0 ${sizeBytes / 512} mirror disk 2 ${log} 1024 ${legs}`, '--nbd', socket]);
  assert.match((await serve.waitForOutput(/^status: (.+)$/m))[1] ?? '', / 12[78]\/128 1 AA 3 disk /);
  await assertLegsIdentical(serve.uri, [good, failing.path]);
  assertCleanExit(await serve.stop());
});

test('umirror serve stops cleanly on SIGINT while an idle nbdfuse client is connected', async (t) => {
  if (!requireTools(t, 'nbdfuse', 'fusermount3')) return;
  const dir = await mkdtemp(join(tmpdir(), 'umirror-idle-'));
  const serve = await startServe(['--data', join(dir, 'data'), '--size', '64M', '--nbd', `unix:${join(dir, 'nbd.sock')}`]);
  const fuse = await mountNbdfuse({ uri: serve.uri, dir, sizeBytes });
  t.after(async () => {
    await serve.stop();
    await fuse.close();
    await rm(dir, { recursive: true, force: true });
  });
  assertCleanExit(await serve.stop({ timeoutMs: stopTimeoutMs }));
});
