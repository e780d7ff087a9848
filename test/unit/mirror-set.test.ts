/**
 * MirrorSet: the BlockDevice conformance suite against mirror sets of 2, 3 and 9 legs (core log), then the
 * mirror's own behaviour: resync copies the default leg to every other leg, status and table lines.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { blockDeviceSuite, pattern, supportsAll } from '../conformance/block-device.suite.js';
import { type MirrorFixture, mirrorFixture, waitFor, waitInSync } from '../helpers/mirror-fixture.js';
import type { BlockDevice } from '../../src/block/block-device.js';
import { sectorBytes } from '../../src/limits.js';
import { Copier } from '../../src/copy/copier.js';

for (const legCount of [2, 3, 9]) {
  blockDeviceSuite({
    name: `MirrorSet (${legCount} legs, core log)`,
    create: async (sizeBytes) => {
      const { mirror } = await mirrorFixture({ legCount, lengthSectors: sizeBytes / sectorBytes, regionSectors: 64 });
      await waitInSync(mirror);
      return mirror;
    },
    supports: supportsAll,
  });
}

// A disk log, reopened over the same legs and log device after close (close without suspend leaves the
// regions of the last writes dirty, as a crash would: the reloaded set resyncs them from the default leg)
// reads what the first set wrote.
const diskFixtures = new WeakMap<BlockDevice, MirrorFixture>();
for (const legCount of [2, 3]) {
  const diskSet = async (sizeBytes: number, reuse?: MirrorFixture): Promise<BlockDevice> => {
    const fixture = await mirrorFixture({
      legCount,
      lengthSectors: sizeBytes / sectorBytes,
      regionSectors: 64,
      log: 'disk 2 log 64',
      ...(reuse === undefined ? {} : { reuse }),
    });
    await waitInSync(fixture.mirror);
    diskFixtures.set(fixture.mirror, fixture);
    return fixture.mirror;
  };
  blockDeviceSuite({
    name: `MirrorSet (${legCount} legs, disk log)`,
    create: (sizeBytes) => diskSet(sizeBytes),
    supports: {
      ...supportsAll,
      persistent: true,
      reopen: (dev) => {
        const fixture = diskFixtures.get(dev);
        assert.ok(fixture !== undefined, 'a set made by this suite');
        return diskSet(dev.sizeBytes, fixture);
      },
    },
  });
}

describe('MirrorSet', () => {
  test('MirrorSet resync makes every leg a copy of the default leg', async () => {
    const { mirror, memories } = await mirrorFixture({ legCount: 3, resume: false });
    const data = pattern(mirror.sizeBytes, 7);
    const first = memories[0];
    assert.ok(first !== undefined);
    await first.write(0, data);
    assert.equal(mirror.statusInfo(), '3 l0 l1 l2 0/16 1 AAA 1 core');
    await mirror.resume();
    await waitInSync(mirror);
    for (const leg of memories) assert.deepEqual(await leg.read(0, mirror.sizeBytes), data);
    assert.equal(mirror.statusInfo(), '3 l0 l1 l2 16/16 1 AAA 1 core');
    assert.equal(mirror.eventCount, 1, 'sync complete raises one event');
    await mirror.destroy();
  });

  test('MirrorSet writes reach every leg and reads return them', async () => {
    const { mirror, memories } = await mirrorFixture({ legCount: 2 });
    await waitInSync(mirror);
    const data = pattern(200_000, 3);
    await mirror.write(12_345, data);
    assert.deepEqual(await mirror.read(12_345, data.length), data);
    for (const leg of memories) assert.deepEqual(await leg.read(12_345, data.length), data);
    await mirror.destroy();
  });

  test('MirrorSet table line is canonical and has no trailing space', async () => {
    const { mirror } = await mirrorFixture({ legCount: 2, features: '2 keep_log handle_errors', regionSectors: 128 });
    assert.equal(mirror.statusTable(), 'core 1 128 2 l0 0 l1 0 2 handle_errors keep_log');
    await mirror.destroy();
  });

  test('MirrorSet recovery runs unthrottled when idle and at the busy rate while clients write', async () => {
    const copier = new Copier();
    // A clock that stands still: a client request stays within the busy window however slow the machine.
    const now = (): number => 0;
    const { mirror } = await mirrorFixture({
      legCount: 2,
      lengthSectors: 8192,
      regionSectors: 64,
      resume: false,
      extra: { copier, recoveryBusyBytesPerSecond: 4 * 1024 * 1024, now },
    });
    await mirror.resume();
    await waitInSync(mirror);
    assert.equal(copier.bytesPerSecond, null, 'idle recovery is not throttled');
    // A new table over a busy volume: force every region out of sync and keep writing.
    const busy = await mirrorFixture({
      legCount: 2,
      lengthSectors: 8192,
      regionSectors: 64,
      resume: false,
      extra: { copier, recoveryBusyBytesPerSecond: 4 * 1024 * 1024, now },
    });
    const writing = busy.mirror.write(0, pattern(4096, 1));
    await busy.mirror.resume();
    await writing;
    await busy.mirror.write(8192, pattern(4096, 2));
    await waitFor(() => copier.bytesPerSecond !== null, 'a recovery to start after the writes');
    assert.equal(copier.bytesPerSecond, 4 * 1024 * 1024, 'recovery is throttled while clients are busy');
    await Promise.all([mirror.destroy(), busy.mirror.destroy()]);
  });
});
