/**
 * The daemon's count of NBD clients follows reality (issue 9, item 9). A client that takes the greeting
 * and waits is not an open client (`info` does not count it, `remove` is not refused for it) and is
 * dropped after --handshake-limit; a client killed while the mirror holds its write stops counting as
 * soon as its socket closes, so `remove` succeeds (before the fix it said "1 NBD clients" until the
 * held write was released, and the remove that followed waited for that write forever). Real `umirror
 * daemon` processes, the real `umirror` command, qemu-io and a raw NBD client.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { RawNbdClient } from '../helpers/nbd-raw-client.js';
import { cliOk, startDaemon, until } from '../helpers/daemon-process.js';
import { sparseImage } from '../helpers/temp-files.js';
import { requireTools } from '../helpers/tools.js';

const sizeBytes = 4 * 1024 * 1024;

const openCount = (info: string): number => Number(/^Open count:\s+(\d+)$/m.exec(info)?.[1] ?? NaN);

test('umirror daemon --handshake-limit: an unfinished handshake is not an open client and is dropped', async (t) => {
  const daemon = await startDaemon({ args: ['--handshake-limit', '1'] });
  t.after(() => daemon.dispose());
  const run = cliOk(daemon);
  const path = join(daemon.dir, 'z.sock');
  await run(['create', 'z', '--nbd', `unix:${path}`, '--table', '0 2048 zero']);
  const waiting = await RawNbdClient.connect({ path });
  await waiting.start();
  assert.equal(openCount(await run(['info', 'z'])), 0, 'a client in the handshake is not counted');
  assert.equal(await waiting.closedByServer(15_000), true, 'the unfinished handshake was dropped');
  assert.ok(daemon.logs().some((line) => /handshake not finished within 1000 ms/.test(line.msg)), 'the drop is logged');

  // A second one mid-handshake does not keep `remove` from succeeding.
  const another = await RawNbdClient.connect({ path });
  await another.start();
  await run(['remove', 'z']);
  assert.equal(await another.closedByServer(5000), true);
});

test('umirror remove succeeds once a client whose write the mirror holds was killed', async (t) => {
  if (!requireTools(t, ['qemu-io'])) return;
  const daemon = await startDaemon();
  t.after(() => daemon.dispose());
  const run = cliOk(daemon);
  const good = await sparseImage(daemon.dir, 'good.img', sizeBytes);
  // A leg that fails every write: another device of the daemon with an error table.
  await run(['create', 'bad', '--table', `0 ${sizeBytes / 512} error`]);
  const path = join(daemon.dir, 'm.sock');
  const uri = (await run(['create', 'm', '--nbd', `unix:${path}`, '--table', `0 ${sizeBytes / 512} mirror core 2 1024 nosync 2 ${good} 0 bad 0 1 handle_errors`])).trim();
  const writer = spawn('qemu-io', ['-f', 'raw', '-c', 'write -P 0x5a 0 4096', uri], { stdio: 'ignore' });
  const exited = new Promise<void>((resolve) => writer.once('exit', () => resolve()));
  t.after(() => writer.kill('SIGKILL'));
  await until('the held write (status AD)', async () => / AD 1 core\n$/.test(await run(['status', 'm'])));
  assert.equal(openCount(await run(['info', 'm'])), 1, 'the writer is an open client');
  writer.kill('SIGKILL');
  await exited;
  await until('the killed client no longer counted', async () => openCount(await run(['info', 'm'])) === 0, 10_000);
  const removed = await daemon.cli(['remove', 'm'], { timeoutMs: 20_000 });
  assert.equal(removed.code, 0, removed.stderr);
  assert.equal((await run(['ls'])).split('\n')[0]?.split('\t')[0], 'bad');
  assert.equal(await daemon.stop(), 0);
});
