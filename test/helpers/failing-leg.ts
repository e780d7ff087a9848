/**
 * A real file that fails with real EIO on demand (DESIGN.md §6): nbdkit's memory plugin behind the
 * `error` filter, served on a unix socket and exposed as a file by nbdfuse.
 *
 *   nbdkit -U SOCK -f --exit-with-parent --filter=error [--filter=delay] memory SIZE \
 *          error=EIO error-rate=100% error-file=TRIGGER [rdelay=NNms delay-write=NNms]
 *   nbdfuse MOUNT/leg --unix SOCK            (MOUNT is the FUSE mount point; the file is MOUNT/leg)
 *
 * While TRIGGER exists every read, write, zero and trim fails with EIO; flush is not covered by the
 * error filter (nbdkit 1.32), so fdatasync keeps succeeding. Delete TRIGGER to heal.
 *
 * Page cache: nbdfuse writes through (a write fails at once) but the kernel keeps pages read or written on
 * an open descriptor, so a buffered descriptor may still read cached data after fail(). Open the file with
 * O_DIRECT (FileBlockDevice `direct: true`; FUSE accepts unaligned O_DIRECT) so every read reaches nbdkit.
 *
 * States: starting -> running -> closed. close() is idempotent and always runs every cleanup step:
 * unmount (fusermount3 -u, then umount -l as a fallback), wait for nbdfuse, stop nbdkit, remove the temp
 * dir. Call it from t.after / after so a failing test still cleans up.
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

export interface FailingLegOptions {
  /** Size of the memory disk; 64 MiB by default. */
  readonly sizeBytes?: number;
  /** Latency added by nbdkit's delay filter, in milliseconds. */
  readonly delayMs?: { readonly read?: number; readonly write?: number };
}

export interface FailingLeg {
  /** The file to open: MOUNT/leg on the nbdfuse mount. */
  readonly path: string;
  readonly socketPath: string;
  readonly triggerPath: string;
  readonly sizeBytes: number;
  /** Makes every read and write fail with EIO (creates the trigger file). */
  fail(): Promise<void>;
  /** Heals the leg (removes the trigger file). */
  heal(): Promise<void>;
  /** Unmounts, stops nbdkit and removes the temp dir; idempotent. */
  close(): Promise<void>;
}

/** Polls are bounded: 200 x 25 ms = 5 s for nbdkit's socket and for the FUSE file. */
const pollCountMax = 200;
const pollIntervalMs = 25;

export async function startFailingLeg(options: FailingLegOptions = {}): Promise<FailingLeg> {
  const sizeBytes = options.sizeBytes ?? 64 * 1024 * 1024;
  const dir = await mkdtemp(join(tmpdir(), 'umirror-leg-'));
  const socketPath = join(dir, 'nbd.sock');
  const triggerPath = join(dir, 'trigger');
  const mountPath = join(dir, 'mnt');
  const path = join(mountPath, 'leg');
  let nbdkit: Logged | undefined;
  let nbdfuse: Logged | undefined;
  let closing: Promise<void> | undefined;

  const cleanup = async (): Promise<void> => {
    const errors: unknown[] = [];
    if (nbdfuse !== undefined) {
      const fuse = nbdfuse;
      try {
        await execFileAsync('fusermount3', ['-u', mountPath]);
      } catch (err) {
        // Busy or already gone: a lazy unmount detaches it regardless.
        await execFileAsync('umount', ['-l', mountPath]).catch((lazyErr: unknown) => {
          if (fuse.exitCode === null && fuse.signalCode === null) errors.push(err, lazyErr);
        });
      }
      if (!(await waitExit(fuse, 2000))) {
        fuse.kill('SIGKILL');
        await waitExit(fuse, 2000);
      }
    }
    if (nbdkit !== undefined) {
      nbdkit.kill('SIGTERM');
      if (!(await waitExit(nbdkit, 2000))) {
        nbdkit.kill('SIGKILL');
        await waitExit(nbdkit, 2000);
      }
    }
    await rm(dir, { recursive: true, force: true }).catch((err: unknown) => errors.push(err));
    if (errors.length > 0) throw new AggregateError(errors, `failing leg cleanup of ${dir} failed`);
  };

  try {
    const args = ['-U', socketPath, '-f', '--exit-with-parent', '--filter=error'];
    if (options.delayMs !== undefined) args.push('--filter=delay');
    args.push('memory', String(sizeBytes), 'error=EIO', 'error-rate=100%', `error-file=${triggerPath}`);
    if (options.delayMs?.read !== undefined) args.push(`rdelay=${options.delayMs.read}ms`);
    if (options.delayMs?.write !== undefined) args.push(`delay-write=${options.delayMs.write}ms`);
    nbdkit = spawnLogged('nbdkit', args);
    await pollUntil(`nbdkit socket ${socketPath}`, nbdkit, async () => (await statOrNull(socketPath)) !== null);

    await mkdir(mountPath);
    nbdfuse = spawnLogged('nbdfuse', [path, '--unix', socketPath]);
    await pollUntil(`nbdfuse file ${path}`, nbdfuse, async () => (await statOrNull(path))?.size === sizeBytes);
  } catch (err) {
    await cleanup().catch(() => undefined); // Report the start failure, not a cleanup one after it.
    throw err;
  }

  return {
    path,
    socketPath,
    triggerPath,
    sizeBytes,
    fail: () => writeFile(triggerPath, ''),
    heal: () => rm(triggerPath, { force: true }),
    close: () => {
      closing ??= cleanup();
      return closing;
    },
  };
}

export interface Logged extends ChildProcess {
  stderrText: () => string;
}

export function spawnLogged(command: string, args: readonly string[]): Logged {
  const child = spawn(command, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (chunk: string) => {
    if (stderr.length < 16 * 1024) stderr += chunk;
  });
  // Spawn failures (ENOENT) surface through pollUntil's exit check; keep them off the unhandled path.
  child.on('error', (err) => {
    stderr += `spawn error: ${err.message}`;
  });
  return Object.assign(child, { stderrText: () => stderr });
}

export async function pollUntil(what: string, child: Logged, ready: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < pollCountMax; i++) {
    if (await ready()) return;
    if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) {
      throw new Error(`waiting for ${what}: ${String(child.spawnfile)} exited (${child.exitCode ?? child.signalCode}): ${child.stderrText()}`);
    }
    await sleep(pollIntervalMs);
  }
  throw new Error(`waiting for ${what}: not ready after ${pollCountMax * pollIntervalMs} ms: ${child.stderrText()}`);
}

async function statOrNull(path: string): Promise<{ size: number } | null> {
  try {
    return await stat(path);
  } catch {
    return null; // Not there yet: the caller polls again.
  }
}

/** True when the child has exited (or exits within `timeoutMs`). */
export async function waitExit(child: ChildProcess, timeoutMs: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return true;
  if (child.pid === undefined) return true; // never started
  const exited = new Promise<boolean>((resolve) => child.once('exit', () => resolve(true)));
  const timer = sleep(timeoutMs, false, { ref: false });
  return Promise.race([exited, timer]);
}
