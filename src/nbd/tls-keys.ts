/**
 * TLS key files, as nbdkit, qemu and libnbd lay them out, read with ssh's caution. One module for both
 * ends of NBD: the server (`serve`/`create --nbd` with `--tls-psk FILE` or `--tls-certificates DIR`)
 * and the client leg (`nbds://...?tls-psk-file=FILE`), so a file one accepts the other accepts too.
 *
 *   PSK file     "identity:hexkey" lines (GnuTLS psktool, nbdkit --tls-psk, qemu's DIR/keys.psk); blank
 *                lines and a trailing CR are tolerated; the first line for an identity wins (GnuTLS
 *                reads it so); a malformed line is refused with its line number.
 *   cert folder  ca-cert.pem, ca-crl.pem, server-cert.pem + server-key.pem (server), client-cert.pem +
 *                client-key.pem (client): qemu's and nbdkit's names.
 *
 * Secrets (the PSK file, a private key) whose mode lets group or others in are refused with EPERM and a
 * one-line message ("chmod 600 it"), as ssh refuses a readable private key: a key others could read
 * authenticates nobody. Certificates and CAs are public and may have any mode. Every file is read
 * through one descriptor (fstat, then read), so the mode checked is the mode of the bytes read.
 *
 * Errors: TlsKeyError EINVAL (missing, not a regular file, unreadable, larger than tlsFileBytesMax,
 * malformed) or EPERM (mode). Callers add where the file was named (a URI, an option).
 */
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { assert } from '../assert.js';
import { TlsKeyError } from '../errors.js';
import { rethrowProgrammerError } from '../fail-fast.js';
import { pskEntriesMax, pskIdentityBytesMax, pskKeyBytesMax, tlsFileBytesMax } from '../limits.js';

/** Why a secret file's mode is unsafe, or undefined when only its owner may touch it (ssh's rule). */
export function secretModeProblem(mode: number): string | undefined {
  if ((mode & 0o077) === 0) return undefined;
  const octal = (mode & 0o777).toString(8).padStart(3, '0');
  return `it is accessible by group or others (mode ${octal}); chmod 600 it`;
}

/**
 * Reads a secret. @throws TlsKeyError EPERM when group or others may access it, EINVAL when it is
 * missing, not a regular file, unreadable or too large.
 */
export async function readSecretFile(path: string, options: { what: string }): Promise<Buffer> {
  const data = await readTlsFileImpl(path, { what: options.what, secret: true });
  if (data === undefined) throw new TlsKeyError('EINVAL', { path, message: `cannot read ${options.what} ${path}: it does not exist` });
  return data;
}

/** Reads a public file (a certificate, a CA, a CRL); undefined when it does not exist. @throws TlsKeyError EINVAL. */
export async function readTlsFile(path: string, options: { what: string }): Promise<Buffer | undefined> {
  return readTlsFileImpl(path, { what: options.what, secret: false });
}

async function readTlsFileImpl(path: string, options: { what: string; secret: boolean }): Promise<Buffer | undefined> {
  const { what, secret } = options;
  let handle;
  try {
    handle = await open(path, 'r');
  } catch (err) {
    rethrowProgrammerError(err);
    if (codeOf(err) === 'ENOENT') return undefined;
    throw new TlsKeyError('EINVAL', { path, message: `cannot read ${what} ${path}: ${messageOf(err)}`, cause: err });
  }
  try {
    const info = await handle.stat();
    if (!info.isFile()) throw new TlsKeyError('EINVAL', { path, message: `cannot use ${what} ${path}: it is not a regular file` });
    const problem = secret ? secretModeProblem(info.mode) : undefined;
    if (problem !== undefined) throw new TlsKeyError('EPERM', { path, message: `refusing ${what} ${path}: ${problem}` });
    if (info.size > tlsFileBytesMax) {
      throw new TlsKeyError('EINVAL', { path, message: `cannot use ${what} ${path}: it is larger than ${tlsFileBytesMax} bytes` });
    }
    const data = await handle.readFile();
    if (data.length > tlsFileBytesMax) {
      throw new TlsKeyError('EINVAL', { path, message: `cannot use ${what} ${path}: it is larger than ${tlsFileBytesMax} bytes` });
    }
    return data;
  } catch (err) {
    rethrowProgrammerError(err);
    if (err instanceof TlsKeyError) throw err;
    throw new TlsKeyError('EINVAL', { path, message: `cannot read ${what} ${path}: ${messageOf(err)}`, cause: err });
  } finally {
    await handle.close();
  }
}

