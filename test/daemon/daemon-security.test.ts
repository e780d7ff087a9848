/**
 * The daemon's share of the security options: `create --nbd ... --tls-psk FILE` serves the device over
 * TLS only (nbdinfo with the key works, in plaintext it sees nothing), a key file others may read fails
 * the verb with one line and leaves no device; the control socket is 0600, in a 0700 folder of ours when
 * the path is the per-user default (a looser folder is tightened unless --socket-group, a symbolic link
 * is refused), and `--socket-mode`/`--socket-group` share it.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmod, chown, lstat, mkdir, mkdtemp, rm, stat, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { runDaemonToExit, startDaemon, umirrorBin, until } from '../helpers/daemon-process.js';
import { requireTools, run, runOk } from '../helpers/nbd-tools.js';
import { pskKey, writePskFile } from '../helpers/tls-files.js';

test('umirror create --nbd with --tls-psk serves the device over TLS only; a readable key fails the verb and leaves no device', async (t) => {
  if (!requireTools(t, 'nbdinfo')) return;
  const daemon = await startDaemon();
  t.after(() => daemon.dispose());
  assert.equal(((await stat(daemon.socketPath)).mode & 0o777).toString(8), '600');
  const psk = await writePskFile({ path: join(daemon.dir, 'keys.psk'), entries: [{ identity: 'qemu', key: pskKey() }] });
  const socket = join(daemon.dir, 'vol.sock');
  const created = await daemon.cli(['create', 'vol', '--table', '0 16384 zero', '--nbd', `unix:${socket}`, '--tls-psk', psk, '--max-connections', '2']);
  assert.equal(created.code, 0, created.stderr);
  assert.equal(created.stdout.trim(), `nbds+unix:///vol?socket=${socket}`);
  assert.equal(((await stat(socket)).mode & 0o777).toString(8), '600');
  const size = await runOk('nbdinfo', ['--size', `nbds+unix://qemu@/vol?socket=${socket}&tls-psk-file=${psk}`]);
  assert.equal(size.trim(), String(16384 * 512));
  const plain = await run('nbdinfo', ['--list', `nbd+unix:///?socket=${socket}`]);
  assert.notEqual(plain.code, 0);
  assert.equal(plain.stdout.includes('vol'), false);

  const loose = await writePskFile({ path: join(daemon.dir, 'loose.psk'), entries: [{ identity: 'qemu', key: pskKey() }], mode: 0o640 });
  const refused = await daemon.cli(['create', 'other', '--table', '0 16384 zero', '--nbd', `unix:${join(daemon.dir, 'other.sock')}`, '--tls-psk', loose]);
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /Cannot serve other over NBD: refusing PSK file .*loose\.psk: it is accessible by group or others \(mode 640\); chmod 600 it/);
  const ls = await daemon.cli(['ls']);
  assert.doesNotMatch(ls.stdout, /^other/m, 'no device is left behind');
  const usage = await daemon.cli(['create', 'third', '--table', '0 16384 zero', '--nbd', '127.0.0.1:0', '--socket-mode', '0660']);
  assert.equal(usage.code, 1);
  assert.match(usage.stderr, /--socket-mode and --socket-group are for a unix: listener/);
});

/** Root's default is /run/umirror (the unit test covers it): as root, the per-user path is run as nobody. */
const nobody = 65534;
const asRoot = process.getuid?.() === 0;

/** Runs `umirror daemon ARGS` on the per-user default path until it is ready (then SIGTERM) or exits. */
async function runDefaultDaemon(env: NodeJS.ProcessEnv, args: readonly string[], whenReady: () => Promise<void>): Promise<{ code: number | null; stderr: string }> {
  const child = spawn(process.execPath, [umirrorBin, 'daemon', ...args], {
    env,
    stdio: ['ignore', 'ignore', 'pipe'],
    ...(asRoot && { uid: nobody, gid: nobody }),
  });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  let done = false;
  const exited = new Promise<number | null>((resolve) =>
    child.once('close', (code) => {
      done = true;
      resolve(code);
    }),
  );
  try {
    await until('the daemon is ready or gone', () => done || stderr.includes('umirror daemon ready'));
    if (!done) await whenReady();
  } finally {
    child.kill('SIGTERM');
  }
  return { code: await exited, stderr };
}

test('umirror daemon on the per-user default path makes its folder 0700 and its socket 0600 (not with --socket-group); a symbolic link as folder is refused', async (t) => {
  const runtime = await mkdtemp(join(tmpdir(), 'umirror-runtime-'));
  t.after(() => rm(runtime, { recursive: true, force: true }));
  const folder = join(runtime, 'umirror');
  await mkdir(folder, { mode: 0o755 });
  await chmod(folder, 0o755);
  if (asRoot) {
    await chown(runtime, nobody, nobody);
    await chown(folder, nobody, nobody);
  }
  const env: NodeJS.ProcessEnv = { ...process.env, XDG_RUNTIME_DIR: runtime };
  delete env['UMIRROR_SOCKET'];
  const first = await runDefaultDaemon(env, [], async () => {
    assert.equal(((await stat(folder)).mode & 0o777).toString(8), '700', 'the folder was tightened');
    assert.equal(((await stat(join(folder, 'control.sock'))).mode & 0o777).toString(8), '600');
  });
  assert.match(first.stderr, /umirror daemon ready/);

  await chmod(folder, 0o750);
  const group = String(asRoot ? nobody : (process.getgid?.() ?? 0));
  const shared = await runDefaultDaemon(env, ['--socket-group', group], async () => {
    assert.equal(((await stat(folder)).mode & 0o777).toString(8), '750', 'the group may pass: the folder is left as is');
    assert.equal(((await stat(join(folder, 'control.sock'))).mode & 0o777).toString(8), '660');
  });
  assert.match(shared.stderr, /umirror daemon ready/);

  await rm(folder, { recursive: true, force: true });
  const elsewhere = await mkdtemp(join(tmpdir(), 'umirror-elsewhere-'));
  t.after(() => rm(elsewhere, { recursive: true, force: true }));
  await symlink(elsewhere, folder);
  const refused = await runDefaultDaemon(env, [], () => Promise.reject(new Error('the daemon started on a symbolic link')));
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /EACCES: .*umirror is not a folder \(a symbolic link\?\)/);
  assert.equal((await lstat(folder)).isSymbolicLink(), true, 'the link is left alone');
});

test('umirror daemon --socket-mode 0660 --socket-group shares the control socket', async (t) => {
  const gid = String(process.getgid?.() ?? 0);
  const daemon = await startDaemon({ args: ['--socket-mode', '0660', '--socket-group', gid] });
  t.after(() => daemon.dispose());
  const info = await stat(daemon.socketPath);
  assert.equal((info.mode & 0o777).toString(8), '660');
  assert.equal(String(info.gid), gid);
  const bad = await runDaemonToExit(['--socket', join(daemon.dir, 'x.sock'), '--socket-group', 'no-such-group-umirror']);
  assert.equal(bad.code, 1, 'a bad option value (docs/cli.md, "Exit status and bad input")');
  assert.equal(bad.stderr, 'umirror daemon: --socket-group: no group "no-such-group-umirror" on this system\n');
});
