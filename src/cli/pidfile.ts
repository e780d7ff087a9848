/**
 * `--pidfile PATH` of `serve` and `daemon`: the file names the running process, as init scripts and
 * supervisors expect (one decimal pid and a newline).
 *
 *   const pidfile = await Pidfile.check(path);   // before anything is bound: refuse a second start
 *   ...listeners bound and started...
 *   await pidfile.write();                       // once the process answers
 *   ...
 *   await pidfile.remove();                      // on a clean exit (only if it still names us)
 *
 * A pidfile naming a live umirror process refuses the start (ControlError EBUSY). One naming a process
 * that is gone, or a live process that is not umirror (its pid was reused), is stale and replaced. A file
 * that holds anything but a pid is not ours to overwrite (EINVAL): `--pidfile /etc/hosts` must not eat it.
 * The write is atomic (a temporary file linked into place), so a reader never sees a partial pid and two
 * starts racing for the same file cannot both win.
 *
 * "umirror process": /proc/PID/cmdline has an argument whose file name is `umirror` (the installed
 * command) or that is this process's own script (dist/cli/main.js, run by node).
 */
import { link, lstat, readFile, unlink, writeFile } from 'node:fs/promises';
import { realpathSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { ControlError } from '../errors.js';
import { rethrowProgrammerError } from '../fail-fast.js';
import { pidfileBytesMax } from '../limits.js';

/** Write attempts when another start replaces the file between our check and our link. */
const writeAttemptsMax = 3;

type Holder = { readonly kind: 'none' } | { readonly kind: 'stale'; readonly pid?: number } | { readonly kind: 'live'; readonly pid: number };

export class Pidfile {
  readonly path: string;
  #written = false;

  private constructor(path: string) {
    this.path = path;
  }

  /** @throws ControlError EBUSY when the file names a live umirror, EINVAL when it is not a pidfile. */
  static async check(path: string): Promise<Pidfile> {
    const holder = await readHolder(path);
    if (holder.kind === 'live') throw busy(path, holder.pid);
    return new Pidfile(path);
  }

  /**
   * Writes this process's pid, replacing a stale file.
   * @throws ControlError EBUSY/EINVAL as check(); a Node system error when the folder is not writable.
   */
  async write(): Promise<void> {
    const temporary = join(dirname(this.path), `.${basename(this.path)}.${process.pid}.tmp`);
    await writeFile(temporary, `${process.pid}\n`, { mode: 0o644 });
    try {
      for (let attempt = 1; ; attempt++) {
        try {
          await link(temporary, this.path);
          this.#written = true;
          return;
        } catch (err) {
          rethrowProgrammerError(err);
          if (!isCode(err, 'EEXIST') || attempt >= writeAttemptsMax) throw err;
        }
        const holder = await readHolder(this.path);
        if (holder.kind === 'live') throw busy(this.path, holder.pid);
        await unlinkIfPresent(this.path);
      }
    } finally {
      await unlinkIfPresent(temporary);
    }
  }

  /** Removes the file if this process wrote it and it still names this process. Never throws for a missing file. */
  async remove(): Promise<void> {
    if (!this.#written) return;
    this.#written = false;
    const text = await readFile(this.path, 'utf8').catch((err: unknown) => {
      rethrowProgrammerError(err);
      return '';
    });
    if (parsePid(text) === process.pid) await unlinkIfPresent(this.path);
  }
}

function busy(path: string, pid: number): ControlError {
  return new ControlError('EBUSY', `pidfile ${path} names a running umirror (pid ${pid}); stop it first`);
}

async function readHolder(path: string): Promise<Holder> {
  let isFile: boolean;
  let sizeBytes: number;
  try {
    const stats = await lstat(path);
    isFile = stats.isFile();
    sizeBytes = stats.size;
  } catch (err) {
    rethrowProgrammerError(err);
    if (isCode(err, 'ENOENT')) return { kind: 'none' };
    throw err;
  }
  const notPidfile = new ControlError('EINVAL', `--pidfile ${path} exists and is not a pidfile (one process id); not replacing it`);
  if (!isFile || sizeBytes > pidfileBytesMax) throw notPidfile;
  const text = await readFile(path, 'utf8');
  if (text.trim() === '') return { kind: 'stale' };
  const pid = parsePid(text);
  if (pid === undefined) throw notPidfile;
  if (pid === process.pid) return { kind: 'stale', pid };
  return (await isUmirrorProcess(pid)) ? { kind: 'live', pid } : { kind: 'stale', pid };
}

function parsePid(text: string): number | undefined {
  const match = /^\s*([0-9]{1,10})\s*$/.exec(text);
  const pid = match?.[1] === undefined ? Number.NaN : Number(match[1]);
  return Number.isSafeInteger(pid) && pid > 0 ? pid : undefined;
}

/** True when `pid` is a live process running umirror (see the banner). */
async function isUmirrorProcess(pid: number): Promise<boolean> {
  let cmdline: string;
  try {
    cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8');
  } catch (err) {
    rethrowProgrammerError(err);
    if (isCode(err, 'ENOENT') || isCode(err, 'ESRCH')) return false;
    throw err;
  }
  const ownScript = realpathOrSelf(process.argv[1] ?? '');
  return cmdline
    .split('\0')
    .filter((arg) => arg !== '')
    .some((arg) => basename(arg) === 'umirror' || (ownScript !== '' && realpathOrSelf(arg) === ownScript));
}

function realpathOrSelf(path: string): string {
  if (path === '') return '';
  try {
    return realpathSync(path);
  } catch (err) {
    rethrowProgrammerError(err);
    return path;
  }
}

async function unlinkIfPresent(path: string): Promise<void> {
  try {
    await unlink(path);
  } catch (err) {
    rethrowProgrammerError(err);
    if (!isCode(err, 'ENOENT')) throw err;
  }
}

function isCode(err: unknown, code: string): boolean {
  return typeof err === 'object' && err !== null && 'code' in err && err.code === code;
}
