/**
 * The systemd story (issue 14): the unit files under contrib/systemd/ pass `systemd-analyze verify`, and
 * the readiness protocol works for real. A python3 process plays the service manager: it binds the
 * $NOTIFY_SOCKET datagram socket (Node cannot bind a Unix datagram socket) and, the moment READY=1
 * arrives, asks the control socket a question (daemon) or reads the NBD greeting (serve): READY=1 must
 * come only when they answer. Real `umirror daemon` and `umirror serve` processes, systemd-notify.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { run } from '../helpers/nbd-tools.js';
import { umirrorBin, until } from '../helpers/daemon-process.js';
import { requireTools } from '../helpers/tools.js';

const contrib = fileURLToPath(new URL('../../../contrib/systemd/', import.meta.url));

async function tempDir(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'umirror-systemd-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/**
 * The service manager's side: binds argv[1] (SOCK_DGRAM), prints every message as one JSON line; on
 * READY=1 connects to argv[2] (a Unix stream socket), sends argv[3] (may be empty) and prints the first
 * bytes of the answer, or the error. Exits after READY=1 was handled.
 */
const manager = `
import json, socket, sys
path, probe, question = sys.argv[1], sys.argv[2], sys.argv[3].encode()
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path)
print(json.dumps({"bound": path}), flush=True)
while True:
    message = s.recv(65536).decode()
    print(json.dumps({"message": message}), flush=True)
    if "READY=1" in message.split("\\n"):
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        c.settimeout(5)
        try:
            c.connect(probe)
            if question:
                c.sendall(question)
            answer = c.recv(200)
            print(json.dumps({"probe": answer.hex()}), flush=True)
        except Exception as e:
            print(json.dumps({"probe_error": str(e)}), flush=True)
        break
`;

interface ManagerLine {
  readonly bound?: string;
  readonly message?: string;
  readonly probe?: string;
  readonly probe_error?: string;
}

async function startManager(t: TestContext, options: { notify: string; probe: string; question: string }): Promise<{ lines: () => ManagerLine[]; done: Promise<void> }> {
  const child = spawn('python3', ['-c', manager, options.notify, options.probe, options.question], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.after(() => child.kill('SIGKILL'));
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (out += chunk));
  const done = new Promise<void>((resolve) => child.once('close', () => resolve()));
  const lines = (): ManagerLine[] =>
    out
      .split('\n')
      .filter((line) => line !== '')
      .map((line) => JSON.parse(line) as ManagerLine);
  await until('the manager bound its socket', () => lines().some((line) => line.bound !== undefined), 10_000);
  return { lines, done };
}

