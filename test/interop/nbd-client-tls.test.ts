/**
 * NbdBlockDevice over TLS against a real nbdkit (GnuTLS): the BlockDevice conformance suite once over
 * `nbdkit --tls=require --tls-psk=FILE memory`, then one scenario per test: PSK over TCP and a Unix socket,
 * X.509 with a CA directory and a client certificate the server demands (--tls-verify-peer), and the
 * failures that must be clean and never fall back to plaintext — a wrong key, an unknown identity, a key
 * file others can read, an untrusted CA, a wrong server name, a plaintext URI to a TLS-only server, a TLS
 * URI to a server without TLS (nbdkit --tls=off answers STARTTLS with NBD_REP_ERR_POLICY). Without nbdkit or openssl the tests skip with a printed reason.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NbdBlockDevice } from '../../src/block/nbd-block-device.js';
import { BlockError, type Errno } from '../../src/errors.js';
import { blockDeviceSuite, pattern } from '../conformance/block-device.suite.js';
import { freeTcpPort, type NbdkitServer, startNbdkit } from '../helpers/nbdkit-server.js';
import { hasTool, requireTools } from '../helpers/nbd-tools.js';
import { makePki, pskKey, writePskFile } from '../helpers/tls-files.js';

const servers: NbdkitServer[] = [];
const devices: NbdBlockDevice[] = [];
const dirs: string[] = [];
after(async () => {
  await Promise.allSettled(devices.map((device) => device.close()));
  await Promise.allSettled(servers.map((server) => server.close()));
  await Promise.allSettled(dirs.map((dir) => rm(dir, { recursive: true, force: true })));
});

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'umirror-tls-'));
  dirs.push(dir);
  return dir;
}

async function nbdkit(options: Parameters<typeof startNbdkit>[0]): Promise<NbdkitServer> {
  const server = await startNbdkit(options);
  servers.push(server);
  return server;
}

async function open(uri: string): Promise<NbdBlockDevice> {
  const device = await NbdBlockDevice.open(uri, { connectTimeoutMs: 20_000 });
  devices.push(device);
  return device;
}

/** nbdkit --tls=require with a PSK file holding alice's key; returns the server and the key file. */
async function pskServer(options: { sizeBytes?: number; tcp?: boolean } = {}): Promise<{ server: NbdkitServer; pskFile: string; dir: string }> {
  const dir = await tempDir();
  const pskFile = await writePskFile({ path: join(dir, 'keys.psk'), entries: [{ identity: 'alice', key: pskKey() }] });
  const server = await nbdkit({
    flags: ['--tls=require', `--tls-psk=${pskFile}`],
    plugin: ['memory', String(options.sizeBytes ?? 1024 * 1024)],
    ...(options.tcp === true && { tcpPort: await freeTcpPort() }),
  });
  return { server, pskFile, dir };
}

function tlsUnixUri(server: NbdkitServer, query: string, user = ''): string {
  return `nbds+unix://${user === '' ? '' : `${user}@`}/?socket=${encodeURIComponent(server.socketPath)}&${query}`;
}

async function rejectsWith(promise: Promise<unknown>, code: Errno, message: RegExp): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof BlockError, `expected a BlockError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    assert.match(err.message, message);
    return true;
  });
}

async function roundTrip(device: NbdBlockDevice): Promise<void> {
  const data = pattern(256 * 1024 + 3, 7);
  await device.write(5, data, { fua: true });
  assert.deepEqual(await device.read(5, data.length), data);
  await device.flush();
}

if (hasTool('nbdkit')) {
  blockDeviceSuite({
    name: 'NbdBlockDevice (nbdkit --tls=require --tls-psk memory, over TLS)',
    create: async (sizeBytes) => {
      const { server, pskFile } = await pskServer({ sizeBytes });
      return NbdBlockDevice.open(tlsUnixUri(server, `tls-psk-file=${encodeURIComponent(pskFile)}`, 'alice'));
    },
  });
} else {
  test('NbdBlockDevice conformance over TLS against nbdkit', (t) => {
    requireTools(t, 'nbdkit');
  });
}

describe('NbdBlockDevice over TLS with a pre-shared key', () => {
  test('NbdBlockDevice connects with a PSK over TCP (identity from the URI user) and over a Unix socket (tls-username)', async (t) => {
    if (!requireTools(t, 'nbdkit')) return;
    const tcp = await pskServer({ tcp: true });
    const overTcp = await open(`nbds://alice@127.0.0.1:${tcp.server.tcpPort}/?tls-psk-file=${encodeURIComponent(tcp.pskFile)}`);
    await roundTrip(overTcp);
    const unix = await pskServer();
    const overUnix = await open(tlsUnixUri(unix.server, `tls-psk-file=${encodeURIComponent(unix.pskFile)}&tls-username=alice`));
    await roundTrip(overUnix);
    assert.equal(overUnix.connectionState, 'ready');
  });

  test('NbdBlockDevice fails with EIO, naming the key, when the PSK is wrong', async (t) => {
    if (!requireTools(t, 'nbdkit')) return;
    const { server, dir, pskFile } = await pskServer();
    const wrong = await writePskFile({ path: join(dir, 'wrong.psk'), entries: [{ identity: 'alice', key: pskKey() }] });
    await rejectsWith(open(tlsUnixUri(server, `tls-psk-file=${encodeURIComponent(wrong)}`, 'alice')), 'EIO', /TLS handshake failed.*key for "alice"/);
    // The same server still serves the right key.
    await roundTrip(await open(tlsUnixUri(server, `tls-psk-file=${encodeURIComponent(pskFile)}`, 'alice')));
  });

  test('NbdBlockDevice refuses an identity missing from the PSK file with EINVAL, before connecting', async (t) => {
    if (!requireTools(t, 'nbdkit')) return;
    const { server, pskFile } = await pskServer();
    await rejectsWith(open(tlsUnixUri(server, `tls-psk-file=${encodeURIComponent(pskFile)}`, 'mallory')), 'EINVAL', /has no key for "mallory"/);
  });

  test('NbdBlockDevice refuses a PSK file readable by group or others with EPERM', async (t) => {
    if (!requireTools(t, 'nbdkit')) return;
    const { server, dir } = await pskServer();
    const loose = await writePskFile({ path: join(dir, 'loose.psk'), entries: [{ identity: 'alice', key: pskKey() }], mode: 0o644 });
    await rejectsWith(open(tlsUnixUri(server, `tls-psk-file=${encodeURIComponent(loose)}`, 'alice')), 'EPERM', /accessible by group or others \(mode 644\); chmod 600/);
  });
});

