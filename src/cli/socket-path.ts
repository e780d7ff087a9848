/**
 * Where the daemon's control socket lives: `--socket PATH`, else $UMIRROR_SOCKET, else a per-user
 * runtime path: $XDG_RUNTIME_DIR/umirror/control.sock, or <tmpdir>/umirror-<uid>/control.sock.
 */
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';

export function defaultSocketPath(env: NodeJS.ProcessEnv = process.env): string {
  const fromEnv = env['UMIRROR_SOCKET'];
  if (fromEnv !== undefined && fromEnv !== '') return fromEnv;
  const runtime = env['XDG_RUNTIME_DIR'];
  if (runtime !== undefined && runtime !== '') return join(runtime, 'umirror', 'control.sock');
  return join(tmpdir(), `umirror-${userInfo().uid}`, 'control.sock');
}

/**
 * True when `path` is one of the per-user runtime paths (not $UMIRROR_SOCKET's): its folder is then
 * ours to make private (0700), as ssh-agent and tmux do with theirs.
 */
export function isDefaultRuntimePath(path: string, env: NodeJS.ProcessEnv = process.env): boolean {
  const runtime = env['XDG_RUNTIME_DIR'];
  const candidates = [join(tmpdir(), `umirror-${userInfo().uid}`, 'control.sock')];
  if (runtime !== undefined && runtime !== '') candidates.push(join(runtime, 'umirror', 'control.sock'));
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
