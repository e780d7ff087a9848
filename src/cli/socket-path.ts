/**
 * Where the daemon's control socket lives: `--socket PATH`, else $UMIRROR_SOCKET, else a runtime path:
 * for root /run/umirror/control.sock when /run is writable (the folder contrib/systemd/umirror.service
 * makes with RuntimeDirectory=umirror; root's $XDG_RUNTIME_DIR is ignored so a login shell and the
 * service agree), else $XDG_RUNTIME_DIR/umirror/control.sock; else
 * <tmpdir>/umirror-<uid>/control.sock.
 */
import { accessSync, constants as fsConstants } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { rethrowProgrammerError } from '../fail-fast.js';

export const systemRuntimeDir = '/run';

/** What the default depends on besides the environment (tests pass their own). */
export interface SocketPathSystem {
  readonly uid: number;
  /** True when `path` is a folder this process may create entries in. */
  readonly writable: (path: string) => boolean;
}

const thisSystem: SocketPathSystem = {
  uid: userInfo().uid,
  writable: (path) => {
    try {
      accessSync(path, fsConstants.W_OK | fsConstants.X_OK);
      return true;
    } catch (err: unknown) {
      rethrowProgrammerError(err);
      // Expected: accessSync reports a missing or read-only folder by throwing (ENOENT, EACCES, EROFS,
      // ENOTDIR); the next candidate is used.
      return false;
    }
  },
};

export function defaultSocketPath(env: NodeJS.ProcessEnv = process.env, system: SocketPathSystem = thisSystem): string {
  const fromEnv = env['UMIRROR_SOCKET'];
  if (fromEnv !== undefined && fromEnv !== '') return fromEnv;
  if (system.uid === 0 && system.writable(systemRuntimeDir)) return join(systemRuntimeDir, 'umirror', 'control.sock');
  const runtime = env['XDG_RUNTIME_DIR'];
  if (runtime !== undefined && runtime !== '') return join(runtime, 'umirror', 'control.sock');
  return join(tmpdir(), `umirror-${system.uid}`, 'control.sock');
}

/**
 * True when `path` is one of the runtime paths `defaultSocketPath` picks (not $UMIRROR_SOCKET's): root's
 * /run/umirror/control.sock, $XDG_RUNTIME_DIR's or the per-user temp path. Its folder is then ours to
 * make private (0700), as ssh-agent and tmux do with theirs.
 */
export function isDefaultRuntimePath(path: string, env: NodeJS.ProcessEnv = process.env, system: SocketPathSystem = thisSystem): boolean {
  const runtime = env['XDG_RUNTIME_DIR'];
  const candidates = [join(tmpdir(), `umirror-${system.uid}`, 'control.sock')];
  if (runtime !== undefined && runtime !== '') candidates.push(join(runtime, 'umirror', 'control.sock'));
  if (system.uid === 0) candidates.push(join(systemRuntimeDir, 'umirror', 'control.sock'));
  return candidates.includes(path);
}

/**
 * Moves a leading `--socket PATH` / `--socket=PATH` (given before the verb) behind it, so every verb
 * parses it as its own option: `umirror --socket S status m` is `umirror status --socket S m`.
 */
export function hoistSocketOption(argv: readonly string[]): string[] {
  const out = [...argv];
  const before: string[] = [];
  while (out[0] === '--socket' || out[0]?.startsWith('--socket=') === true) {
    const first = out.shift() ?? '';
    before.push(first);
    if (first === '--socket' && out.length > 0) before.push(out.shift() ?? '');
  }
  if (before.length === 0 || out.length === 0) return [...before, ...out];
  const [verb, ...rest] = out;
  return [verb ?? '', ...before, ...rest];
}
