/**
 * The real `umirror serve` process for interop tests: `node dist/cli/main.js serve ARGS...` as a child
 * process (the built CLI, exactly what a user runs), ready once it printed its start lines (`nbd uri:`,
 * `table:` and the first `status:`, each a write of its own that may reach the pipe in a read of its own).
 *
 * States: starting -> serving -> stopped. stop() sends SIGINT (Ctrl-C) once and resolves with the exit
 * code and everything printed; it is idempotent, so a test may call it and also register it in t.after.
 * A process that does not exit within the stop timeout is killed with SIGKILL and reported as such, so a
 * hang in shutdown fails the test instead of the run.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';

/** build/test/helpers/ -> the repository root -> dist/cli/main.js (npm test builds dist first). */
export const umirrorMain = fileURLToPath(new URL('../../../dist/cli/main.js', import.meta.url));

export interface ServeExit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  /** True when it had to be killed after the stop timeout. */
  readonly killed: boolean;
  readonly stdout: string;
  readonly stderr: string;
}

export interface ServeProcess {
  /** The URI from the `nbd uri:` line. */
  readonly uri: string;
  /** The `table:` line's table. */
  readonly table: string;
  readonly pid: number;
  stdout(): string;
  stderr(): string;
  /** Resolves with the first match of `pattern` in stdout (polled), or rejects after `timeoutMs`. */
  waitForOutput(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  /** SIGINT, then waits for the exit (SIGKILL after `timeoutMs`). Idempotent. */
  stop(options?: { timeoutMs?: number }): Promise<ServeExit>;
}

const outputBytesMax = 4 * 1024 * 1024;
const pollIntervalMs = 25;

/** Starts `umirror serve ARGS` and waits for its NBD URI (rejects if it exits first or after `timeoutMs`). */
export async function startServe(
  args: readonly string[],
  options: { timeoutMs?: number; wrap?: (command: string, args: readonly string[]) => { command: string; args: string[] } } = {},
): Promise<ServeProcess> {
  // `wrap`: run it through another program that execs it (ip netns exec: test/helpers/netns.ts).
  const argv = (options.wrap ?? ((command, rest) => ({ command, args: [...rest] })))(process.execPath, [umirrorMain, 'serve', ...args]);
  const child = spawn(argv.command, argv.args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
    if (stdout.length < outputBytesMax) stdout += chunk;
  });
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    if (stderr.length < outputBytesMax) stderr += chunk;
  });
  child.on('error', (err) => {
    stderr += `spawn error: ${err.message}\n`;
  });
  const exited = new Promise<void>((resolve) => child.once('close', () => resolve()));

  const waitForOutput = async (pattern: RegExp, timeoutMs = 30_000): Promise<RegExpMatchArray> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const match = pattern.exec(stdout);
      if (match !== null) return match;
      if (child.exitCode !== null || child.signalCode !== null) {
        throw new Error(`umirror serve exited (${child.exitCode ?? child.signalCode}) before printing ${pattern}\n${stdout}\n${stderr}`);
      }
      if (Date.now() > deadline) throw new Error(`umirror serve did not print ${pattern} within ${timeoutMs} ms\n${stdout}\n${stderr}`);
      await sleep(pollIntervalMs);
    }
  };

  let stopping: Promise<ServeExit> | undefined;
  const stop = (stopOptions: { timeoutMs?: number } = {}): Promise<ServeExit> => {
    stopping ??= (async () => {
      let killed = false;
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGINT');
        const timer = sleep(stopOptions.timeoutMs ?? 30_000, 'timeout' as const, { ref: false });
        if ((await Promise.race([exited.then(() => 'exited' as const), timer])) === 'timeout') {
          killed = true;
          child.kill('SIGKILL');
        }
      }
      await exited;
      return { code: child.exitCode, signal: child.signalCode, killed, stdout, stderr };
    })();
    return stopping;
  };

  try {
    const uri = (await waitForOutput(/^nbd uri: (\S+)$/m, options.timeoutMs))[1];
    const table = (await waitForOutput(/^table: +(.+)$/m, options.timeoutMs))[1];
    await waitForOutput(/^status: /m, options.timeoutMs);
    if (uri === undefined || table === undefined || child.pid === undefined) throw new Error('umirror serve printed no URI');
    return { uri, table, pid: child.pid, stdout: () => stdout, stderr: () => stderr, waitForOutput, stop };
  } catch (err) {
    await stop({ timeoutMs: 5000 });
    throw err;
  }
}

/** The stop line of a clean stop: every region clean and in sync, no leg failed, no write held. */
export const logCleanLine = /^device suspended cleanly; the log is clean$/m;

/**
 * Asserts a stop went well: no kill needed, exit code 0 on SIGINT, and the stop line (what the next start
 * must resync) is `summary`: by default the clean one.
 */
export function assertCleanExit(exit: ServeExit, summary: RegExp = logCleanLine): void {
  const output = `${exit.stdout}\n${exit.stderr}`;
  assert.equal(exit.killed, false, `umirror serve had to be killed after SIGINT\n${output}`);
  assert.equal(exit.code, 0, `umirror serve exited ${exit.code ?? exit.signal} after SIGINT\n${output}`);
  assert.match(exit.stdout, summary);
}

/**
 * Runs `umirror serve ARGS` expecting it to give up on its own (a start-up refusal); resolves with its
 * exit code (null when killed) and output. A serve still running after `timeoutMs` is killed.
 */
export function runServeToExit(
  args: readonly string[],
  options: { timeoutMs?: number } = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [umirrorMain, 'serve', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 30_000);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}
