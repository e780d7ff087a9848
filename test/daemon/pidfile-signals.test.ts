/**
 * `umirror daemon --pidfile PATH` and SIGHUP (issue 14). The pidfile appears once the daemon answers and
 * holds its pid, goes on a clean exit, refuses a second daemon while it names a running umirror (one
 * line, exit 1) and is replaced when stale (its process gone, or its pid reused by another program); a
 * file that is not a pidfile is left alone. A closed terminal (SIGHUP) suspends like SIGTERM: exit 0,
 * not death by signal 129. Real daemon processes and the real `umirror` command.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runDaemonToExit, startDaemon, until } from '../helpers/daemon-process.js';

/** The pid of a process that has exited (and was reaped): a stale pidfile's content. */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', ''], { stdio: 'ignore' });
  const pid = child.pid;
  assert.ok(pid !== undefined);
  await new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return pid;
}

test('daemon --pidfile: written with the pid once ready, removed after SIGTERM', async (t) => {
  await runInTempDaemon(t, async ({ pidfile, start }) => {
    const d = await start();
    assert.equal(await readFile(pidfile, 'utf8'), `${d.process.pid}\n`);
    assert.equal(d.logs().find((line) => line.msg === 'umirror daemon ready')?.['pidfile'], pidfile);
    assert.equal(await d.stop(), 0);
    assert.equal(existsSync(pidfile), false, 'a clean exit removes the pidfile');
  });
});

test('daemon --pidfile naming a running daemon: the second one says so in one line and exits 1', async (t) => {
  await runInTempDaemon(t, async ({ pidfile, start, dir }) => {
    const first = await start();
    const second = await runDaemonToExit(['--socket', join(dir, 'other.sock'), '--pidfile', pidfile]);
    assert.equal(second.running, false);
    assert.equal(second.code, 1);
    assert.equal(second.stderr, `umirror daemon: pidfile ${pidfile} names a running umirror (pid ${first.process.pid}); stop it first\n`);
    assert.equal(existsSync(join(dir, 'other.sock')), false, 'nothing was bound');
    assert.equal(await readFile(pidfile, 'utf8'), `${first.process.pid}\n`, 'the pidfile still names the first daemon');
    assert.equal((await first.cli(['ls'])).code, 0, 'the first daemon still answers');
    assert.equal(await first.stop(), 0);
  });
});

test('daemon --pidfile replaces a stale pidfile: its process gone, or its pid now another program', async (t) => {
  for (const stale of [await deadPid(), process.pid]) {
    await runInTempDaemon(t, async ({ pidfile, start }) => {
      await writeFile(pidfile, `${stale}\n`);
      const d = await start();
      assert.equal(await readFile(pidfile, 'utf8'), `${d.process.pid}\n`);
      assert.equal(await d.stop(), 0);
      assert.equal(existsSync(pidfile), false);
    });
  }
});

test('daemon --pidfile refuses to replace a file that is not a pidfile, and leaves it alone', async (t) => {
  await runInTempDaemon(t, async ({ pidfile, dir }) => {
    await writeFile(pidfile, 'important notes\n');
    const result = await runDaemonToExit(['--socket', join(dir, 'ctl.sock'), '--pidfile', pidfile]);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /^umirror daemon: --pidfile .* exists and is not a pidfile \(one process id\); not replacing it\n$/);
    assert.equal(await readFile(pidfile, 'utf8'), 'important notes\n');
  });
});

test('daemon: SIGHUP (a closed terminal) suspends every device and exits 0, like SIGTERM', async (t) => {
  await runInTempDaemon(t, async ({ pidfile, start }) => {
    const d = await start();
    assert.equal((await d.cli(['create', 'z', '--table', '0 2048 zero'])).code, 0);
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
      d.process.once('exit', (code, signal) => resolve({ code, signal })),
    );
    d.process.kill('SIGHUP');
    assert.deepEqual(await exited, { code: 0, signal: null }, 'not killed by the signal (exit 129)');
    const logs = d.logs();
    assert.ok(logs.some((line) => line.msg === 'stopping: suspending every device' && line['signal'] === 'SIGHUP'));
    assert.ok(logs.some((line) => line.msg === 'device suspended and closed' && line.device === 'z'));
    assert.ok(logs.some((line) => line.msg === 'umirror daemon stopped; every device suspended'));
    assert.equal(existsSync(pidfile), false);
  });
});

/** Runs `body` with a temp dir holding the pidfile, and a starter for a daemon using it. */
async function runInTempDaemon(
  t: { after: (fn: () => Promise<unknown>) => void },
  body: (options: { dir: string; pidfile: string; start: () => ReturnType<typeof startDaemon> }) => Promise<void>,
): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'umirror-pidfile-'));
  const pidfile = join(dir, 'umirror.pid');
  const started: Awaited<ReturnType<typeof startDaemon>>[] = [];
  t.after(async () => {
    for (const d of started) await d.dispose();
    await rm(dir, { recursive: true, force: true });
  });
  await body({
    dir,
    pidfile,
    start: async () => {
      const d = await startDaemon({ args: ['--pidfile', pidfile] });
      started.push(d);
      await until('the pidfile written', () => existsSync(pidfile));
      return d;
    },
  });
}
