/**
 * The NBD client's TLS settings without a TLS server: PSK file parsing (psktool's "name:hexkey" lines),
 * the ssh-like refusal of key files others can read (the mode rule itself: tls-keys.test.ts), which
 * credentials a URI selects and which it refuses, and an nbds:// open against umirror's own server (no TLS), which must fail rather than fall
 * back to plaintext. Handshakes with a real TLS server are in test/interop/nbd-client-tls.test.ts.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NbdBlockDevice } from '../../src/block/nbd-block-device.js';
import { MemoryBlockDevice } from '../../src/block/memory-block-device.js';
import { BlockError, type Errno } from '../../src/errors.js';
import { loadNbdTlsCredentials, parsePskFile } from '../../src/nbd/client-tls.js';
import { parseNbdUri } from '../../src/nbd/client-uri.js';
import { NbdServer } from '../../src/nbd/server.js';

const dirs: string[] = [];
after(async () => {
  await Promise.allSettled(dirs.map((dir) => rm(dir, { recursive: true, force: true })));
});

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'umirror-tlsu-'));
  dirs.push(dir);
  return dir;
}

async function fileWithMode(path: string, text: string, mode: number): Promise<string> {
  await writeFile(path, text);
  await chmod(path, mode);
  return path;
}

function isBlockError(code: Errno, message: RegExp): (err: unknown) => boolean {
  return (err) => {
    assert.ok(err instanceof BlockError, `expected a BlockError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    assert.match(err.message, message);
    return true;
  };
}

const where = { path: 'keys.psk', uri: 'nbds://h/' };

test('parsePskFile takes the first line for the identity, tolerating CRLF', () => {
  const text = 'bob:0102\r\nalice:a0B1c2\r\nalice:ffff\n';
  assert.deepEqual(parsePskFile(text, { identity: 'alice', ...where }), Buffer.from([0xa0, 0xb1, 0xc2]));
  assert.deepEqual(parsePskFile(text, { identity: 'bob', ...where }), Buffer.from([1, 2]));
});

test('parsePskFile refuses a missing identity, a key that is not hex bytes and an identity with a colon', () => {
  assert.throws(() => parsePskFile('alice:00\n', { identity: 'al', ...where }), isBlockError('EINVAL', /has no key for "al"/));
  for (const line of ['alice:', 'alice:abc', 'alice:zz', 'alice:00 11']) {
    assert.throws(() => parsePskFile(line, { identity: 'alice', ...where }), isBlockError('EINVAL', /not hex bytes/), line);
  }
  assert.throws(() => parsePskFile('a:b:00', { identity: 'a:b', ...where }), isBlockError('EINVAL', /no ':'/));
  assert.throws(() => parsePskFile(`alice:${'00'.repeat(257)}`, { identity: 'alice', ...where }), isBlockError('EINVAL', /257 bytes/));
});

test('loadNbdTlsCredentials picks PSK from tls-psk-file and the identity from the URI, and refuses a loose file with EPERM', async () => {
  const dir = await tempDir();
  const psk = await fileWithMode(join(dir, 'keys.psk'), 'alice:00ff\n', 0o600);
  const credentials = await loadNbdTlsCredentials(parseNbdUri(`nbds+unix://alice@/?socket=s&tls-psk-file=${psk}`));
  assert.deepEqual(credentials, { kind: 'psk', identity: 'alice', key: Buffer.from([0, 0xff]) });
  await chmod(psk, 0o644);
  await assert.rejects(loadNbdTlsCredentials(parseNbdUri(`nbds://alice@h/?tls-psk-file=${psk}`)), isBlockError('EPERM', /refusing PSK file .*mode 644/));
  await assert.rejects(loadNbdTlsCredentials(parseNbdUri(`nbds://alice@h/?tls-psk-file=${join(dir, 'absent')}`)), isBlockError('EINVAL', /cannot read PSK file/));
});

test('loadNbdTlsCredentials reads a certificates directory as libnbd lays it out, and checks the TCP host by default', async () => {
  const dir = await tempDir();
  await writeFile(join(dir, 'ca-cert.pem'), 'CA');
  const caOnly = await loadNbdTlsCredentials(parseNbdUri(`nbds://nbd.example.com/?tls-certificates=${dir}`));
  assert.deepEqual(caOnly, { kind: 'x509', ca: Buffer.from('CA'), crl: undefined, cert: undefined, key: undefined, verifyPeer: true, serverName: 'nbd.example.com' });
  await writeFile(join(dir, 'client-cert.pem'), 'CERT');
  await fileWithMode(join(dir, 'client-key.pem'), 'KEY', 0o600);
  const withClient = await loadNbdTlsCredentials(parseNbdUri(`nbds+unix:///?socket=s&tls-certificates=${dir}&tls-verify-peer=0`));
  assert.ok(withClient.kind === 'x509');
  assert.deepEqual([withClient.cert, withClient.key, withClient.verifyPeer, withClient.serverName], [Buffer.from('CERT'), Buffer.from('KEY'), false, undefined]);
  const named = await loadNbdTlsCredentials(parseNbdUri(`nbds+unix:///?socket=s&tls-certificates=${dir}&tls-hostname=server.lan`));
  assert.ok(named.kind === 'x509' && named.serverName === 'server.lan');
  await chmod(join(dir, 'client-key.pem'), 0o640);
  await assert.rejects(loadNbdTlsCredentials(parseNbdUri(`nbds://h/?tls-certificates=${dir}`)), isBlockError('EPERM', /refusing client key/));
  const system = await loadNbdTlsCredentials(parseNbdUri('nbds://h:1/'));
  assert.ok(system.kind === 'x509' && system.ca === undefined && system.serverName === 'h');
});

test('loadNbdTlsCredentials refuses anonymous TLS, contradictory settings and a directory without ca-cert.pem', async () => {
  const dir = await tempDir();
  await assert.rejects(loadNbdTlsCredentials(parseNbdUri('nbds://h/?tls-type=anon')), isBlockError('ENOTSUP', /anonymous TLS/));
  await assert.rejects(loadNbdTlsCredentials(parseNbdUri('nbds://h/?tls-type=psk')), isBlockError('EINVAL', /needs tls-psk-file/));
  await assert.rejects(loadNbdTlsCredentials(parseNbdUri(`nbds://h/?tls-psk-file=f&tls-certificates=${dir}`)), isBlockError('EINVAL', /exclude each other/));
  await assert.rejects(loadNbdTlsCredentials(parseNbdUri('nbds://h/?tls-type=x509&tls-psk-file=f')), isBlockError('EINVAL', /does not use tls-psk-file/));
  await assert.rejects(loadNbdTlsCredentials(parseNbdUri(`nbds://h/?tls-certificates=${dir}`)), isBlockError('EINVAL', /no readable ca-cert.pem/));
});

test('NbdBlockDevice fails an nbds:// open with ENOTSUP against umirror\'s own server, which has no TLS, and sends no plaintext request', async () => {
  const dir = await tempDir();
  const psk = await fileWithMode(join(dir, 'keys.psk'), 'alice:00ff\n', 0o600);
  const device = new MemoryBlockDevice({ sizeBytes: 1024 * 1024 });
  const server = new NbdServer({ exports: [{ name: 'leg', device }] });
  const socketPath = join(dir, 'nbd.sock');
  await server.listen({ path: socketPath });
  try {
    const uri = `nbds+unix://alice@/leg?socket=${socketPath}&tls-psk-file=${psk}`;
    await assert.rejects(NbdBlockDevice.open(uri), isBlockError('ENOTSUP', /the server refused TLS/));
  } finally {
    await server.close({ graceful: false });
    await device.close();
  }
});
