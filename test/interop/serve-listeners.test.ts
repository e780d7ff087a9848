/**
 * `umirror serve` and its NBD listener (issue 9, items 8, 9 and 11). The listener is bound before the
 * device is resumed, so a busy address ends serve with one line and a non-zero exit and nothing
 * half-started (no images created, the disk log untouched); a socket file left by a serve killed with
 * SIGKILL is replaced on the next start; a path that is not a socket is never deleted. A client that
 * takes the greeting and never finishes the handshake is dropped after --handshake-limit. Real `umirror
 * serve` processes, qemu-io and a raw NBD client.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { open, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { assertOneLine, busyPort } from '../helpers/listener-checks.js';
import { RawNbdClient } from '../helpers/nbd-raw-client.js';
import { requireTools, run, runOk } from '../helpers/nbd-tools.js';
import { assertCleanExit, startServe, umirrorMain } from '../helpers/serve-process.js';
import { tempDir } from '../helpers/temp-files.js';

const sizeBytes = 16 * 1024 * 1024;

/** Runs `umirror serve ARGS` that is expected to exit on its own. */
function serveToExit(args: readonly string[]): ReturnType<typeof run> {
  return run(process.execPath, [umirrorMain, 'serve', '--quiet', ...args], { timeoutMs: 20_000 });
}

test('umirror serve after kill -9 replaces its stale unix socket and serves again', async (t) => {
  if (!requireTools(t, 'qemu-io')) return;
  const dir = await tempDir(t, 'umirror-serve-listen-');
  const args = ['--data', join(dir, 'data'), '--size', '16M', '--quiet', '--nbd', `unix:${join(dir, 'nbd.sock')}`];
  const first = await startServe(args);
  t.after(() => first.stop().then(() => undefined));
  await runOk('qemu-io', ['-f', 'raw', '-c', 'write -P 0x21 0 64k', first.uri]);
  process.kill(first.pid, 'SIGKILL');
  assert.equal((await first.stop()).signal, 'SIGKILL');
  assert.ok(existsSync(join(dir, 'nbd.sock')), 'the killed serve left its socket file');

  const second = await startServe(args);
  t.after(() => second.stop().then(() => undefined));
  const read = await runOk('qemu-io', ['-f', 'raw', '-c', 'read -P 0x21 0 64k', second.uri]);
  assert.match(read, /read 65536\/65536 bytes at offset 0/);
  const exit = await second.stop();
  assertCleanExit(exit);
  assert.doesNotMatch(exit.stderr, /EADDRINUSE|\n\s+at /);
});

test('umirror serve on a busy address: one line, non-zero exit, no images created, disk log untouched', async (t) => {
  const dir = await tempDir(t, 'umirror-serve-listen-');
  const port = await busyPort(t);
  const data = join(dir, 'data');
  const busyTcp = await serveToExit(['--data', data, '--size', '16M', '--nbd', `127.0.0.1:${port}`]);
  assert.notEqual(busyTcp.code, 0);
  assertOneLine(busyTcp.stderr, new RegExp(`^umirror serve: cannot listen on 127\\.0\\.0\\.1:${port}: .*EADDRINUSE`));
  assert.equal(busyTcp.stdout, '', 'nothing was created or served');
  assert.equal(existsSync(data), false, 'no images were created');

  // With a table: the listener fails before the device is loaded and resumed; resume would write the log.
  const log = join(dir, 'log.img');
  const legs = [join(dir, 'a.img'), join(dir, 'b.img')];
  for (const [path, bytes] of [[log, 4096], [legs[0], sizeBytes], [legs[1], sizeBytes]] as const) {
    if (path === undefined) continue;
    await writeFile(path, '');
    const handle = await open(path, 'r+');
    await handle.truncate(bytes);
    await handle.close();
  }
  const table = `0 ${sizeBytes / 512} mirror disk 2 ${log} 1024 2 ${legs[0] ?? ''} 0 ${legs[1] ?? ''} 0`;
  const withTable = await serveToExit(['--table', table, '--nbd', `127.0.0.1:${port}`]);
  assert.notEqual(withTable.code, 0);
  assertOneLine(withTable.stderr, /^umirror serve: cannot listen on .*EADDRINUSE/);
  assert.ok((await readFile(log)).every((byte) => byte === 0), 'the disk log was never written');
});

test('umirror serve on a unix path where a server answers, or that is not a socket: refused, nothing deleted', async (t) => {
  const dir = await tempDir(t, 'umirror-serve-listen-');
  const path = join(dir, 'nbd.sock');
  const first = await startServe(['--data', join(dir, 'one'), '--size', '16M', '--quiet', '--nbd', `unix:${path}`]);
  t.after(() => first.stop().then(() => undefined));
  const second = await serveToExit(['--data', join(dir, 'two'), '--size', '16M', '--nbd', `unix:${path}`]);
  assert.notEqual(second.code, 0);
  assertOneLine(second.stderr, /^umirror serve: cannot listen on unix:.*EADDRINUSE/);
  assert.ok(existsSync(path), 'the live socket is untouched');
  assertCleanExit(await first.stop());

  const plain = join(dir, 'plain.txt');
  await writeFile(plain, 'keep me');
  const notSocket = await serveToExit(['--data', join(dir, 'three'), '--size', '16M', '--nbd', `unix:${plain}`]);
  assert.notEqual(notSocket.code, 0);
  assertOneLine(notSocket.stderr, /^umirror serve: cannot listen on unix:.*not a socket/);
  assert.equal(await readFile(plain, 'utf8'), 'keep me');
  assert.deepEqual((await readdir(dir)).sort(), ['one', 'plain.txt']);
});

test('umirror serve --handshake-limit drops a client that takes the greeting and waits; a negotiated client stays', async (t) => {
  const dir = await tempDir(t, 'umirror-serve-listen-');
  const path = join(dir, 'nbd.sock');
  const serve = await startServe(['--data', join(dir, 'data'), '--size', '16M', '--quiet', '--handshake-limit', '1', '--nbd', `unix:${path}`]);
  t.after(() => serve.stop().then(() => undefined));
  const negotiated = await RawNbdClient.connect({ path });
  await negotiated.start();
  await negotiated.go();
  const idle = await RawNbdClient.connect({ path });
  await idle.start();
  assert.equal(await idle.closedByServer(15_000), true, 'the unfinished handshake was dropped');
  await sleep(1500);
  negotiated.request({ type: 0, flags: 0, cookieHi: 0, cookieLo: 7, offsetBytes: 0, lengthBytes: 512 });
  const reply = await negotiated.reply();
  assert.equal(reply.header.kind === 'simple' ? reply.header.error : -1, 0, 'the negotiated client is served past the limit');
  negotiated.destroy();
  assertCleanExit(await serve.stop());
});
