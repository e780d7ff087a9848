/**
 * The per-client bounds of NbdServer (limits.ts): at most `connectionsPerExportMax` connections in
 * transmission per export (one more GO answers NBD_REP_ERR_POLICY with the reason, one more EXPORT_NAME
 * is closed; a slot frees when a client leaves), and at most nbdHandshakingConnectionsMax connections
 * still in the handshake (one more is closed before the greeting). The admitted clients keep working
 * throughout; nbdinfo reports the refusal; `serve --max-connections` sets the bound.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { MemoryBlockDevice } from '../../src/block/memory-block-device.js';
import { encodeGoPayload, encodeOption } from '../../src/nbd/client-codec.js';
import { nbdHandshakingConnectionsMax } from '../../src/limits.js';
import { command, option, optionReply } from '../../src/nbd/protocol.js';
import { NbdServer } from '../../src/nbd/server.js';
import { RawNbdClient } from '../helpers/nbd-raw-client.js';
import { requireTools, run } from '../helpers/nbd-tools.js';
import { startServe } from '../helpers/serve-process.js';

async function withServer(connectionsPerExportMax: number, fn: (server: NbdServer, path: string, logLines: string[]) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'umirror-limits-'));
  const device = new MemoryBlockDevice({ sizeBytes: 8 * 1024 * 1024 });
  const logLines: string[] = [];
  const server = new NbdServer({ exports: [{ name: 'vol', device }], connectionsPerExportMax, log: (line) => logLines.push(line) });
  const path = join(dir, 'nbd.sock');
  await server.listen({ path });
  try {
    await fn(server, path, logLines);
  } finally {
    await server.close({ graceful: false });
    await device.close();
    await rm(dir, { recursive: true, force: true });
  }
}

async function openClient(path: string, name = 'vol'): Promise<RawNbdClient> {
  const client = await RawNbdClient.connect({ path });
  await client.start();
  await client.go({ name });
  return client;
}

/** One write and read back on an admitted client. */
async function roundTrip(client: RawNbdClient, offsetBytes: number): Promise<void> {
  const data = randomBytes(4096);
  client.request({ type: command.write, flags: 0, cookieHi: 0, cookieLo: 1, offsetBytes, lengthBytes: data.length }, data);
  const written = await client.reply();
  assert.ok(written.header.kind === 'simple' && written.header.error === 0);
  client.request({ type: command.read, flags: 0, cookieHi: 0, cookieLo: 2, offsetBytes, lengthBytes: data.length });
  const read = await client.reply();
  assert.ok(read.header.kind === 'simple' && read.header.error === 0);
  assert.deepEqual(await client.read(data.length), data);
}

test('NbdServer admits connectionsPerExportMax clients of an export; one more GO gets ERR_POLICY, one more EXPORT_NAME is closed', async () => {
  await withServer(2, async (server, path, logLines) => {
    const first = await openClient(path);
    const second = await openClient(path);
    assert.equal(server.clientCount, 2);

    const third = await RawNbdClient.connect({ path });
    await third.start();
    const refused = await third.option(option.go, encodeGoPayload('vol', []));
    assert.deepEqual(refused.map((r) => r.replyType), [optionReply.errPolicy]);
    assert.match(refused[0]?.payload.toString() ?? '', /export "vol" has the most connections allowed \(2\)/);
    assert.match(logLines.join('\n'), /refusing a client of export "vol": it has 2 connections/);
    // The refused client may still ask about the export, then try again later.
    assert.equal((await third.option(option.info, encodeGoPayload('vol', []))).at(-1)?.replyType, optionReply.ack);

    const old = await RawNbdClient.connect({ path });
    await old.start(0); // Plain newstyle: only EXPORT_NAME, which cannot answer an error.
    old.write(encodeOption(option.exportName, Buffer.from('vol')));
    assert.equal(await old.closedByServer(5000), true);

    await roundTrip(first, 0);
    await roundTrip(second, 4096);

    first.destroy();
    await waitFor(() => server.clientCount === 1);
    const again = await third.option(option.go, encodeGoPayload('vol', []));
    assert.equal(again.at(-1)?.replyType, optionReply.ack, 'a freed slot admits the next GO');
    await roundTrip(third, 8192);
    await roundTrip(second, 4096);
    second.destroy();
    third.destroy();
  });
});

test('NbdServer closes a connection beyond nbdHandshakingConnectionsMax before the greeting; clients in transmission are not counted', async () => {
  await withServer(4, async (_server, path, logLines) => {
    const admitted = await openClient(path);
    const idle: Socket[] = [];
    for (let i = 0; i < nbdHandshakingConnectionsMax; i++) {
      const socket = connect({ path });
      await new Promise<void>((resolve, reject) => {
        socket.once('data', () => resolve()); // The greeting.
        socket.once('error', reject);
      });
      idle.push(socket);
    }
    const extra = connect({ path });
    const received: Buffer[] = [];
    extra.on('data', (chunk: Buffer) => received.push(chunk));
    await new Promise<void>((resolve) => {
      extra.once('close', () => resolve());
      extra.once('error', () => undefined);
    });
    assert.equal(Buffer.concat(received).length, 0, 'no greeting for a connection over the bound');
    assert.match(logLines.join('\n'), new RegExp(`${nbdHandshakingConnectionsMax} clients are already in the handshake`));
    await roundTrip(admitted, 0);
    for (const socket of idle) socket.destroy();
    // Once the idle sockets are gone, a new client gets in.
    const later = await retry(() => openClient(path));
    await roundTrip(later, 4096);
    later.destroy();
    admitted.destroy();
  });
});

test('umirror serve --max-connections 1: nbdinfo is refused with the reason while one client holds the export', async (t) => {
  if (!requireTools(t, 'nbdinfo')) return;
  const dir = await mkdtemp(join(tmpdir(), 'umirror-serve-limit-'));
  const serve = await startServe(['--data', dir, '--size', '16M', '--nbd', `unix:${join(dir, 'nbd.sock')}`, '--max-connections', '1', '--quiet']);
  try {
    const holder = await openClient(join(dir, 'nbd.sock'), 'umirror');
    const refused = await run('nbdinfo', ['--size', serve.uri]);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /server policy prevents NBD_OPT_GO/); // libnbd tells ERR_POLICY so; the reason is in its debug log.
    await roundTrip(holder, 0);
    holder.destroy();
    const admitted = await retry(async () => {
      const result = await run('nbdinfo', ['--size', serve.uri]);
      if (result.code !== 0) throw new Error(result.stderr);
      return result;
    });
    assert.equal(admitted.stdout.trim(), String(16 * 1024 * 1024));
  } finally {
    await serve.stop();
    await rm(dir, { recursive: true, force: true });
  }
});

async function waitFor(condition: () => boolean): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    await new Promise((resolve) => setTimeout(resolve, 20));
    if (condition()) return;
    if (Date.now() > deadline) throw new Error('timed out');
  }
}

async function retry<T>(fn: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}
