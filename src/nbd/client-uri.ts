/**
 * NBD URIs (NetworkBlockDevice/nbd doc/uri.md) parsed into what the client connects to. Pure: no I/O.
 * Callers: NbdBlockDevice.open, and later the table's device resolver.
 *
 *   nbd://host[:port][/export]                TCP; port 10809 when absent; IPv6 as [::1]
 *   nbd+unix:///export?socket=PATH            Unix socket; no authority allowed
 *   nbds://..., nbds+unix:///...?socket=PATH  the same over TLS (NBD_OPT_STARTTLS, then client-tls.ts)
 *
 * The export name is the path without its leading '/', percent-decoded ("nbd://h//disk" names "/disk",
 * "nbd://h" and "nbd://h/" the default export ""). Query values are percent-decoded as RFC 3986 says
 * ('+' stays '+', unlike form encoding, so a socket path may contain it). Known query parameters:
 * `socket` (Unix schemes only), and on TLS schemes `tls-type` (anon|x509|psk), `tls-hostname`,
 * `tls-verify-peer` (0|1), `tls-psk-file`, `tls-certificates`, `tls-username` (libnbd's names; the
 * username may also be the URI's userinfo, "nbds://alice@host/", as libnbd reads it). Anything else — an unknown
 * or repeated parameter, a TLS parameter on a plain scheme, a fragment, a missing host or socket — is
 * diagnosed with EINVAL, as the URI spec asks, rather than ignored.
 */
import { BlockError } from '../errors.js';
import { rethrowProgrammerError } from '../fail-fast.js';

export const nbdPortDefault = 10809;

export type NbdEndpoint =
  | { readonly kind: 'tcp'; readonly host: string; readonly port: number }
  | { readonly kind: 'unix'; readonly path: string };

export type NbdTlsType = 'anon' | 'x509' | 'psk';

export interface NbdTlsSettings {
  readonly type: NbdTlsType | undefined;
  readonly hostname: string | undefined;
  readonly verifyPeer: boolean;
  readonly pskFile: string | undefined;
  readonly certificatesDir: string | undefined;
  /** The PSK identity: the URI's userinfo or tls-username (undefined: the local login name). */
  readonly username: string | undefined;
}

export interface NbdTarget {
  /** The URI as given (status lines show it as the device name). */
  readonly uri: string;
  readonly endpoint: NbdEndpoint;
  readonly exportName: string;
  /** undefined: plain NBD; otherwise TLS is required and the connection fails without it. */
  readonly tls: NbdTlsSettings | undefined;
}

const schemes = {
  'nbd:': { unix: false, tls: false },
  'nbds:': { unix: false, tls: true },
  'nbd+unix:': { unix: true, tls: false },
  'nbds+unix:': { unix: true, tls: true },
} as const;

const tlsTypes: readonly NbdTlsType[] = ['anon', 'x509', 'psk'];
const tlsParameters = ['tls-type', 'tls-hostname', 'tls-verify-peer', 'tls-psk-file', 'tls-certificates', 'tls-username'] as const;

/** True when `text` looks like an NBD URI (any nbd scheme), so callers can tell it from a path. */
export function isNbdUri(text: string): boolean {
  return /^nbds?(\+[a-z]+)?:\/\//i.test(text);
}

