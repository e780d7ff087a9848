/**
 * An NBD export exposed as a plain file: `nbdfuse DIR/mnt/disk URI` (DESIGN §6, "a real filesystem"),
 * so mkfs.ext4, `mount -o loop` and fsck.ext4 can use it. States: starting -> mounted -> closed; close()
 * is idempotent and always runs every step (fusermount3 -u, a lazy umount as the fallback, wait for
 * nbdfuse, SIGKILL if it lingers). The caller owns DIR.
 */
import { execFile } from 'node:child_process';
import { mkdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { pollUntil, spawnLogged, waitExit } from './failing-leg.js';

const execFileAsync = promisify(execFile);

export interface NbdfuseFile {
  /** The file standing for the whole export. */
  readonly path: string;
  close(): Promise<void>;
}

export async function mountNbdfuse(options: { uri: string; dir: string; sizeBytes: number }): Promise<NbdfuseFile> {
  const mountPath = join(options.dir, 'fuse');
  const path = join(mountPath, 'disk');
  await mkdir(mountPath, { recursive: true });
  const fuse = spawnLogged('nbdfuse', [path, options.uri]);
  let closing: Promise<void> | undefined;
  const cleanup = async (): Promise<void> => {
    await execFileAsync('fusermount3', ['-u', mountPath]).catch(() => execFileAsync('umount', ['-l', mountPath]).catch(() => undefined));
    if (!(await waitExit(fuse, 5000))) {
      fuse.kill('SIGKILL');
      await waitExit(fuse, 2000);
    }
  };
  const close = (): Promise<void> => {
    closing ??= cleanup();
    return closing;
  };
  try {
    await pollUntil(`nbdfuse file ${path}`, fuse, async () => (await stat(path).catch(() => undefined))?.size === options.sizeBytes);
  } catch (err) {
    await close();
    throw err;
  }
  return { path, close };
}
