/**
 * NbdServer's listener life cycle in one process: a listener bound with `start: false` holds its
 * connections unanswered (no greeting) until `start()`, then serves them; at most heldConnectionsMax
 * are held; closing before the start drops them. `clientCount` counts a connection only from the end of
 * its handshake, and `handshakeTimeoutMs` drops a client that does not finish it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { MemoryBlockDevice } from '../../src/block/memory-block-device.js';
import { heldConnectionsMax } from '../../src/limits.js';
import { NbdServer } from '../../src/nbd/server.js';
import { RawNbdClient } from '../helpers/nbd-raw-client.js';

async function fixture(t: { after: (fn: () => Promise<void>) => void }, options: { handshakeTimeoutMs?: number } = {}) {
  const dir = await mkdtemp(join(tmpdir(), 'umirror-nbd-listener-'));
  const device = new MemoryBlockDevice({ sizeBytes: 1024 * 1024 });
  const logLines: string[] = [];
  const server = new NbdServer({ exports: [{ name: 'vol', device }], log: (line) => logLines.push(line), ...options });
  t.after(async () => {
    await server.close({ graceful: false });
    await device.close();
    await rm(dir, { recursive: true, force: true });
  });
  return { path: join(dir, 'nbd.sock'), server, logLines };
}

test('NbdServer.listen with start: false holds connections without a greeting until start()', async (t) => {
  const { path, server } = await fixture(t);
  const listener = await server.listen({ path }, { start: false });
  const early = await RawNbdClient.connect({ path });
  const greeting = early.read(18);
  const first = await Promise.race([greeting.then(() => 'greeted' as const), sleep(300).then(() => 'silent' as const)]);
  assert.equal(first, 'silent', 'no greeting before start()');
  assert.equal(server.connectionCount, 0);
  listener.start();
  await greeting;
  early.write(Buffer.from([0, 0, 0, 3])); // FIXED_NEWSTYLE | NO_ZEROES
  const { sizeBytes } = await early.go();
  assert.equal(sizeBytes, 1024 * 1024);
  assert.equal(server.clientCount, 1);
  early.destroy();
});

test('NbdServer holds at most heldConnectionsMax connections before start(); close() before start drops them', async (t) => {
  const { path, server } = await fixture(t);
  const listener = await server.listen({ path }, { start: false });
  const clients = await Promise.all(Array.from({ length: heldConnectionsMax + 4 }, () => RawNbdClient.connect({ path })));
  const closed = await Promise.all(clients.map((client) => client.closedByServer(1000)));
  assert.equal(closed.filter(Boolean).length, 4, 'the connections beyond the bound are closed at once');
  await listener.close({ graceful: false });
  const after = await Promise.all(clients.map((client) => client.closedByServer(2000)));
  assert.ok(after.every(Boolean), 'close() drops every held connection');
});

test('NbdServer counts a client only after its handshake, and drops a handshake that outlives handshakeTimeoutMs', async (t) => {
  const { path, server, logLines } = await fixture(t, { handshakeTimeoutMs: 300 });
  await server.listen({ path });
  const slow = await RawNbdClient.connect({ path });
  await slow.start();
  const quick = await RawNbdClient.connect({ path });
  await quick.start();
  await quick.go();
  assert.equal(server.connectionCount, 2);
  assert.equal(server.clientCount, 1, 'the client in the handshake is not counted');
  assert.equal(await slow.closedByServer(5000), true);
  assert.ok(logLines.some((line) => /handshake not finished within 300 ms/.test(line)), logLines.join('\n'));
  await sleep(400);
  assert.equal(server.clientCount, 1, 'a finished handshake is not timed out');
  quick.socket.end();
  const clients = (): number => server.clientCount;
  for (let i = 0; i < 100 && clients() !== 0; i++) await sleep(20);
  assert.equal(clients(), 0, 'a client that hung up is no longer counted');
  quick.destroy();
});
