/**
 * What the TLS server refuses, and that a refusal disturbs nobody else: a plaintext client against
 * `--tls require` (nbdinfo --list and a raw socket: ERR_TLS_REQD, no export told), a wrong key and an
 * unknown identity, untrusted and expired client certificates (Node's TLS client, which presents what it
 * is given), a client that drops STARTTLS halfway (closes, or stalls until the handshake limit), and
 * plaintext sent after STARTTLS before the TLS handshake (the injection hole). A client in transmission
 * runs I/O through all of it, and an nbdcopy runs alongside.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { ConnectionOptions } from 'node:tls';
import { encodeGoPayload, encodeMetaContextPayload, encodeOption } from '../../src/nbd/client-codec.js';
import { command, option, optionReply } from '../../src/nbd/protocol.js';
import { pskCiphersTls12 } from '../../src/nbd/server-tls.js';
import { RawNbdClient } from '../helpers/nbd-raw-client.js';
import { requireTools, run, runOk } from '../helpers/nbd-tools.js';
import { makeClientDirs, nbdsUri, startTlsFixture, tlsExportName, type ClientDirs, type TlsFixture } from '../helpers/nbd-tls-fixture.js';
import { findTool } from '../helpers/tools.js';
import { makePki, pskKey, writePskFile } from '../helpers/tls-files.js';

const MiB = 1024 * 1024;

function pskOptions(identity: string, key: Buffer, extra: ConnectionOptions = {}): ConnectionOptions {
  return { pskCallback: () => ({ identity, psk: key }), ciphers: pskCiphersTls12, checkServerIdentity: () => undefined, ...extra };
}

/** A client in transmission over TLS that can prove, at any moment, that it still gets its I/O done. */
class BusyClient {
  #cookie = 1;
  private constructor(readonly client: RawNbdClient) {}

  static async open(fixture: TlsFixture, tls: ConnectionOptions): Promise<BusyClient> {
    const client = await RawNbdClient.connect({ path: fixture.socketPath });
    await client.start();
    await client.startTls(tls);
    await client.go({ name: tlsExportName });
    return new BusyClient(client);
  }

  /** Writes a fresh pattern at `offsetBytes` and reads it back (simple replies). */
  async roundTrip(offsetBytes: number): Promise<void> {
    const data = randomBytes(64 * 1024);
    const cookieLo = this.#cookie++;
    this.client.request({ type: command.write, flags: 0, cookieHi: 0, cookieLo, offsetBytes, lengthBytes: data.length }, data);
    const written = await this.client.reply();
    assert.ok(written.header.kind === 'simple' && written.header.error === 0 && written.header.cookieLo === cookieLo);
    const readCookie = this.#cookie++;
    this.client.request({ type: command.read, flags: 0, cookieHi: 0, cookieLo: readCookie, offsetBytes, lengthBytes: data.length });
    const read = await this.client.reply();
    assert.ok(read.header.kind === 'simple' && read.header.error === 0 && read.header.cookieLo === readCookie);
    assert.deepEqual(await this.client.read(data.length), data);
  }
}

