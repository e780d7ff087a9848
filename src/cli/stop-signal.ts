/**
 * The signals that stop `serve` and `daemon` cleanly: SIGINT (Ctrl-C), SIGTERM (kill, `systemctl stop`)
 * and SIGHUP (the terminal closed). Each one suspends every device (the dirty logs are flushed clean)
 * before the process exits 0; without a handler SIGHUP would kill the process (exit 129) with regions
 * left to resync at the next start.
 *
 * A hung-up terminal also has to be let go before exit: Node restores the terminal's settings on exit
 * and aborts when that fails (nodejs/node#51519, fixed in Node 24), which turns a clean stop into a core
 * dump. closeHungUpTerminal() closes the standard descriptors that were a terminal, so Node skips them.
 *
 * After the first stop signal SIGHUP stays ignored, so a terminal closed while the devices suspend does
 * not cut the suspend short; a second SIGINT or SIGTERM takes the default action (the process dies), the
 * way out of a suspend that hangs.
 */
import { closeSync } from 'node:fs';
import { isatty } from 'node:tty';
import { rethrowProgrammerError } from '../fail-fast.js';

/** The standard descriptors that were a terminal when the process started. */
const terminalFds = [0, 1, 2].filter((fd) => isatty(fd));

export const stopSignals = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
export type StopSignal = (typeof stopSignals)[number];

/** Resolves with the first stop signal received. Call once per process. */
export function waitForStopSignal(): Promise<StopSignal> {
  return new Promise((resolve) => {
    const handlers = stopSignals.map((signal) => {
      const handler = (): void => {
        for (const [other, otherHandler] of handlers) process.off(other, otherHandler);
        process.on('SIGHUP', ignoreHangup);
        resolve(signal);
      };
      process.on(signal, handler);
      return [signal, handler] as const;
    });
  });
}

/** A terminal that went away while we stop: nothing to do (output to it is lost either way). */
function ignoreHangup(): void {}

/**
 * For output streams that may lose their reader (a closed terminal: EIO; a closed pipe: EPIPE): the
 * process keeps running, and what it prints is lost.
 */
export function ignoreClosedOutput(err: Error & { code?: string }): void {
  if (err.code !== 'EIO' && err.code !== 'EPIPE' && err.code !== 'EBADF') throw err;
}

/**
 * After SIGHUP, as the very last step before exit (nothing is printed after it, and nothing may open a
 * file, which could get one of the freed numbers): closes the standard descriptors that were a terminal.
 */
export function closeHungUpTerminal(): void {
  for (const fd of terminalFds) {
    try {
      closeSync(fd);
    } catch (err: unknown) {
      rethrowProgrammerError(err);
      // Expected: EBADF when the descriptor is already closed; there is nothing to let go of, and this
      // is the last step before exit, with nowhere left to report anything.
    }
  }
}
