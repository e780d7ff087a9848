/**
 * The security options of an NBD listener, as `serve` and `create --nbd` take them (nbdkit's names):
 *
 *   --tls off|on|require      TLS after NBD_OPT_STARTTLS: off, offered, or required (FORCEDTLS). Default:
 *                             require when a key is given, else off.
 *   --tls-psk FILE            pre-shared keys, "identity:hexkey" lines (psktool); mode 600 or refused
 *   --tls-certificates DIR    ca-cert.pem, server-cert.pem, server-key.pem (mode 600 or refused)
 *   --tls-verify-peer         with certificates: clients must present one signed by ca-cert.pem
 *   --max-connections N       clients in transmission per export, 1..64 (default 16)
 *   --socket-mode MODE        a Unix socket's permission bits, octal (default 0600; 0660 with a group)
 *   --socket-group GROUP      a Unix socket's group (name or number), e.g. the group qemu runs in
 *
 * `checkNbdServeOptions` validates the text (ControlError EINVAL, naming the option); `loadNbdServeOptions` then reads the key files (TlsKeyError) and looks the group up.
 * Paths are used as given: the CLI makes them absolute before it sends them to the daemon.
 */
import { execFile } from 'node:child_process';
import { ControlError } from '../errors.js';
import { assert } from '../assert.js';
import { nbdConnectionsPerExportMax } from '../limits.js';
import type { SocketAccess } from '../nbd/held-listener.js';
import { loadNbdServerTls, type NbdServerTls, type NbdTlsMode, parseTlsMode } from '../nbd/server-tls.js';

/** The options as given (strings from the command line or the control request). */
export interface NbdServeOptionsText {
  readonly tls?: string;
  readonly tlsPsk?: string;
  readonly tlsCertificates?: string;
  readonly tlsVerifyPeer?: boolean;
  readonly maxConnections?: string;
  readonly socketMode?: string;
  readonly socketGroup?: string;
}

/** Checked options, nothing read yet. */
export interface NbdServeOptions {
  readonly tlsMode: NbdTlsMode;
  readonly tlsPsk?: string;
  readonly tlsCertificates?: string;
  readonly tlsVerifyPeer: boolean;
  readonly connectionsPerExportMax?: number;
  readonly socketMode?: number;
  readonly socketGroup?: string;
}

/** Loaded: what NbdServer and its `listen` take. */
export interface NbdServeSettings {
  readonly tls?: NbdServerTls;
  readonly connectionsPerExportMax?: number;
  readonly socket?: SocketAccess;
}

/** Validates the option text. @throws ControlError EINVAL naming the option. */
function invalid(message: string): ControlError {
  return new ControlError('EINVAL', message);
}

export function checkNbdServeOptions(text: NbdServeOptionsText): NbdServeOptions {
  const hasKey = text.tlsPsk !== undefined || text.tlsCertificates !== undefined;
  const tlsMode = text.tls === undefined ? (hasKey ? 'require' : 'off') : parseTlsMode(text.tls);
  if (text.tlsPsk !== undefined && text.tlsCertificates !== undefined) throw invalid('--tls-psk and --tls-certificates exclude each other');
  if (tlsMode === 'off' && hasKey) throw invalid('--tls off takes no --tls-psk or --tls-certificates');
  if (tlsMode !== 'off' && !hasKey) throw invalid(`--tls ${tlsMode} needs --tls-psk FILE or --tls-certificates DIR`);
  const tlsVerifyPeer = text.tlsVerifyPeer === true;
  if (tlsVerifyPeer && text.tlsCertificates === undefined) throw invalid('--tls-verify-peer needs --tls-certificates DIR');
  if (text.tlsPsk === '' || text.tlsCertificates === '') throw invalid('a TLS option needs a path');
  let connectionsPerExportMax: number | undefined;
  if (text.maxConnections !== undefined) {
    connectionsPerExportMax = Number(text.maxConnections);
    if (!/^\d+$/.test(text.maxConnections) || connectionsPerExportMax < 1 || connectionsPerExportMax > nbdConnectionsPerExportMax) {
      throw invalid(`invalid --max-connections "${text.maxConnections}" (1 to ${nbdConnectionsPerExportMax})`);
    }
  }
  let socketMode: number | undefined;
  if (text.socketMode !== undefined) {
    if (!/^0?[0-7]{3}$/.test(text.socketMode)) throw invalid(`invalid --socket-mode "${text.socketMode}" (octal permission bits, e.g. 0660)`);
    socketMode = Number.parseInt(text.socketMode, 8);
  }
  const socketGroup = text.socketGroup;
  if (socketGroup !== undefined && !/^[A-Za-z0-9_][A-Za-z0-9_.-]*\$?$/.test(socketGroup)) throw invalid(`invalid --socket-group "${socketGroup}"`);
  return {
    tlsMode,
    ...(text.tlsPsk !== undefined && { tlsPsk: text.tlsPsk }),
    ...(text.tlsCertificates !== undefined && { tlsCertificates: text.tlsCertificates }),
    tlsVerifyPeer,
    ...(connectionsPerExportMax !== undefined && { connectionsPerExportMax }),
    ...(socketMode !== undefined && { socketMode }),
    ...(socketGroup !== undefined && { socketGroup }),
  };
}

/**
 * Reads the TLS files and resolves the socket group. A group gives the socket mode 0660 unless
 * --socket-mode says otherwise. @throws TlsKeyError (key files), ControlError EINVAL (an unknown group).
 */
export async function loadNbdServeOptions(options: NbdServeOptions): Promise<NbdServeSettings> {
  let tls: NbdServerTls | undefined;
  if (options.tlsMode !== 'off') {
    tls = await loadNbdServerTls({
      mode: options.tlsMode,
      ...(options.tlsPsk !== undefined && { pskFile: options.tlsPsk }),
      ...(options.tlsCertificates !== undefined && { certificatesDir: options.tlsCertificates }),
      verifyPeer: options.tlsVerifyPeer,
    });
  }
  const gid = options.socketGroup === undefined ? undefined : await groupId(options.socketGroup);
  const mode = options.socketMode ?? (gid === undefined ? undefined : 0o660);
  const socket: SocketAccess | undefined = mode === undefined && gid === undefined ? undefined : { ...(mode !== undefined && { mode }), ...(gid !== undefined && { gid }) };
  return {
    ...(tls !== undefined && { tls }),
    ...(options.connectionsPerExportMax !== undefined && { connectionsPerExportMax: options.connectionsPerExportMax }),
    ...(socket !== undefined && { socket }),
  };
}

/** A group's id: a number as it is, a name through the system's group database (getent: NSS too). */
export async function groupId(group: string): Promise<number> {
  if (/^\d+$/.test(group)) return Number(group);
  const line = await new Promise<string | undefined>((resolve) => {
    execFile('getent', ['group', group], { timeout: 10_000, encoding: 'utf8' }, (err, stdout) => resolve(err === null ? stdout : undefined));
  });
  const gid = line === undefined ? undefined : line.split('\n')[0]?.split(':')[2];
  if (gid === undefined || !/^\d+$/.test(gid)) throw invalid(`--socket-group: no group "${group}" on this system`);
  const value = Number(gid);
  assert(Number.isSafeInteger(value) && value >= 0);
  return value;
}