describe('TLS required with a PSK: what is refused, and that nobody else notices', () => {
  let root = '';
  let pskFile = '';
  let fixture: TlsFixture | undefined;
  const identity = 'alice';
  const key = pskKey();
  let busy: BusyClient | undefined;

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'umirror-tls-refusals-'));
    pskFile = await writePskFile({ path: join(root, 'keys.psk'), entries: [{ identity, key }] });
    fixture = await startTlsFixture({ mode: 'require', pskFile, handshakeTimeoutMs: 1500 });
    busy = await BusyClient.open(fixture, pskOptions(identity, key));
  });
  after(async () => {
    busy?.client.destroy();
    await fixture?.close();
    await rm(root, { recursive: true, force: true });
  });

  test('nbdinfo --list in plaintext gets ERR_TLS_REQD and sees no export', async (t) => {
    if (!requireTools(t, 'nbdinfo') || fixture === undefined || busy === undefined) return;
    for (const uri of [`nbd://127.0.0.1:${fixture.port}`, `nbd+unix:///?socket=${fixture.socketPath}`]) {
      const result = await run('nbdinfo', ['--list', uri]);
      assert.notEqual(result.code, 0);
      assert.equal(`${result.stdout}${result.stderr}`.includes(tlsExportName), false, `${uri}: the export name leaked`);
      const size = await run('nbdinfo', ['--size', `${uri}/${tlsExportName}`]);
      assert.notEqual(size.code, 0);
      assert.equal(size.stdout, '', 'no size is told in plaintext');
    }
    await busy.roundTrip(0);
  });

  test('a raw plaintext client: LIST, INFO, GO and meta contexts answer ERR_TLS_REQD without a name; EXPORT_NAME closes', async () => {
    assert.ok(fixture !== undefined && busy !== undefined);
    const client = await RawNbdClient.connect({ host: '127.0.0.1', port: fixture.port });
    await client.start();
    for (const [code, payload] of [
      [option.list, undefined],
      [option.info, encodeGoPayload(tlsExportName, [0, 1, 2, 3])],
      [option.go, encodeGoPayload('', [0, 1, 2, 3])],
      [option.structuredReply, undefined],
      [option.listMetaContext, encodeMetaContextPayload(tlsExportName, [])],
    ] as const) {
      const replies = await client.option(code, payload);
      assert.deepEqual(replies.map((r) => r.replyType), [optionReply.errTlsReqd], `option ${code}`);
      assert.equal(Buffer.concat(replies.map((r) => r.payload)).includes(tlsExportName), false);
    }
    client.write(encodeOption(option.exportName, Buffer.from(tlsExportName)));
    assert.equal(await client.closedByServer(), true, 'EXPORT_NAME before STARTTLS closes the connection');
    await busy.roundTrip(MiB);
  });

  test('a wrong key, an unknown identity and TLS 1.1 are refused; TLS 1.2 with a PSK suite works', async (t) => {
    assert.ok(fixture !== undefined && busy !== undefined);
    for (const options of [pskOptions(identity, pskKey()), pskOptions('mallory', key), pskOptions(identity, key, { maxVersion: 'TLSv1.1', minVersion: 'TLSv1.1' })]) {
      const client = await RawNbdClient.connect({ path: fixture.socketPath });
      await client.start();
      await assert.rejects(client.startTls(options));
      client.destroy();
      await busy.roundTrip(2 * MiB);
    }
    const tls12 = await RawNbdClient.connect({ path: fixture.socketPath });
    await tls12.start();
    const secure = await tls12.startTls(pskOptions(identity, key, { maxVersion: 'TLSv1.2' }));
    assert.equal(secure.getProtocol(), 'TLSv1.2');
    assert.match(secure.getCipher().name, /^ECDHE-PSK-CHACHA20-POLY1305$/);
    assert.equal((await tls12.go({ name: tlsExportName })).sizeBytes, 16 * MiB);
    tls12.destroy();
    if (requireTools(t, 'nbdinfo')) {
      const otherKey = await writePskFile({ path: join(root, 'wrong.psk'), entries: [{ identity, key: pskKey() }] });
      const wrong = await run('nbdinfo', ['--size', nbdsUri(fixture, { transport: 'tcp', credentials: { psk: { file: otherKey, identity } } })]);
      assert.notEqual(wrong.code, 0);
      assert.equal(wrong.stdout, '');
    }
    await busy.roundTrip(2 * MiB);
  });

  test('a client that drops STARTTLS halfway (closes, or stalls past the handshake limit) is dropped; an nbdcopy alongside finishes', async (t) => {
    assert.ok(fixture !== undefined && busy !== undefined);
    const server = fixture;
    let copying: Promise<void> | undefined;
    const data = randomBytes(8 * MiB);
    if (requireTools(t, 'nbdcopy')) {
      const source = join(root, 'copy.raw');
      await writeFile(source, data);
      copying = runOk('nbdcopy', [source, nbdsUri(server, { transport: 'tcp', credentials: { psk: { file: pskFile, identity } } })]).then(() => undefined);
    }
    const halfHello = Buffer.from('16030100c8010000c40303', 'hex'); // A ClientHello record header and the start of its body.
    const closer = await RawNbdClient.connect({ path: server.socketPath });
    await closer.start();
    const ack = await closer.option(option.startTls);
    assert.deepEqual(ack.map((r) => r.replyType), [optionReply.ack]);
    closer.write(halfHello);
    closer.destroy();
    const staller = await RawNbdClient.connect({ host: '127.0.0.1', port: server.port });
    await staller.start();
    await staller.option(option.startTls);
    staller.write(halfHello);
    await busy.roundTrip(3 * MiB);
    assert.equal(await staller.closedByServer(10_000), true, 'the stalled TLS handshake ends at the handshake limit');
    await copying;
    if (copying !== undefined) assert.deepEqual(await server.device.read(0, 8 * MiB), data);
    await busy.roundTrip(3 * MiB);
  });

  test('plaintext sent after STARTTLS, before the TLS handshake, is never taken as an option: the connection is dropped', async () => {
    assert.ok(fixture !== undefined && busy !== undefined);
    const client = await RawNbdClient.connect({ path: fixture.socketPath });
    await client.start();
    // STARTTLS and an injected GO in one write, as a man in the middle would append it.
    client.write(Buffer.concat([encodeOption(option.startTls), encodeOption(option.go, encodeGoPayload(tlsExportName, []))]));
    assert.equal(await client.closedByServer(5000), true);
    assert.equal((await client.read(0)).length, 0);
    assert.ok(fixture.logLines.some((line) => /bytes after STARTTLS before the TLS handshake/.test(line)), fixture.logLines.join('\n'));
    await busy.roundTrip(4 * MiB);
  });
});