describe('NbdBlockDevice over TLS with X.509 certificates', () => {
  test('NbdBlockDevice verifies nbdkit\'s certificate against ca-cert.pem and the TCP host, and presents its own', async (t) => {
    if (!requireTools(t, 'nbdkit', 'openssl')) return;
    const pki = await makePki(join(await tempDir(), 'pki'));
    // --tls-verify-peer: nbdkit demands our client-cert.pem, signed by the same CA.
    const server = await nbdkit({
      flags: ['--tls=require', `--tls-certificates=${pki}`, '--tls-verify-peer'],
      plugin: ['memory', '1M'],
      tcpPort: await freeTcpPort(),
    });
    const device = await open(`nbds://localhost:${server.tcpPort}/?tls-certificates=${encodeURIComponent(pki)}`);
    await roundTrip(device);
    const byAddress = await open(`nbds://127.0.0.1:${server.tcpPort}/?tls-certificates=${encodeURIComponent(pki)}`);
    assert.equal(byAddress.sizeBytes, 1024 * 1024);
  });

  test('NbdBlockDevice refuses a server certificate from another CA, or for another name, with EIO', async (t) => {
    if (!requireTools(t, 'nbdkit', 'openssl')) return;
    const root = await tempDir();
    const pki = await makePki(join(root, 'pki'));
    const other = await makePki(join(root, 'other'), { commonName: 'another CA' });
    const server = await nbdkit({ flags: ['--tls=require', `--tls-certificates=${pki}`], plugin: ['memory', '1M'] });
    await rejectsWith(open(tlsUnixUri(server, `tls-certificates=${encodeURIComponent(other)}`)), 'EIO', /TLS handshake failed/);
    await rejectsWith(
      open(tlsUnixUri(server, `tls-certificates=${encodeURIComponent(pki)}&tls-hostname=nbd.example.com`)),
      'EIO',
      /TLS handshake failed.*nbd\.example\.com/,
    );
    // Over a Unix socket there is no host to check: the CA alone is verified, as libnbd does.
    await roundTrip(await open(tlsUnixUri(server, `tls-certificates=${encodeURIComponent(pki)}`)));
  });
});

describe('NbdBlockDevice never falls back to plaintext', () => {
  test('NbdBlockDevice reports a TLS-only server\'s TLS_REQD refusal of a plaintext URI as ENOTSUP', async (t) => {
    if (!requireTools(t, 'nbdkit')) return;
    const { server } = await pskServer();
    await rejectsWith(open(server.uri), 'ENOTSUP', /the server requires TLS \(use nbds:\/\/\)/);
  });

  test('NbdBlockDevice fails an nbds:// open with nbdkit --tls=off\'s policy refusal of STARTTLS as EPERM', async (t) => {
    if (!requireTools(t, 'nbdkit')) return;
    const dir = await tempDir();
    const pskFile = await writePskFile({ path: join(dir, 'keys.psk'), entries: [{ identity: 'alice', key: pskKey() }] });
    const plain = await nbdkit({ flags: ['--tls=off'], plugin: ['memory', '1M'] });
    await rejectsWith(open(tlsUnixUri(plain, `tls-psk-file=${encodeURIComponent(pskFile)}`, 'alice')), 'EPERM', /the server refused TLS/);
  });
});
