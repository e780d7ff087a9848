/**
 * Parses `--nbd` listen addresses: `HOST:PORT`, `:PORT`, `PORT`, `[::1]:PORT` or `unix:/path`.
 */
import type { ListenAddress } from '../nbd/server.js';

export const defaultNbdPort = 10809;

export function parseNbdAddress(text: string): ListenAddress {
  if (text.startsWith('unix:')) {
    const path = text.slice('unix:'.length);
    if (path === '') throw new RangeError('--nbd unix: needs a socket path');
    return { path };
  }
  const bracket = /^\[([^\]]+)\]:(\d+)$/.exec(text);
  if (bracket !== null) return { host: bracket[1] ?? '::1', port: Number(bracket[2]) };
  const colon = text.lastIndexOf(':');
  const host = colon < 0 ? '127.0.0.1' : text.slice(0, colon) || '127.0.0.1';
  const portText = colon < 0 ? text : text.slice(colon + 1);
  const port = Number(portText);
  if (!/^\d+$/.test(portText) || port > 65535) throw new RangeError(`invalid --nbd address "${text}" (HOST:PORT or unix:PATH)`);
  return { host, port };
}
