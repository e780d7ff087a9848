/**
 * TLS for the NBD server (NetworkBlockDevice/nbd doc/proto.md "TLS support"; nbdkit's --tls options):
 * the credentials a server authenticates with and the upgrade of a connection whose NBD_OPT_STARTTLS
 * was acknowledged. Callers: `serve` and the daemon load an NbdServerTls once at start-up (bad files
 * stop them before anything listens); NbdConnection calls `upgrade` after writing the ACK and goes on
 * inside TLS when it reports `secure` (the peer authenticated), or logs why it `failed`. handshake.ts
 * decides what STARTTLS and every other option answer in each mode.
 *
 *   mode      before STARTTLS                                  spec's name
 *   off       STARTTLS answers ERR_UNSUP ("not supported")       NOTLS (no NbdServerTls at all)
 *   on        every option works in plaintext; STARTTLS upgrades TLS offered, not forced (nbdkit --tls=on)
 *   require   every option but STARTTLS and ABORT answers         FORCEDTLS (nbdkit --tls=require)
 *             ERR_TLS_REQD; EXPORT_NAME closes; no export name,
 *             size or context is told before TLS
 *
 * Credentials: a PSK file (identities and keys, psktool's format) or X.509 (server-cert.pem and
 * server-key.pem, and ca-cert.pem to verify client certificates with `verifyPeer`). With PSK an unknown
 * identity gets a random key, so it fails like a wrong key and a peer cannot probe for identities
 * (the OpenSSL advice the Node docs repeat).
 *
 * Interop (measured: nbdinfo/nbdcopy with libnbd 1.14 and qemu-img/qemu-io 7.2, GnuTLS 3.7, against
 * Node 20 / OpenSSL 3.0): PSK negotiates TLS 1.3 TLS_AES_128_GCM_SHA256 with an ECDHE-PSK key exchange
 * (forward secret; libnbd's debug log says so), and so do certificates (`x509Ciphers`). A TLS 1.2
 * client gets the forward-secret PSK suites of `pskCiphersTls12`, which GnuTLS's NORMAL priority (nbdkit,
 * qemu: "NORMAL:+ECDHE-PSK:+DHE-PSK:+PSK") also has.
 * TLS below 1.2 is refused (the spec: MUST support 1.2, SHOULD NOT offer older by default).
 */
import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import { createSecureContext, createServer, DEFAULT_CIPHERS, type TLSSocket, type TlsOptions } from 'node:tls';
import { assert } from '../assert.js';
import { TlsKeyError } from '../errors.js';
import { rethrowProgrammerError } from '../fail-fast.js';
import { loadCertificateDir, loadPskFile } from './tls-keys.js';

export type NbdTlsMode = 'off' | 'on' | 'require';

/**
 * TLS 1.3 suites for PSK, ours first: a PSK from a callback is bound to SHA-256, so only the SHA-256
 * suites can use it, and AES-GCM (AES-NI) is faster than ChaCha20, which OpenSSL would pick otherwise.
 */
export const pskCiphersTls13 = ['TLS_AES_128_GCM_SHA256', 'TLS_CHACHA20_POLY1305_SHA256'].join(':');

/**
 * With certificates: Node's default suites, with AES-128-GCM first among the TLS 1.3 ones (OpenSSL puts
 * AES-256 first): the same data path as a PSK connection, and the faster of the strong AEADs.
 */
export const x509Ciphers = [
  'TLS_AES_128_GCM_SHA256',
  'TLS_AES_256_GCM_SHA384',
  'TLS_CHACHA20_POLY1305_SHA256',
  ...DEFAULT_CIPHERS.split(':').filter((suite) => !suite.startsWith('TLS_')),
].join(':');

/** TLS 1.2 PSK suites, all with an ephemeral key exchange (forward secrecy). */
export const pskCiphersTls12 = [
  'ECDHE-PSK-CHACHA20-POLY1305',
  'DHE-PSK-AES256-GCM-SHA384',
  'DHE-PSK-AES128-GCM-SHA256',
  'DHE-PSK-CHACHA20-POLY1305',
  'ECDHE-PSK-AES256-CBC-SHA384',
  'ECDHE-PSK-AES128-CBC-SHA256',
].join(':');

/** What `serve`/`create` were told: nbdkit's --tls, --tls-psk, --tls-certificates, --tls-verify-peer. */
export interface NbdServerTlsOptions {
  readonly mode: 'on' | 'require';
  readonly pskFile?: string;
  readonly certificatesDir?: string;
  readonly verifyPeer?: boolean;
}

/** What the upgrade of one connection reports, once. */
export interface NbdTlsUpgradeEvents {
  /** The TLS handshake succeeded and the peer authenticated as required: NBD continues on `socket`. */
  secure(socket: TLSSocket): void;
  /** The TLS handshake failed or the peer was refused (the socket is being destroyed). */
  failed(reason: string): void;
}

