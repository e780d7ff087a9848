/**
 * A real nbdkit on a Unix socket in its own temp dir, for NBD client tests:
 *
 *   nbdkit -U DIR/nbd.sock -P DIR/nbdkit.pid -f --exit-with-parent [FLAGS] [--filter=F ...] PLUGIN ARGS...
 *
 * `uri` is nbd+unix:///?socket=DIR/nbd.sock (nbdkit's default export). `kill(signal)` signals the process
 * (SIGKILL to lose the server mid-flight); `close()` stops it if still running and removes the dir;
 * it is idempotent and safe after kill. Callers check for the tool first (requireTools / hasTool).
 */
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Logged, pollUntil, spawnLogged, waitExit } from './failing-leg.js';

export interface NbdkitServer {
  readonly dir: string;
  readonly socketPath: string;
  readonly uri: string;
  readonly child: Logged;
  kill(signal: NodeJS.Signals): void;
  close(): Promise<void>;
}

export async function startNbdkit(options: {
  plugin: readonly string[];
  filters?: readonly string[];
  flags?: readonly string[];
}): Promise<NbdkitServer> {
  const dir = await mkdtemp(join(tmpdir(), 'umirror-nbdkit-'));
  const socketPath = join(dir, 'nbd.sock');
  // nbdkit writes its pid file once it accepts connections (the socket file appears a little earlier).
  const pidPath = join(dir, 'nbdkit.pid');
  const args = ['-U', socketPath, '-P', pidPath, '-f', '--exit-with-parent', ...(options.flags ?? [])];
  for (const filter of options.filters ?? []) args.push(`--filter=${filter}`);
  args.push(...options.plugin);
  const child = spawnLogged('nbdkit', args);
  let closing: Promise<void> | undefined;
  const close = async (): Promise<void> => {
    if (!(await waitExit(child, 0))) {
      child.kill('SIGTERM');
      if (!(await waitExit(child, 2000))) {
        child.kill('SIGKILL');
        await waitExit(child, 2000);
      }
    }
    await rm(dir, { recursive: true, force: true });
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
    uri: `nbd+unix:///?socket=${socketPath}`,
    child,
    kill: (signal) => child.kill(signal),
    close: () => {
      closing ??= close();
      return closing;
    },
  };
}