/** Parses an NBD URI. @throws BlockError EINVAL (malformed or unknown parts), ENOTSUP (vsock schemes). */
export function parseNbdUri(text: string): NbdTarget {
  const fail = (why: string): never => {
    throw new BlockError('EINVAL', `Invalid NBD URI "${text}": ${why}`);
  };
  // WHATWG URL refuses a user without a host, yet libnbd documents "nbds+unix://alice@/?socket=S":
  // take such a user off before parsing. Only a Unix scheme may have an empty host.
  const hostlessUser = /^(nbds?\+unix:\/\/)([^/?#@]+)@(?=[/?]|$)/i.exec(text);
  const unixUser = hostlessUser?.[2];
  let url: URL;
  try {
    url = new URL(hostlessUser === null ? text : `${hostlessUser[1] ?? ''}${text.slice(hostlessUser[0].length)}`);
  } catch (err) {
    throw new BlockError('EINVAL', `Invalid NBD URI "${text}": not a URI`, { cause: err });
  }
  const protocol = url.protocol.toLowerCase();
  if (protocol === 'nbd+vsock:' || protocol === 'nbds+vsock:') {
    throw new BlockError('ENOTSUP', `Cannot use NBD URI "${text}": vsock is not supported`);
  }
  const scheme = protocol in schemes ? schemes[protocol as keyof typeof schemes] : undefined;
  if (scheme === undefined) return fail(`unknown scheme "${url.protocol}" (nbd, nbds, nbd+unix, nbds+unix)`);
  if (url.hash !== '') fail('a fragment has no meaning');

  const params = parseQuery(url.search, fail);
  const take = (key: string): string | undefined => {
    const value = params.get(key);
    params.delete(key);
    return value;
  };

  const exportName = decode(url.pathname.startsWith('/') ? url.pathname.slice(1) : url.pathname, fail);
  let endpoint: NbdEndpoint;
  if (scheme.unix) {
    if (url.host !== '') fail('a Unix socket URI takes no host (nbd+unix:///export?socket=PATH)');
    const path = take('socket');
    if (path === undefined || path === '') return fail('the socket parameter is missing');
    endpoint = { kind: 'unix', path };
  } else {
    if (url.hostname === '') return fail('a host is needed (nbd://host[:port][/export])');
    if (params.has('socket')) fail('the socket parameter is for nbd+unix URIs');
    const host = url.hostname.startsWith('[') && url.hostname.endsWith(']') ? url.hostname.slice(1, -1) : url.hostname;
    const port = url.port === '' ? nbdPortDefault : Number(url.port);
    if (!Number.isInteger(port) || port < 1 || port > 65535) fail(`bad port "${url.port}"`);
    endpoint = { kind: 'tcp', host, port };
  }

  let tls: NbdTlsSettings | undefined;
  if (scheme.tls) {
    const typeText = take('tls-type');
    const type = tlsTypes.find((t) => t === typeText);
    if (typeText !== undefined && type === undefined) fail(`tls-type "${typeText}" is not anon, x509 or psk`);
    const verify = take('tls-verify-peer');
    if (verify !== undefined && verify !== '0' && verify !== '1') fail(`tls-verify-peer "${verify}" is not 0 or 1`);
    const userinfo = unixUser !== undefined ? decode(unixUser, fail) : url.username === '' ? undefined : decode(url.username, fail);
    const usernameParameter = take('tls-username');
    if (userinfo !== undefined && usernameParameter !== undefined && userinfo !== usernameParameter) {
      fail(`the user "${userinfo}" and tls-username "${usernameParameter}" disagree`);
    }
    const username = userinfo ?? usernameParameter;
    if (username === '') fail('tls-username is empty');
    tls = {
      type,
      hostname: take('tls-hostname'),
      verifyPeer: verify !== '0',
      pskFile: take('tls-psk-file'),
      certificatesDir: take('tls-certificates'),
      username,
    };
  } else {
    for (const key of tlsParameters) if (params.has(key)) fail(`${key} needs a TLS scheme (nbds://, nbds+unix://)`);
    if (url.username !== '' || url.password !== '' || unixUser !== undefined) fail('user information is only used by TLS schemes');
  }
  if (url.password !== '' || unixUser?.includes(':') === true) fail('a password does not belong in a URI (use tls-psk-file)');
  const unknown = [...params.keys()];
  if (unknown.length > 0) fail(`unknown query parameter "${unknown.join('", "')}"`);
  return { uri: text, endpoint, exportName, tls };
}

/** Query "a=b&c=d" decoded per RFC 3986 (no '+' to space); a repeated key is an error. */
function parseQuery(search: string, fail: (why: string) => never): Map<string, string> {
  const params = new Map<string, string>();
  const body = search.startsWith('?') ? search.slice(1) : search;
  if (body === '') return params;
  for (const part of body.split('&')) {
    if (part === '') continue;
    const eq = part.indexOf('=');
    const key = decode(eq < 0 ? part : part.slice(0, eq), fail);
    const value = decode(eq < 0 ? '' : part.slice(eq + 1), fail);
    if (params.has(key)) fail(`query parameter "${key}" is repeated`);
    params.set(key, value);
  }
  return params;
}

function decode(text: string, fail: (why: string) => never): string {
  try {
    return decodeURIComponent(text);
  } catch (err: unknown) {
    rethrowProgrammerError(err);
    // Expected at this decode boundary: decodeURIComponent throws URIError (not a programmer error) for
    // a malformed escape in the operator's URI, which becomes the URI's own error.
    return fail(`bad percent-encoding in "${text}"`);
  }
}
