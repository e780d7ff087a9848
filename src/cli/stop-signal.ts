/**
 * The signals that stop `serve` and `daemon` cleanly: SIGINT (Ctrl-C), SIGTERM (kill, `systemctl stop`)
 * and SIGHUP (the terminal closed). Each one suspends every device (the dirty logs are flushed clean)
 * before the process exits 0; without a handler SIGHUP would kill the process (exit 129) with regions
 * left to resync at the next start.
 *
 * After the first stop signal SIGHUP stays ignored, so a terminal closed while the devices suspend does
 * not cut the suspend short; a second SIGINT or SIGTERM takes the default action (the process dies), the
 * way out of a suspend that hangs.
 */
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
  if (err.code !== 'EIO' && err.code !== 'EPIPE') throw err;
}
