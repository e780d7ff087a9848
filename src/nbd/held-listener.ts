/**
 * HeldListener: a bound TCP or Unix-socket listener that holds the connections it accepts, unanswered,
 * until `start()`. Every listener of a process (NBD, the daemon's control socket, metrics) is bound this
 * way first, so a busy address fails start-up before any device is resumed and before anything is
 * answered; the caller starts the listeners only once everything is up.
 *
 *   const held = await HeldListener.listen({ path }, { log });   // throws ListenError; nothing answered
 *   await device.resume();
 *   held.start((socket) => serve(socket));                        // held connections first, then new ones
 *   await held.close();                                           // stops accepting, drops held ones
 *
 * States: holding --start()--> started; either --close()--> closed. While holding, at most
 * heldConnectionsMax connections wait (paused: nothing is read); more are closed at once.
 *
 * Unix sockets: a socket file nobody answers on (left by a process killed with SIGKILL) is replaced; a
 * file where a server answers is EADDRINUSE; a path that exists and is not a socket is ENOTSOCK and is
 * never deleted. Closing the listener removes its socket file (libuv unlinks the path it bound).
 *
 * Unix socket access (docs/security.md): the socket file is owner-only (0600) unless `socket` says
 * otherwise (`--socket-mode`, `--socket-group`). It is created so (bound under umask 077, then its group
 * set, then its mode: never wider than asked, not even for a moment), and a listener whose folder
 * others may write (without the sticky bit) or that belongs to another user is refused with EACCES:
 * anyone who can write there could replace the socket with one of their own.
 */
