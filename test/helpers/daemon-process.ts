/**
 * A real `umirror daemon` process (dist/cli/main.js) in a temp dir, and the real `umirror` command run
 * against it. The daemon logs JSON lines (pino) to stderr; they are kept for assertions.
 *
 *   const d = await startDaemon();            // --socket <tmp>/ctl.sock --metrics 127.0.0.1:0
 *   const r = await d.cli(['status', 'm']);   // { code, stdout, stderr }
 *   await d.stop();                           // SIGTERM, then waits for exit (idempotent)
 *   await d.dispose();                        // stop, then remove the temp dir
 *   const { d, ok } = await startDaemonFor(t); // disposed after the test; ok(args) asserts exit 0
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';

export const umirrorBin = fileURLToPath(new URL('../../../dist/cli/main.js', import.meta.url));

export interface CliResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

export interface LogLine {
  readonly level: number;
  readonly msg: string;
  readonly device?: string;
  readonly [key: string]: unknown;
}

export interface Daemon {
  readonly dir: string;
  readonly socketPath: string;
  readonly metricsUrl: string;
  readonly process: ChildProcess;
  /** Runs `umirror ARGS --socket SOCK`. */
  cli(args: readonly string[], options?: { stdin?: string; timeoutMs?: number }): Promise<CliResult>;
  /** Starts `umirror ARGS` without waiting: for verbs that block (wait, status --watch). */
  spawnCli(args: readonly string[]): { readonly done: Promise<CliResult>; readonly child: ChildProcess };
  logs(): LogLine[];
  /** SIGTERM and wait for exit; resolves with the exit code. Idempotent. */
  stop(): Promise<number | null>;
  /** stop(), then removes the temp dir. Idempotent. */
  dispose(): Promise<number | null>;
}

export async function startDaemon(options: { args?: readonly string[] } = {}): Promise<Daemon> {
  const dir = await mkdtemp(join(tmpdir(), 'umirror-daemon-'));
  const socketPath = join(dir, 'ctl.sock');
  const child = spawn(process.execPath, [umirrorBin, 'daemon', '--socket', socketPath, '--metrics', '127.0.0.1:0', ...(options.args ?? [])], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (chunk: string) => {
    stderr += chunk;
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const logs = (): LogLine[] =>
    stderr
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as LogLine);
  let metricsUrl: string | undefined;
  for (let i = 0; i < 400 && metricsUrl === undefined; i++) {
    const ready = logs().find((line) => line.msg === 'umirror daemon ready');
    if (ready !== undefined && typeof ready['metrics'] === 'string') metricsUrl = ready['metrics'];
    if (child.exitCode !== null) throw new Error(`umirror daemon exited (${child.exitCode}): ${stderr}`);
    if (metricsUrl === undefined) await sleep(25);
  }
  if (metricsUrl === undefined) {
    child.kill('SIGKILL');
    throw new Error(`umirror daemon not ready after 10 s: ${stderr}`);
  }
  let stopping: Promise<number | null> | undefined;
  const spawnCli = (args: readonly string[], stdin?: string): { done: Promise<CliResult>; child: ChildProcess } => {
    const cli = spawn(process.execPath, [umirrorBin, ...args, '--socket', socketPath], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    cli.stdout?.setEncoding('utf8').on('data', (c: string) => (out += c));
    cli.stderr?.setEncoding('utf8').on('data', (c: string) => (err += c));
    cli.stdin?.end(stdin ?? '');
    const done = new Promise<CliResult>((resolve) => cli.once('close', (code) => resolve({ code, stdout: out, stderr: err })));
    return { done, child: cli };
  };
  const daemon: Daemon = {
    dir,
    socketPath,
    metricsUrl,
    process: child,
    cli: async (args, cliOptions = {}) => {
      const run = spawnCli(args, cliOptions.stdin);
      const timeoutMs = cliOptions.timeoutMs ?? 60_000;
      const timer = setTimeout(() => run.child.kill('SIGKILL'), timeoutMs);
      try {
        return await run.done;
      } finally {
        clearTimeout(timer);
      }
    },
    spawnCli: (args) => spawnCli(args),
    logs,
    stop: () => {
      stopping ??= (async () => {
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
        const code = await exited;
        clearTimeout(timer);
        return code;
      })();
      return stopping;
    },
    dispose: async () => {
      const code = await daemon.stop();
      await rm(dir, { recursive: true, force: true });
      return code;
    },
  };
  return daemon;
}

/** Runs `umirror ARGS` against the daemon, asserts exit 0 and returns stdout. */
export type CliOk = (args: readonly string[], stdin?: string) => Promise<string>;

export function cliOk(daemon: Daemon): CliOk {
  return async (args, stdin) => {
    const result = await daemon.cli(args, stdin === undefined ? {} : { stdin });
    assert.equal(result.code, 0, `umirror ${args.join(' ')}: ${result.stderr}`);
    return result.stdout;
  };
}

/** startDaemon() disposed when the test ends, with its cliOk runner. */
export async function startDaemonFor(t: Pick<TestContext, 'after'>): Promise<{ d: Daemon; ok: CliOk }> {
  const d = await startDaemon();
  t.after(() => d.dispose());
  return { d, ok: cliOk(d) };
}

/** Polls `check` every 50 ms until it returns true; throws after `timeoutMs`. */
export async function until(what: string, check: () => Promise<boolean> | boolean, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

/**
 * Runs `umirror daemon ARGS` expecting it to exit on its own (a start-up failure); resolves with its exit
 * code and output. A daemon still running after `timeoutMs` is killed and reported with `running: true`.
 */
export async function runDaemonToExit(args: readonly string[], options: { timeoutMs?: number } = {}): Promise<CliResult & { readonly running: boolean }> {
  const child = spawn(process.execPath, [umirrorBin, 'daemon', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout?.setEncoding('utf8').on('data', (c: string) => (stdout += c));
  child.stderr?.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  const closed = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
  const outcome = await Promise.race([closed.then(() => 'exited' as const), sleep(options.timeoutMs ?? 10_000, 'running' as const)]);
  if (outcome === 'running') child.kill('SIGKILL');
  const code = await closed;
  return { code, stdout, stderr, running: outcome === 'running' };
}
