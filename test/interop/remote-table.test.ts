/**
 * NBD URIs in tables (issue 11), against the real `umirror serve` and `umirror daemon` and a real nbdkit
 * (`file` plugin on a Unix socket, so the remote leg's bytes can be read back from its image):
 *   - a mirror with one local and one remote leg: qemu-io writes land on both images; status and table
 *     show the URI as the device name; a clean stop
 *   - a remote disk log and a remote linear segment
 *   - a URI that cannot be reached at table load: exit 1, the reason in one line, then the kernel's lines
 *     ("Device lookup failure" for a leg, "Error creating mirror dirty log" for the log, "Device lookup
 *     failed" for linear), nothing served; a read-only export is refused the same way
 *   - the daemon: `create` with a URI leg and --leg-timeout, `status` shows the URI
 * Without nbdkit or qemu-io the tests skip with a printed reason (fail under CI=true).
 */
import assert from 'node:assert/strict';
import { readFile, mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { startDaemon } from '../helpers/daemon-process.js';
import { type NbdkitServer, startNbdkit } from '../helpers/nbdkit-server.js';
import { requireTools, run, runOk } from '../helpers/nbd-tools.js';
import { assertCleanExit, startServe, umirrorMain } from '../helpers/serve-process.js';

const MiB = 1024 * 1024;
const cleanups: (() => Promise<unknown>)[] = [];
after(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
});

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'umirror-remote-table-'));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

async function image(path: string, sizeBytes: number): Promise<string> {
  await writeFile(path, '');
  await truncate(path, sizeBytes);
  return path;
}

async function nbdkitFile(path: string, flags: readonly string[] = []): Promise<NbdkitServer> {
  const server = await startNbdkit({ plugin: ['file', path], flags });
  cleanups.push(() => server.close());
  return server;
}

/** Runs `umirror serve ARGS` expecting it to stop on its own. */
function serveToExit(args: readonly string[]): ReturnType<typeof run> {
  return run(process.execPath, [umirrorMain, 'serve', ...args], { timeoutMs: 60_000 });
}