describe('TLS with --tls-verify-peer against client certificates Node presents as given', () => {
  let root = '';
  let fixture: TlsFixture | undefined;
  let clients: ClientDirs | undefined;

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'umirror-tls-peer-'));
    if (findTool('openssl') === undefined) return;
    const pki = await makePki(join(root, 'pki'));
    clients = await makeClientDirs(pki, join(root, 'clients'));
    fixture = await startTlsFixture({ mode: 'require', certificatesDir: pki, verifyPeer: true });
  });
  after(async () => {
    await fixture?.close();
    await rm(root, { recursive: true, force: true });
  });

  const options = async (dir: string): Promise<ConnectionOptions> => ({
    ca: await readFile(join(dir, 'ca-cert.pem')),
    cert: await readFile(join(dir, 'client-cert.pem')),
    key: await readFile(join(dir, 'client-key.pem')),
    servername: 'localhost',
  });

  test('an untrusted and an expired client certificate are refused with the reason logged; a good one works', async (t) => {
    if (!requireTools(t, 'openssl') || fixture === undefined || clients === undefined) return;
    for (const [dir, reason] of [
      [clients.untrusted, /client certificate refused: UNABLE_TO_VERIFY_LEAF_SIGNATURE/],
      [clients.expired, /client certificate refused: CERT_HAS_EXPIRED/],
    ] as const) {
      const client = await RawNbdClient.connect({ path: fixture.socketPath });
      await client.start();
      // TLS 1.3 sends the client certificate after the client's Finished: the refusal may come as an
      // alert after 'secureConnect'. Either way no option may be answered.
      const secure = await client.startTls(await options(dir)).catch(() => undefined);
      if (secure !== undefined) await assert.rejects(client.option(option.list));
      client.destroy();
      await waitFor(() => fixture?.logLines.some((line) => reason.test(line)) === true, `log matching ${reason}: ${fixture.logLines.join(" / ")}`);
    }
    const good = await RawNbdClient.connect({ path: fixture.socketPath });
    await good.start();
    await good.startTls(await options(clients.good));
    assert.equal((await good.go({ name: tlsExportName })).sizeBytes, 16 * MiB);
    good.destroy();
  });
});

describe('TLS on (offered, not required)', () => {
  test('a plaintext client and a TLS client both reach the export', async (t) => {
    if (!requireTools(t, 'nbdinfo')) return;
    const root = await mkdtemp(join(tmpdir(), 'umirror-tls-on-'));
    const pskFile = await writePskFile({ path: join(root, 'keys.psk'), entries: [{ identity: 'alice', key: pskKey() }] });
    const fixture = await startTlsFixture({ mode: 'on', pskFile });
    try {
      assert.equal((await runOk('nbdinfo', ['--size', `nbd://127.0.0.1:${fixture.port}/${tlsExportName}`])).trim(), String(16 * MiB));
      const secure = JSON.parse(await runOk('nbdinfo', ['--json', nbdsUri(fixture, { transport: 'unix', credentials: { psk: { file: pskFile, identity: 'alice' } } })])) as { TLS: boolean };
      assert.equal(secure.TLS, true);
      assert.match(fixture.tcp.uri, /^nbds:\/\//);
      assert.match(fixture.unix.uri, /^nbds\+unix:\/\/\//);
    } finally {
      await fixture.close();
      await rm(root, { recursive: true, force: true });
    }
  });
});

async function waitFor(condition: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