/** Loaded server credentials; one per server, shared by every connection. */
export interface NbdServerTls {
  readonly mode: 'on' | 'require';
  readonly kind: 'psk' | 'x509';
  /**
   * Starts the server side of TLS on a socket whose STARTTLS was acknowledged and flushed, and reports
   * the outcome once. The plain socket emits 'close' when the connection ends, before or after.
   */
  upgrade(socket: Socket, events: NbdTlsUpgradeEvents): void;
}

/**
 * Reads the files and checks them once. @throws TlsKeyError: EINVAL (a missing or malformed file, both
 * or neither of PSK and certificates, a key that does not match its certificate), EPERM (a PSK file or
 * server key that group or others may read).
 */
export async function loadNbdServerTls(options: NbdServerTlsOptions): Promise<NbdServerTls> {
  const { mode, pskFile, certificatesDir } = options;
  const verifyPeer = options.verifyPeer ?? false;
  if (pskFile !== undefined && certificatesDir !== undefined) {
    throw new TlsKeyError('EINVAL', { path: pskFile, message: '--tls-psk and --tls-certificates exclude each other' });
  }
  if (pskFile !== undefined) {
    if (verifyPeer) throw new TlsKeyError('EINVAL', { path: pskFile, message: '--tls-verify-peer is for certificates; a PSK already authenticates the client' });
    const keys = await loadPskFile(pskFile);
    assert(keys.size > 0, 'a PSK file holds a key');
    const pskOptions: TlsOptions = {
      ciphers: `${pskCiphersTls13}:${pskCiphersTls12}`,
      // A random key for an unknown identity: the handshake fails as with a wrong key (no identity probing).
      pskCallback: (_socket, identity) => keys.get(identity) ?? randomBytes(32),
    };
    return serverTls(mode, 'psk', pskOptions, false);
  }
  if (certificatesDir === undefined) {
    throw new TlsKeyError('EINVAL', { path: '', message: `--tls ${mode} needs --tls-psk FILE or --tls-certificates DIR` });
  }
  const files = await loadCertificateDir(certificatesDir, { role: 'server', requireCa: verifyPeer });
  assert(files.cert !== undefined && files.key !== undefined, 'a server has its certificate and key');
  const options509: TlsOptions = {
    cert: files.cert,
    key: files.key,
    ciphers: x509Ciphers,
    ...(files.ca !== undefined && { ca: files.ca }),
    ...(files.crl !== undefined && { crl: files.crl }),
    // The verdict on a client certificate is ours, in 'secureConnection' (see serverTls): Node's own
    // rejection (rejectUnauthorized) destroys the socket without telling why.
    requestCert: verifyPeer,
    rejectUnauthorized: false,
  };
  try {
    createSecureContext(options509); // Checked now, so a bad file stops start-up instead of every client.
  } catch (err) {
    rethrowProgrammerError(err);
    const why = err instanceof Error ? err.message : String(err);
    throw new TlsKeyError('EINVAL', { path: certificatesDir, message: `cannot use the certificates in ${certificatesDir}: ${why}`, cause: err });
  }
  return serverTls(mode, 'x509', options509, verifyPeer);
}

/**
 * Each upgrade runs through its own tls.Server, given the plain socket as a 'connection' (Node's
 * documented way to inject a connection): only a tls.Server checks a client certificate against the CA
 * (`authorized`, `authorizationError`; a bare server TLSSocket never does) and reports failures.
 * Building its context costs about 2 ms of CPU, once per NBD connection. With `verifyPeer`, a client
 * without a certificate signed by ca-cert.pem (or with an expired or revoked one) is closed right after
 * the TLS handshake, before a byte of NBD is read, and the reason is reported.
 */
function serverTls(mode: 'on' | 'require', kind: 'psk' | 'x509', options: TlsOptions, verifyPeer: boolean): NbdServerTls {
  const all: TlsOptions = { ...options, minVersion: 'TLSv1.2', honorCipherOrder: true };
  return {
    mode,
    kind,
    upgrade: (socket, events) => {
      let reported = false;
      const report = (outcome: () => void): void => {
        if (reported) return;
        reported = true;
        outcome();
      };
      const server = createServer(all);
      server.once('secureConnection', (secure: TLSSocket) => {
        if (verifyPeer && !secure.authorized) {
          const verdict: unknown = secure.authorizationError;
          report(() => events.failed(`client certificate refused: ${String(verdict ?? 'none presented')}`));
          secure.destroy();
          return;
        }
        report(() => events.secure(secure));
      });
      server.on('tlsClientError', (err: Error, secure: TLSSocket) => {
        report(() => events.failed(err.message.trim()));
        secure.destroy();
      });
      socket.once('close', () => report(() => events.failed('the connection closed during the TLS handshake')));
      server.emit('connection', socket);
    },
  };
}

/** nbdkit's --tls values; anything else is a usage error. */
export function parseTlsMode(text: string): NbdTlsMode {
  switch (text) {
    case 'off':
    case 'on':
    case 'require':
      return text;
    default:
      throw new RangeError(`invalid --tls "${text}" (off, on or require)`);
  }
}
