/**
 * serve's stop line (src/cli/stop-summary.ts): "the log is clean" only when it is, else what the next
 * start resyncs and why. The real process is tested in test/interop/serve-failure.test.ts.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { stopSummary, type MirrorStopState } from '../../src/cli/stop-summary.js';

const clean: MirrorStopState = { logType: 'disk', logHealth: 'A', regionCount: 128, syncRegions: 128, dirtyRegions: 0, health: 'AA', heldWrites: 0 };

test('stopSummary says the log is clean only when every region is clean and in sync, no leg failed and no write was held', () => {
  assert.equal(stopSummary([clean]), 'device suspended cleanly; the log is clean');
  assert.equal(stopSummary([clean, { ...clean, regionCount: 4, syncRegions: 4 }]), 'device suspended cleanly; the log is clean');
});

test('stopSummary counts the regions the next start resyncs, and says why', () => {
  assert.equal(
    stopSummary([{ ...clean, syncRegions: 127, dirtyRegions: 1, health: 'AD', heldWrites: 1 }]),
    'device suspended; the next start resyncs 1 of 128 regions (a leg failed: AD; 1 out of sync; 1 held write failed)',
  );
  assert.equal(stopSummary([{ ...clean, syncRegions: 96, dirtyRegions: 32 }]), 'device suspended; the next start resyncs 32 of 128 regions (32 out of sync)');
  assert.equal(stopSummary([{ ...clean, dirtyRegions: 128 }]), 'device suspended; the next start resyncs 128 of 128 regions');
  assert.equal(stopSummary([{ ...clean, health: 'AS' }]), 'device suspended; the next start resyncs 0 of 128 regions (a leg failed: AS)');
});

test('stopSummary does not call a core log or a failed log device clean', () => {
  assert.equal(
    stopSummary([{ ...clean, logType: 'core' }]),
    'device suspended; a core log is not kept: the next start resyncs 128 of 128 regions unless its table says nosync',
  );
  assert.equal(stopSummary([{ ...clean, logHealth: 'D' }]), 'device suspended; the log device failed (D): the next start may resync every region');
  assert.equal(stopSummary([]), 'device suspended; no dirty log');
});
