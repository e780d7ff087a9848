/**
 * TLS files for NBD client tests, laid out as nbdkit and libnbd read them:
 *
 *   writePskFile   DIR/NAME with "identity:hexkey" lines, mode 0600 unless told (nbdkit --tls-psk=FILE)
 *   makePki        DIR/{ca-cert.pem, server-cert.pem, server-key.pem, client-cert.pem, client-key.pem}
 *                  made with openssl: one throw-away CA signs a server certificate for localhost and
 *                  127.0.0.1 and a client certificate. nbdkit --tls-certificates=DIR uses the server
 *                  files, our client (tls-certificates=DIR) the CA and client files, as libnbd does.
 *
 * Callers own DIR (a mkdtemp) and check for openssl first (requireTools).
 */
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { runOk } from './nbd-tools.js';

export interface PskEntry {
  readonly identity: string;
  readonly key: Buffer;
}

/** A fresh 32-byte key (what psktool makes). */
export function pskKey(): Buffer {
  return randomBytes(32);
}

export async function writePskFile(options: { path: string; entries: readonly PskEntry[]; mode?: number }): Promise<string> {
  const text = options.entries.map((entry) => `${entry.identity}:${entry.key.toString('hex')}\n`).join('');
  await writeFile(options.path, text, { mode: 0o600 });
  // writeFile's mode is filtered by the umask; chmod sets exactly what the test asks for.
  await chmod(options.path, options.mode ?? 0o600);
  return options.path;
}

/** Makes a CA and a server and a client certificate in `dir` (created if missing). Returns `dir`. */
export async function makePki(dir: string, options: { commonName?: string } = {}): Promise<string> {
  await mkdir(dir, { recursive: true });
  const file = (name: string): string => join(dir, name);
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  await runOk('openssl', [
    'req', '-x509', ...ec, '-keyout', file('ca-key.pem'), '-out', file('ca-cert.pem'), '-days', '2',
    '-subj', `/CN=${options.commonName ?? 'umirror test CA'}`,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
  ]);
  for (const who of ['server', 'client'] as const) {
    await runOk('openssl', ['req', ...ec, '-keyout', file(`${who}-key.pem`), '-out', file(`${who}.csr`), '-subj', `/CN=umirror test ${who}`]);
    const usage = who === 'server' ? 'serverAuth' : 'clientAuth';
    await writeFile(
      file(`${who}.ext`),
      `basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=${usage}\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n`,
    );
    await runOk('openssl', [
      'x509', '-req', '-in', file(`${who}.csr`), '-CA', file('ca-cert.pem'), '-CAkey', file('ca-key.pem'),
      '-CAcreateserial', '-out', file(`${who}-cert.pem`), '-days', '2', '-extfile', file(`${who}.ext`),
    ]);
    await chmod(file(`${who}-key.pem`), 0o600);
  }
  return dir;
}