describe('tables accept NBD URIs wherever a device goes', () => {
  test('serve: a mirror of a local and a remote leg writes both; status and table name the URI', async (t) => {
    if (!requireTools(t, 'nbdkit', 'qemu-io')) return;
    const dir = await tempDir();
    const local = await image(join(dir, 'local.img'), 8 * MiB);
    const remoteImage = await image(join(dir, 'remote.img'), 8 * MiB);
    const remote = await nbdkitFile(remoteImage);
    const table = `0 16384 mirror core 2 1024 nosync 2 ${local} 0 ${remote.uri} 0 1 handle_errors`;
    const serve = await startServe(['--table', table, '--nbd', `unix:${join(dir, 'vol.sock')}`, '--leg-timeout', '5', '--quiet']);
    cleanups.push(() => serve.stop());
    assert.equal(serve.table, `0 16384 mirror core 2 1024 nosync 2 ${local} 0 ${remote.uri} 0 1 handle_errors`);
    assert.match(serve.stdout(), new RegExp(`^status: 0 16384 mirror 2 ${local} ${escape(remote.uri)} 16/16 1 AA 1 core$`, 'm'));
    await runOk('qemu-io', ['-f', 'raw', '-c', 'write -P 0x5a 1M 2M', '-c', 'flush', serve.uri]);
    assertCleanExit(await serve.stop(), /^device suspended; a core log is not kept/m);
    for (const path of [local, remoteImage]) {
      const bytes = await readFile(path);
      assert.ok(bytes.subarray(MiB, 3 * MiB).every((b) => b === 0x5a), `${path} holds the write`);
      assert.ok(bytes.subarray(0, MiB).every((b) => b === 0), `${path} is untouched before it`);
    }
  });

  test('serve: a disk log and a linear segment on remote devices', async (t) => {
    if (!requireTools(t, 'nbdkit', 'qemu-io')) return;
    const dir = await tempDir();
    const logServer = await nbdkitFile(await image(join(dir, 'log.img'), MiB));
    const linearImage = await image(join(dir, 'linear.img'), 4 * MiB);
    const linearServer = await nbdkitFile(linearImage);
    const a = await image(join(dir, 'a.img'), 4 * MiB);
    const b = await image(join(dir, 'b.img'), 4 * MiB);
    const table = [`0 8192 mirror disk 2 ${logServer.uri} 1024 2 ${a} 0 ${b} 0`, `8192 8192 linear ${linearServer.uri} 0`].join('\n');
    const serve = await startServe(['--table', table, '--nbd', `unix:${join(dir, 'vol.sock')}`, '--quiet']);
    cleanups.push(() => serve.stop());
    assert.match(serve.stdout(), new RegExp(`mirror 2 ${a} ${b} \\d+/8 1 A. 3 disk ${escape(logServer.uri)} A`));
    assert.match(serve.stdout(), new RegExp(`^8192 8192 linear ${escape(linearServer.uri)} 0$`, 'm'));
    await runOk('qemu-io', ['-f', 'raw', '-c', 'write -P 0x77 5M 1M', '-c', 'flush', serve.uri]);
    assertCleanExit(await serve.stop(), /^device suspended/m);
    const bytes = await readFile(linearImage);
    assert.ok(bytes.subarray(MiB, 2 * MiB).every((byte) => byte === 0x77), 'the linear segment wrote through to the remote image');
    const log = await readFile(join(dir, 'log.img'));
    assert.equal(log.readUInt32LE(0), 0x4d695272, 'the remote log holds the kernel header');
  });

  test('serve: an unreachable URI fails the table load with the reason and the kernel lines', async () => {
    const dir = await tempDir();
    const a = await image(join(dir, 'a.img'), 4 * MiB);
    const gone = `nbd+unix:///?socket=${join(dir, 'nobody.sock')}`;
    const cases = [
      { table: `0 8192 mirror core 1 1024 2 ${a} 0 ${gone} 0`, kernel: /mirror: Device lookup failure \(-ENODEV\)/ },
      { table: `0 8192 mirror disk 2 ${gone} 1024 2 ${a} 0 ${a} 0`, kernel: /mirror: Error creating mirror dirty log \(-EINVAL\)/ },
      { table: `0 8192 linear ${gone} 0`, kernel: /linear: Device lookup failed \(-ENODEV\)/ },
    ];
    for (const { table, kernel } of cases) {
      const result = await serveToExit(['--table', table, '--nbd', `unix:${join(dir, 'vol.sock')}`, '--leg-timeout', '2']);
      assert.equal(result.code, 1, result.stderr);
      assert.match(result.stderr, new RegExp(`^umirror: Cannot connect to ${escape(gone)}: connect ENOENT`, 'm'));
      assert.match(result.stderr, kernel);
      assert.doesNotMatch(result.stdout, /^serving/m);
    }
  });

  test('serve: a read-only export is refused as a leg', async (t) => {
    if (!requireTools(t, 'nbdkit')) return;
    const dir = await tempDir();
    const a = await image(join(dir, 'a.img'), 4 * MiB);
    const remote = await nbdkitFile(await image(join(dir, 'ro.img'), 4 * MiB), ['-r']);
    const result = await serveToExit(['--table', `0 8192 mirror core 1 1024 2 ${a} 0 ${remote.uri} 0`, '--nbd', `unix:${join(dir, 'vol.sock')}`]);
    assert.equal(result.code, 1, result.stderr);
    assert.match(result.stderr, /^umirror: Cannot open remote device .*: the export is read-only$/m);
    assert.match(result.stderr, /Device lookup failure/);
  });

  test('daemon: create with a remote leg; status shows the URI', async (t) => {
    if (!requireTools(t, 'nbdkit')) return;
    const dir = await tempDir();
    const a = await image(join(dir, 'a.img'), 4 * MiB);
    const remote = await nbdkitFile(await image(join(dir, 'b.img'), 4 * MiB));
    const daemon = await startDaemon({ args: ['--leg-timeout', '5'] });
    cleanups.push(() => daemon.dispose());
    const created = await daemon.cli(['create', 'vol', '--table', `0 8192 mirror core 2 1024 nosync 2 ${a} 0 ${remote.uri} 0`]);
    assert.equal(created.code, 0, created.stderr);
    const status = await daemon.cli(['status', 'vol']);
    assert.equal(status.stdout, `0 8192 mirror 2 ${a} ${remote.uri} 8/8 1 AA 1 core\n`);
    const gone = `nbd+unix:///?socket=${join(dir, 'nobody.sock')}`;
    const c = await image(join(dir, 'c.img'), 4 * MiB);
    const refused = await daemon.cli(['create', 'bad', '--table', `0 8192 mirror core 1 1024 2 ${c} 0 ${gone} 0`]);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /Device lookup failure/);
    assert.ok(
      daemon.logs().some((line) => line.device === 'bad' && /^Cannot connect to .*nobody\.sock.*ENOENT/.test(line.msg)),
      'the daemon logs why the URI could not be opened',
    );
    assert.equal((await daemon.cli(['remove', 'vol'])).code, 0);
  });
});

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
