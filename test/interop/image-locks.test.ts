/**
 * Image locks between real processes (issue 9 item 10): a second `umirror serve` on the same data folder
 * is refused with one line and exit status 1 before it resumes or serves anything, while the first serves
 * on unharmed; a serve killed with SIGKILL leaves no stale lock; and the lock is qemu's: qemu-io cannot
 * open a served image for writing (its own "Failed to get "write" lock" message) but reads it with -U,
 * and umirror refuses an image a running qemu-nbd holds.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { requireTools, run, runOk } from '../helpers/nbd-tools.js';
import { assertCleanExit, runServeToExit, startServe } from '../helpers/serve-process.js';
import { tempDir } from '../helpers/temp-files.js';

const MiB = 1024 * 1024;

const inUseLine = (path: string): RegExp => new RegExp(`^umirror: ${path.replaceAll(/[.*+?^${}()|[\]\\]/g, '\\$&')} is in use by another process \\(lock held\\)$`);

test('umirror serve refuses images another serve holds, in one line; the first serves on and its legs stay identical', async (t) => {
  if (!requireTools(t, 'qemu-io')) return;
  const dir = await tempDir(t, 'umirror-lock-serve-');
  const first = await startServe(['--data', dir, '--size', '16M', '--nbd', `unix:${join(dir, 'a.sock')}`, '--quiet']);
  t.after(() => first.stop().then(() => undefined));

  const second = await runServeToExit(['--data', dir, '--nbd', `unix:${join(dir, 'b.sock')}`, '--quiet']);
  assert.equal(second.code, 1, second.stderr);
  const lines = second.stderr.trimEnd().split('\n');
  assert.equal(lines.length, 1, `one line on stderr:\n${second.stderr}`);
  // The disk log is opened first (the kernel's constructor order), so it is the image named.
  assert.match(lines[0] ?? '', inUseLine(join(dir, 'log.img')));
  assert.doesNotMatch(second.stdout, /serving|nbd uri/, 'nothing was served');
  assert.ok(!existsSync(join(dir, 'b.sock')), 'no listener was opened');

  await runOk('qemu-io', ['-f', 'raw', '-c', 'write -P 0x5a 1000 70000', first.uri]);
  const read = await runOk('qemu-io', ['-f', 'raw', '-c', 'read -P 0x5a 1000 70000', first.uri]);
  assert.match(read, /read 70000\/70000 bytes/);
  assertCleanExit(await first.stop());
  const leg0 = await readFile(join(dir, 'leg0.img'));
  assert.ok(leg0.equals(await readFile(join(dir, 'leg1.img'))), 'the legs are identical');
  assert.ok(leg0.subarray(1000, 71_000).equals(Buffer.alloc(70_000, 0x5a)));
});

test('umirror serve starts on images whose previous serve was killed with SIGKILL (no stale lock)', async (t) => {
  const dir = await tempDir(t, 'umirror-lock-kill-');
  // A fresh socket path each time: a killed serve leaves its socket file behind (a separate matter).
  const args = (socket: string): string[] => ['--data', dir, '--size', '16M', '--nbd', `unix:${join(dir, socket)}`, '--quiet'];
  const killed = await startServe(args('killed.sock'));
  t.after(() => killed.stop().then(() => undefined));
  process.kill(killed.pid, 'SIGKILL');
  const exit = await killed.stop();
  assert.equal(exit.signal, 'SIGKILL');
  const next = await startServe(args('next.sock'));
  t.after(() => next.stop().then(() => undefined));
  assertCleanExit(await next.stop());
});

test('qemu sees umirror\'s lock: qemu-io cannot open a served image for writing, but reads it with -U', async (t) => {
  if (!requireTools(t, 'qemu-io', 'qemu-img')) return;
  const dir = await tempDir(t, 'umirror-lock-qemu-');
  const serve = await startServe(['--data', dir, '--size', '16M', '--nbd', `unix:${join(dir, 'nbd.sock')}`, '--quiet']);
  t.after(() => serve.stop().then(() => undefined));
  for (const image of ['leg0.img', 'leg1.img', 'log.img']) {
    const path = join(dir, image);
    const refused = await run('qemu-io', ['-f', 'raw', '-c', 'read 0 512', path]);
    assert.notEqual(refused.code, 0, `qemu-io opened ${image} for writing while it is served`);
    assert.match(refused.stderr, /Failed to get "write" lock/);
    assert.match(refused.stderr, /Is another process using the image/);
    const shared = await run('qemu-io', ['-U', '-r', '-f', 'raw', '-c', 'read 0 512', path]);
    assert.equal(shared.code, 0, shared.stderr);
    await runOk('qemu-img', ['info', '-U', '-f', 'raw', path]);
  }
  assertCleanExit(await serve.stop());
});

test('umirror serve refuses an image a running qemu-nbd holds', async (t) => {
  if (!requireTools(t, 'qemu-nbd')) return;
  const dir = await tempDir(t, 'umirror-lock-qemu-nbd-');
  const image = join(dir, 'disk.img');
  await writeFile(image, '');
  await truncate(image, 4 * MiB);
  const socket = join(dir, 'qemu-nbd.sock');
  const qemuNbd = spawn('qemu-nbd', ['-f', 'raw', '-k', socket, image], { stdio: 'ignore' });
  const qemuExited = new Promise<void>((resolve) => qemuNbd.once('exit', () => resolve()));
  t.after(async () => {
    if (qemuNbd.exitCode === null) qemuNbd.kill('SIGTERM');
    await qemuExited;
  });
  for (let i = 0; i < 400 && !existsSync(socket); i++) await sleep(25);
  assert.ok(existsSync(socket), 'qemu-nbd is serving');

  const table = `0 ${(4 * MiB) / 512} linear ${image} 0`;
  const refused = await runServeToExit(['--table', table, '--nbd', `unix:${join(dir, 'u.sock')}`, '--quiet']);
  assert.equal(refused.code, 1, refused.stderr);
  assert.match(refused.stderr.trimEnd(), inUseLine(image));

  qemuNbd.kill('SIGTERM');
  await qemuExited;
  const serve = await startServe(['--table', table, '--nbd', `unix:${join(dir, 'u.sock')}`, '--quiet']);
  t.after(() => serve.stop().then(() => undefined));
  assertCleanExit(await serve.stop(), /^device suspended; no dirty log$/m);
});
