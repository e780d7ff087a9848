/**
 * OverlapGate and its use in MirrorSet: overlapping writes in flight reach every leg in one order, so
 * the legs stay identical (the kernel does not order them: a leg that is slow for the first write
 * applies the second one first and keeps the older data).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { OverlapGate } from '../../src/mirror/overlap-gate.js';
import { pattern } from '../conformance/block-device.suite.js';
import { mirrorFixture, waitInSync } from '../helpers/mirror-fixture.js';

describe('OverlapGate', () => {
  test('a range waits for every overlapping range inside, never for a disjoint one', async () => {
    const gate = new OverlapGate();
    const leaveA = await gate.enter(0, 100);
    const leaveB = await gate.enter(100, 200); // Touches A's end: no overlap.
    let cEntered = false;
    const c = gate.enter(50, 150).then((leave) => {
      cEntered = true;
      return leave;
    });
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(cEntered, false, 'C overlaps A and B');
    leaveA();
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(cEntered, false, 'C still overlaps B');
    leaveB();
    const leaveC = await c;
    assert.equal(gate.size, 1);
    leaveC();
    assert.equal(gate.size, 0);
    assert.throws(() => leaveC(), /once/);
  });
});

describe('MirrorSet overlapping writes', () => {
  test('two overlapping writes in flight leave the legs identical when one leg is slow for the first', async () => {
    const f = await mirrorFixture({ legCount: 2 });
    await waitInSync(f.mirror);
    const slowLeg = f.legs[1];
    assert.ok(slowLeg !== undefined);
    const first = pattern(8192, 1);
    const second = pattern(8192, 2);
    slowLeg.setFaults({ latencyMs: { write: 100 } });
    const a = f.mirror.write(4096, first);
    await new Promise((resolve) => setTimeout(resolve, 20)); // The first write is on its way to the slow leg.
    slowLeg.setFaults({});
    const b = f.mirror.write(4096, second);
    await Promise.all([a, b]);
    assert.deepEqual(await f.memories[0]?.read(4096, 8192), second);
    assert.deepEqual(await f.memories[1]?.read(4096, 8192), second, 'the slow leg applied the writes in the same order');
    assert.deepEqual(await f.mirror.read(4096, 8192), second);
    await f.mirror.destroy();
  });
});
