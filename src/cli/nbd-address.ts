/**
 * Parses listen addresses (`--nbd`, `--metrics`, the verbs' `create --nbd`): `HOST:PORT`, `:PORT`,
 * `PORT`, `[IPv6]:PORT` or `unix:/path`. HOST is an IPv4 address, a bracketed IPv6 address or a host
 * name (RFC 1123 labels); an empty HOST is 127.0.0.1. PORT is 0..65535 (0: the system picks one).
 * An unbracketed IPv6 address is refused rather than split at its last colon. Unix paths follow
 * socketPathOption (not empty, at most 107 bytes).
 * @throws ControlError EINVAL with a one-line message naming the option.
 */
import { isIPv4, isIPv6 } from 'node:net';
import { ControlError } from '../errors.js';
import { hostLabelBytesMax, hostNameBytesMax, quotedInputCharsMax, tcpPortMax } from '../limits.js';
import type { ListenAddress } from '../nbd/server.js';
import { socketPathOption } from './option-values.js';

export const defaultNbdPort = 10809;

const hostLabel = new RegExp(`^(?!-)[A-Za-z0-9-]{1,${hostLabelBytesMax}}(?<!-)$`);

function isHostName(host: string): boolean {
  return host.length <= hostNameBytesMax && host.split('.').every((label) => hostLabel.test(label));
}

export function parseNbdAddress(text: string, option = '--nbd'): ListenAddress {
  const bad = (why: string): ControlError =>
    new ControlError('EINVAL', `invalid ${option} address ${JSON.stringify(text.slice(0, quotedInputCharsMax))}: ${why} (HOST:PORT, [IPv6]:PORT or unix:PATH)`);
  if (text.startsWith('unix:')) return { path: socketPathOption(`${option} unix:`, text.slice('unix:'.length)) };
  let host: string;
  let portText: string;
  const bracket = /^\[([^\]]*)\]:(.*)$/.exec(text);
  if (bracket !== null) {
    host = bracket[1] ?? '';
    portText = bracket[2] ?? '';
    if (!isIPv6(host)) throw bad('not an IPv6 address in brackets');
  } else {
    const colon = text.lastIndexOf(':');
    host = colon < 0 ? '' : text.slice(0, colon);
    portText = colon < 0 ? text : text.slice(colon + 1);
    if (host.includes(':')) throw bad('put an IPv6 address in brackets');
    if (host === '') host = '127.0.0.1';
    else if (!isIPv4(host) && (/^[0-9.]+$/.test(host) || !isHostName(host))) throw bad('not a host name or IPv4 address');
  }
  const port = /^[0-9]{1,5}$/.test(portText) ? Number(portText) : Number.NaN;
  if (!(port >= 0 && port <= tcpPortMax)) throw bad(`the port must be 0 to ${tcpPortMax}`);
  return { host, port };
}
