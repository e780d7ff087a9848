/**
 * `umirror daemon --nbd ADDR`: one NBD listener serving every device as an export named after it, as
 * qemu-storage-daemon and nbdkit do (issue 14). Devices created while it runs appear (nbdinfo --list),
 * removed ones disappear; `remove` of a device a client holds through it answers EBUSY and `Open count:`
 * counts that client; `create --readonly` exports refuse writes. Real daemon processes, the real
 * `umirror` command, nbdinfo, qemu-io and a raw NBD client.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { command, nbdErrno, option, transmissionFlag } from '../../src/nbd/protocol.js';
import { RawNbdClient } from '../helpers/nbd-raw-client.js';
import { run, runOk } from '../helpers/nbd-tools.js';
import { cliOk, runDaemonToExit, startDaemon, until, type Daemon } from '../helpers/daemon-process.js';
import { sparseImage } from '../helpers/temp-files.js';
import { requireTools } from '../helpers/tools.js';

const sizeBytes = 4 * 1024 * 1024;
const sectors = sizeBytes / 512;

/** A daemon with a shared listener on a Unix socket in a temp dir of its own (removed after the test). */
async function sharedDaemon(t: { after: (fn: () => Promise<unknown>) => void }): Promise<{ daemon: Daemon; socket: string; run: (args: readonly string[]) => Promise<string> }> {
  const dir = await mkdtemp(join(tmpdir(), 'umirror-shared-'));
  const socket = join(dir, 'nbd.sock');
  const daemon = await startDaemon({ args: ['--nbd', `unix:${socket}`] });
  t.after(async () => {
    await daemon.dispose();
    await rm(dir, { recursive: true, force: true });
  });
  return { daemon, socket, run: cliOk(daemon) };
}

const exportsOf = (list: string): string[] => [...list.matchAll(/^export="([^"]*)":$/gm)].map((match) => match[1] ?? '');
const openCount = (info: string): number => Number(/^Open count:\s+(\d+)$/m.exec(info)?.[1] ?? NaN);

test('daemon --nbd: nbdinfo --list shows every device, those created and removed while it runs included', async (t) => {
  if (!requireTools(t, ['nbdinfo'])) return;
  const { daemon, socket, run: cli } = await sharedDaemon(t);
  const ready = daemon.logs().find((line) => line.msg === 'umirror daemon ready');
  assert.equal(ready?.['nbd'], `nbd+unix:///?socket=${socket}`, 'the ready line names the shared listener');
  const list = (): Promise<string> => runOk('nbdinfo', ['--list', `nbd+unix:///?socket=${socket}`]);
  assert.deepEqual(exportsOf(await list()), [], 'no device, no export');

  const a = await sparseImage(daemon.dir, 'a.img', sizeBytes);
  assert.equal((await cli(['create', 'lin', '--table', `0 ${sectors} linear ${a} 0`])).trim(), `nbd+unix:///lin?socket=${socket}`);
  await cli(['create', 'z', '--table', `0 2048 zero`]);
  assert.deepEqual(exportsOf(await list()), ['lin', 'z']);
  assert.match(await list(), /export="z":\n(.*\n)*?\s+export-size: 1048576 /);
  assert.match(await cli(['ls']), new RegExp(`^lin\\t\\(nbd\\+unix:///lin\\?socket=${socket.replace(/[/.]/g, '\\$&')}\\)$`, 'm'));

  await cli(['remove', 'lin']);
  assert.deepEqual(exportsOf(await list()), ['z'], 'a removed device is no export any more');
  const gone = await run('nbdinfo', [`nbd+unix:///lin?socket=${socket}`]);
  assert.notEqual(gone.code, 0, 'the removed export cannot be opened');
  await cli(['create', 'lin', '--table', `0 ${sectors} linear ${a} 0`]);
  assert.deepEqual(exportsOf(await list()), ['z', 'lin'], 'a device created again is an export again');
  assert.equal(await daemon.stop(), 0);
});

test('daemon --nbd: qemu-io writes two exports of one listener, each reaching its own device', async (t) => {
  if (!requireTools(t, ['qemu-io'])) return;
  const { daemon, socket, run: cli } = await sharedDaemon(t);
  const a0 = await sparseImage(daemon.dir, 'a0.img', sizeBytes);
  const a1 = await sparseImage(daemon.dir, 'a1.img', sizeBytes);
  const b0 = await sparseImage(daemon.dir, 'b0.img', sizeBytes);
  await cli(['create', 'ma', '--table', `0 ${sectors} mirror core 2 1024 nosync 2 ${a0} 0 ${a1} 0`]);
  await cli(['create', 'lb', '--table', `0 ${sectors} linear ${b0} 0`]);
  const uri = (name: string): string => `nbd+unix:///${name}?socket=${socket}`;
  await Promise.all([
    runOk('qemu-io', ['-f', 'raw', '-c', 'write -P 0xa1 0 64k', '-c', 'flush', uri('ma')]),
    runOk('qemu-io', ['-f', 'raw', '-c', 'write -P 0xb2 0 64k', '-c', 'flush', uri('lb')]),
  ]);
  await runOk('qemu-io', ['-f', 'raw', '-r', '-c', 'read -P 0xa1 0 64k', uri('ma')]);
  await runOk('qemu-io', ['-f', 'raw', '-r', '-c', 'read -P 0xb2 0 64k', uri('lb')]);
  // Straight from the images: both legs of the mirror, and the linear device's own file.
  await runOk('qemu-io', ['-f', 'raw', '-r', '-U', '-c', 'read -P 0xa1 0 64k', a0]);
  await runOk('qemu-io', ['-f', 'raw', '-r', '-U', '-c', 'read -P 0xa1 0 64k', a1]);
  await runOk('qemu-io', ['-f', 'raw', '-r', '-U', '-c', 'read -P 0xb2 0 64k', b0]);
  const metrics = await (await fetch(daemon.metricsUrl)).text();
  assert.match(metrics, /^umirror_nbd_requests_total\{device="lb",op="write"\} [1-9]/m, 'shared-listener requests are metered per device');
  assert.equal(await daemon.stop(), 0);
});

