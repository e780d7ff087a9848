/**
 * TLS for the NBD client (nbds://, nbds+unix://): what the URI's TLS settings mean, the files they name,
 * and the upgrade of a connected socket after NBD_OPT_STARTTLS was acknowledged (NetworkBlockDevice/nbd
 * doc/proto.md "TLS support": the client sends STARTTLS before any other option, and after the TLS
 * handshake the option haggling starts again, inside TLS). Callers: client-connection.ts, which loads the
 * credentials before it connects (so a bad key file fails without touching the network) and upgrades
 * the socket when the handshake's 'startTls' step comes.
 *
 * The settings follow libnbd's URI parameters and file layout, so a URI that works with nbdinfo works here:
 *
 *   tls-psk-file=FILE        PSK: FILE holds "username:hexkey" lines (nbdkit --tls-psk, GnuTLS psktool);
 *                            the identity is the URI's user ("nbds://alice@host/"), tls-username, or
 *                            else the local login name; the first line for that name wins.
 *   tls-certificates=DIR     X.509: DIR/ca-cert.pem (required) is the only trusted CA; DIR/client-cert.pem
 *                            and DIR/client-key.pem (both or neither) are our certificate; DIR/ca-crl.pem
 *                            is used when present (the layout libnbd and qemu read).
 *   neither                  X.509 against the system's trusted CAs, with no client certificate.
 *   tls-verify-peer=0        X.509 only: accept any server certificate (default 1: verify).
 *   tls-hostname=NAME        the name the server certificate must carry (default: the TCP host; over a
 *                            Unix socket there is no host, so only the CA is checked, as libnbd does).
 *   tls-type=anon            refused with ENOTSUP: anonymous TLS authenticates nobody.
 *
 * Key files readable by group or others are refused with EPERM, as ssh refuses such a private key: the
 * PSK file and client-key.pem are the secrets that authenticate this host. The files are read by
 * tls-keys.ts, as the server reads its own, so both ends judge a key file alike.
 *
 * Interop with nbdkit (GnuTLS 3.7, measured with nbdkit 1.32 against Node 20 / OpenSSL 3.0): PSK
 * negotiates TLS 1.3 (TLS_CHACHA20_POLY1305_SHA256, ECDHE-PSK key exchange) without any cipher option,
 * because `ciphers` does not filter OpenSSL's TLS 1.3 suites. TLS 1.2 PSK suites must be named: of the
 * forward-secret ones only ECDHE-PSK-CHACHA20-POLY1305 is accepted by nbdkit (it refuses DHE-PSK and
 * the ECDHE-PSK CBC suites); plain PSK suites work too but lack forward secrecy, so we do not offer
 * them. A wrong key or an unknown identity makes GnuTLS drop the connection without an alert, so Node
 * sees ECONNRESET during the handshake: we report EIO and say that the key may be wrong.
 */
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { isIP, type Socket } from 'node:net';
import { checkServerIdentity, connect as tlsConnect, type ConnectionOptions, type TLSSocket } from 'node:tls';
import { assert } from '../assert.js';
import { BlockError, TlsKeyError } from '../errors.js';
import { rethrowProgrammerError } from '../fail-fast.js';
import { pskIdentityBytesMax, pskKeyBytesMax } from '../limits.js';
import type { NbdTarget } from './client-uri.js';
// TLS 1.2 PSK suites, forward-secret only; nbdkit takes the first, the others are for servers that offer them.
import { pskCiphersTls12 } from './server-tls.js';
import { readSecretFile, readTlsFile } from './tls-keys.js';

/** What a TLS connection authenticates with, loaded from the files the URI names. */
export type NbdTlsCredentials =
  | {
      readonly kind: 'psk';
      readonly identity: string;
      readonly key: Buffer;
    }
  | {
      readonly kind: 'x509';
      /** PEM CA bundle; undefined: the system's trusted CAs (Node's default store). */
      readonly ca: Buffer | undefined;
      readonly crl: Buffer | undefined;
      /** Our certificate and key, both or neither. */
      readonly cert: Buffer | undefined;
      readonly key: Buffer | undefined;
      readonly verifyPeer: boolean;
      /** The name the server certificate must carry; undefined: check the CA only. */
      readonly serverName: string | undefined;
    };

