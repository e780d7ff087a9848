/** The resync progress shown by `serve`, `status --watch` and `wait --progress`. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { syncSuffix, syncTotals } from '../../src/cli/output.js';

test('syncTotals sums every mirror segment', () => {
  assert.deepEqual(
    syncTotals([
      { syncRegions: 3, regionCount: 4, health: 'AA' },
      { syncRegions: 8, regionCount: 8, health: 'AA' },
    ]),
    { synced: 11, total: 12 },
  );
});

test('syncSuffix: a resync bar while out of sync, a waiting label with a failed leg, nothing in sync', () => {
  assert.equal(syncSuffix([{ syncRegions: 8, regionCount: 8, health: 'AA' }]), '');
  assert.equal(syncSuffix([]), '');
  assert.match(syncSuffix([{ syncRegions: 2, regionCount: 8, health: 'AA' }]), /^ {2}resync \[#{8}\.{22}\] {2}25\.0%$/);
  assert.match(syncSuffix([{ syncRegions: 7, regionCount: 8, health: 'AD' }]), /^ {2}out of sync \(a leg failed\) \[/);
});