import { chmod, chown, lstat, stat, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { assert } from '../assert.js';
import { ListenError, type ListenErrno } from '../errors.js';
import { rethrowProgrammerError } from '../fail-fast.js';
import { heldConnectionsMax } from '../limits.js';

export type ListenAddress = { readonly host: string; readonly port: number } | { readonly path: string };

/** An address as the user writes it: `HOST:PORT` (`[::1]:PORT`) or `unix:PATH`. */
export function formatListenAddress(address: ListenAddress): string {
  if ('path' in address) return `unix:${address.path}`;
  return address.host.includes(':') ? `[${address.host}]:${address.port}` : `${address.host}:${address.port}`;
}

/** Who may connect to a Unix socket: its mode (default 0600) and group (default: the process's). */
export interface SocketAccess {
  /** Permission bits, within 0o777. */
  readonly mode?: number;
  /** A group id to give the socket (the process must be in that group, or root). */
  readonly gid?: number;
}

/** The mode of a Unix socket a listener creates unless told otherwise. */
export const socketModeDefault = 0o600;

export interface HeldListenerOptions {
  /** Keep a socket open for writing after the client ended its side (NBD does; see connection.ts). */
  readonly allowHalfOpen?: boolean;
  readonly noDelay?: boolean;
  /** Sink for errors after the bind (a failed accept); the listener keeps listening. */
  readonly log: (message: string) => void;
  /** Unix sockets only: the socket file's mode and group. Default: 0600, the process's group. */
  readonly socket?: SocketAccess;
}

export class HeldListener {
  /** The bound address: the real port when 0 was asked. */
  readonly address: ListenAddress;
  readonly #net: Server;
  readonly #held = new Set<Socket>();
  #onConnection: ((socket: Socket) => void) | undefined;
  #closing: Promise<void> | undefined;

  private constructor(net: Server, log: (message: string) => void) {
    this.#net = net;
    net.on('connection', (socket: Socket) => this.#accept(socket));
    net.on('error', (err: Error) => log(`listener ${formatListenAddress(this.address)}: ${err.message}`));
    const bound = net.address();
    assert(bound !== null, 'a listening server has an address');
    this.address = typeof bound === 'string' ? { path: bound } : { host: bound.address, port: bound.port };
  }

  /** Binds `address`. @throws ListenError (nothing was bound, nothing is left behind). */
  static async listen(address: ListenAddress, options: HeldListenerOptions): Promise<HeldListener> {
    const access = options.socket ?? {};
    const mode = access.mode ?? socketModeDefault;
    assert(Number.isInteger(mode) && mode >= 0 && mode <= 0o777, 'a socket mode is permission bits');
    assert(!('host' in address) || options.socket === undefined, 'socket access is for Unix sockets');
    if ('path' in address) {
      await checkSocketFolder(address.path);
      await replaceStaleSocket(address.path);
    }
    const net = createServer({ allowHalfOpen: options.allowHalfOpen ?? false, noDelay: options.noDelay ?? false, pauseOnConnect: true });
    try {
      await new Promise<void>((resolve, reject) => {
        net.once('error', reject);
        const done = (): void => {
          net.off('error', reject);
          resolve();
        };
        if ('host' in address) {
          net.listen({ host: address.host, port: address.port }, done);
          return;
        }
        // bind(2) creates the socket file with 0777 & ~umask, synchronously inside listen(): a umask of
        // 077 for that call alone means it is never open to others, even before the chmod below.
        const umask = process.umask(0o077);
        try {
          net.listen({ path: address.path }, done);
        } finally {
          process.umask(umask);
        }
      });
      if ('path' in address) {
        // Group first, then the mode: the group bits never apply to the group the file had before.
        if (access.gid !== undefined) await chown(address.path, -1, access.gid);
        await chmod(address.path, mode);
      }
    } catch (err) {
      rethrowProgrammerError(err);
      if (net.listening) await new Promise<void>((resolve) => net.close(() => resolve()));
      throw toListenError(err, address);
    }
    return new HeldListener(net, options.log);
  }

  /** Connections held now (not yet started). */
  get heldCount(): number {
    return this.#held.size;
  }

  /** Hands every held connection, then every new one, to `onConnection` (which attaches its handlers). */
  start(onConnection: (socket: Socket) => void): void {
    assert(this.#onConnection === undefined, 'start once');
    assert(this.#closing === undefined, 'start before close');
    this.#onConnection = onConnection;
    for (const socket of [...this.#held]) {
      this.#held.delete(socket);
      socket.off('error', ignoreHeldError);
      this.#hand(socket);
    }
    assert(this.#held.size === 0);
  }

  /** Stops accepting and closes held connections; started ones belong to their owner. Idempotent. */
  close(): Promise<void> {
    if (this.#closing === undefined) {
      const stopped = new Promise<void>((resolve) => this.#net.close(() => resolve()));
      for (const socket of this.#held) socket.destroy();
      this.#held.clear();
      this.#closing = stopped;
    }
    return this.#closing;
  }

  #accept(socket: Socket): void {
    const onConnection = this.#onConnection;
    if (onConnection !== undefined) {
      this.#hand(socket);
      return;
    }
    if (this.#held.size >= heldConnectionsMax || this.#closing !== undefined) {
      socket.on('error', ignoreHeldError);
      socket.destroy();
      return;
    }
    // Held sockets read nothing, but a write-less reset can still surface as an 'error'.
    socket.on('error', ignoreHeldError);
    socket.once('close', () => this.#held.delete(socket));
    this.#held.add(socket);
  }

  #hand(socket: Socket): void {
    const onConnection = this.#onConnection;
    assert(onConnection !== undefined);
    onConnection(socket);
    assert(socket.listenerCount('error') > 0, 'the owner of a socket handles its errors');
    // pauseOnConnect left the socket paused; the owner's handlers are attached, so start reading.
    if (!socket.destroyed) socket.resume();
  }
}

/**
 * Refuses a socket folder where others could swap our socket for theirs: one that others may write
 * without the sticky bit (/tmp has it: only a file's owner may remove it there), or that belongs to
 * another user (root's folders are fine). @throws ListenError EACCES; a missing folder is left to bind.
 */
export async function checkSocketFolder(path: string): Promise<void> {
  const folder = dirname(path);
  let info;
  try {
    info = await stat(folder);
  } catch (err) {
    rethrowProgrammerError(err);
    return; // Missing or unreachable: bind reports it with its own code.
  }
  const address = formatListenAddress({ path });
  const uid = process.getuid?.();
  if (uid !== undefined && info.uid !== uid && info.uid !== 0) {
    throw new ListenError('EACCES', { address, reason: `EACCES: the folder ${folder} belongs to another user (uid ${info.uid}), who could replace the socket` });
  }
  const sticky = (info.mode & 0o1000) !== 0;
  if ((info.mode & 0o002) !== 0 && !sticky) {
    const octal = (info.mode & 0o777).toString(8).padStart(3, '0');
    throw new ListenError('EACCES', { address, reason: `EACCES: anyone may write the folder ${folder} (mode ${octal}, no sticky bit) and replace the socket` });
  }
}

/**
 * The folder of a per-user socket path (the daemon's default control socket): a real folder of ours,
 * made 0700 if it is looser. @throws ListenError EACCES (a symbolic link, another user's folder).
 */
export async function makeSocketFolderPrivate(path: string): Promise<void> {
  const folder = dirname(path);
  const info = await lstat(folder);
  const refuse = (why: string): never => {
    throw new ListenError('EACCES', { address: formatListenAddress({ path }), reason: `EACCES: ${folder} ${why}` });
  };
  if (!info.isDirectory()) refuse('is not a folder (a symbolic link?)');
  const uid = process.getuid?.();
  if (uid !== undefined && info.uid !== uid) refuse(`belongs to another user (uid ${info.uid})`);
  if ((info.mode & 0o077) !== 0) await chmod(folder, 0o700);
}

/** Nothing to do: a held socket that fails is closed and forgotten ('close' removes it). */
function ignoreHeldError(): void {}

/**
 * Makes `path` free for a listener: nothing there, or a socket file nobody answers on (which is removed).
 * @throws ListenError EADDRINUSE when a server answers there, ENOTSOCK when the path is not a socket.
 */
export async function replaceStaleSocket(path: string): Promise<void> {
  const address = formatListenAddress({ path });
  let isSocket: boolean;
  try {
    isSocket = (await lstat(path)).isSocket();
  } catch (err) {
    rethrowProgrammerError(err);
    return; // Missing (the usual case), or not reachable: listen reports the latter with its own code.
  }
  if (!isSocket) throw new ListenError('ENOTSOCK', { address, reason: 'ENOTSOCK: the path exists and is not a socket' });
  const answer = await new Promise<'live' | 'refused' | 'other'>((resolve) => {
    const probe = connect(path);
    probe.once('connect', () => {
      probe.destroy();
      resolve('live');
    });
    probe.once('error', (err: Error & { code?: string }) => resolve(err.code === 'ECONNREFUSED' ? 'refused' : 'other'));
  });
  if (answer === 'live') throw new ListenError('EADDRINUSE', { address, reason: 'EADDRINUSE: another server answers on this socket' });
  if (answer === 'refused') {
    await unlink(path).catch((err: unknown) => {
      rethrowProgrammerError(err); // Someone else removed it first: listen decides.
    });
  }
}

const listenErrnos: Readonly<Record<string, ListenErrno>> = {
  EADDRINUSE: 'EADDRINUSE',
  EADDRNOTAVAIL: 'EADDRNOTAVAIL',
  EACCES: 'EACCES',
  EPERM: 'EACCES',
  EROFS: 'EACCES',
};

const reasons: Readonly<Record<string, string>> = {
  EADDRINUSE: 'address already in use',
  EADDRNOTAVAIL: 'address not available on this machine',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  EROFS: 'read-only file system',
  ENOENT: 'the folder does not exist',
  ENOTDIR: 'a folder on the path is not a folder',
  EEXIST: 'the socket folder exists and is not a folder',
};

/** A listen (or socket folder) failure as a ListenError whose message names the system's code. */
export function toListenError(err: unknown, address: ListenAddress | string): ListenError {
  if (err instanceof ListenError) return err;
  const where = typeof address === 'string' ? address : formatListenAddress(address);
  const code = typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string' ? err.code : undefined;
  const reason = code === undefined ? (err instanceof Error ? err.message : String(err)) : `${code}: ${reasons[code] ?? (err instanceof Error ? err.message : code)}`;
  return new ListenError((code === undefined ? undefined : listenErrnos[code]) ?? 'EINVAL', { address: where, reason, cause: err });
}
