/**
 * `serve --scrub-every HOURS` (src/cli/scrub-schedule.ts): a scrub every interval, never two at once, and
 * stop() aborts the one in progress. Time is node:test's mock timers (setTimeout and Date).
 */
import { test, mock } from 'node:test';
import assert from 'node:assert/strict';
import { scheduleScrubs } from '../../src/cli/scrub-schedule.js';

const hourMs = 3_600_000;

test('scheduleScrubs runs a scrub every interval, skips a turn while one runs, and stop() aborts it', async () => {
  mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 0 });
  try {
    const started: number[] = [];
    let finish: (() => void) | undefined;
    let aborted = false;
    const schedule = scheduleScrubs({
      everyMs: 48 * hourMs,
      run: (signal) => {
        started.push(Date.now());
        signal.addEventListener('abort', () => {
          aborted = true;
          finish?.();
        });
        return new Promise<void>((resolve) => {
          finish = resolve;
        });
      },
    });
    mock.timers.tick(47 * hourMs);
    assert.deepEqual(started, [], 'nothing before the first interval');
    mock.timers.tick(hourMs);
    assert.deepEqual(started, [48 * hourMs], 'the first scrub after one interval (timers step a day at most)');
    mock.timers.tick(48 * hourMs);
    assert.equal(started.length, 1, 'the second turn is skipped while the first runs');
    finish?.();
    await new Promise((resolve) => setImmediate(resolve));
    mock.timers.tick(48 * hourMs);
    assert.deepEqual(started, [48 * hourMs, 144 * hourMs]);
    await schedule.stop();
    assert.equal(aborted, true, 'stop() aborts the scrub in progress');
    mock.timers.tick(480 * hourMs);
    assert.equal(started.length, 2, 'nothing after stop()');
  } finally {
    mock.timers.reset();
  }
});
