/**
 * Lazy clean in the daemon (issue 12): `umirror daemon --lazy-clean MS` is the disk logs' clearing delay
 * of devices created without their own, `create --lazy-clean MS` sets it per device, and the default is
 * serve's (1000 ms). Observed on the log image itself: after a client write and its flush, a device with
 * `--lazy-clean 0` (the kernel's timing) clears the region at a later pass, while one under the daemon's
 * ten-minute delay keeps it dirty on disk. Bad values are refused by the protocol (EINVAL).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFile, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ControlClient } from '../../src/control/control-client.js';
import { ControlError } from '../../src/errors.js';
import { startDaemon, until, type Daemon } from '../helpers/daemon-process.js';
import { requireTools } from '../helpers/tools.js';

const sizeBytes = 8 * 1024 * 1024;
const regionSectors = 1024;
const regionCount = sizeBytes / 512 / regionSectors;

/** Regions whose clean bit (kernel disk log: bitmap from byte 1024, bit set = clean) is clear on disk. */
async function dirtyOnDisk(logPath: string): Promise<number[]> {
  const bytes = await readFile(logPath);
  const dirty: number[] = [];
  for (let r = 0; r < regionCount; r++) if (((bytes[1024 + (r >> 3)] ?? 0) & (1 << (r & 7))) === 0) dirty.push(r);
  return dirty;
}

/** Two 8 MiB legs and a zeroed 1 MiB log in the daemon's folder; returns the table (nosync: all clean). */
async function images(d: Daemon, name: string): Promise<{ table: string; logPath: string }> {
  const [a, b, logPath] = [join(d.dir, `${name}-a.img`), join(d.dir, `${name}-b.img`), join(d.dir, `${name}-log.img`)];
  for (const [path, bytes] of [[a, sizeBytes], [b, sizeBytes], [logPath, 1024 * 1024]] as const) {
    await writeFile(path, '');
    await truncate(path, bytes);
  }
  return { table: `0 ${sizeBytes / 512} mirror disk 3 ${logPath} ${regionSectors} nosync 2 ${a} 0 ${b} 0 1 handle_errors`, logPath };
}

/** qemu-io writes 4 KiB at offset 0 and flushes (qemu-io flushes before it exits). */
function qemuWrite(uri: string): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('qemu-io', ['-f', 'raw', '-c', 'write -P 0x5a 0 4096', '-c', 'flush', uri], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (output += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (output += c));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, output }));
  });
}

test('umirror daemon --lazy-clean is the default of its devices; create --lazy-clean 0 clears at the next pass, as the kernel', async (t) => {
  if (!requireTools(t, ['qemu-io'])) return;
  const d = await startDaemon({ args: ['--lazy-clean', '600000'] });
  t.after(() => d.dispose());
  const ok = async (args: readonly string[]): Promise<string> => {
    const result = await d.cli(args);
    assert.equal(result.code, 0, `umirror ${args.join(' ')}: ${result.stderr}`);
    return result.stdout.trim();
  };
  const lazy = await images(d, 'lazy');
  const eager = await images(d, 'eager');
  const lazyUri = await ok(['create', 'lazy', '--table', lazy.table, '--nbd', `unix:${join(d.dir, 'lazy.sock')}`]);
  const eagerUri = await ok(['create', 'eager', '--table', eager.table, '--nbd', `unix:${join(d.dir, 'eager.sock')}`, '--lazy-clean', '0']);
  const created = new Map(d.logs().filter((l) => l.msg === 'device created').map((l) => [l.device, l['lazyCleanMs']]));
  assert.deepEqual([created.get('lazy'), created.get('eager')], [600000, 0]);
  assert.deepEqual(await dirtyOnDisk(lazy.logPath), []);

  for (const uri of [lazyUri, eagerUri]) {
    const written = await qemuWrite(uri);
    assert.equal(written.code, 0, written.output);
  }
  // The kernel's timing: the region is cleared once its write is done and both legs were flushed.
  await until('the eager device clears region 0 on disk', async () => (await dirtyOnDisk(eager.logPath)).length === 0);
  // Ten minutes of idleness are needed on the other: region 0 is still dirty, after the eager one's
  // clear proved that worker passes ran.
  assert.deepEqual(await dirtyOnDisk(lazy.logPath), [0]);
  // A clean removal clears it anyway.
  await ok(['remove', 'lazy']);
  assert.deepEqual(await dirtyOnDisk(lazy.logPath), []);
});

test('umirror daemon: lazy clean defaults to serve\'s 1000 ms; the protocol refuses a delay past one hour', async (t) => {
  const d = await startDaemon();
  t.after(() => d.dispose());
  const result = await d.cli(['create', 'z', '--table', '0 8 zero']);
  assert.equal(result.code, 0, result.stderr);
  assert.equal(d.logs().find((l) => l.msg === 'device created' && l.device === 'z')?.['lazyCleanMs'], 1000);
  const client = await ControlClient.connect(d.socketPath);
  try {
    for (const lazyCleanMs of [3_600_001, -1, 1.5]) {
      await assert.rejects(client.request({ verb: 'create', name: 'y', table: '0 8 zero', readOnly: false, lazyCleanMs }), (err: unknown) => {
        assert.ok(err instanceof ControlError && err.code === 'EINVAL', String(err));
        assert.match(err.message, /lazyCleanMs/);
        return true;
      });
    }
  } finally {
    client.close();
  }
});
