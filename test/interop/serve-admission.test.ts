/**
 * Write admission through the real `umirror serve` process and a real NBD client: qemu-io writes 32 MiB
 * in one NBD request (qemu's client sends up to the server's 32 MiB block-size maximum at once) over
 * 4 KiB regions, 8192 pieces. Before admission was bounded per span, the request filled the write queue
 * part way and waited for a worker pass nothing had asked for: qemu-io never returned. Write-zeroes and
 * discard of the whole device (no payload, so no 32 MiB bound) follow. The legs must end identical.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { requireTools, run } from '../helpers/nbd-tools.js';
import { assertCleanExit, startServe } from '../helpers/serve-process.js';

const MiB = 1024 * 1024;

test('umirror serve completes a 32 MiB qemu-io write over 4 KiB regions (core 2 8 nosync)', { timeout: 240_000 }, async (t) => {
  if (!requireTools(t, 'qemu-io', 'cmp')) return;
  const dir = await mkdtemp(join(tmpdir(), 'umirror-admission-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const legs = [join(dir, 'a.img'), join(dir, 'b.img')];
  for (const leg of legs) {
    await writeFile(leg, '');
    await truncate(leg, 64 * MiB);
  }
  const table = `0 ${(64 * MiB) / 512} mirror core 2 8 nosync 2 ${legs[0]} 0 ${legs[1]} 0`;
  const serve = await startServe(['--table', table, '--nbd', `unix:${join(dir, 'nbd.sock')}`, '--quiet']);
  t.after(() => serve.stop());
  const commands = [
    'write -P 0x5a 0 32M',
    'read -P 0x5a 0 32M',
    'write -P 0xa5 3584 32M',
    'read -P 0xa5 3584 32M',
    'write -z 0 64M',
    'read -P 0 0 64M',
    'write -P 0x33 32M 32M',
    'discard 0 64M',
    'flush',
  ];
  // A hang is killed after the timeout and fails the test (code != 0) rather than the run.
  const result = await run('qemu-io', ['-f', 'raw', serve.uri, ...commands.flatMap((c) => ['-c', c])], { timeoutMs: 120_000 });
  assert.equal(result.code, 0, `qemu-io: ${result.stdout}\n${result.stderr}\n${serve.stderr()}`);
  assert.doesNotMatch(result.stdout + result.stderr, /Pattern verification failed|error/i);
  assertCleanExit(await serve.stop(), /^device suspended; a core log is not kept/m);
  const same = await run('cmp', legs);
  assert.equal(same.code, 0, `the legs differ: ${same.stdout}`);
});
