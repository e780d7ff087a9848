/**
 * Listener failures of the daemon (issue 9, items 8 and 11). At start: a busy --metrics port, a control
 * socket where another daemon answers, and a control socket path that cannot be created each end the
 * daemon with one line on stderr and a non-zero exit, before it accepts anything (no ready line, no
 * socket file left behind); a regular file at the socket path is never deleted. For `create --nbd`: a busy port fails the verb cleanly, before the device is
 * resumed (its disk log stays untouched) and with no device left behind; a socket file left by a killed
 * process is replaced; a path that is not a socket is never deleted. Real `umirror daemon` processes and
 * the real `umirror` command.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { assertOneLine, busyPort } from '../helpers/listener-checks.js';
import { runDaemonToExit, startDaemon, type Daemon } from '../helpers/daemon-process.js';
import { sparseImage, tempDir } from '../helpers/temp-files.js';

const sizeBytes = 4 * 1024 * 1024;

/** A socket file nobody listens on: bound by a process that was then killed with SIGKILL. */
async function staleSocket(path: string): Promise<void> {
  const script = `require('node:net').createServer().listen(${JSON.stringify(path)}, () => console.log('up'))`;
  const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'ignore'] });
  await new Promise<void>((resolve) => child.stdout.once('data', () => resolve()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGKILL');
  await exited;
  assert.ok(existsSync(path), 'the killed process left its socket file');
}

test('umirror daemon --metrics on a busy port: one line, non-zero exit, no ready line, no socket left', async (t) => {
  const dir = await tempDir(t, 'umirror-listen-');
  const port = await busyPort(t);
  const socket = join(dir, 'ctl.sock');
  const result = await runDaemonToExit(['--socket', socket, '--metrics', `127.0.0.1:${port}`]);
  assert.equal(result.running, false, `the daemon kept running:\n${result.stderr}`);
  assert.notEqual(result.code, 0);
  assertOneLine(result.stderr, new RegExp(`metrics.*127\\.0\\.0\\.1:${port}.*EADDRINUSE`));
  assert.doesNotMatch(result.stderr, /umirror daemon ready/);
  assert.equal(existsSync(socket), false, 'the control socket was removed');
});

test('umirror daemon --socket where another daemon answers, that cannot be created, or that is a file: one line, non-zero exit', async (t) => {
  const first: Daemon = await startDaemon();
  t.after(() => first.dispose());
  const busy = await runDaemonToExit(['--socket', first.socketPath]);
  assert.equal(busy.running, false, busy.stderr);
  assert.notEqual(busy.code, 0);
  assertOneLine(busy.stderr, /control socket.*EADDRINUSE/);
  assert.equal((await first.cli(['ls'])).code, 0, 'the first daemon still answers');

  const dir = await tempDir(t, 'umirror-listen-');
  const file = join(dir, 'not-a-dir');
  await writeFile(file, 'x');
  const unwritable = await runDaemonToExit(['--socket', join(file, 'sub', 'ctl.sock')]);
  assert.equal(unwritable.running, false, unwritable.stderr);
  assert.notEqual(unwritable.code, 0);
  assertOneLine(unwritable.stderr, /control socket.*ENOTDIR/);

  // A regular file at the socket path is never taken for a stale socket (connecting to it is refused
  // just like connecting to a dead socket; the old check unlinked it).
  const precious = await sparseImage(dir, 'precious.img', 4096);
  const notSocket = await runDaemonToExit(['--socket', precious]);
  assert.equal(notSocket.running, false, notSocket.stderr);
  assert.notEqual(notSocket.code, 0);
  assertOneLine(notSocket.stderr, /control socket.*ENOTSOCK/);
  assert.equal((await readFile(precious)).length, 4096, 'the file is still there');
});

test('umirror create --nbd on a busy port fails before the device resumes and leaves no device behind', async (t) => {
  const daemon = await startDaemon();
  t.after(() => daemon.dispose());
  const port = await busyPort(t);
  const [a, b, log] = [await sparseImage(daemon.dir, 'a.img', sizeBytes), await sparseImage(daemon.dir, 'b.img', sizeBytes), await sparseImage(daemon.dir, 'log.img', 4096)];
  const table = `0 ${sizeBytes / 512} mirror disk 2 ${log} 1024 2 ${a} 0 ${b} 0`;
  const refused = await daemon.cli(['create', 'm', '--nbd', `127.0.0.1:${port}`, '--table', table]);
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /Device or resource busy/);
  assert.match(refused.stderr, /Cannot serve m over NBD.*EADDRINUSE/);
  assert.equal((await daemon.cli(['ls'])).stdout, 'No devices found\n');
  assert.ok((await readFile(log)).every((byte) => byte === 0), 'the disk log was never written: the device never resumed');
  assert.equal(daemon.logs().some((line) => /sync complete|device created/.test(line.msg)), false);
  const created = await daemon.cli(['create', 'm', '--nbd', `unix:${join(daemon.dir, 'm.sock')}`, '--table', table]);
  assert.equal(created.code, 0, `the name is free again: ${created.stderr}`);
});

test('umirror create --nbd unix:P replaces a socket file nobody answers on, and never deletes a file that is not a socket', async (t) => {
  const daemon = await startDaemon();
  t.after(() => daemon.dispose());
  const stale = join(daemon.dir, 'stale.sock');
  await staleSocket(stale);
  const created = await daemon.cli(['create', 'z', '--nbd', `unix:${stale}`, '--table', '0 2048 zero']);
  assert.equal(created.code, 0, created.stderr);
  assert.equal(created.stdout, `nbd+unix:///z?socket=${stale}\n`);

  const live = await daemon.cli(['create', 'y', '--nbd', `unix:${stale}`, '--table', '0 2048 zero']);
  assert.equal(live.code, 1, 'a socket where a server answers is busy');
  assert.match(live.stderr, /Device or resource busy/);

  const plain = join(daemon.dir, 'plain.txt');
  await writeFile(plain, 'keep me');
  const notSocket = await daemon.cli(['create', 'x', '--nbd', `unix:${plain}`, '--table', '0 2048 zero']);
  assert.equal(notSocket.code, 1);
  assert.equal(await readFile(plain, 'utf8'), 'keep me');
  assert.equal((await daemon.cli(['ls'])).stdout.split('\n').filter((l) => l !== '').length, 1, 'only z exists');
});
