/**
 * RateLimiter (the kernel's ___ratelimit behind DMERR_LIMIT) on a fake clock, and MirrorSet using it
 * for the messages of a failing recovery.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { RateLimiter } from '../../src/mirror/rate-limit.js';
import { mirrorFixture, waitFor } from '../helpers/mirror-fixture.js';

function clock(): { now: () => number; advance: (ms: number) => void } {
  let t = 1000;
  return { now: () => t, advance: (ms) => (t += ms) };
}

describe('RateLimiter', () => {
  test('RateLimiter allows 10 messages per 5 s by default and counts the rest', () => {
    const c = clock();
    const limiter = new RateLimiter({ now: c.now });
    const allowed = Array.from({ length: 25 }, () => limiter.take().allowed);
    assert.equal(allowed.filter(Boolean).length, 10);
    assert.deepEqual(allowed.slice(0, 10), Array(10).fill(true));
    assert.equal(limiter.missed, 15);
    c.advance(4999);
    assert.deepEqual(limiter.take(), { allowed: false, suppressed: 0 }, 'still the same window');
  });

  test('RateLimiter reports the suppressed count once, with the first message of the next window', () => {
    const c = clock();
    const limiter = new RateLimiter({ now: c.now, burst: 2, intervalMs: 100 });
    limiter.take();
    limiter.take();
    assert.deepEqual(limiter.take(), { allowed: false, suppressed: 0 });
    assert.deepEqual(limiter.take(), { allowed: false, suppressed: 0 });
    c.advance(100);
    assert.deepEqual(limiter.take(), { allowed: true, suppressed: 2 });
    assert.deepEqual(limiter.take(), { allowed: true, suppressed: 0 });
    assert.deepEqual(limiter.take(), { allowed: false, suppressed: 0 });
    c.advance(250);
    assert.deepEqual(limiter.take(), { allowed: true, suppressed: 1 });
    c.advance(100);
    assert.deepEqual(limiter.take(), { allowed: true, suppressed: 0 }, 'nothing was missed in a quiet window');
  });

  test('RateLimiter refuses a zero burst or interval', () => {
    assert.throws(() => new RateLimiter({ burst: 0 }));
    assert.throws(() => new RateLimiter({ intervalMs: 0 }));
  });
});

describe('MirrorSet message rate limit', () => {
  test('MirrorSet logs a failing recovery at most 10 times per window, then how many it suppressed', async () => {
    // handle_errors, l0 reads fail from the start: each of the 32 regions fails its recovery with the
    // same kernel line. The clock stands still during the resync, then moves past the window.
    const c = clock();
    const f = await mirrorFixture({
      lengthSectors: 4096,
      features: '1 handle_errors',
      resume: false,
      extra: { messageLimiter: new RateLimiter({ now: c.now }) },
    });
    f.legs[0]?.setFaults({ errors: [{ ops: ['read'] }] });
    await f.mirror.resume();
    const line = 'Unable to read primary mirror during recovery';
    await waitFor(() => f.mirror.recoveryInFlight === 0 && f.mirror.healthLetters() === 'SA', 'every recovery to fail');
    await waitFor(() => f.mirror.recoveryInFlight === 0 && f.mirror.activeRegions === 0, 'the recoveries to settle');
    assert.equal(f.messages.filter((m) => m === line).length, 10);
    c.advance(5000);
    // One more failing recovery after the window: it reports the suppressed ones first.
    await f.mirror.suspend();
    await f.mirror.resume();
    await waitFor(() => f.messages.some((m) => /^recovery_complete: \d+ callbacks suppressed$/.test(m)), 'the suppressed note');
    const note = f.messages.find((m) => m.endsWith('callbacks suppressed'));
    assert.equal(note, 'recovery_complete: 22 callbacks suppressed');
    f.legs[0]?.clearFaults();
    await f.mirror.destroy();
  });
});

describe('MirrorSet read-path message rate limit', () => {
  test('MirrorSet rate limits "Mirror read failed." per call site: 10 per window, then the suppressed note', async () => {
    // handle_errors, the default leg l0 fails reads from the start: every recovery fails (its lines fill
    // recovery_complete's budget), every region stays out of sync, and each read of one is refused by
    // the worker with mirror_end_io's "Mirror read failed." That call site has a budget of its own (the
    // kernel's DM*_LIMIT keeps a static state per expansion), so recovery's lines cannot hide it and a
    // burst of failed reads cannot flood the log.
    const c = clock();
    const f = await mirrorFixture({ lengthSectors: 4096, features: '1 handle_errors', resume: false, extra: { messageLimiter: new RateLimiter({ now: c.now }) } });
    f.legs[0]?.setFaults({ errors: [{ ops: ['read'] }] });
    await f.mirror.resume();
    await waitFor(() => f.mirror.recoveryInFlight === 0 && f.mirror.healthLetters() === 'SA', 'every recovery to fail');
    await waitFor(() => f.mirror.recoveryInFlight === 0 && f.mirror.activeRegions === 0, 'the recoveries to settle');
    for (let i = 0; i < 25; i++) await assert.rejects(f.mirror.read(0, 512), { code: 'EIO' });
    assert.equal(f.messages.filter((m) => m === 'Mirror read failed.').length, 10, f.messages.join('\n'));
    assert.equal(f.messages.filter((m) => m.startsWith('mirror_end_io:')).length, 0, 'nothing reported inside the window');
    c.advance(5000);
    await assert.rejects(f.mirror.read(0, 512), { code: 'EIO' });
    assert.deepEqual(f.messages.slice(-2), ['mirror_end_io: 15 callbacks suppressed', 'Mirror read failed.']);
    f.legs[0]?.clearFaults();
    await f.mirror.destroy();
  });
});
