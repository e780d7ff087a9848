/**
 * The connect phase of one NBD client socket (client-connection.ts is its caller): drives the pure
 * handshake (client-handshake.ts) over a connecting TCP or Unix socket, upgrades the socket to TLS when
 * the handshake asks for it (STARTTLS acknowledged, client-tls.ts), and enforces the connect timeout.
 * State it owns, for one call only: the handshake session, the socket currently read (the raw socket,
 * then the TLS socket), the timer and the listeners, all dropped when the returned promise settles. On
 * success the socket to use from then on is handed over paused, with no listener left; on failure every
 * socket is destroyed.
 */
import type { Socket } from 'node:net';
import { assert } from '../assert.js';
import { BlockError } from '../errors.js';
import { type ClientNegotiated, NbdClientHandshake } from './client-handshake.js';
import { checkNbdTlsPeer, type NbdTlsCredentials, startNbdTls, tlsHandshakeError } from './client-tls.js';
import type { NbdTarget } from './client-uri.js';

/**
 * Runs the handshake on a connecting socket, upgrading it to TLS when `credentials` are given. Resolves
 * with the socket to use from now on (the TLS socket after an upgrade), paused. @throws BlockError; every
 * socket is destroyed on failure.
 */
export function runClientHandshake(options: {
  target: NbdTarget;
  socket: Socket;
  credentials: NbdTlsCredentials | undefined;
  timeoutMs: number;
}): Promise<{ negotiated: ClientNegotiated; socket: Socket }> {
  const { target, credentials } = options;
  const raw = options.socket;
  const session = new NbdClientHandshake({ exportName: target.exportName, tls: credentials !== undefined });
  // The socket the handshake reads and writes: `raw` until STARTTLS is acknowledged, then the TLS socket.
  let current: Socket = raw;
  return new Promise((resolve, reject) => {
    let settled = false;
    const finish = (result: { negotiated: ClientNegotiated } | { error: BlockError }): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      current.off('data', onData);
      current.off('error', onError);
      current.off('close', onClose);
      if ('error' in result) {
        // The failure is reported through the rejection; a late socket error has nothing left to fail.
        current.on('error', () => undefined);
        raw.on('error', () => undefined);
        current.destroy();
        raw.destroy();
        reject(result.error);
      } else {
        // Hold incoming bytes until the connection object listens (the handshake left none buffered).
        current.pause();
        resolve({ negotiated: result.negotiated, socket: current });
      }
    };
    const pump = (): void => {
      for (let step = session.next(); step !== undefined && !settled; step = session.next()) {
        switch (step.kind) {
          case 'send':
            current.write(step.data);
            break;
          case 'startTls':
            upgrade();
            return; // Nothing more until the TLS handshake is done.
          case 'failed':
            finish({ error: new BlockError(step.error.code, `Cannot connect to ${target.uri}: ${step.error.message}`, { cause: step.error }) });
            break;
          case 'done':
            finish({ negotiated: step.negotiated });
            break;
        }
      }
    };
    const upgrade = (): void => {
      assert(credentials !== undefined && current === raw, 'STARTTLS is sent only for a TLS target, once');
      raw.off('data', onData);
      raw.off('error', onError);
      raw.off('close', onClose);
      // Errors of the raw socket surface on the TLS socket that wraps it.
      raw.on('error', () => undefined);
      const secure = startNbdTls({ socket: raw, credentials });
      current = secure;
      secure.on('error', onError);
      secure.on('close', onClose);
      secure.once('secureConnect', () => {
        if (settled) return;
        const problem = checkNbdTlsPeer(secure, credentials);
        if (problem !== undefined) {
          finish({ error: new BlockError('EIO', `Cannot connect to ${target.uri}: TLS handshake failed: ${problem}`) });
          return;
        }
        secure.on('data', onData);
        session.tlsEstablished();
        pump();
      });
    };
    const onData = (chunk: Buffer): void => {
      session.push(chunk);
      pump();
    };
    const onError = (err: Error): void => {
      if (current !== raw && session.state === 'tlsPending' && credentials !== undefined) {
        finish({ error: tlsHandshakeError({ err, credentials, uri: target.uri }) });
        return;
      }
      // Under TLS 1.3 a server that refuses our certificate says so only after our side finished.
      const after = current !== raw ? ' after the TLS handshake (the server may have refused our certificate or key)' : '';
      finish({ error: new BlockError('EIO', `Cannot connect to ${target.uri}: ${err.message}${after}`, { cause: err }) });
    };
    const onClose = (): void => {
      const during = session.state === 'tlsPending' ? 'the TLS handshake' : `the handshake (in state ${session.state})`;
      finish({ error: new BlockError('EIO', `Cannot connect to ${target.uri}: the server closed the connection during ${during}`) });
    };
    const timer = setTimeout(() => {
      finish({ error: new BlockError('EIO', `Cannot connect to ${target.uri}: no handshake within ${options.timeoutMs} ms`) });
    }, options.timeoutMs);
    raw.on('data', onData);
    raw.on('error', onError);
    raw.on('close', onClose);
  });
}
