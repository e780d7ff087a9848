/**
 * MirrorSet.idle(): resolves once nothing happens in the set (no worker pass, no leg I/O the set issued,
 * no recovery, no event waiting to reach dm core), so tests wait on it instead of sleeping before a
 * negative assertion. Each test leaves something running that a fixed sleep would have to outwait.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { pattern } from '../conformance/block-device.suite.js';
import { mirrorFixture, waitInSync } from '../helpers/mirror-fixture.js';

/** A promise and whether it has settled yet (observed through a flag, never through a race). */
function watched<T>(promise: Promise<T>): { readonly promise: Promise<T>; settled: () => boolean } {
  let settled = false;
  promise.then(
    () => (settled = true),
    () => (settled = true),
  );
  return { promise, settled: () => settled };
}

describe('MirrorSet.idle', () => {
  test('MirrorSet.idle resolves after the resync: in sync, no recovery in flight, the sync-complete event raised', async () => {
    let raised = 0;
    const f = await mirrorFixture({ resume: false, extra: { raiseEvent: () => (raised += 1) } });
    f.legs[1]?.setFaults({ latencyMs: { write: 2 } });
    await f.mirror.resume();
    await f.mirror.idle();
    assert.equal(f.mirror.inSync, true);
    assert.equal(f.mirror.recoveryInFlight, 0);
    assert.equal(f.mirror.syncCount(), f.mirror.regionCount);
    assert.equal(raised, 1, 'the sync-complete event reached dm core');
    assert.equal(f.mirror.eventCount, 1);
    await f.mirror.destroy();
  });

  test('MirrorSet.idle waits for a read on a slow leg that nobody awaits', async () => {
    const f = await mirrorFixture();
    await waitInSync(f.mirror);
    for (const leg of f.legs) leg.setFaults({ latencyMs: { read: 30 } });
    const reading = watched(f.mirror.read(0, 4096));
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(reading.settled(), false, 'the read is on the leg');
    await f.mirror.idle();
    assert.equal(reading.settled(), true, 'idle() resolved after the leg read returned');
    assert.deepEqual(await reading.promise, Buffer.alloc(4096));
    await f.mirror.destroy();
  });

  test('MirrorSet.idle waits for a write on a slow leg and for the pass that cleans its region', async () => {
    const f = await mirrorFixture();
    await waitInSync(f.mirror);
    f.legs[1]?.setFaults({ latencyMs: { write: 30 } });
    const data = pattern(4096, 1);
    const writing = watched(f.mirror.write(5 * 128 * 512, data));
    await f.mirror.idle();
    assert.equal(writing.settled(), true, 'idle() resolved after both legs took the write');
    await writing.promise;
    assert.equal(f.mirror.activeRegions, 0, 'the region was cleaned and left the region hash');
    for (const memory of f.memories) assert.deepEqual(await memory.read(5 * 128 * 512, 4096), data);
    await f.mirror.destroy();
  });

  test('MirrorSet.idle waits for the leg-failed event of a failed write (handle_errors keep_log)', async () => {
    let raised = 0;
    const f = await mirrorFixture({ features: '2 handle_errors keep_log', extra: { raiseEvent: () => (raised += 1) } });
    await f.mirror.idle();
    assert.equal(raised, 1);
    f.legs[1]?.setFaults({ errors: [{ ops: ['write'] }] });
    const writing = watched(f.mirror.write(0, pattern(4096, 2)));
    await f.mirror.idle();
    assert.equal(writing.settled(), true);
    await writing.promise;
    assert.equal(f.mirror.healthLetters(), 'AD');
    assert.equal(raised, 2, 'the leg-failed event reached dm core');
    await f.mirror.destroy();
  });
});
