/**
 * `umirror serve`'s security options end to end, through the real process:
 *   - the README's TLS example, run line by line as pasted (only the port is swapped for a free one and
 *     0.0.0.0 for 127.0.0.1), with nbdinfo, qemu-img and nbdcopy;
 *   - key files that group or others may read, and malformed ones: one line, exit status 1, nothing bound;
 *   - Unix sockets: 0600 by default, `--socket-mode`/`--socket-group` to share one; another user (nobody,
 *     through setpriv, when we are root) is refused by the default and admitted through the group;
 *     a socket folder anyone may write (no sticky bit), or another user's, is refused.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmod, chown, mkdir, readFile, stat, symlink, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { requireTools, run } from '../helpers/nbd-tools.js';
import { runServeToExit, startServe, umirrorMain } from '../helpers/serve-process.js';
import { findTool } from '../helpers/tools.js';
import { makePki, pskKey, writePskFile } from '../helpers/tls-files.js';
import { tempDir } from '../helpers/temp-files.js';

const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));
const nobody = 65534;

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  assert.ok(address !== null && typeof address === 'object');
  return address.port;
}

test('the README TLS example works as pasted (nbdinfo, qemu-img and nbdcopy over nbds:// with a PSK)', async (t) => {
  if (!requireTools(t, 'openssl', 'nbdinfo', 'qemu-img', 'nbdcopy', 'cmp')) return;
  const readme = await readFile(join(repoRoot, 'README.md'), 'utf8');
  const block = /<!-- tls-example[^>]*-->\n```sh\n([\s\S]*?)```/.exec(readme)?.[1];
  assert.ok(block !== undefined, 'README.md has the tls-example block');
  const port = String(await freePort());
  const lines = block
    .trim()
    .split('\n')
    .map((line) => line.replaceAll('10809', port).replaceAll('0.0.0.0:', '127.0.0.1:'));
  const serveIndex = lines.findIndex((line) => line.trimEnd().endsWith('&'));
  assert.ok(serveIndex > 0, 'one line starts serve in the background');
  const cwd = await tempDir(t, 'umirror-readme-tls-');
  await symlink(join(repoRoot, 'dist'), join(cwd, 'dist'));
  const bash = (line: string): Promise<{ code: number; stdout: string; stderr: string }> =>
    new Promise((resolve) => {
      const child = spawn('bash', ['-c', line], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
      child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
      child.on('close', (code) => resolve({ code: code ?? 1, stdout, stderr }));
    });
  for (const line of lines.slice(0, serveIndex)) assert.equal((await bash(line)).code, 0, line);
  assert.equal(((await stat(join(cwd, 'tls', 'keys.psk'))).mode & 0o777).toString(8), '600');
  // The background line, started as a child we can wait for and stop (`&` dropped).
  const serveLine = lines[serveIndex]?.replace(/&\s*$/, '') ?? '';
  const serveArgs = serveLine.trim().split(/\s+/);
  assert.deepEqual(serveArgs.slice(0, 3), ['node', 'dist/cli/main.js', 'serve']);
  const serve = await startServeIn(cwd, serveArgs.slice(3));
  try {
    assert.match(serve.stdout(), /^nbd uri: nbds:\/\/127\.0\.0\.1:\d+\/umirror$/m);
    assert.match(serve.stdout(), /^tls: required \(pre-shared keys\)$/m);
    for (const line of lines.slice(serveIndex + 1)) {
      const result = await bash(line);
      assert.equal(result.code, 0, `${line}\n${result.stdout}\n${result.stderr}`);
      if (line.startsWith('nbdinfo')) assert.equal(result.stdout.trim(), String(1024 * 1024 * 1024));
      if (line.startsWith('qemu-img')) assert.match(result.stdout, /virtual size: 1 GiB/);
    }
    const plain = await run('nbdinfo', ['--size', `nbd://127.0.0.1:${port}/umirror`]);
    assert.notEqual(plain.code, 0, 'a plaintext client is refused');
  } finally {
    await serve.stop();
  }
});

/** startServe with a working directory: the README's relative paths are relative to it. */
async function startServeIn(cwd: string, args: readonly string[]): Promise<{ stdout: () => string; stop: () => Promise<void> }> {
  const child = spawn(process.execPath, [umirrorMain, 'serve', ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const exited = new Promise<void>((resolve) => child.once('close', () => resolve()));
  const deadline = Date.now() + 60_000;
  while (!/^nbd uri: /m.test(stdout)) {
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`serve did not start\n${stdout}\n${stderr}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  return {
    stdout: () => stdout,
    stop: async () => {
      child.kill('SIGINT');
      const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
      await exited;
      clearTimeout(timer);
      assert.match(stdout, /device suspended cleanly/, stderr);
    },
  };
}

test('serve refuses a PSK file or server key that group or others may read, and a malformed PSK file, in one line', async (t) => {
  const dir = await tempDir(t, 'umirror-serve-keys-');
  const psk = await writePskFile({ path: join(dir, 'keys.psk'), entries: [{ identity: 'alice', key: pskKey() }], mode: 0o644 });
  const base = ['--data', join(dir, 'data'), '--size', '8M', '--nbd', '127.0.0.1:0'];
  const loose = await runServeToExit([...base, '--tls-psk', psk]);
  assert.equal(loose.code, 1);
  assert.equal(loose.stderr, `umirror serve: refusing PSK file ${psk}: it is accessible by group or others (mode 644); chmod 600 it\n`);
  assert.equal(loose.stdout, '', 'nothing was created or served');

  await writeFile(join(dir, 'bad.psk'), 'alice 00ff\n', { mode: 0o600 });
  const malformed = await runServeToExit([...base, '--tls-psk', join(dir, 'bad.psk')]);
  assert.equal(malformed.code, 1);
  assert.match(malformed.stderr, /^umirror serve: PSK file .*bad\.psk line 1: no ":" \(expected "identity:hexkey", as psktool writes\)\n$/);

  if (findTool('openssl') !== undefined) {
    const pki = await makePki(join(dir, 'pki'));
    await chmod(join(pki, 'server-key.pem'), 0o640);
    const key = await runServeToExit([...base, '--tls-certificates', pki]);
    assert.equal(key.code, 1);
    assert.match(key.stderr, /^umirror serve: refusing server key .*server-key\.pem: it is accessible by group or others \(mode 640\); chmod 600 it\n$/);
  }
});

test('serve creates its Unix socket 0600; --socket-mode and --socket-group share it', async (t) => {
  const dir = await tempDir(t, 'umirror-serve-socket-');
  const path = join(dir, 'nbd.sock');
  const owner = await startServe(['--data', join(dir, 'a'), '--size', '8M', '--nbd', `unix:${path}`, '--quiet']);
  try {
    assert.equal(((await stat(path)).mode & 0o777).toString(8), '600');
  } finally {
    await owner.stop();
  }
  const shared = await startServe(['--data', join(dir, 'b'), '--size', '8M', '--nbd', `unix:${path}`, '--socket-group', String(process.getgid?.() ?? 0), '--quiet']);
  try {
    const info = await stat(path);
    assert.equal((info.mode & 0o777).toString(8), '660', 'a group makes the socket 0660');
    assert.equal(info.gid, process.getgid?.());
  } finally {
    await shared.stop();
  }
  const modeOnly = await startServe(['--data', join(dir, 'c'), '--size', '8M', '--nbd', `unix:${path}`, '--socket-mode', '0640', '--quiet']);
  try {
    assert.equal(((await stat(path)).mode & 0o777).toString(8), '640');
  } finally {
    await modeOnly.stop();
  }
});

test('another user cannot connect to the default socket, and can through --socket-group', async (t) => {
  if (process.getuid?.() !== 0) {
    t.skip('needs root to act as another user');
    return;
  }
  if (!requireTools(t, 'setpriv', 'nbdinfo')) return;
  const dir = await tempDir(t, 'umirror-serve-other-');
  await chmod(dir, 0o711); // nobody may pass through the folder, not list or write it.
  const path = join(dir, 'nbd.sock');
  const asNobody = (uri: string): Promise<{ code: number; stderr: string }> =>
    run('setpriv', [`--reuid=${nobody}`, `--regid=${nobody}`, '--clear-groups', 'nbdinfo', '--size', uri]);
  const privateServe = await startServe(['--data', join(dir, 'a'), '--size', '8M', '--nbd', `unix:${path}`, '--quiet']);
  try {
    const refused = await asNobody(privateServe.uri);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /Permission denied/);
  } finally {
    await privateServe.stop();
  }
  const sharedServe = await startServe(['--data', join(dir, 'b'), '--size', '8M', '--nbd', `unix:${path}`, '--socket-group', String(nobody), '--quiet']);
  try {
    const admitted = await asNobody(sharedServe.uri);
    assert.equal(admitted.code, 0, admitted.stderr);
  } finally {
    await sharedServe.stop();
  }
});

test('serve refuses a socket folder anyone may write without the sticky bit, or that belongs to another user', async (t) => {
  const dir = await tempDir(t, 'umirror-serve-folder-');
  const open = join(dir, 'open');
  await mkdir(open);
  await chmod(open, 0o777);
  const refused = await runServeToExit(['--data', join(dir, 'a'), '--size', '8M', '--nbd', `unix:${join(open, 'nbd.sock')}`]);
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /^umirror serve: cannot listen on unix:.*\/open\/nbd\.sock: EACCES: anyone may write the folder .*\/open \(mode 777, no sticky bit\) and replace the socket\n$/);
  await chmod(open, 0o1777); // /tmp's mode: only a file's owner may remove it.
  const sticky = await startServe(['--data', join(dir, 'b'), '--size', '8M', '--nbd', `unix:${join(open, 'nbd.sock')}`, '--quiet']);
  await sticky.stop();
  if (process.getuid?.() === 0) {
    const theirs = join(dir, 'theirs');
    await mkdir(theirs, { mode: 0o755 });
    await chown(theirs, nobody, nobody);
    const other = await runServeToExit(['--data', join(dir, 'c'), '--size', '8M', '--nbd', `unix:${join(theirs, 'nbd.sock')}`]);
    assert.equal(other.code, 1);
    assert.match(other.stderr, /EACCES: the folder .*\/theirs belongs to another user \(uid 65534\), who could replace the socket/);
  }
});