function spawnUmirror(t: TestContext, args: readonly string[], env: NodeJS.ProcessEnv): { pid: number; exited: Promise<number | null>; output: () => string } {
  const child = spawn(process.execPath, [umirrorBin, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  let output = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  t.after(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    await exited;
  });
  assert.ok(child.pid !== undefined);
  return { pid: child.pid, exited, output: () => output };
}

test('daemon under NOTIFY_SOCKET: READY=1 (with MAINPID and STATUS) comes once the control socket answers', async (t) => {
  if (!requireTools(t, ['python3', 'systemd-notify'])) return;
  const dir = await tempDir(t);
  const control = join(dir, 'control.sock');
  const notify = join(dir, 'notify.sock');
  const m = await startManager(t, { notify, probe: control, question: '{"id":1,"verb":"ls"}\n' });
  const daemon = spawnUmirror(t, ['daemon', '--socket', control, '--nbd', `unix:${join(dir, 'nbd.sock')}`], { NOTIFY_SOCKET: notify });
  await m.done;
  const ready = m.lines().find((line) => line.message?.split('\n').includes('READY=1') === true);
  assert.ok(ready?.message !== undefined, `no READY=1: ${JSON.stringify(m.lines())}\n${daemon.output()}`);
  assert.ok(ready.message.split('\n').includes(`MAINPID=${daemon.pid}`), ready.message);
  assert.match(ready.message, /^STATUS=serving .*control\.sock and nbd\+unix:/m);
  const probe = m.lines().find((line) => line.probe !== undefined || line.probe_error !== undefined);
  assert.equal(probe?.probe_error, undefined, 'the control socket answered when READY=1 arrived');
  assert.match(Buffer.from(probe?.probe ?? '', 'hex').toString(), /^\{"id":1,"ok":true,"result":\{"devices":\[\]\}\}/);
  assert.ok(daemon.output().indexOf('umirror daemon ready') >= 0);
  assert.doesNotMatch(daemon.output(), /service manager not notified/);
});

test('serve under NOTIFY_SOCKET: READY=1 comes once the NBD listener answers (the greeting is sent)', async (t) => {
  if (!requireTools(t, ['python3', 'systemd-notify'])) return;
  const dir = await tempDir(t);
  const nbd = join(dir, 'nbd.sock');
  const notify = join(dir, 'notify.sock');
  const m = await startManager(t, { notify, probe: nbd, question: '' });
  const serve = spawnUmirror(t, ['serve', '--data', join(dir, 'data'), '--size', '16M', '--nbd', `unix:${nbd}`, '--quiet'], { NOTIFY_SOCKET: notify });
  await m.done;
  const ready = m.lines().find((line) => line.message?.split('\n').includes('READY=1') === true);
  assert.ok(ready?.message !== undefined, `no READY=1: ${JSON.stringify(m.lines())}\n${serve.output()}`);
  assert.ok(ready.message.split('\n').includes(`MAINPID=${serve.pid}`));
  const probe = m.lines().find((line) => line.probe !== undefined || line.probe_error !== undefined);
  assert.equal(probe?.probe_error, undefined);
  // NBDMAGIC then IHAVEOPT: the listener answers (a listener still held after the bind sends nothing).
  assert.equal(Buffer.from(probe?.probe ?? '', 'hex').subarray(0, 16).toString('latin1'), 'NBDMAGICIHAVEOPT');
});

test('a NOTIFY_SOCKET nobody listens on: serve logs one line and keeps serving', async (t) => {
  if (!requireTools(t, ['systemd-notify'])) return;
  const dir = await tempDir(t);
  const serve = spawnUmirror(t, ['serve', '--data', join(dir, 'data'), '--size', '16M', '--nbd', `unix:${join(dir, 'nbd.sock')}`, '--quiet'], {
    NOTIFY_SOCKET: join(dir, 'nobody.sock'),
  });
  await until('the failed notification reported', () => /service manager not notified/.test(serve.output()), 30_000);
  assert.match(serve.output(), /^nbd uri: /m);
  process.kill(serve.pid, 'SIGTERM');
  assert.equal(await serve.exited, 0);
});

test('contrib/systemd units pass systemd-analyze verify', async (t) => {
  if (!requireTools(t, ['systemd-analyze'])) return;
  const dir = await tempDir(t);
  // verify insists that ExecStart's program exists: point it at a stand-in (the rest is checked as shipped).
  const stand = join(dir, 'umirror');
  await writeFile(stand, '#!/bin/sh\n');
  await chmod(stand, 0o755);
  for (const [unit, instance] of [
    ['umirror.service', 'umirror.service'],
    ['umirror-serve@.service', 'umirror-serve@vol0.service'],
  ] as const) {
    const text = await readFile(join(contrib, unit), 'utf8');
    assert.match(text, /^ExecStart=umirror /m, `${unit} runs umirror from the executable search path`);
    assert.match(text, /^Type=notify$/m);
    assert.match(text, /^NotifyAccess=all$/m, 'READY=1 comes from a child (systemd-notify)');
    assert.match(text, /^KillSignal=SIGTERM$/m);
    await writeFile(join(dir, unit), text.replace(/^ExecStart=umirror /m, `ExecStart=${stand} `));
    const result = await run('systemd-analyze', ['verify', join(dir, instance)]);
    assert.equal(result.code, 0, `${unit}: ${result.stderr}`);
    assert.equal(result.stderr.trim(), '', `${unit} has no warnings`);
  }
  assert.match(await readFile(join(contrib, 'umirror.service'), 'utf8'), /^RuntimeDirectory=umirror$/m, 'the control socket lives in /run/umirror');
});