/**
 * Reads the credentials a TLS target names. @throws BlockError: EINVAL (a missing or malformed file, an
 * identity not in the PSK file, contradictory settings), EPERM (a key file readable by group or others),
 * ENOTSUP (tls-type=anon).
 */
export async function loadNbdTlsCredentials(target: NbdTarget): Promise<NbdTlsCredentials> {
  const { tls, uri, endpoint } = target;
  assert(tls !== undefined, 'credentials are loaded for TLS targets only');
  const fail = (code: 'EINVAL' | 'ENOTSUP', why: string): never => {
    throw new BlockError(code, `Cannot use ${uri}: ${why}`);
  };
  if (tls.type === 'anon') return fail('ENOTSUP', 'anonymous TLS (tls-type=anon) authenticates nobody; use a PSK file or certificates');
  const psk = tls.type === 'psk' || (tls.type === undefined && tls.pskFile !== undefined);
  if (psk) {
    if (tls.pskFile === undefined) return fail('EINVAL', 'tls-type=psk needs tls-psk-file');
    if (tls.certificatesDir !== undefined) fail('EINVAL', 'tls-psk-file and tls-certificates exclude each other');
    const identity = tls.username ?? localLoginName();
    const text = (await readSecret(tls.pskFile, { uri, what: 'PSK file' })).toString('utf8');
    return { kind: 'psk', identity, key: parsePskFile(text, { identity, path: tls.pskFile, uri }) };
  }
  if (tls.pskFile !== undefined) fail('EINVAL', 'tls-type=x509 does not use tls-psk-file');
  const serverName = tls.hostname ?? (endpoint.kind === 'tcp' ? endpoint.host : undefined);
  if (tls.certificatesDir === undefined) {
    return { kind: 'x509', ca: undefined, crl: undefined, cert: undefined, key: undefined, verifyPeer: tls.verifyPeer, serverName };
  }
  const dir = tls.certificatesDir;
  const ca = await readOptional(join(dir, 'ca-cert.pem'), { uri, what: 'CA certificate' });
  if (ca === undefined) fail('EINVAL', `tls-certificates directory ${dir} has no readable ca-cert.pem`);
  const cert = await readOptional(join(dir, 'client-cert.pem'), { uri, what: 'client certificate' });
  const keyPath = join(dir, 'client-key.pem');
  const key = cert === undefined ? undefined : await readSecret(keyPath, { uri, what: 'client key' });
  const crl = await readOptional(join(dir, 'ca-crl.pem'), { uri, what: 'CA revocation list' });
  return { kind: 'x509', ca, crl, cert, key, verifyPeer: tls.verifyPeer, serverName };
}

/**
 * The key for `identity` in a PSK file ("username:hexkey" per line, as psktool writes it; the first
 * matching line wins, CR LF tolerated). @throws BlockError EINVAL (identity absent, key not hex, sizes).
 */
export function parsePskFile(text: string, options: { identity: string; path: string; uri: string }): Buffer {
  const { identity, path, uri } = options;
  const fail = (why: string): never => {
    throw new BlockError('EINVAL', `Cannot use ${uri}: PSK file ${path} ${why}`);
  };
  if (identity === '' || identity.includes(':') || Buffer.byteLength(identity, 'utf8') > pskIdentityBytesMax) {
    fail(`cannot hold the identity "${identity}" (1 to ${pskIdentityBytesMax} bytes, no ':')`);
  }
  const prefix = `${identity}:`;
  const line = text.split('\n').find((candidate) => candidate.startsWith(prefix));
  if (line === undefined) return fail(`has no key for "${identity}"`);
  const hex = line.slice(prefix.length).replace(/\r$/, '');
  if (hex.length === 0 || hex.length % 2 !== 0 || !/^[0-9a-fA-F]+$/.test(hex)) return fail(`has a key for "${identity}" that is not hex bytes`);
  const key = Buffer.from(hex, 'hex');
  if (key.length > pskKeyBytesMax) fail(`has a key of ${key.length} bytes for "${identity}" (at most ${pskKeyBytesMax})`);
  assert(key.length * 2 === hex.length, 'every hex digit pair became one byte');
  return key;
}

