/**
 * tls-keys.ts: PSK files in psktool's format, certificate folders in nbdkit's/qemu's layout, and ssh's
 * rule for secrets (a PSK file or private key that group or others may read is refused with EPERM).
 * Also the server-side option checks that use them (checkNbdServeOptions, loadNbdServerTls).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TlsKeyError } from '../../src/errors.js';
import { checkNbdServeOptions } from '../../src/control/nbd-serve-options.js';
import { pskKeyBytesMax, tlsFileBytesMax } from '../../src/limits.js';
import { loadNbdServerTls } from '../../src/nbd/server-tls.js';
import { loadCertificateDir, loadPskFile, parsePskKeys, readSecretFile, secretModeProblem } from '../../src/nbd/tls-keys.js';

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'umirror-tls-keys-'));
  try {
    await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function writeMode(path: string, text: string, mode: number): Promise<string> {
  await writeFile(path, text);
  await chmod(path, mode);
  return path;
}

function rejectsWith(code: 'EINVAL' | 'EPERM', pattern: RegExp): (err: unknown) => boolean {
  return (err) => {
    assert.ok(err instanceof TlsKeyError, `expected a TlsKeyError, got ${String(err)}`);
    assert.equal(err.code, code);
    assert.match(err.message, pattern);
    assert.equal(err.message.includes('\n'), false, 'one line');
    return true;
  };
}

test('parsePskKeys reads psktool lines, tolerates CR and blank lines, and keeps the first key of an identity', () => {
  const keys = parsePskKeys('alice:00ff\r\n\nbob:0102030405\nalice:aaaa\n', { path: 'k' });
  assert.deepEqual([...keys.keys()], ['alice', 'bob']);
  assert.deepEqual(keys.get('alice'), Buffer.from([0x00, 0xff]));
  assert.deepEqual(keys.get('bob'), Buffer.from([1, 2, 3, 4, 5]));
});

test('parsePskKeys names the first malformed line', () => {
  const bad = (text: string, pattern: RegExp): void => {
    assert.throws(() => parsePskKeys(text, { path: 'keys.psk' }), rejectsWith('EINVAL', pattern));
  };
  bad('alice:00ff\nbob\n', /line 2: no ":"/);
  bad(':00ff\n', /line 1: the identity/);
  bad('alice:0g\n', /line 1: the key is not hex/);
  bad('alice:abc\n', /line 1: the key is not hex/);
  bad('alice:\n', /line 1: the key is not hex/);
  bad(`alice:${'00'.repeat(pskKeyBytesMax + 1)}\n`, /the key has 257 bytes/);
  bad('\n\n', /holds no key/);
});

test('secretModeProblem accepts 600 and 400 and refuses any group or other bit', () => {
  assert.equal(secretModeProblem(0o100600), undefined);
  assert.equal(secretModeProblem(0o100400), undefined);
  assert.match(secretModeProblem(0o100640) ?? '', /mode 640\); chmod 600 it/);
  assert.match(secretModeProblem(0o100604) ?? '', /accessible by group or others/);
  assert.match(secretModeProblem(0o100610) ?? '', /mode 610/);
});

test('loadPskFile refuses a PSK file that group or others may read, as ssh refuses a readable key', async () => {
  await withDir(async (dir) => {
    const path = await writeMode(join(dir, 'keys.psk'), 'alice:00ff\n', 0o644);
    await assert.rejects(loadPskFile(path), rejectsWith('EPERM', /^refusing PSK file .*keys\.psk: it is accessible by group or others \(mode 644\); chmod 600 it$/));
    await chmod(path, 0o600);
    assert.equal((await loadPskFile(path)).size, 1);
  });
});

test('readSecretFile refuses a missing file, a folder and a file larger than the bound with EINVAL', async () => {
  await withDir(async (dir) => {
    await assert.rejects(readSecretFile(join(dir, 'none'), { what: 'PSK file' }), rejectsWith('EINVAL', /does not exist/));
    await mkdir(join(dir, 'sub'), { mode: 0o700 });
    await assert.rejects(readSecretFile(join(dir, 'sub'), { what: 'PSK file' }), rejectsWith('EINVAL', /not a regular file/));
    const big = await writeMode(join(dir, 'big'), 'a'.repeat(tlsFileBytesMax + 1), 0o600);
    await assert.rejects(readSecretFile(big, { what: 'PSK file' }), rejectsWith('EINVAL', /larger than/));
    // A symbolic link to a good file is followed (the mode is the target's), as ssh does.
    const good = await writeMode(join(dir, 'good.psk'), 'a:00\n', 0o600);
    await symlink(good, join(dir, 'link.psk'));
    assert.equal((await readSecretFile(join(dir, 'link.psk'), { what: 'PSK file' })).toString(), 'a:00\n');
  });
});

test('loadCertificateDir needs the server pair, the CA only to verify peers, and a private key of mode 600', async () => {
  await withDir(async (dir) => {
    await assert.rejects(loadCertificateDir(dir, { role: 'server', requireCa: false }), rejectsWith('EINVAL', /has no server-cert\.pem/));
    await writeMode(join(dir, 'server-cert.pem'), 'CERT', 0o644);
    await assert.rejects(loadCertificateDir(dir, { role: 'server', requireCa: false }), rejectsWith('EINVAL', /server key .*does not exist/));
    await writeMode(join(dir, 'server-key.pem'), 'KEY', 0o640);
    await assert.rejects(loadCertificateDir(dir, { role: 'server', requireCa: false }), rejectsWith('EPERM', /refusing server key .*mode 640/));
    await chmod(join(dir, 'server-key.pem'), 0o600);
    const files = await loadCertificateDir(dir, { role: 'server', requireCa: false });
    assert.equal(files.ca, undefined);
    assert.equal(files.cert?.toString(), 'CERT');
    await assert.rejects(loadCertificateDir(dir, { role: 'server', requireCa: true }), rejectsWith('EINVAL', /has no ca-cert\.pem \(needed to verify clients\)/));
    const client = await loadCertificateDir(dir, { role: 'client', requireCa: false });
    assert.equal(client.cert, undefined, 'a client without client-cert.pem presents none');
  });
});

test('loadNbdServerTls refuses a certificate and key that are not PEM, with EINVAL naming the folder', async () => {
  await withDir(async (dir) => {
    await writeMode(join(dir, 'server-cert.pem'), 'not a certificate', 0o644);
    await writeMode(join(dir, 'server-key.pem'), 'not a key', 0o600);
    await assert.rejects(loadNbdServerTls({ mode: 'require', certificatesDir: dir }), rejectsWith('EINVAL', /cannot use the certificates in /));
  });
});

test('checkNbdServeOptions: a key makes TLS required by default; contradictions are usage errors', () => {
  assert.equal(checkNbdServeOptions({}).tlsMode, 'off');
  assert.equal(checkNbdServeOptions({ tlsPsk: 'k' }).tlsMode, 'require');
  assert.equal(checkNbdServeOptions({ tls: 'on', tlsCertificates: 'd' }).tlsMode, 'on');
  assert.throws(() => checkNbdServeOptions({ tls: 'require' }), /--tls require needs --tls-psk FILE or --tls-certificates DIR/);
  assert.throws(() => checkNbdServeOptions({ tls: 'off', tlsPsk: 'k' }), /--tls off takes no/);
  assert.throws(() => checkNbdServeOptions({ tlsPsk: 'k', tlsCertificates: 'd' }), /exclude each other/);
  assert.throws(() => checkNbdServeOptions({ tlsPsk: 'k', tlsVerifyPeer: true }), /--tls-verify-peer needs --tls-certificates/);
  assert.throws(() => checkNbdServeOptions({ tls: 'maybe' }), /invalid --tls "maybe"/);
  assert.throws(() => checkNbdServeOptions({ maxConnections: '0' }), /invalid --max-connections/);
  assert.throws(() => checkNbdServeOptions({ maxConnections: '65' }), /1 to 64/);
  assert.equal(checkNbdServeOptions({ maxConnections: '4' }).connectionsPerExportMax, 4);
  assert.equal(checkNbdServeOptions({ socketMode: '0660' }).socketMode, 0o660);
  assert.equal(checkNbdServeOptions({ socketMode: '600' }).socketMode, 0o600);
  assert.throws(() => checkNbdServeOptions({ socketMode: '4755' }), /invalid --socket-mode/);
  assert.throws(() => checkNbdServeOptions({ socketMode: 'rw' }), /invalid --socket-mode/);
  assert.throws(() => checkNbdServeOptions({ socketGroup: 'a b' }), /invalid --socket-group/);
});
