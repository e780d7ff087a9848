/**
 * A mirror across two hosts (issue 11): network namespaces are the hosts (test/helpers/netns.ts), the
 * remote leg is served by nbdkit (`file` plugin, with its `log` and `delay` filters) or qemu-nbd in the
 * remote namespace, and a real `umirror serve --table` runs in the local one with the remote leg's URI
 * in its table. Clients reach umirror over a Unix socket. Scenarios, each with a workload and byte checks:
 *   - a local and a remote leg: writes land on both images (nbdkit, and qemu-nbd)
 *   - the remote host killed (kill -9 nbdkit) mid-write: the leg fails (status AD, a 'detached' line),
 *     the writes all succeed from the local leg (no handle_errors: the kernel's rule) and read back
 *   - a partition (the remote veth down) under load: detected by --leg-timeout (the leg fails, the
 *     load finishes), and the client reconnects once healed
 *   - TLS with a PSK against `nbdkit --tls=require`
 * Not yet here (the mirror's re-attach, issue 11): the leg returning to service with a partial resync.
 * Needs root and iproute2: skipped with the reason otherwise (failed under CI=true).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, describe, test, type TestContext } from 'node:test';
import { spawnLogged, waitExit } from '../helpers/failing-leg.js';
import { makeTwoHosts, remoteAddress, requireNetns, type TwoHosts } from '../helpers/netns.js';
import { type NbdkitServer, startNbdkit } from '../helpers/nbdkit-server.js';
import { requireTools, runOk } from '../helpers/nbd-tools.js';
import { assertCleanExit, type ServeProcess, startServe } from '../helpers/serve-process.js';
import { pskKey, writePskFile } from '../helpers/tls-files.js';

const MiB = 1024 * 1024;
const sizeBytes = 16 * MiB;
const sectors = sizeBytes / 512;
/** The port inside the remote namespace (a namespace of our own: nothing else listens there). */
const remotePort = 10809;
const cleanups: (() => Promise<unknown>)[] = [];
after(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
});

interface Setup {
  readonly dir: string;
  readonly hosts: TwoHosts;
  readonly localImage: string;
  readonly remoteImage: string;
}

async function setup(t: TestContext, tools: readonly string[]): Promise<Setup | undefined> {
  if (!requireNetns(t) || !requireTools(t, 'qemu-io', ...tools)) return undefined;
  const dir = await mkdtemp(join(tmpdir(), 'umirror-two-hosts-'));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  const hosts = await makeTwoHosts();
  cleanups.push(() => hosts.close());
  const localImage = join(dir, 'local.img');
  const remoteImage = join(dir, 'remote.img');
  for (const path of [localImage, remoteImage]) {
    await writeFile(path, '');
    await truncate(path, sizeBytes);
  }
  return { dir, hosts, localImage, remoteImage };
}

/** nbdkit on the remote host, serving the remote image over TCP. */
async function remoteNbdkit(s: Setup, options: { filters?: readonly string[]; flags?: readonly string[]; params?: readonly string[] } = {}): Promise<NbdkitServer> {
  const server = await startNbdkit({
    plugin: ['file', s.remoteImage, ...(options.params ?? [])],
    filters: options.filters ?? [],
    flags: options.flags ?? [],
    dir: s.dir,
    tcpPort: remotePort,
    tcpHost: remoteAddress,
    wrap: (command, args) => s.hosts.exec(s.hosts.remote, command, args),
  });
  cleanups.push(() => server.close());
  return server;
}

/** umirror serve on the local host with `table`, its NBD on a Unix socket. */
async function localServe(s: Setup, table: string, extra: readonly string[] = []): Promise<ServeProcess> {
  const serve = await startServe(['--table', table, '--nbd', `unix:${join(s.dir, 'vol.sock')}`, ...extra], {
    wrap: (command, args) => s.hosts.exec(s.hosts.local, command, args),
  });
  cleanups.push(() => serve.stop());
  return serve;
}

/** Polls `what` until it matches, at most `timeoutMs`. */
async function waitFor(what: string, read: () => string, pattern: RegExp, timeoutMs = 60_000): Promise<RegExpMatchArray> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const match = pattern.exec(read());
    if (match !== null) return match;
    if (Date.now() > deadline) throw new Error(`no ${pattern} in ${what} within ${timeoutMs} ms:\n${read()}`);
    await sleep(50);
  }
}