/**
 * Starts TLS on a socket whose STARTTLS was acknowledged. The returned socket emits 'secureConnect'
 * when the TLS handshake is done and 'error' when it fails; `checkNbdTlsPeer` must then accept it.
 */
export function startNbdTls(options: { socket: Socket; credentials: NbdTlsCredentials }): TLSSocket {
  const { socket, credentials } = options;
  const common: ConnectionOptions = { socket, minVersion: 'TLSv1.2' };
  if (credentials.kind === 'psk') {
    return tlsConnect({
      ...common,
      ciphers: pskCiphersTls12,
      pskCallback: () => ({ psk: credentials.key, identity: credentials.identity }),
      // No certificate takes part; `checkNbdTlsPeer` insists on that.
      checkServerIdentity: () => undefined,
    });
  }
  const { serverName, verifyPeer } = credentials;
  return tlsConnect({
    ...common,
    ...(credentials.ca !== undefined && { ca: credentials.ca }),
    ...(credentials.crl !== undefined && { crl: credentials.crl }),
    ...(credentials.cert !== undefined && credentials.key !== undefined && { cert: credentials.cert, key: credentials.key }),
    // SNI carries DNS names only (RFC 6066); an IP address is still checked against the certificate.
    ...(serverName !== undefined && isIP(serverName) === 0 && { servername: serverName }),
    rejectUnauthorized: verifyPeer,
    checkServerIdentity: (_host, cert) => (verifyPeer && serverName !== undefined ? checkServerIdentity(serverName, cert) : undefined),
  });
}

/** After 'secureConnect': undefined when the peer authenticated as the credentials demand, else why not. */
export function checkNbdTlsPeer(socket: TLSSocket, credentials: NbdTlsCredentials): string | undefined {
  if (credentials.kind === 'psk') {
    // A server that answered with a certificate instead of the PSK proved nothing about the key.
    const certificate = socket.getPeerCertificate();
    return Object.keys(certificate).length === 0 ? undefined : 'the server authenticated with a certificate, not the pre-shared key';
  }
  if (credentials.verifyPeer && !socket.authorized) return `the server certificate is not trusted: ${String(socket.authorizationError)}`;
  return undefined;
}

/** A TLS handshake failure as a BlockError (EIO: the connection could not be made) with a useful hint. */
export function tlsHandshakeError(options: { err: Error; credentials: NbdTlsCredentials; uri: string }): BlockError {
  const { err, credentials, uri } = options;
  const code = 'code' in err && typeof err.code === 'string' ? err.code : '';
  const dropped = code === 'ECONNRESET' || code === 'EPIPE' || /disconnected before secure TLS/.test(err.message);
  const hint = !dropped
    ? ''
    : credentials.kind === 'psk'
      ? ` (the server dropped the connection: is the key for "${credentials.identity}" the one the server has?)`
      : ' (the server dropped the connection: does it accept our certificate?)';
  return new BlockError('EIO', `Cannot connect to ${uri}: TLS handshake failed: ${err.message}${hint}`, { cause: err });
}

function localLoginName(): string {
  try {
    return userInfo().username;
  } catch (err) {
    rethrowProgrammerError(err);
    throw new BlockError('EINVAL', 'Cannot find the local login name for the PSK identity; give one as nbds://NAME@host/', { cause: err });
  }
}

/** A secret key file (tls-keys.ts: mode 600, bounded size), its errors named after the URI. */
async function readSecret(path: string, options: { uri: string; what: string }): Promise<Buffer> {
  return inUri(options.uri, () => readSecretFile(path, { what: options.what }));
}

/** A public file's bytes (a certificate, a CA, a CRL), or undefined when it does not exist. */
async function readOptional(path: string, options: { uri: string; what: string }): Promise<Buffer | undefined> {
  return inUri(options.uri, () => readTlsFile(path, { what: options.what }));
}

/** Runs a tls-keys.ts read, turning its TlsKeyError into the BlockError a URI's user sees. */
async function inUri<T>(uri: string, read: () => Promise<T>): Promise<T> {
  try {
    return await read();
  } catch (err) {
    rethrowProgrammerError(err);
    if (!(err instanceof TlsKeyError)) throw err;
    throw new BlockError(err.code, `Cannot use ${uri}: ${err.message}`, { cause: err });
  }
}
