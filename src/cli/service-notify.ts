/**
 * Readiness for a service manager (systemd `Type=notify`, contrib/systemd/): when $NOTIFY_SOCKET is
 * set, `serve` and `daemon` report READY=1 once every listener is bound and answering.
 *
 * Node cannot send a Unix datagram (node:dgram has UDP only), so the message is sent by systemd's own
 * `systemd-notify --ready --pid=<our pid>`. The unit sets `NotifyAccess=all`, since the sender is a child
 * process; systemd-notify waits until the manager has taken the message (its barrier, systemd >= 246),
 * so the message is attributed to our unit even though the child exits right after. `--pid` names us as
 * the main process. Without $NOTIFY_SOCKET (a terminal, a test) nothing is spawned.
 *
 * A failure to notify is logged and not fatal: the manager then times the start out, which says more
 * than a process that exits on its own.
 */
import { spawn } from 'node:child_process';
import { rethrowProgrammerError } from '../fail-fast.js';
import { serviceNotifyTimeoutMs } from '../limits.js';

export interface NotifyOptions {
  /** One line for `systemctl status` (STATUS=). */
  readonly status: string;
  readonly log: (message: string) => void;
  readonly env?: NodeJS.ProcessEnv;
}

/** Sends READY=1 (and STATUS=) when a service manager asked for it; resolves when it was taken. */
export async function notifyReady(options: NotifyOptions): Promise<void> {
  const env = options.env ?? process.env;
  const socket = env['NOTIFY_SOCKET'];
  if (socket === undefined || socket === '') return;
  const args = ['--ready', `--pid=${process.pid}`, `--status=${options.status}`];
  const outcome = await new Promise<string | undefined>((resolve) => {
    let child: ReturnType<typeof spawn>;
    try {
      child = spawn('systemd-notify', args, { stdio: ['ignore', 'ignore', 'pipe'], env });
    } catch (err) {
      rethrowProgrammerError(err);
      resolve(err instanceof Error ? err.message : String(err));
      return;
    }
    let stderr = '';
    child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
      if (stderr.length < 1024) stderr += chunk;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), serviceNotifyTimeoutMs);
    child.once('error', (err) => {
      clearTimeout(timer);
      resolve(`cannot run systemd-notify: ${err.message}`);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve(code === 0 ? undefined : `systemd-notify exited ${code ?? signal}: ${stderr.trim()}`);
    });
  });
  if (outcome !== undefined) options.log(`service manager not notified (NOTIFY_SOCKET=${socket}): ${outcome}`);
}
