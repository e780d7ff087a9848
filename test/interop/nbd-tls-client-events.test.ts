/**
 * The server's client events over TLS: a client that upgrades with STARTTLS, finishes the handshake and
 * closes is one 'connect' and one 'disconnect' (the log lines "nbd client connected/disconnected"), not
 * two disconnects (the plain socket and the TLS socket over it both close).
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import type { ConnectionOptions } from 'node:tls';
import type { NbdClientEvent } from '../../src/nbd/connection.js';
import { pskCiphersTls12 } from '../../src/nbd/server-tls.js';
import { until } from '../helpers/daemon-process.js';
import { RawNbdClient } from '../helpers/nbd-raw-client.js';
import { startTlsFixture, tlsExportName } from '../helpers/nbd-tls-fixture.js';
import { pskKey, writePskFile } from '../helpers/tls-files.js';

test('a TLS client that connects and closes is one connect and one disconnect event', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'umirror-tls-events-'));
  t.after(() => rm(root, { recursive: true, force: true }));
  const key = pskKey();
  const pskFile = await writePskFile({ path: join(root, 'keys.psk'), entries: [{ identity: 'alice', key }] });
  const events: NbdClientEvent['kind'][] = [];
  const fixture = await startTlsFixture({ mode: 'require', pskFile, onClient: (event) => events.push(event.kind) });
  t.after(() => fixture.close());
  const tls: ConnectionOptions = { pskCallback: () => ({ identity: 'alice', psk: key }), ciphers: pskCiphersTls12, checkServerIdentity: () => undefined };
  const client = await RawNbdClient.connect({ path: fixture.socketPath });
  await client.start();
  await client.startTls(tls);
  await client.go({ name: tlsExportName });
  await until('the connect event', () => events.length === 1);
  client.destroy();
  await until('the disconnect event', () => events.length >= 2);
  // Both sockets have closed by now; a second disconnect would have been counted in the same turn.
  await new Promise((resolve) => setTimeout(resolve, 50));
  assert.deepEqual(events, ['connect', 'disconnect']);
});
