/**
 * An in-process NbdServer with TLS for interop tests of the server's TLS, and the key material its
 * clients use:
 *
 *   startTlsFixture   a MemoryBlockDevice exported as "vol" on a Unix socket and a TCP port, with TLS
 *                     loaded from the files given (loadNbdServerTls, as `serve` does); every finished TLS
 *                     handshake is recorded ("TLSv1.3 TLS_AES_128_GCM_SHA256") so tests can report what
 *                     the real clients negotiated.
 *   nbdsUri           libnbd's URI for it (nbds:// or nbds+unix://, with tls-psk-file or tls-certificates)
 *   qemuTlsArgs       qemu-img/qemu-io --object and --image-opts for the same export
 *   makeClientDirs    client certificate folders beside a PKI (tls-files.ts makePki): good, none (CA only),
 *                     untrusted (a certificate from another CA) and expired (signed by our CA, valid in 2020)
 *
 * Callers own the temp dirs (fixture.close() removes its own).
 */
import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MemoryBlockDevice } from '../../src/block/memory-block-device.js';
import type { NbdClientEvent } from '../../src/nbd/connection.js';
import type { NbdListener } from '../../src/nbd/server.js';
import { NbdServer } from '../../src/nbd/server.js';
import { loadNbdServerTls, type NbdServerTls, type NbdServerTlsOptions } from '../../src/nbd/server-tls.js';
import { runOk } from './nbd-tools.js';
import { makePki } from './tls-files.js';

export const tlsExportName = 'vol';

export interface TlsFixture {
  readonly dir: string;
  readonly device: MemoryBlockDevice;
  readonly server: NbdServer;
  readonly unix: NbdListener;
  readonly tcp: NbdListener;
  readonly port: number;
  readonly socketPath: string;
  readonly logLines: string[];
  /** "protocol cipher" of every finished TLS handshake, in order. */
  readonly negotiated: string[];
  close(): Promise<void>;
}

