/**
 * `serve --scrub-every HOURS`: a scrub of the served device every HOURS, the first one HOURS after
 * start (a fresh start usually resyncs first). One scrub at a time: a scrub still running when the
 * next is due skips that turn. Node's timers hold at most 2^31 - 1 ms (24.8 days), so the wait is
 * taken in steps of at most scrubTimerStepMs towards a due time. stop() cancels the timer and aborts
 * the scrub in progress (serve stops it before it suspends the device).
 */
import { assert } from '../assert.js';
import { detach, failFast } from '../fail-fast.js';

/** The longest single timer: a day. */
const scrubTimerStepMs = 24 * 60 * 60 * 1000;

export interface ScrubSchedule {
  /** Cancels the schedule and aborts the scrub in progress; resolves once it has stopped. */
  stop(): Promise<void>;
}

export function scheduleScrubs(options: { everyMs: number; run: (signal: AbortSignal) => Promise<void> }): ScrubSchedule {
  assert(Number.isSafeInteger(options.everyMs) && options.everyMs > 0, 'a scrub interval is positive');
  const aborter = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;
  let dueMs = Date.now() + options.everyMs;
  const arm = (): void => {
    if (aborter.signal.aborted) return;
    const waitMs = Math.min(scrubTimerStepMs, Math.max(0, dueMs - Date.now()));
    timer = setTimeout(tick, waitMs);
    timer.unref();
  };
  const tick = (): void => {
    if (Date.now() < dueMs) {
      arm();
      return;
    }
    dueMs += options.everyMs;
    if (running === undefined) {
      // run() reports its own outcome (it logs); what escapes it is a programmer error.
      running = options.run(aborter.signal).finally(() => {
        running = undefined;
      });
      detach(running, failFast);
    }
    arm();
  };
  arm();
  return {
    async stop(): Promise<void> {
      aborter.abort();
      if (timer !== undefined) clearTimeout(timer);
      await running?.catch(() => undefined);
    },
  };
}
