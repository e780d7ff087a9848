/**
 * `umirror serve` as operators run it (issue 14): --readonly exports (qemu-nbd -r), --pidfile, and a
 * closed terminal. Closing the terminal serve runs in (a real pseudo-terminal, python3's pty module, whose
 * master is closed) sends SIGHUP: serve suspends the device as on Ctrl-C, so the disk log on disk is
 * clean and the pidfile is removed; before, SIGHUP killed it (exit 129) with the written regions left
 * dirty for the next start to resync. Real `umirror serve` processes, python3 and qemu-io.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeDiskLogHeader, diskLogBitsOffsetBytes, diskLogMagic } from '../../src/dirty-log/disk-log-format.js';
import { requireTools, run, runOk } from '../helpers/nbd-tools.js';
import { until } from '../helpers/daemon-process.js';
import { assertCleanExit, startServe, umirrorMain } from '../helpers/serve-process.js';

async function tempDir(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'umirror-serve-operate-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** Regions the disk log on disk holds dirty (clean bit 0). */
async function dirtyRegions(logPath: string): Promise<number> {
  const bytes = await readFile(logPath);
  const header = decodeDiskLogHeader(bytes);
  assert.equal(header.magic, diskLogMagic);
  let dirty = 0;
  for (let region = 0; region < header.nrRegions; region++) {
    const byte = bytes[diskLogBitsOffsetBytes + (region >>> 3)] ?? 0;
    if ((byte & (1 << (region & 7))) === 0) dirty++;
  }
  return dirty;
}

/**
 * Runs a command on a new pseudo-terminal as its session leader (a login shell's place), copying its
 * output to `transcript`; once `trigger` exists it closes the terminal (the kernel hangs it up: SIGHUP)
 * and prints the command's exit status (-N: killed by signal N). Node has no pty of its own: python3's.
 */
const onTerminal = `
import os, pty, select, sys
trigger, transcript = sys.argv[1], sys.argv[2]
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[3], sys.argv[3:])
with open(transcript, 'wb', buffering=0) as out:
    while not os.path.exists(trigger):
        if select.select([fd], [], [], 0.05)[0]:
            try:
                data = os.read(fd, 65536)
            except OSError:
                break
            if not data:
                break
            out.write(data)
os.close(fd)
print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), flush=True)
`;

test('serve: closing its terminal (SIGHUP) suspends the device: exit 0, the disk log clean, the pidfile gone', async (t) => {
  if (!requireTools(t, 'python3', 'qemu-io')) return;
  const dir = await tempDir(t);
  const data = join(dir, 'data');
  const pidfile = join(dir, 'serve.pid');
  const socket = join(dir, 'nbd.sock');
  const hangup = join(dir, 'hangup');
  const transcript = join(dir, 'terminal.txt');
  // Written regions stay dirty on disk for 10 minutes (--lazy-clean), unless a clean suspend clears them.
  const serve = [process.execPath, umirrorMain, 'serve', '--data', data, '--size', '16M', '--nbd', `unix:${socket}`, '--lazy-clean', '600000', '--pidfile', pidfile];
  const terminal = spawn('python3', ['-c', onTerminal, hangup, transcript, ...serve], { stdio: ['ignore', 'pipe', 'inherit'] });
  let status = '';
  terminal.stdout.setEncoding('utf8').on('data', (chunk: string) => (status += chunk));
  const closed = new Promise<void>((resolve) => terminal.once('close', () => resolve()));
  t.after(async () => {
    if (terminal.exitCode === null) terminal.kill('SIGKILL'); // Its terminal closes with it.
    await closed;
  });
  await until('serve ready (its pidfile)', () => existsSync(pidfile), 30_000);
  assert.match(await readFile(transcript, 'utf8'), /^nbd uri: nbd\+unix:\/\/\/umirror\?socket=/m, 'serve runs on the terminal');
  await runOk('qemu-io', ['-f', 'raw', '-c', 'write -P 0x5a 0 1M', '-c', 'write -P 0x5b 8M 64k', `nbd+unix:///umirror?socket=${socket}`]);
  assert.ok((await dirtyRegions(join(data, 'log.img'))) >= 3, 'the written regions are dirty on disk while serving');

  await writeFile(hangup, ''); // The terminal goes away: the kernel hangs it up and sends serve SIGHUP.
  await closed;
  assert.equal(status.trim(), '0', `serve's exit status (-1: killed by SIGHUP; -6: aborted on the way out)`);
  assert.equal(existsSync(pidfile), false, 'serve went through its clean stop (it removes the pidfile last)');
  assert.equal(await dirtyRegions(join(data, 'log.img')), 0, 'the disk log is clean: the next start resyncs nothing');
  await runOk('qemu-io', ['-f', 'raw', '-r', '-U', '-c', 'read -P 0x5a 0 1M', join(data, 'leg1.img')]);
});

test('serve --readonly: qemu-io cannot write, reads work, and the stop is clean', async (t) => {
  if (!requireTools(t, 'qemu-io')) return;
  const dir = await tempDir(t);
  const socket = join(dir, 'nbd.sock');
  const serve = await startServe(['--data', join(dir, 'data'), '--size', '16M', '--nbd', `unix:${socket}`, '--readonly', '--quiet']);
  t.after(() => serve.stop());
  const write = await run('qemu-io', ['-f', 'raw', '-c', 'write -P 0x11 0 4k', serve.uri]);
  assert.notEqual(write.code, 0, 'qemu-io wrote to a read-only export');
  assert.match(write.stderr, /Permission denied|read-only/);
  const info = await runOk('qemu-io', ['-f', 'raw', '-r', '-c', 'read -P 0 0 64k', serve.uri]);
  assert.match(info, /read 65536\/65536 bytes/);
  assertCleanExit(await serve.stop());
});

test('serve --pidfile: holds the pid while serving, refuses a second serve (one line, nothing created), goes at the stop', async (t) => {
  const dir = await tempDir(t);
  const pidfile = join(dir, 'serve.pid');
  const first = await startServe(['--data', join(dir, 'a'), '--size', '16M', '--nbd', `unix:${join(dir, 'a.sock')}`, '--pidfile', pidfile, '--quiet']);
  t.after(() => first.stop());
  await until('the pidfile written', () => existsSync(pidfile));
  assert.equal(await readFile(pidfile, 'utf8'), `${first.pid}\n`);

  const second = await run(process.execPath, [umirrorMain, 'serve', '--data', join(dir, 'b'), '--size', '16M', '--nbd', `unix:${join(dir, 'b.sock')}`, '--pidfile', pidfile]);
  assert.equal(second.code, 1);
  assert.equal(second.stderr, `umirror serve: pidfile ${pidfile} names a running umirror (pid ${first.pid}); stop it first\n`);
  assert.equal(existsSync(join(dir, 'b')), false, 'no image was created');
  assert.equal(existsSync(join(dir, 'b.sock')), false, 'nothing was bound');

  assertCleanExit(await first.stop());
  assert.equal(existsSync(pidfile), false);
});
