/**
 * Crash consistency of the disk dirty log (issue 3): a child process runs a MirrorSet with a disk log on
 * image files under a random write load and is SIGKILLed at random moments (crash-harness.ts states
 * what is checked after each kill and after each restart). `npm run test:soak` runs the same campaign
 * with 200 kills.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runCleanShutdown, runCrashCampaign, type CrashCampaignResult } from './crash-harness.js';

function summary(r: CrashCampaignResult): string {
  const sum = (xs: readonly number[]): number => xs.reduce((a, b) => a + b, 0);
  return (
    `${r.kills} kills (${r.killsBeforeReady} before ready, ${r.killsWithLegWritesInFlight} with leg writes in flight), ` +
    `dirty regions at kill ${r.dirtyAtKill.join(',')} of ${r.regionCount}, legs differing ${sum(r.differingAtKill)} regions in all, ` +
    `${r.parentRestarts} restarts resynced ${r.resyncedAtRestart.join(',')}, writes acked ${r.writesAcked}/${r.writesIssued}`
  );
}

test('DiskDirtyLog + MirrorSet survive SIGKILL: only dirty regions resync, legs identical, acknowledged writes kept', { timeout: 120_000 }, async (t) => {
  // 24 kills at random moments (some before the child is ready), lazy clean off and 20 ms in turn.
  // Expected after each kill: leg writes in flight and differing legs only in dirty regions, dirty
  // regions only where this life wrote, acknowledged data on leg 0; after each restart exactly the
  // dirty regions resync, legs end byte-identical, every acknowledged write reads back.
  const result = await runCrashCampaign({ kills: 24, seed: 0x5eed, onProgress: (line) => t.diagnostic(line) });
  t.diagnostic(summary(result));
  assert.equal(result.kills, 24);
  assert.ok(result.writesAcked > 0, 'the load acknowledged writes');
  assert.ok(result.killsWithLegWritesInFlight > 0, 'some kill hit a leg write in flight');
  assert.ok(result.parentRestarts >= 1);
});

for (const lazyCleanMs of [0, 20]) {
  test(`MirrorSet clean shutdown under load leaves the log clean: the restart resyncs nothing (lazyCleanMs ${lazyCleanMs})`, { timeout: 60_000 }, async (t) => {
    // Load for 300 ms, SIGTERM (stop, suspend, close). Expected: every clean bit set, legs identical,
    // syncCount = regionCount at resume, no region recovered, every acknowledged write reads back.
    const acked = await runCleanShutdown({ seed: 7 + lazyCleanMs, runMs: 300, lazyCleanMs });
    t.diagnostic(`${acked} writes acknowledged before the clean shutdown`);
    assert.ok(acked > 0);
  });
}
