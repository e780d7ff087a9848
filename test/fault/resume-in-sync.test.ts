/**
 * The default leg never changes while the set is out of sync, across suspend/resume (issue 9 item 4).
 *
 * A set that was in sync is suspended; at resume the reread disk log says some regions are out of
 * sync, in one of three ways: the log device is dead at resume (nothing can be trusted: every region
 * resyncs), a leg flush failure zeroed the clean bits before the suspend, or the bits changed on disk
 * between suspend and resume. Recovery then copies from the default leg (slowly: the target legs
 * have write latency), and a read of an out-of-sync region fails on the default leg.
 *
 * Expected, each time: the default leg stays l0 ("Primary mirror (l0) failed while out-of-sync"), the
 * read fails with EIO rather than being served from a leg that never received the region, the copies
 * in flight end without tripping the recovery's "default leg changed" invariant, and the set reports
 * itself out of sync. Before the fix the set kept its in-sync flag from before the suspend, moved the
 * default leg to l1 and the recovery's assertion rejected a detached promise.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { BlockDevice } from '../../src/block/block-device.js';
import { FaultyBlockDevice } from '../../src/block/faulty-block-device.js';
import { MemoryBlockDevice } from '../../src/block/memory-block-device.js';
import { DiskDirtyLog } from '../../src/dirty-log/disk-dirty-log.js';
import { sectorBytes } from '../../src/limits.js';
import { createMirrorSet } from '../../src/mirror/create-mirror-set.js';
import type { MirrorEvent, MirrorSet } from '../../src/mirror/mirror-set.js';
import { pattern } from '../conformance/block-device.suite.js';
import { shared, waitFor, waitInSync } from '../helpers/mirror-fixture.js';

const lengthSectors = 2048;
const regionSectors = 128;
const regionBytes = regionSectors * sectorBytes;
/** Long enough that the copies started at resume are still writing when the read fails. */
const recoveryWriteLatencyMs = 200;

interface Rig {
  readonly mirror: MirrorSet;
  readonly legs: readonly FaultyBlockDevice[];
  readonly logDevice: FaultyBlockDevice;
  readonly logMemory: MemoryBlockDevice;
  readonly messages: string[];
  readonly events: MirrorEvent[];
}

async function rig(legCount: number): Promise<Rig> {
  const legs = Array.from(
    { length: legCount },
    (_, i) => new FaultyBlockDevice(new MemoryBlockDevice({ sizeBytes: lengthSectors * sectorBytes, name: `l${i}` }), { name: `l${i}` }),
  );
  const logMemory = new MemoryBlockDevice({ sizeBytes: 1024 * 1024, name: 'log' });
  const logDevice = new FaultyBlockDevice(logMemory, { name: 'log' });
  const open = (name: string): Promise<BlockDevice> => {
    if (name === 'log') return Promise.resolve(shared(logDevice));
    const leg = legs[Number(name.slice(1))];
    return leg === undefined ? Promise.reject(new Error(`no device ${name}`)) : Promise.resolve(shared(leg));
  };
  const legWords = legs.map((_, i) => `l${i} 0`).join(' ');
  const messages: string[] = [];
  const mirror = await createMirrorSet({
    args: `disk 2 log ${regionSectors} ${legCount} ${legWords} 1 handle_errors`.split(' '),
    lengthSectors,
    openDevice: open,
    onMessage: (_level, message) => messages.push(message),
    recoveryBusyBytesPerSecond: null,
  });
  const events: MirrorEvent[] = [];
  mirror.onEvent((event) => events.push(event));
  await mirror.resume();
  await waitInSync(mirror);
  await waitFor(() => mirror.eventCount === 1, 'the first sync-complete event');
  return { mirror, legs, logDevice, logMemory, messages, events };
}

function leg(r: Rig, index: number): FaultyBlockDevice {
  const device = r.legs[index];
  assert.ok(device !== undefined);
  return device;
}