/** qemu-io commands writing `count` blocks of 256 KiB with `pattern`, from offset 0. */
function writes(count: number, pattern: number): string[] {
  const args: string[] = [];
  for (let i = 0; i < count; i++) args.push('-c', `write -P ${pattern} ${(i * 256 * 1024) % sizeBytes} 256k`);
  return args;
}

/** Starts qemu-io in the background; resolves with its exit code and output. */
function qemuIo(uri: string, commands: readonly string[]): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    const child = spawn('qemu-io', ['-f', 'raw', ...commands, uri], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (output += chunk.slice(0, 4096)));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
    child.on('close', (code) => resolve({ code, output }));
  });
}

async function assertFilled(path: string, options: { from: number; to: number; byte: number }): Promise<void> {
  const bytes = await readFile(path);
  const slice = bytes.subarray(options.from, options.to);
  const bad = slice.findIndex((b) => b !== options.byte);
  assert.equal(bad, -1, `${path}: byte ${options.from + bad} is ${slice[bad]}, expected ${options.byte}`);
}

describe('a mirror across two hosts (network namespaces)', () => {
  test('one local and one remote leg (nbdkit with the log filter): the writes land on both hosts', async (t) => {
    const s = await setup(t, ['nbdkit']);
    if (s === undefined) return;
    const logFile = join(s.dir, 'nbdkit.log');
    const remote = await remoteNbdkit(s, { filters: ['log'], params: [`logfile=${logFile}`] });
    const table = `0 ${sectors} mirror core 2 1024 nosync 2 ${s.localImage} 0 ${remote.uri} 0 1 handle_errors`;
    const serve = await localServe(s, table);
    assert.match(serve.stdout(), new RegExp(`^status: 0 ${sectors} mirror 2 ${s.localImage} nbd://${remoteAddress}:${remotePort}/ 32/32 1 AA 1 core$`, 'm'));
    await runOk('qemu-io', ['-f', 'raw', ...writes(16, 0x5a), '-c', 'flush', serve.uri]);
    assertCleanExit(await serve.stop(), /^device suspended/m);
    for (const path of [s.localImage, s.remoteImage]) await assertFilled(path, { from: 0, to: 4 * MiB, byte: 0x5a });
    const log = await readFile(logFile, 'utf8');
    assert.ok((log.match(/Write /g) ?? []).length >= 16, `nbdkit logged the writes:\n${log.slice(0, 2000)}`);
  });

  test('one local and one remote leg (qemu-nbd): the writes land on both hosts', async (t) => {
    const s = await setup(t, ['qemu-nbd']);
    if (s === undefined) return;
    const pidFile = join(s.dir, 'qemu-nbd.pid');
    const argv = s.hosts.exec(s.hosts.remote, 'qemu-nbd', ['-f', 'raw', '-b', remoteAddress, '-p', String(remotePort), '-x', 'leg1', '--persistent', '--pid-file', pidFile, s.remoteImage]);
    const child = spawnLogged(argv.command, argv.args);
    cleanups.push(async () => {
      child.kill('SIGTERM');
      await waitExit(child, 5000);
    });
    for (let i = 0; i < 400; i++) {
      const ready = await stat(pidFile).then((st) => st.size > 0, () => false);
      if (ready) break;
      assert.equal(child.exitCode, null, `qemu-nbd exited: ${child.stderrText()}`);
      await sleep(25);
    }
    const uri = `nbd://${remoteAddress}:${remotePort}/leg1`;
    const serve = await localServe(s, `0 ${sectors} mirror core 2 1024 nosync 2 ${s.localImage} 0 ${uri} 0 1 handle_errors`, ['--quiet']);
    await runOk('qemu-io', ['-f', 'raw', ...writes(16, 0x3c), '-c', 'flush', serve.uri]);
    assertCleanExit(await serve.stop(), /^device suspended/m);
    for (const path of [s.localImage, s.remoteImage]) await assertFilled(path, { from: 0, to: 4 * MiB, byte: 0x3c });
  });

  test('the remote host killed (kill -9) mid-write: the leg fails (AD), every write succeeds from the local leg', async (t) => {
    const s = await setup(t, ['nbdkit']);
    if (s === undefined) return;
    const logFile = join(s.dir, 'nbdkit.log');
    // The delay filter spreads the writes out so the kill lands among them.
    const remote = await remoteNbdkit(s, { filters: ['log', 'delay'], params: [`logfile=${logFile}`, 'delay-write=20ms'] });
    const serve = await localServe(s, `0 ${sectors} mirror core 2 1024 nosync 2 ${s.localImage} 0 ${remote.uri} 0`, ['--leg-timeout', '5']);
    const load = qemuIo(serve.uri, [...writes(64, 0x11), '-c', 'flush']);
    await waitFor('the nbdkit log', () => readFileSafe(logFile), /(Write [^\n]*\n[^]*){8}/);
    remote.kill('SIGKILL');
    const done = await load;
    assert.equal(done.code, 0, `every write succeeds without handle_errors (the kernel's rule):\n${done.output}`);
    await waitFor('serve stderr', () => serve.stderr(), /^warn: remote device nbd:\/\/10\.200\.0\.2:10809\/ detached: /m);
    await waitFor('serve status', () => serve.stdout(), /^status: .* AD 1 core/m);
    await runOk('qemu-io', ['-f', 'raw', '-c', 'read -P 0x11 0 16M', serve.uri]);
    const exit = await serve.stop();
    assert.equal(exit.code, 0, exit.stderr);
    await assertFilled(s.localImage, { from: 0, to: 16 * MiB, byte: 0x11 });
  });

  test('a partition (the remote veth down) under load is detected within --leg-timeout; the client reconnects once healed', async (t) => {
    const s = await setup(t, ['nbdkit']);
    if (s === undefined) return;
    const logFile = join(s.dir, 'nbdkit.log');
    const remote = await remoteNbdkit(s, { filters: ['log', 'delay'], params: [`logfile=${logFile}`, 'delay-write=20ms'] });
    const legTimeoutS = 2;
    const serve = await localServe(s, `0 ${sectors} mirror core 2 1024 nosync 2 ${s.localImage} 0 ${remote.uri} 0`, ['--leg-timeout', String(legTimeoutS)]);
    const load = qemuIo(serve.uri, [...writes(64, 0x22), '-c', 'flush']);
    await waitFor('the nbdkit log', () => readFileSafe(logFile), /(Write [^\n]*\n[^]*){8}/);
    const partitionedAt = Date.now();
    await s.hosts.partition();
    await waitFor('serve stderr', () => serve.stderr(), /^warn: remote device \S+ detached: .*/m);
    const detectedMs = Date.now() - partitionedAt;
    // At least the timeout (nothing answered), and not much later: generous for a loaded machine.
    assert.ok(detectedMs >= legTimeoutS * 1000 - 200, `detected after ${detectedMs} ms, before the timeout`);
    assert.ok(detectedMs < legTimeoutS * 1000 + 20_000, `detected after ${detectedMs} ms`);
    const done = await load;
    assert.equal(done.code, 0, done.output);
    await waitFor('serve status', () => serve.stdout(), /^status: .* AD 1 core/m);
    await s.hosts.heal();
    await waitFor('serve stderr', () => serve.stderr(), /^info: remote device \S+ attached again \(reconnect 1\)$/m);
    await runOk('qemu-io', ['-f', 'raw', '-c', 'read -P 0x22 0 16M', serve.uri]);
    const exit = await serve.stop();
    assert.equal(exit.code, 0, exit.stderr);
    await assertFilled(s.localImage, { from: 0, to: 16 * MiB, byte: 0x22 });
  });

  test('TLS with a PSK against nbdkit --tls=require on the remote host', async (t) => {
    const s = await setup(t, ['nbdkit']);
    if (s === undefined) return;
    const keys = await writePskFile({ path: join(s.dir, 'keys.psk'), entries: [{ identity: 'alice', key: pskKey() }] });
    await remoteNbdkit(s, { flags: ['--tls=require', `--tls-psk=${keys}`] });
    const uri = `nbds://alice@${remoteAddress}:${remotePort}/?tls-psk-file=${keys}`;
    const serve = await localServe(s, `0 ${sectors} mirror core 2 1024 nosync 2 ${s.localImage} 0 ${uri} 0 1 handle_errors`, ['--quiet']);
    assert.ok(serve.table.includes(uri), serve.table);
    await runOk('qemu-io', ['-f', 'raw', ...writes(8, 0x6b), '-c', 'flush', serve.uri]);
    assertCleanExit(await serve.stop(), /^device suspended/m);
    for (const path of [s.localImage, s.remoteImage]) await assertFilled(path, { from: 0, to: 2 * MiB, byte: 0x6b });
  });
});

/** The file's text, or '' before it exists. */
function readFileSafe(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return ''; // Not written yet: the caller polls again.
  }
}
