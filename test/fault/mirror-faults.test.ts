/**
 * lvm2-style fault scenarios for MirrorSet over FaultyBlockDevice legs (dm-flakey modes), one per test.
 * Event counts follow the kernel's (reference fail-write.out, fail-read-sync.out, fail-disklog-leg.out):
 * one for sync complete after the first resume, one per first error of a kind with handle_errors.
 * 16 regions of 128 sectors unless stated.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { BlockDevice } from '../../src/block/block-device.js';
import { targetBuilder } from '../../src/control/build-target.js';
import { sectorBytes } from '../../src/limits.js';
import { MirrorSet } from '../../src/mirror/mirror-set.js';
import { MappedDevice } from '../../src/target/mapped-device.js';
import { pattern } from '../conformance/block-device.suite.js';
import { mirrorFixture, shared, waitFor, waitInSync, type MirrorFixture } from '../helpers/mirror-fixture.js';

const regionBytes = 128 * sectorBytes;
const failAll = { errors: [{ ops: ['read', 'write'] as const }] } as const;
const failWrites = { errors: [{ ops: ['write'] as const }] } as const;
const failReads = { errors: [{ ops: ['read'] as const }] } as const;

function settle<T>(promise: Promise<T>): Promise<{ ok: true } | { ok: false; code: string }> {
  return promise.then(
    () => ({ ok: true as const }),
    (err: unknown) => ({ ok: false as const, code: typeof err === 'object' && err !== null && 'code' in err ? String(err.code) : String(err) }),
  );
}

function leg(f: MirrorFixture, index: number): MirrorFixture['legs'][number] {
  const device = f.legs[index];
  assert.ok(device !== undefined);
  return device;
}

async function synced(features?: string, legCount = 2): Promise<MirrorFixture> {
  const f = await mirrorFixture({ legCount, ...(features === undefined ? {} : { features }) });
  await waitInSync(f.mirror);
  await waitFor(() => f.mirror.eventCount === 1, 'the sync-complete event');
  return f;
}

describe('MirrorSet faults', () => {
  test('MirrorSet handle_errors holds a write that failed on leg 1 until a plain suspend fails it with EIO', async () => {
    // Fail leg l1's writes, write region 0. Expected: write held, status AD, 15/16, event 2; a plain
    // suspend completes it with EIO; l0 has the data (it was written there), the status is unchanged.
    const f = await synced('1 handle_errors');
    leg(f, 1).setFaults(failWrites);
    const data = pattern(4096, 1);
    const result = settle(f.mirror.write(10 * 4096, data));
    await waitFor(() => f.mirror.heldWrites === 1, 'the write to be held');
    assert.equal(f.mirror.healthLetters(), 'AD');
    assert.equal(f.mirror.syncCount(), 15);
    await waitFor(() => f.mirror.eventCount === 2, 'the leg-failed event');
    assert.match(f.mirror.statusInfo(), /^2 l0 l1 15\/16 1 AD 1 core$/);
    await f.mirror.suspend();
    assert.deepEqual(await result, { ok: false, code: 'EIO' });
    assert.equal(f.mirror.healthLetters(), 'AD');
    assert.deepEqual(await f.memories[0]?.read(10 * 4096, 4096), data);
    assert.equal(f.mirror.eventCount, 2);
    await f.mirror.destroy();
  });

  test('MirrorSet without handle_errors acknowledges a write that failed on leg 1 (pretend)', async () => {
    // Fail l1's writes, write. Expected: success, AD, 15/16, no event; a read returns the data (from l0).
    const f = await synced();
    leg(f, 1).setFaults(failWrites);
    const data = pattern(4096, 2);
    await f.mirror.write(0, data);
    assert.equal(f.mirror.healthLetters(), 'AD');
    assert.equal(f.mirror.syncCount(), 15);
    assert.equal(f.mirror.heldWrites, 0);
    await f.mirror.idle();
    assert.equal(f.mirror.eventCount, 1, 'no event without handle_errors');
    assert.deepEqual(await f.mirror.read(0, 4096), data);
    await f.mirror.destroy();
  });

  test('MirrorSet handle_errors keep_log does not hold a write that failed on leg 1', async () => {
    // Fail l1's writes, write. Expected: success (not held), AD, event 2.
    const f = await synced('2 handle_errors keep_log');
    leg(f, 1).setFaults(failWrites);
    await f.mirror.write(0, pattern(4096, 3));
    assert.equal(f.mirror.heldWrites, 0);
    assert.equal(f.mirror.healthLetters(), 'AD');
    await waitFor(() => f.mirror.eventCount === 2, 'the leg-failed event');
    await f.mirror.destroy();
  });

  test('MappedDevice noflush suspend requeues the held write; a reloaded linear table on the good leg completes it', async () => {
    // fail-write A: handle_errors, l1 fails, write held (AD, event 2); suspend --noflush; load
    // "linear l0 0"; resume. Expected: the write succeeds through the linear table, the data is on l0,
    // the table is linear, and the event count stays 2.
    const f = await mirrorFixture({ features: '1 handle_errors', resume: false });
    const open = (name: string): Promise<BlockDevice> => f.open(name);
    // The fixture's mirror is unused: MappedDevice builds its own over the same legs.
    await f.mirror.destroy();
    const md = new MappedDevice({ name: 'm', buildTarget: targetBuilder({ resolver: { open } }) });
    await md.load('0 2048 mirror core 1 128 2 l0 0 l1 0 1 handle_errors');
    await md.resume();
    await waitFor(() => md.status().includes(' 16/16 '), 'sync');
    await waitFor(() => md.eventNr === 1, 'the sync-complete event');
    leg(f, 1).setFaults(failAll);
    const data = pattern(4096, 4);
    const result = settle(md.write(10 * 4096, data));
    // The health letter changes when the leg fails; the region leaves the sync count when the worker
    // handles the failure (the kernel's fail_mirror then do_failures), so wait for both.
    await waitFor(() => md.status().includes(' 15/16 1 AD '), 'the leg failure');
    assert.equal(md.status(), '0 2048 mirror 2 l0 l1 15/16 1 AD 1 core\n');
    await waitFor(() => md.eventNr === 2, 'the leg-failed event');
    const mirror = md.segments()[0]?.target;
    assert.ok(mirror instanceof MirrorSet);
    await mirror.idle();
    assert.equal(mirror.heldWrites, 1);
    assert.equal(await Promise.race([result, Promise.resolve('pending')]), 'pending', 'the write is held');
    await md.suspend({ noflush: true });
    assert.equal(md.status(), '0 2048 mirror 2 l0 l1 15/16 1 AD 1 core\n');
    assert.equal(md.heldCount, 1, 'the held write is parked in the mapped device');
    await md.load('0 2048 linear l0 0');
    await md.resume();
    assert.deepEqual(await result, { ok: true });
    assert.equal(md.table(), '0 2048 linear l0 0\n');
    assert.deepEqual(await f.memories[0]?.read(10 * 4096, 4096), data);
    assert.deepEqual(await md.read(10 * 4096, 4096), data);
    assert.equal(md.eventNr, 2);
    await md.close();
  });

  test('MirrorSet with both legs dead fails the write with EIO and reports DD', async () => {
    // fail-write D: handle_errors, l1 then l0 fail. Expected: EIO, DD, 15/16, event 2, "All sides of
    // mirror have failed."
    const f = await synced('1 handle_errors');
    leg(f, 1).setFaults(failAll);
    leg(f, 0).setFaults(failAll);
    assert.deepEqual(await settle(f.mirror.write(10 * 4096, pattern(4096, 5))), { ok: false, code: 'EIO' });
    assert.equal(f.mirror.healthLetters(), 'DD');
    assert.equal(f.mirror.syncCount(), 15);
    await f.mirror.idle();
    assert.equal(f.mirror.eventCount, 2);
    assert.ok(f.messages.includes('All sides of mirror have failed.'));
    await f.mirror.destroy();
  });

  for (const handleErrors of [true, false]) {
    test(`MirrorSet read error on the primary is served by the other leg (handle_errors=${String(handleErrors)})`, async () => {
      // fail-read-sync E/F: l0 fails reads. Expected: reads succeed with l1's data, RA, the message
      // "Mirror read failed from l0. Trying alternative device."; with handle_errors the default leg
      // switches to l1 and one event is raised (2), without it no event (1).
      const f = await synced(handleErrors ? '1 handle_errors' : undefined);
      const data = pattern(8192, 6);
      await f.mirror.write(10 * 4096, data);
      leg(f, 0).setFaults(failReads);
      const switched: number[] = [];
      f.mirror.onEvent((event) => {
        if (event.kind === 'default-leg-changed') switched.push(event.to);
      });
      assert.deepEqual(await f.mirror.read(10 * 4096, 8192), data);
      assert.equal(f.mirror.healthLetters(), 'RA');
      assert.ok(f.messages.includes('Mirror read failed from l0. Trying alternative device.'));
      assert.deepEqual(await f.mirror.read(20 * 4096, 4096), Buffer.alloc(4096));
      assert.equal(f.mirror.healthLetters(), 'RA');
      await f.mirror.idle();
      assert.equal(f.mirror.eventCount, handleErrors ? 2 : 1);
      if (handleErrors) {
        assert.equal(f.mirror.defaultLegIndex, 1);
        assert.deepEqual(switched, [1]);
      }
      await f.mirror.destroy();
    });
  }

  test('MirrorSet handle_errors with the primary dead at creation: SA and reads of out-of-sync regions fail with EIO', async () => {
    // fail-read-sync I: l0 fails everything before the first resume. Expected: every recovery fails to
    // read its source ("Unable to read primary mirror during recovery"), "Primary mirror (l0) failed
    // while out-of-sync: Reads may fail.", 0/16 SA, one event; a read gets EIO ("Mirror read failed.").
    const f = await mirrorFixture({ features: '1 handle_errors', resume: false });
    leg(f, 0).setFaults(failAll);
    await f.mirror.resume();
    await waitFor(
      () => f.messages.filter((m) => m === 'Unable to read primary mirror during recovery').length === 16 && f.mirror.recoveryInFlight === 0,
      'every recovery to fail',
    );
    assert.ok(f.messages.includes('Primary mirror (l0) failed while out-of-sync: Reads may fail.'));
    assert.equal(f.mirror.statusInfo(), '2 l0 l1 0/16 1 SA 1 core');
    assert.equal(f.mirror.eventCount, 1);
    assert.deepEqual(await settle(f.mirror.read(10 * 4096, 4096)), { ok: false, code: 'EIO' });
    assert.ok(f.messages.includes('Mirror read failed.'));
    assert.equal(f.mirror.defaultLegIndex, 0, 'the default leg does not move while out of sync');
    await f.mirror.destroy();
  });

  for (const handleErrors of [true, false]) {
    test(`MirrorSet with leg 1 dead at creation reports ${handleErrors ? 'AS, 0/16' : 'AA, 16/16'} (handle_errors=${String(handleErrors)})`, async () => {
      // fail-read-sync G/H. Expected with handle_errors: every recovery write fails, 0/16 AS, one
      // event; without: errors ignored, 16/16 AA, one event (sync complete).
      const f = await mirrorFixture({ ...(handleErrors ? { features: '1 handle_errors' } : {}), resume: false });
      leg(f, 1).setFaults(failAll);
      await f.mirror.resume();
      if (handleErrors) {
        await waitFor(
          () => f.messages.filter((m) => m.startsWith('Write error during recovery')).length === 16 && f.mirror.recoveryInFlight === 0,
          'every recovery to fail',
        );
        assert.equal(f.mirror.statusInfo(), '2 l0 l1 0/16 1 AS 1 core');
      } else {
        await waitInSync(f.mirror);
        assert.equal(f.mirror.statusInfo(), '2 l0 l1 16/16 1 AA 1 core');
      }
      await f.mirror.idle();
      assert.equal(f.mirror.eventCount, 1);
      await f.mirror.destroy();
    });
  }

  test('MirrorSet with a disk log reports F when a leg flush fails as regions are cleaned', async () => {
    // fail-disklog-leg M: disk log, no handle_errors, l1 fails only flushes; write one region.
    // Expected: the write succeeds, status 16/16 AF with log A, no event; every clean bit on disk is 0.
    const f = await mirrorFixture({ log: 'disk 2 log 128' });
    await waitInSync(f.mirror);
    leg(f, 1).setFaults({ errors: [{ ops: ['flush'] }] });
    await f.mirror.write(10 * 4096, pattern(4096, 7));
    await waitFor(() => f.mirror.healthLetters() === 'AF', 'the flush failure');
    assert.equal(f.mirror.statusInfo(), '2 l0 l1 16/16 1 AF 3 disk log A');
    await f.mirror.idle();
    assert.equal(f.mirror.eventCount, 1);
    const logDevice = await f.open('log');
    const bits = await logDevice.read(1024, 2);
    assert.deepEqual(bits, Buffer.from([0, 0]), 'a leg flush failure leaves every region dirty on disk');
    await f.mirror.destroy();
  });

  test('MirrorSet handle_errors with a disk log raises an event on a leg flush failure', async () => {
    // As above with handle_errors. Expected: AF and event 2.
    const f = await mirrorFixture({ log: 'disk 2 log 128', features: '1 handle_errors' });
    await waitInSync(f.mirror);
    await waitFor(() => f.mirror.eventCount === 1, 'the sync-complete event');
    leg(f, 1).setFaults({ errors: [{ ops: ['flush'] }] });
    await f.mirror.write(0, pattern(4096, 8));
    await waitFor(() => f.mirror.healthLetters() === 'AF', 'the flush failure');
    await waitFor(() => f.mirror.eventCount === 2, 'the leg-failed event');
    await f.mirror.destroy();
  });

  test('MirrorSet write to a region being recovered waits for the recovery and then reaches every leg', async () => {
    // Slow resync (20 ms per leg write); write into the region being copied. Expected: the write
    // completes after the copy, both legs end with the written data (the copy did not overwrite it).
    const f = await mirrorFixture({ resume: false, extra: { recoveryParallelMax: 1 } });
    await f.memories[0]?.write(0, pattern(regionBytes, 9));
    leg(f, 1).setFaults({ latencyMs: { write: 20 } });
    await f.mirror.resume();
    await waitFor(() => f.mirror.recoveryInFlight === 1, 'a recovery in flight');
    const data = pattern(1000, 10);
    await f.mirror.write(100, data);
    leg(f, 1).clearFaults();
    await waitInSync(f.mirror);
    for (const memory of f.memories) assert.deepEqual(await memory.read(100, 1000), data);
    assert.deepEqual(await f.mirror.read(0, regionBytes), await f.memories[1]?.read(0, regionBytes));
    await f.mirror.destroy();
  });

  test('mirrorFixture legs outlive the mirror set: closing a shared() handle or the set leaves them open', async () => {
    // The reload tests (reuse) depend on it. Expected: after both closes every leg still serves I/O.
    const f = await mirrorFixture();
    await shared(leg(f, 0)).close();
    await f.mirror.destroy();
    for (const [i, l] of f.legs.entries()) {
      assert.equal(l.closed, false, `leg ${i} is still open`);
      await l.write(512 * i, Buffer.alloc(1, 1 + i));
      assert.deepEqual(await l.read(512 * i, 1), Buffer.alloc(1, 1 + i));
    }
  });
});