export async function startTlsFixture(
  options: NbdServerTlsOptions & { sizeBytes?: number; connectionsPerExportMax?: number; handshakeTimeoutMs?: number; onClient?: (event: NbdClientEvent) => void },
): Promise<TlsFixture> {
  const dir = await mkdtemp(join(tmpdir(), 'umirror-tls-'));
  const device = new MemoryBlockDevice({ sizeBytes: options.sizeBytes ?? 16 * 1024 * 1024 });
  const logLines: string[] = [];
  const negotiated: string[] = [];
  const loaded = await loadNbdServerTls(options);
  const tls: NbdServerTls = {
    mode: loaded.mode,
    kind: loaded.kind,
    upgrade: (socket, events) =>
      loaded.upgrade(socket, {
        secure: (secure) => {
          negotiated.push(`${secure.getProtocol() ?? '?'} ${secure.getCipher().name}`);
          events.secure(secure);
        },
        failed: (reason) => events.failed(reason),
      }),
  };
  const server = new NbdServer({
    exports: [{ name: tlsExportName, description: 'umirror TLS test volume', device }],
    log: (line) => logLines.push(line),
    tls,
    ...(options.connectionsPerExportMax !== undefined && { connectionsPerExportMax: options.connectionsPerExportMax }),
    ...(options.handshakeTimeoutMs !== undefined && { handshakeTimeoutMs: options.handshakeTimeoutMs }),
    ...(options.onClient !== undefined && { onClient: options.onClient }),
  });
  const socketPath = join(dir, 'nbd.sock');
  const unix = await server.listen({ path: socketPath });
  const tcp = await server.listen({ host: '127.0.0.1', port: 0 });
  const port = 'port' in tcp.address ? tcp.address.port : 0;
  return {
    dir,
    device,
    server,
    unix,
    tcp,
    port,
    socketPath,
    logLines,
    negotiated,
    async close() {
      await server.close({ graceful: false });
      await device.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export type TlsCredentialsForClient = { readonly psk: { readonly file: string; readonly identity: string } } | { readonly certificates: string };

/** libnbd's URI (nbdinfo, nbdcopy) for the fixture's export over TCP or the Unix socket. */
export function nbdsUri(fixture: TlsFixture, options: { transport: 'tcp' | 'unix'; credentials: TlsCredentialsForClient }): string {
  const { credentials } = options;
  const query =
    'psk' in credentials ? `tls-psk-file=${encodeURIComponent(credentials.psk.file)}` : `tls-certificates=${encodeURIComponent(credentials.certificates)}`;
  const user = 'psk' in credentials ? `${credentials.psk.identity}@` : '';
  if (options.transport === 'tcp') return `nbds://${user}127.0.0.1:${fixture.port}/${tlsExportName}?${query}`;
  return `nbds+unix://${user}/${tlsExportName}?socket=${encodeURIComponent(fixture.socketPath)}&${query}`;
}

/**
 * qemu's arguments: `--object tls-creds-psk|tls-creds-x509,...` and `--image-opts` for the export. A PSK
 * folder must hold the keys as DIR/keys.psk (qemu's name); pass that folder.
 */
export function qemuTlsArgs(
  fixture: TlsFixture,
  options: { transport: 'tcp' | 'unix'; credentials: { readonly pskDir: string; readonly identity: string } | { readonly certificates: string } },
): { object: string[]; image: string } {
  const { credentials } = options;
  const object =
    'pskDir' in credentials
      ? `tls-creds-psk,id=tls0,endpoint=client,dir=${credentials.pskDir},username=${credentials.identity}`
      : `tls-creds-x509,id=tls0,endpoint=client,dir=${credentials.certificates},verify-peer=on`;
  const server = options.transport === 'tcp' ? `server.type=inet,server.host=127.0.0.1,server.port=${fixture.port}` : `server.type=unix,server.path=${fixture.socketPath}`;
  // Over a Unix socket there is no host name to check the server certificate against: name the one it carries.
  const hostname = options.transport === 'unix' && 'certificates' in credentials ? ',tls-hostname=localhost' : '';
  return { object: ['--object', object], image: `driver=nbd,${server},export=${tlsExportName},tls-creds=tls0${hostname}` };
}

export interface ClientDirs {
  /** ca-cert.pem, client-cert.pem, client-key.pem of the PKI (the server's own folder works too). */
  readonly good: string;
  /** ca-cert.pem only: the client presents no certificate. */
  readonly none: string;
  /** Our CA (to trust the server) with a client certificate from another CA. */
  readonly untrusted: string;
  /** Our CA with a client certificate it signed, valid only in January 2020. */
  readonly expired: string;
}

/** Client folders for verify-peer tests, under `root`, beside the PKI in `pki` (makePki's layout). */
export async function makeClientDirs(pki: string, root: string): Promise<ClientDirs> {
  const folder = async (name: string): Promise<string> => {
    const dir = join(root, name);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await copyFile(join(pki, 'ca-cert.pem'), join(dir, 'ca-cert.pem'));
    return dir;
  };
  const good = await folder('good');
  await copyFile(join(pki, 'client-cert.pem'), join(good, 'client-cert.pem'));
  await copyFile(join(pki, 'client-key.pem'), join(good, 'client-key.pem'));
  const none = await folder('none');
  const other = await makePki(join(root, 'other-pki'), { commonName: 'some other CA' });
  const untrusted = await folder('untrusted');
  await copyFile(join(other, 'client-cert.pem'), join(untrusted, 'client-cert.pem'));
  await copyFile(join(other, 'client-key.pem'), join(untrusted, 'client-key.pem'));
  const expired = await folder('expired');
  await signExpiredClient(pki, expired);
  return { good, none, untrusted, expired };
}

/** `openssl ca` can set past dates (openssl x509 -req cannot, before 3.4): a client cert of January 2020. */
async function signExpiredClient(pki: string, out: string): Promise<void> {
  const db = join(out, 'ca-db');
  await mkdir(db, { recursive: true });
  await writeFile(join(db, 'index.txt'), '');
  await writeFile(join(db, 'serial'), '1000\n');
  await writeFile(
    join(db, 'ca.cnf'),
    [
      '[ ca ]',
      'default_ca = umirror_test',
      '[ umirror_test ]',
      `database = ${join(db, 'index.txt')}`,
      `new_certs_dir = ${db}`,
      `serial = ${join(db, 'serial')}`,
      'default_md = sha256',
      'policy = anything',
      'unique_subject = no',
      '[ anything ]',
      'commonName = supplied',
      '[ client ]',
      'basicConstraints = CA:FALSE',
      'keyUsage = critical,digitalSignature',
      'extendedKeyUsage = clientAuth',
      '',
    ].join('\n'),
  );
  const key = join(out, 'client-key.pem');
  const csr = join(db, 'client.csr');
  await runOk('openssl', ['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', csr, '-subj', '/CN=umirror expired client']);
  await runOk('openssl', [
    'ca', '-batch', '-notext', '-config', join(db, 'ca.cnf'), '-extensions', 'client',
    '-cert', join(pki, 'ca-cert.pem'), '-keyfile', join(pki, 'ca-key.pem'),
    '-startdate', '20200101000000Z', '-enddate', '20200102000000Z',
    '-in', csr, '-out', join(out, 'client-cert.pem'),
  ]);
}