/**
 * Resumes with slow recovery writes, fails the default leg's reads while copies are in flight, and
 * checks the default leg stays put. `outOfSync` is how many regions the reread log must call dirty.
 */
async function resumeAndFailDefaultLeg(r: Rig, options: { outOfSync: number }): Promise<void> {
  for (const device of r.legs.slice(1)) device.setFaults({ latencyMs: { write: recoveryWriteLatencyMs } });
  await r.mirror.resume();
  assert.equal(r.mirror.regionCount - r.mirror.syncCount() >= options.outOfSync, true, r.mirror.statusInfo());
  assert.equal(r.mirror.inSync, false, 'a resume that finds out-of-sync regions leaves the set out of sync');
  await waitFor(() => r.mirror.recoveryInFlight > 0, 'recovery to start');

  leg(r, 0).setFaults({ errors: [{ ops: ['read'] }] });
  const lastRegion = r.mirror.regionCount - 1;
  assert.equal(r.mirror.regionInSync(lastRegion), false, 'the last region is still out of sync');
  await assert.rejects(r.mirror.read(lastRegion * regionBytes, 4096), { code: 'EIO' });
  assert.equal(r.mirror.defaultLegIndex, 0, 'the default leg never changes while the set is out of sync');
  assert.ok(r.messages.includes('Primary mirror (l0) failed while out-of-sync: Reads may fail.'), r.messages.join('\n'));

  // Every copy started from l0 ends (with l0 still the default leg), and the rest fail their reads.
  await waitFor(() => r.mirror.recoveryInFlight === 0, 'the copies in flight to end');
  await r.mirror.idle();
  assert.equal(r.mirror.defaultLegIndex, 0);
  assert.equal(r.mirror.inSync, false);
  assert.deepEqual(
    r.events.filter((event) => event.kind === 'default-leg-changed'),
    [],
    'no default-leg-changed event',
  );
  for (const device of r.legs) device.clearFaults();
  r.logDevice.clearFaults();
  await r.mirror.destroy();
}

describe('MirrorSet in-sync flag across suspend/resume', () => {
  test('MirrorSet resumed with its log device dead keeps the default leg while it resyncs everything', async () => {
    const r = await rig(2);
    await r.mirror.suspend();
    r.logDevice.setFaults({ errors: [{ ops: ['read', 'write', 'flush'] }] });
    await resumeAndFailDefaultLeg(r, { outOfSync: r.mirror.regionCount });
    assert.ok(r.messages.includes('log resume failed'), r.messages.join('\n'));
  });

  test('MirrorSet resumed after a leg flush failure zeroed the clean bits keeps the default leg', async () => {
    // Three legs: l2 fails the flush of a clean step (its health F), so l1 is the leg the default could
    // wrongly move to.
    const r = await rig(3);
    assert.ok(r.mirror.log instanceof DiskDirtyLog);
    const log = r.mirror.log;
    leg(r, 2).setFaults({ errors: [{ ops: ['flush'] }] });
    await r.mirror.write(0, pattern(4096, 1));
    await waitFor(() => log.flushFailed, 'the leg flush failure to zero the clean bits');
    assert.equal(r.mirror.healthLetters(), 'AAF');
    assert.equal(r.mirror.syncCount(), r.mirror.regionCount, 'the sync bits are untouched until resume');
    leg(r, 2).clearFaults();
    await r.mirror.suspend();
    await resumeAndFailDefaultLeg(r, { outOfSync: r.mirror.regionCount });
  });

  test('MirrorSet resumed after its clean bits changed on disk keeps the default leg', async () => {
    const r = await rig(2);
    await r.mirror.suspend();
    // Another tool (or the kernel) marked regions 8..15 dirty while the set was suspended.
    const bits = await r.logMemory.read(1024, 512);
    assert.equal(bits[0], 0xff);
    bits[1] = 0;
    await r.logMemory.write(1024, bits);
    await resumeAndFailDefaultLeg(r, { outOfSync: 8 });
  });
});
