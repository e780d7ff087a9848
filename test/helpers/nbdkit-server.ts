/**
 * A real nbdkit on a Unix socket in its own temp dir, for NBD client tests:
 *
 *   nbdkit -U DIR/nbd.sock -P DIR/nbdkit.pid -f --exit-with-parent [FLAGS] [--filter=F ...] PLUGIN ARGS...
 *
 * `uri` is nbd+unix:///?socket=DIR/nbd.sock (nbdkit's default export). `kill(signal)` signals the process
 * (SIGKILL to lose the server mid-flight); `close()` stops it if still running and removes the dir;
 * it is idempotent and safe after kill. Callers check for the tool first (requireTools / hasTool).
 *
 * `dir`: listen in a directory the caller owns (and removes) instead, so that a restarted nbdkit serves
 * the same socket path (a stale socket and pid file of a killed one are removed first). `tcpPort`: listen
 * on 127.0.0.1:PORT instead of a Unix socket (`freeTcpPort()` finds an ephemeral one); `uri` is then
 * nbd://127.0.0.1:PORT/.
 */
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Logged, pollUntil, spawnLogged, waitExit } from './failing-leg.js';

export interface NbdkitServer {
  readonly dir: string;
  readonly socketPath: string;
  readonly uri: string;
  /** The TCP port when started with `tcpPort`. */
  readonly tcpPort: number | undefined;
  readonly child: Logged;
  kill(signal: NodeJS.Signals): void;
  close(): Promise<void>;
}

export async function startNbdkit(options: {
  plugin: readonly string[];
  filters?: readonly string[];
  flags?: readonly string[];
  dir?: string;
  tcpPort?: number;
  /** With tcpPort: the address to listen on (default 127.0.0.1). */
  tcpHost?: string;
  /** Run nbdkit through a program that execs it (ip netns exec: test/helpers/netns.ts). */
  wrap?: (command: string, args: readonly string[]) => { command: string; args: string[] };
}): Promise<NbdkitServer> {
  const ownDir = options.dir === undefined;
  const dir = options.dir ?? (await mkdtemp(join(tmpdir(), 'umirror-nbdkit-')));
  const socketPath = join(dir, 'nbd.sock');
  // nbdkit writes its pid file once it accepts connections (the socket file appears a little earlier).
  const pidPath = join(dir, 'nbdkit.pid');
  await rm(pidPath, { force: true });
  await rm(socketPath, { force: true });
  const tcpHost = options.tcpHost ?? '127.0.0.1';
  const listen = options.tcpPort === undefined ? ['-U', socketPath] : ['-i', tcpHost, '-p', String(options.tcpPort)];
  const args = [...listen, '-P', pidPath, '-f', '--exit-with-parent', ...(options.flags ?? [])];
  for (const filter of options.filters ?? []) args.push(`--filter=${filter}`);
  args.push(...options.plugin);
  const argv = options.wrap?.('nbdkit', args) ?? { command: 'nbdkit', args };
  const child = spawnLogged(argv.command, argv.args);
  let closing: Promise<void> | undefined;
  const close = async (): Promise<void> => {
    if (!(await waitExit(child, 0))) {
      child.kill('SIGTERM');
      if (!(await waitExit(child, 2000))) {
        child.kill('SIGKILL');
        await waitExit(child, 2000);
      }
    }
    if (ownDir) await rm(dir, { recursive: true, force: true });
  };
  try {
    await pollUntil(`nbdkit pid file ${pidPath}`, child, async () => {
      try {
        return (await stat(pidPath)).size > 0;
      } catch {
        return false; // Not listening yet: poll again.
      }
    });
  } catch (err) {
    await close();
    throw err;
  }
  return {
    dir,
    socketPath,
    uri: options.tcpPort === undefined ? `nbd+unix:///?socket=${socketPath}` : `nbd://${tcpHost}:${options.tcpPort}/`,
    tcpPort: options.tcpPort,
    child,
    kill: (signal) => child.kill(signal),
    close: () => {
      closing ??= close();
      return closing;
    },
  };
}

/** A TCP port on 127.0.0.1 that was free a moment ago (the kernel picks it; another process may race). */
export async function freeTcpPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === 'string') throw new Error('no TCP address');
  return address.port;
}