/**
 * Every identity of a PSK file with its key. @throws TlsKeyError EINVAL naming the first bad line
 * (no ':', an empty or too long identity, a key that is not hex bytes or is too long), or when the file
 * holds no key at all or more than pskEntriesMax.
 */
export function parsePskKeys(text: string, options: { path: string }): ReadonlyMap<string, Buffer> {
  const { path } = options;
  const keys = new Map<string, Buffer>();
  const lines = text.split('\n');
  for (const [index, raw] of lines.entries()) {
    const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    if (line.trim() === '') continue;
    const bad = (why: string): never => {
      throw new TlsKeyError('EINVAL', { path, message: `PSK file ${path} line ${index + 1}: ${why} (expected "identity:hexkey", as psktool writes)` });
    };
    const colon = line.indexOf(':');
    if (colon < 0) bad('no ":"');
    const identity = line.slice(0, colon);
    const hex = line.slice(colon + 1);
    if (identity === '' || Buffer.byteLength(identity, 'utf8') > pskIdentityBytesMax) bad(`the identity must have 1 to ${pskIdentityBytesMax} bytes`);
    if (hex.length === 0 || hex.length % 2 !== 0 || !/^[0-9a-fA-F]+$/.test(hex)) bad('the key is not hex bytes');
    const key = Buffer.from(hex, 'hex');
    assert(key.length * 2 === hex.length, 'every hex digit pair became one byte');
    if (key.length > pskKeyBytesMax) bad(`the key has ${key.length} bytes (at most ${pskKeyBytesMax})`);
    if (!keys.has(identity)) keys.set(identity, key);
    if (keys.size > pskEntriesMax) throw new TlsKeyError('EINVAL', { path, message: `PSK file ${path} holds more than ${pskEntriesMax} identities` });
  }
  if (keys.size === 0) throw new TlsKeyError('EINVAL', { path, message: `PSK file ${path} holds no key` });
  return keys;
}

/** Reads and parses a PSK file (a secret: mode 600). @throws TlsKeyError. */
export async function loadPskFile(path: string): Promise<ReadonlyMap<string, Buffer>> {
  const data = await readSecretFile(path, { what: 'PSK file' });
  return parsePskKeys(data.toString('utf8'), { path });
}

/** PEM contents of a certificate folder; a missing optional file is undefined. */
export interface CertificateFiles {
  /** ca-cert.pem: the CA that signs the peer's certificate. */
  readonly ca: Buffer | undefined;
  /** ca-crl.pem: revoked certificates. */
  readonly crl: Buffer | undefined;
  /** <role>-cert.pem and <role>-key.pem: our own certificate and its key, both or neither. */
  readonly cert: Buffer | undefined;
  readonly key: Buffer | undefined;
}

/**
 * Reads a certificate folder for one end. The server needs server-cert.pem and server-key.pem, and
 * ca-cert.pem when it verifies clients (`requireCa`); a client needs ca-cert.pem when it verifies the
 * server against it, and client-cert.pem + client-key.pem together or not at all.
 * @throws TlsKeyError EINVAL (a required file missing, half a pair), EPERM (a key others may read).
 */
export async function loadCertificateDir(dir: string, options: { role: 'server' | 'client'; requireCa: boolean }): Promise<CertificateFiles> {
  const { role, requireCa } = options;
  const missing = (name: string, why: string): never => {
    throw new TlsKeyError('EINVAL', { path: join(dir, name), message: `certificate folder ${dir} has no ${name} (${why})` });
  };
  const ca = await readTlsFile(join(dir, 'ca-cert.pem'), { what: 'CA certificate' });
  if (ca === undefined && requireCa) missing('ca-cert.pem', role === 'server' ? 'needed to verify clients' : 'needed to verify the server');
  const crl = await readTlsFile(join(dir, 'ca-crl.pem'), { what: 'CA revocation list' });
  const cert = await readTlsFile(join(dir, `${role}-cert.pem`), { what: `${role} certificate` });
  if (cert === undefined && role === 'server') missing('server-cert.pem', 'the server certificate');
  const keyPath = join(dir, `${role}-key.pem`);
  const key = cert === undefined ? undefined : await readSecretFile(keyPath, { what: `${role} key` });
  if (cert !== undefined) assert(key !== undefined, 'a certificate comes with its key');
  return { ca, crl, cert, key };
}

function codeOf(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string' ? err.code : undefined;
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
