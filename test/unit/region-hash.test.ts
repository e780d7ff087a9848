/**
 * RegionHash over a CoreDirtyLog: state transitions, the clean/quiesced/recovered lists, recovery
 * prepare/start/end, delayed writes and stopRecovery. The hash is driven directly, as the mirror worker
 * drives it, so each test states the kernel's rule it checks.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { CoreDirtyLog } from '../../src/dirty-log/core-dirty-log.js';
import type { LogSyncMode } from '../../src/dirty-log/dirty-log.js';
import { RegionHash } from '../../src/region/region-hash.js';

interface Harness {
  readonly rh: RegionHash<string>;
  readonly log: CoreDirtyLog;
  readonly dispatched: string[][];
  readonly counts: { wakeups: number; idles: number };
}

function harness(options: { regionCount?: number; syncMode?: LogSyncMode; parallel?: number } = {}): Harness {
  const regionCount = options.regionCount ?? 8;
  const log = new CoreDirtyLog({ regionCount, regionSizeSectors: 128, syncMode: options.syncMode ?? 'nosync' });
  const dispatched: string[][] = [];
  const counts = { wakeups: 0, idles: 0 };
  const rh = new RegionHash<string>({
    log,
    regionCount,
    recoveryParallelMax: options.parallel ?? 1,
    callbacks: {
      dispatchDelayed: (writes) => dispatched.push(writes),
      wakeup: () => {
        counts.wakeups += 1;
      },
      recoveryIdle: () => {
        counts.idles += 1;
      },
    },
  });
  return { rh, log, dispatched, counts };
}

describe('RegionHash', () => {
  test('RegionHash inc/dec takes a region CLEAN -> DIRTY -> CLEAN and clears it in the log on updateStates', async () => {
    // Write to an in-sync region. Expected: mark on inc, clean list on dec, clearRegion on the next updateStates.
    const { rh, log } = harness();
    assert.equal(rh.getState(3), 'CLEAN');
    assert.equal(rh.peek(3), undefined, 'an idle region is not in the hash');
    rh.inc(3);
    assert.equal(rh.getState(3), 'DIRTY');
    assert.equal(log.isClean(3), false, 'CLEAN -> DIRTY marks the log');
    rh.inc(3);
    rh.dec(3);
    assert.equal(rh.getState(3), 'DIRTY', 'still one write pending');
    assert.equal(rh.peek(3)?.list, 'none');
    rh.dec(3);
    assert.equal(rh.getState(3), 'CLEAN');
    assert.equal(rh.peek(3)?.list, 'clean');
    assert.equal(log.isClean(3), false, 'the clear waits for updateStates');
    assert.equal(rh.hasListedWork, true);
    await rh.updateStates({ errorsHandled: true });
    assert.equal(log.isClean(3), true);
    assert.equal(rh.peek(3), undefined, 'the region left the hash');
    assert.equal(rh.activeRegionCount, 0);
    assert.equal(rh.hasListedWork, false);
  });

  test('RegionHash inc of a region on the clean list takes it off the list', async () => {
    // Write completes, a new write arrives before the worker pass. Expected: no clear, region DIRTY.
    const { rh, log } = harness();
    rh.inc(1);
    rh.dec(1);
    assert.equal(rh.peek(1)?.list, 'clean');
    rh.inc(1);
    assert.equal(rh.peek(1)?.list, 'none');
    assert.equal(rh.getState(1), 'DIRTY');
    await rh.updateStates({ errorsHandled: false });
    assert.equal(log.isClean(1), false, 'a region with a pending write is never cleared');
    rh.dec(1);
    await rh.updateStates({ errorsHandled: false });
    assert.equal(log.isClean(1), true);
  });

  test('RegionHash keeps a NOSYNC region NOSYNC when its writes complete', () => {
    // Write to an out-of-sync region (initial sync). Expected: region stays NOSYNC, log not in sync.
    const { rh, log } = harness({ syncMode: 'default' });
    assert.equal(rh.getState(0), 'NOSYNC');
    rh.inc(0);
    assert.equal(rh.getState(0), 'NOSYNC');
    rh.dec(0);
    assert.equal(rh.getState(0), 'NOSYNC');
    assert.equal(log.inSync(0), false);
    assert.equal(rh.peek(0), undefined, 'an idle NOSYNC region leaves the hash; the log remembers it');
  });

  test('RegionHash markNosync drops a DIRTY region out of sync in the log', async () => {
    // A leg write fails. Expected: NOSYNC in the hash and the log; never cleared afterwards.
    const { rh, log } = harness();
    rh.inc(2);
    rh.markNosync(2);
    assert.equal(rh.getState(2), 'NOSYNC');
    assert.equal(log.inSync(2), false);
    assert.equal(log.syncCount(), 7);
    rh.dec(2);
    await rh.updateStates({ errorsHandled: true });
    assert.equal(rh.getState(2), 'NOSYNC');
    assert.equal(log.inSync(2), false);
  });

  test('RegionHash recovery prepare/start/end takes an out-of-sync region to in sync', async () => {
    // Initial resync of one region. Expected: RECOVERING, quiesced, copied, then CLEAN and in sync.
    const { rh, log, counts } = harness({ regionCount: 2, syncMode: 'default' });
    assert.equal(rh.recoveryPrepare(), 1, 'one slot (recoveryParallelMax 1)');
    assert.equal(rh.recoveryInFlight, 1);
    assert.equal(rh.getState(0), 'RECOVERING');
    assert.equal(rh.peek(0)?.list, 'quiesced');
    const region = rh.recoveryStart();
    assert.ok(region !== null);
    assert.equal(region.index, 0);
    assert.equal(rh.recoveryStart(), null, 'nothing else quiesced');
    rh.recoveryEnd(region, { success: true });
    assert.equal(rh.peek(0)?.list, 'recovered');
    await rh.updateStates({ errorsHandled: true });
    assert.equal(log.inSync(0), true);
    assert.equal(log.isClean(0), true);
    assert.equal(rh.getState(0), 'CLEAN');
    assert.equal(rh.recoveryInFlight, 0);
    assert.equal(counts.idles, 1, 'recoveryIdle fires when the last recovery completes');
    assert.equal(log.syncCount(), 1);
  });

  test('RegionHash recoveryPrepare waits for pending writes before quiescing a region', () => {
    // Recovery wants a region with a write in flight. Expected: RECOVERING but not quiesced until dec.
    const { rh } = harness({ regionCount: 2, syncMode: 'default' });
    rh.inc(0);
    assert.equal(rh.recoveryPrepare(), 1);
    assert.equal(rh.getState(0), 'RECOVERING');
    assert.equal(rh.recoveryStart(), null, 'a region with pending writes is not copied');
    rh.dec(0);
    assert.equal(rh.recoveryStart()?.index, 0);
  });

  test('RegionHash dispatches writes delayed on a RECOVERING region when its recovery ends', async () => {
    // Write arrives while its region is being copied. Expected: delayed, then dispatched at recovery end.
    const { rh, dispatched } = harness({ regionCount: 2, syncMode: 'default' });
    rh.recoveryPrepare();
    const region = rh.recoveryStart();
    assert.ok(region !== null);
    rh.delay(0, 'w1');
    rh.delay(0, 'w2');
    assert.deepEqual(dispatched, []);
    rh.recoveryEnd(region, { success: true });
    assert.deepEqual(dispatched, [], 'still delayed until updateStates completes the recovery');
    await rh.updateStates({ errorsHandled: true });
    assert.deepEqual(dispatched, [['w1', 'w2']]);
  });

  test('RegionHash failed recovery leaves the region out of sync with errorsHandled', async () => {
    // Recovery copy fails, handle_errors. Expected: sync bit stays 0; without handle_errors it is set.
    for (const errorsHandled of [true, false]) {
      const { rh, log } = harness({ regionCount: 1, syncMode: 'default' });
      rh.recoveryPrepare();
      const region = rh.recoveryStart();
      assert.ok(region !== null);
      rh.recoveryEnd(region, { success: false });
      assert.equal(rh.peek(0)?.list, 'failedRecovered');
      await rh.updateStates({ errorsHandled });
      assert.equal(log.inSync(0), !errorsHandled, `errorsHandled=${String(errorsHandled)}`);
      assert.equal(rh.recoveryInFlight, 0);
    }
  });

  test('RegionHash keepOutOfSync leaves a failed recovery out of sync even without handle_errors', async () => {
    // Source read failed during recovery. Expected: nothing copied, region out of sync whatever the features.
    const { rh, log } = harness({ regionCount: 1, syncMode: 'default' });
    rh.recoveryPrepare();
    const region = rh.recoveryStart();
    assert.ok(region !== null);
    rh.recoveryEnd(region, { success: false, keepOutOfSync: true });
    await rh.updateStates({ errorsHandled: false });
    assert.equal(log.inSync(0), false);
  });

  test('RegionHash stopRecovery hands out no more work until startRecovery', () => {
    // Suspend stops recovery. Expected: recoveryPrepare takes nothing; after start it takes work again.
    const { rh, counts } = harness({ regionCount: 4, syncMode: 'default', parallel: 4 });
    rh.stopRecovery();
    assert.equal(rh.recoveryStopped, true);
    assert.equal(rh.recoveryPrepare(), 0);
    const before = counts.wakeups;
    rh.startRecovery();
    assert.equal(counts.wakeups, before + 1, 'startRecovery wakes the worker');
    assert.equal(rh.recoveryPrepare(), 4);
    assert.equal(rh.recoveryInFlight, 4);
  });

  test('RegionHash recoveryParallelMax bounds recoveries in flight', () => {
    // Eight regions out of sync, window 3. Expected: three handed out.
    const { rh } = harness({ regionCount: 8, syncMode: 'default', parallel: 3 });
    assert.equal(rh.recoveryPrepare(), 3);
    assert.equal(rh.recoveryPrepare(), 0);
    assert.throws(() => {
      rh.recoveryParallelMax = 0;
    });
  });

  test('RegionHash asserts on illegal transitions and unbalanced counts', () => {
    // Programmer errors. Expected: AssertionError, never a silent state change.
    const { rh } = harness({ regionCount: 2, syncMode: 'default' });
    assert.throws(() => rh.dec(0), { name: 'AssertionError' }, 'dec of a region not in the hash');
    assert.throws(() => rh.delay(1, 'w'), { name: 'AssertionError' }, 'delay of a region not recovering');
    assert.throws(() => rh.getState(2), { name: 'AssertionError' }, 'index out of range');
    rh.inc(0);
    rh.dec(0);
    assert.throws(() => rh.markNosync(0), { name: 'AssertionError' }, 'markNosync with no pending write');
    // NOSYNC -> CLEAN is not in the table: a recovery ending for a region not handed out must fail.
    rh.recoveryPrepare();
    const region = rh.recoveryStart();
    assert.ok(region !== null);
    rh.recoveryEnd(region, { success: true });
    assert.throws(() => rh.recoveryEnd(region, { success: true }), { name: 'AssertionError' }, 'ended twice');
    assert.throws(
      () => rh.recoveryEnd(region, { success: true, keepOutOfSync: true }),
      { name: 'AssertionError' },
    );
  });

  test('RegionHash flush failure makes a DIRTY region drain to NOSYNC and leaves the log alone (dm_rh_dec)', async () => {
    // A leg flush failed while a write was pending. Expected: the region goes NOSYNC and stays in the hash,
    // the log keeps it dirty (never cleared) and in sync (the sync count does not drop), and the failure
    // is sticky: a region written later drains to NOSYNC too, even after an updateStates().
    const { rh, log } = harness();
    rh.inc(5);
    rh.markFlushFailure();
    assert.equal(rh.flushFailure, true);
    rh.dec(5);
    assert.equal(rh.getState(5), 'NOSYNC');
    assert.equal(log.inSync(5), true, 'the sync bit is left alone');
    assert.equal(log.isClean(5), false, 'the dirty bit stays');
    await rh.updateStates({ errorsHandled: true });
    assert.equal(rh.getState(5), 'NOSYNC', 'the hash entry keeps it NOSYNC');
    assert.equal(log.isClean(5), false);
    rh.inc(6);
    rh.dec(6);
    assert.equal(rh.flushFailure, true, 'sticky');
    assert.equal(rh.getState(6), 'NOSYNC');
    assert.equal(log.getResyncWork(), null, 'the log does not resync it: the next table will');
  });
});
