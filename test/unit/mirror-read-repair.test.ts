/**
 * Read repair (src/mirror/read-repair.ts, `--read-repair`): a failed read of an in-sync region is
 * served from another leg and the data written back to the failing leg, which stays A when that write
 * succeeds; when it fails the leg fails (R) as without read repair. Off by default (the kernel's R).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { pattern } from '../conformance/block-device.suite.js';
import { mirrorFixture, waitInSync, type MirrorFixture } from '../helpers/mirror-fixture.js';

const regionSectors = 128;
const badBytes = { offsetBytes: 3 * regionSectors * 512 + 4096, lengthBytes: 4096 };

async function fixture(readRepair: boolean): Promise<MirrorFixture> {
  const f = await mirrorFixture({ legCount: 2, lengthSectors: 2048, regionSectors, features: '1 handle_errors', extra: { readRepair } });
  await waitInSync(f.mirror);
  await f.mirror.write(0, pattern(f.mirror.sizeBytes, 1));
  await f.mirror.idle();
  // Leg l0 (the default leg, which reads go to) lost these bytes and fails to read them.
  await f.memories[0]?.write(badBytes.offsetBytes, Buffer.alloc(badBytes.lengthBytes, 0xee));
  return f;
}

describe('MirrorSet read repair', () => {
  test('off (the default): a failed read fails the leg with R and is served by the other leg', async () => {
    const f = await fixture(false);
    f.legs[0]?.setFaults({ errors: [{ ops: ['read'], range: badBytes }] });
    assert.equal(f.mirror.readRepair, false);
    assert.deepEqual(await f.mirror.read(badBytes.offsetBytes, badBytes.lengthBytes), pattern(f.mirror.sizeBytes, 1).subarray(badBytes.offsetBytes, badBytes.offsetBytes + badBytes.lengthBytes));
    await f.mirror.idle();
    assert.equal(f.mirror.healthLetters(), 'RA');
    assert.equal(f.mirror.stats.correctedReadErrorsTotal, 0);
    await f.mirror.destroy();
  });

  test('on: the good data is written back to the failing leg, which stays A, and the counter grows', async () => {
    const f = await fixture(true);
    f.legs[0]?.setFaults({ errors: [{ ops: ['read'], range: badBytes }] });
    const good = pattern(f.mirror.sizeBytes, 1).subarray(badBytes.offsetBytes, badBytes.offsetBytes + badBytes.lengthBytes);
    assert.deepEqual(await f.mirror.read(badBytes.offsetBytes, badBytes.lengthBytes), good);
    await f.mirror.idle();
    assert.equal(f.mirror.healthLetters(), 'AA');
    assert.equal(f.mirror.stats.correctedReadErrorsTotal, 1);
    assert.equal(f.mirror.legs[0]?.stats.correctedReadErrorsTotal, 1);
    assert.deepEqual(await f.memories[0]?.read(badBytes.offsetBytes, badBytes.lengthBytes), good, 'the leg holds the good data again');
    assert.ok(f.messages.some((m) => m.includes('read error corrected')), f.messages.join('\n'));
    await f.mirror.destroy();
  });

  test('on, but the write back fails too: the leg fails with R as today, and the read is still served', async () => {
    const f = await fixture(true);
    f.legs[0]?.setFaults({ errors: [{ ops: ['read', 'write'], range: badBytes }] });
    const good = pattern(f.mirror.sizeBytes, 1).subarray(badBytes.offsetBytes, badBytes.offsetBytes + badBytes.lengthBytes);
    assert.deepEqual(await f.mirror.read(badBytes.offsetBytes, badBytes.lengthBytes), good);
    await f.mirror.idle();
    assert.equal(f.mirror.healthLetters(), 'RA');
    assert.equal(f.mirror.stats.correctedReadErrorsTotal, 0);
    await f.mirror.destroy();
  });

  test('on: a read error met by a scrub is corrected the same way', async () => {
    const f = await fixture(true);
    f.legs[0]?.setFaults({ errors: [{ ops: ['read'], range: badBytes }] });
    const result = await f.mirror.scrub();
    assert.equal(result.readErrors, 1);
    assert.equal(f.mirror.healthLetters(), 'AA');
    assert.equal(f.mirror.stats.correctedReadErrorsTotal, 1);
    f.legs[0]?.setFaults({});
    await f.mirror.idle();
    const whole = await f.memories[0]?.read(0, f.mirror.sizeBytes);
    assert.deepEqual(whole, await f.memories[1]?.read(0, f.mirror.sizeBytes), 'the legs compare equal');
    await f.mirror.destroy();
  });
});