test('daemon --nbd: remove of a device a shared-listener client holds is EBUSY; Open count counts the client', async (t) => {
  const { daemon, socket, run: cli } = await sharedDaemon(t);
  await cli(['create', 'held', '--table', '0 2048 zero']);
  await cli(['create', 'other', '--table', '0 2048 zero']);
  const client = await RawNbdClient.connect({ path: socket });
  t.after(() => client.destroy());
  await client.start();
  await client.go({ name: 'held' });
  assert.equal(openCount(await cli(['info', 'held'])), 1, 'the client holds the device open');
  assert.equal(openCount(await cli(['info', 'other'])), 0, 'a client of another export does not count');
  const refused = await daemon.cli(['remove', 'held']);
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /Device or resource busy/);
  await cli(['remove', 'other']);

  // A second client mid-handshake on the same listener does not hold anything.
  const waiting = await RawNbdClient.connect({ path: socket });
  t.after(() => waiting.destroy());
  await waiting.start();
  client.destroy();
  await until('the client gone', async () => openCount(await cli(['info', 'held'])) === 0, 10_000);
  await cli(['remove', 'held']);
  const replies = await waiting.option(option.list);
  assert.equal(replies.length, 1, 'no export left: LIST answers with its ACK alone');
  assert.equal(await daemon.stop(), 0);
});

test('create --readonly: qemu-io cannot write, a write sent anyway fails with EPERM, reads work', async (t) => {
  if (!requireTools(t, ['qemu-io'])) return;
  const { daemon, socket, run: cli } = await sharedDaemon(t);
  const img = await sparseImage(daemon.dir, 'ro.img', sizeBytes);
  const img2 = await sparseImage(daemon.dir, 'ro2.img', sizeBytes);
  await writeFile(img, Buffer.alloc(65536, 0x3c), { flag: 'r+' });
  await writeFile(img2, Buffer.alloc(65536, 0x3c), { flag: 'r+' });
  await cli(['create', 'ro', '--readonly', '--table', `0 ${sectors} linear ${img} 0`]);
  // A device's own listener (create --nbd) honours --readonly too.
  const own = join(daemon.dir, 'ro-own.sock');
  await cli(['create', 'ro2', '--readonly', '--nbd', `unix:${own}`, '--table', `0 ${sectors} linear ${img2} 0`]);
  for (const uri of [`nbd+unix:///ro?socket=${socket}`, `nbd+unix:///ro2?socket=${own}`]) {
    const write = await run('qemu-io', ['-f', 'raw', '-c', 'write -P 0x11 0 4k', uri]);
    assert.notEqual(write.code, 0, `qemu-io wrote to the read-only export ${uri}`);
    assert.match(write.stderr, /Permission denied|read-only/);
    await runOk('qemu-io', ['-f', 'raw', '-r', '-c', 'read -P 0x3c 0 64k', uri]);
  }

  // A client that ignores the read-only flag: the server answers EPERM and the data is unchanged.
  const client = await RawNbdClient.connect({ path: socket });
  t.after(() => client.destroy());
  await client.start();
  const { transmissionFlags } = await client.go({ name: 'ro' });
  assert.notEqual(transmissionFlags & transmissionFlag.readOnly, 0, 'the export says it is read-only');
  client.request({ type: command.write, flags: 0, cookieHi: 0, cookieLo: 1, offsetBytes: 0, lengthBytes: 512 }, Buffer.alloc(512, 0x22));
  const reply = await client.reply();
  assert.equal(reply.header.kind, 'simple');
  assert.equal(reply.header.kind === 'simple' ? reply.header.error : -1, nbdErrno.EPERM);
  client.destroy();
  await runOk('qemu-io', ['-f', 'raw', '-r', '-U', '-c', 'read -P 0x3c 0 64k', img]);

  // Without --readonly the same device is writable.
  await until('the raw client gone', async () => openCount(await cli(['info', 'ro'])) === 0, 10_000);
  await cli(['remove', 'ro']);
  await cli(['remove', 'ro2']);
  await cli(['create', 'rw', '--table', `0 ${sectors} linear ${img} 0`]);
  await runOk('qemu-io', ['-f', 'raw', '-c', 'write -P 0x11 0 4k', `nbd+unix:///rw?socket=${socket}`]);
  assert.equal(await daemon.stop(), 0);
});

test('daemon --nbd on a busy address: one fatal line, exit 1, nothing answered', async (t) => {
  const busy = createServer();
  await new Promise<void>((resolve) => busy.listen({ host: '127.0.0.1', port: 0 }, resolve));
  t.after(() => busy.close());
  const address = busy.address();
  assert.ok(address !== null && typeof address === 'object');
  const dir = await mkdtemp(join(tmpdir(), 'umirror-shared-busy-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const result = await runDaemonToExit(['--socket', join(dir, 'ctl.sock'), '--nbd', `127.0.0.1:${address.port}`]);
  assert.equal(result.running, false, 'the daemon gave up');
  assert.equal(result.code, 1);
  assert.match(result.stderr, /"level":60.*"msg":"nbd: .*EADDRINUSE/);
  assert.doesNotMatch(result.stderr, /umirror daemon ready/);
});
