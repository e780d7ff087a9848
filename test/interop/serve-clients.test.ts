/**
 * The real `umirror serve` process (two legs and a disk log under a data folder, created by serve itself)
 * driven by real NBD clients: qemu-img, qemu-io, nbdinfo, nbdcopy and fio. After every workload the
 * mirror must be in sync (its umirror:sync map is clean) and the two leg files byte-identical. The last
 * test stops serve with SIGINT (clean exit, clean log) and restarts it: the restart trusts the disk log
 * and needs no resync. nbd-server.test.ts covers the protocol itself against a memory device (including
 * the kernel's EXPORT_NAME path without structured replies); this file covers the served mirror.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { requireTools, run, runOk } from '../helpers/nbd-tools.js';
import { assertCleanExit, startServe, type ServeProcess } from '../helpers/serve-process.js';
import { assertLegsIdentical, assertSameBytes, nbdMap, outOfSyncBytes } from '../helpers/sync-map.js';

const MiB = 1024 * 1024;
const sizeBytes = 64 * MiB;
const regionCount = sizeBytes / (512 * 1024);

describe('umirror serve (2 legs, disk log) with real NBD clients', () => {
  let dir: string;
  let dataDir: string;
  let legs: [string, string];
  let serve: ServeProcess;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'umirror-serve-'));
    dataDir = join(dir, 'data');
    legs = [join(dataDir, 'leg0.img'), join(dataDir, 'leg1.img')];
    serve = await startServe(['--data', dataDir, '--size', '64M', '--nbd', `unix:${join(dir, 'nbd.sock')}`]);
  });
  after(async () => {
    await serve.stop();
    await rm(dir, { recursive: true, force: true });
  });

  test('umirror serve creates two legs and a disk log and serves them nosync and in sync', async () => {
    assert.equal(serve.uri, `nbd+unix:///umirror?socket=${join(dir, 'nbd.sock')}`);
    const log = join(dataDir, 'log.img');
    assert.equal(serve.table, `0 131072 mirror disk 3 ${log} 1024 nosync 2 ${legs[0]} 0 ${legs[1]} 0 1 handle_errors`);
    const status = await serve.waitForOutput(/^status: (.+)$/m);
    assert.equal(status[1], `0 131072 mirror 2 ${legs[0]} ${legs[1]} ${regionCount}/${regionCount} 1 AA 3 disk ${log} A`);
  });

  test('umirror serve answers nbdinfo --json, --list, --map and --can for the mirror', async (t) => {
    if (!requireTools(t, 'nbdinfo')) return;
    const info = JSON.parse(await runOk('nbdinfo', ['--json', serve.uri])) as { exports: Record<string, unknown>[] };
    const only = info.exports[0];
    assert.ok(only !== undefined);
    assert.equal(only['export-name'], 'umirror');
    assert.equal(only['export-size'], sizeBytes);
    assert.deepEqual(only['contexts'], ['base:allocation', 'umirror:sync']);
    assert.equal(only['is_read_only'], false);
    const list = JSON.parse(await runOk('nbdinfo', ['--list', '--json', serve.uri])) as { exports: { 'export-name': string }[] };
    assert.deepEqual(list.exports.map((e) => e['export-name']), ['umirror']);
    for (const can of ['flush', 'trim', 'zero', 'fua', 'multi-conn']) {
      assert.equal((await run('nbdinfo', ['--can', can, serve.uri])).code, 0, `--can ${can}`);
    }
    const base = await nbdMap(serve.uri);
    assert.equal(base.reduce((sum, e) => sum + e.length, 0), sizeBytes);
    const sync = await nbdMap(serve.uri, 'umirror:sync');
    assert.deepEqual(sync.map((e) => [e.offset, e.length, e.type]), [[0, sizeBytes, 0]]);
  });

  test('umirror serve round-trips an image through qemu-img convert, compare, info and map', async (t) => {
    if (!requireTools(t, 'qemu-img', 'cmp')) return;
    const source = join(dir, 'source.img');
    const back = join(dir, 'back.img');
    await writeFile(source, randomBytes(16 * MiB));
    await runOk('qemu-img', ['convert', '-n', '-f', 'raw', '-O', 'raw', source, serve.uri]);
    // The export is bigger; compare treats the rest of the larger image as needing to be zeroes (it is).
    const compare = await run('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', source, serve.uri]);
    assert.equal(compare.code, 0, compare.stdout + compare.stderr);
    await runOk('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', serve.uri, back]);
    const info = JSON.parse(await runOk('qemu-img', ['info', '--output=json', serve.uri])) as { 'virtual-size': number };
    assert.equal(info['virtual-size'], sizeBytes);
    const map = JSON.parse(await runOk('qemu-img', ['map', '-f', 'raw', '--output=json', serve.uri])) as { length: number }[];
    assert.equal(map.reduce((sum, e) => sum + e.length, 0), sizeBytes);
    await assertSameBytes([source, back], { lengthBytes: 16 * MiB });
    await assertSameBytes([source, ...legs], { lengthBytes: 16 * MiB });
    await assertLegsIdentical(serve.uri, legs);
  });

  test('umirror serve passes qemu-io pattern, unaligned, aio, zero, discard and flush commands', async (t) => {
    if (!requireTools(t, 'qemu-io', 'cmp')) return;
    const commands = [
      'write -P 0xab 20M 1M',
      'read -P 0xab 20M 1M',
      'write -P 0x11 22020100 3333',
      'read -P 0x11 22020100 3333',
      'read -P 0xab 20M 4096',
      'aio_write -P 0x22 24M 64k',
      'aio_write -P 0x23 25M 600k',
      'aio_write -P 0x24 26M 1M',
      'aio_read -P 0xab 20M 512k',
      'aio_flush',
      'read -P 0x22 24M 64k',
      'read -P 0x23 25M 600k',
      'read -P 0x24 26M 1M',
      'write -z 26M 32k',
      'read -P 0 26M 32k',
      'read -P 0x24 26800k 200k',
      'discard 30M 1M',
      'flush',
    ];
    const result = await run('qemu-io', ['-f', 'raw', serve.uri, ...commands.flatMap((c) => ['-c', c])]);
    assert.equal(result.code, 0, result.stderr);
    assert.doesNotMatch(result.stdout + result.stderr, /fail|error|pattern verification/i);
    for (const leg of legs) {
      const bytes = await readFile(leg);
      assert.ok(bytes.subarray(22020100, 22020100 + 3333).every((b) => b === 0x11), `unaligned write on ${leg}`);
      assert.ok(bytes.subarray(26 * MiB, 26 * MiB + 32 * 1024).every((b) => b === 0), `write -z on ${leg}`);
      assert.ok(bytes.subarray(25 * MiB, 25 * MiB + 600 * 1024).every((b) => b === 0x23), `aio_write on ${leg}`);
    }
    await assertLegsIdentical(serve.uri, legs);
  });

  test('umirror serve copies both ways with nbdcopy byte for byte against the leg files', async (t) => {
    if (!requireTools(t, 'nbdcopy', 'cmp')) return;
    const source = join(dir, 'copy-in.img');
    const out = join(dir, 'copy-out.img');
    await writeFile(source, randomBytes(sizeBytes));
    await runOk('nbdcopy', ['--flush', source, serve.uri], { timeoutMs: 120_000 });
    await assertLegsIdentical(serve.uri, legs);
    await assertSameBytes([source, ...legs]);
    await runOk('nbdcopy', [serve.uri, out], { timeoutMs: 120_000 });
    await assertSameBytes([source, out]);
  });

  test('umirror serve survives fio random writes with crc32c verify through the nbd engine', async (t) => {
    if (!requireTools(t, 'fio', 'cmp')) return;
    const result = await run(
      'fio',
      [
        '--name=verify',
        '--ioengine=nbd',
        `--uri=${serve.uri}`,
        '--rw=randwrite',
        '--bs=4k',
        '--size=16M',
        '--offset=40M',
        '--iodepth=16',
        '--verify=crc32c',
        '--do_verify=1',
        '--verify_fatal=1',
        '--verify_state_save=0',
        '--output-format=json',
      ],
      { timeoutMs: 180_000 },
    );
    assert.equal(result.code, 0, result.stderr);
    const report = JSON.parse(result.stdout.slice(result.stdout.indexOf('{'))) as { jobs: { error: number; write: { io_bytes: number } }[] };
    assert.equal(report.jobs[0]?.error, 0);
    assert.equal(report.jobs[0]?.write.io_bytes, 16 * MiB);
    await assertLegsIdentical(serve.uri, legs);
  });

  test('umirror serve exits cleanly on SIGINT and restarts from its disk log with no resync', async (t) => {
    if (!requireTools(t, 'nbdinfo', 'nbdcopy', 'cmp')) return;
    assertCleanExit(await serve.stop());
    const before = await readFile(legs[0]);
    serve = await startServe(['--data', dataDir, '--size', '64M', '--nbd', '127.0.0.1:0']);
    assert.match(serve.uri, /^nbd:\/\/127\.0\.0\.1:\d+\/umirror$/);
    // Existing images: the log is trusted (no nosync), and it says every region is in sync.
    assert.match(serve.table, /^0 131072 mirror disk 2 \S+log\.img 1024 2 /);
    assert.match((await serve.waitForOutput(/^status: (.+)$/m))[1] ?? '', new RegExp(` ${regionCount}/${regionCount} 1 AA 3 disk \\S+ A$`));
    assert.equal(await outOfSyncBytes(serve.uri), 0);
    const out = join(dir, 'after-restart.img');
    await runOk('nbdcopy', [serve.uri, out], { timeoutMs: 120_000 });
    assert.ok((await readFile(out)).equals(before), 'the data survives the restart');
    assertCleanExit(await serve.stop());
    assert.doesNotMatch(serve.stdout(), /resync =/, 'no resync progress was ever printed');
  });
});
