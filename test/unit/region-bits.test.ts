import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { RegionBits, regionBitsBytes } from '../../src/dirty-log/region-bits.js';

describe('RegionBits', () => {
  test('RegionBits uses little-endian bit order (bit i = byte i>>3, bit i&7)', () => {
    const bits = new RegionBits({ bitCount: 64 });
    bits.set(0);
    bits.set(9);
    bits.set(31);
    bits.set(32);
    assert.deepEqual([...bits.bytes()], [0x01, 0x02, 0x00, 0x80, 0x01, 0, 0, 0]);
  });

  test('RegionBits setAll sets only bits below bitCount; sizes are whole words', () => {
    const bits = new RegionBits({ bitCount: 20 });
    bits.setAll();
    assert.deepEqual([...bits.bytes()], [0xff, 0xff, 0x0f, 0x00]);
    assert.equal(bits.count(), 20);
    assert.equal(regionBitsBytes(20), 4);
    assert.equal(regionBitsBytes(32), 4);
    assert.equal(regionBitsBytes(33), 8);
    assert.equal(regionBitsBytes(0), 0);
  });

  test('RegionBits set and clear report changes', () => {
    const bits = new RegionBits({ bitCount: 10 });
    assert.equal(bits.set(3), true);
    assert.equal(bits.set(3), false);
    assert.equal(bits.test(3), true);
    assert.equal(bits.clear(3), true);
    assert.equal(bits.clear(3), false);
    assert.throws(() => bits.test(10), RangeError);
  });

  test('RegionBits findNextZero returns bitCount when none is left', () => {
    const bits = new RegionBits({ bitCount: 70 });
    bits.setAll();
    assert.equal(bits.findNextZero(0), 70);
    bits.clear(69);
    assert.equal(bits.findNextZero(0), 69);
    assert.equal(bits.findNextZero(69), 69);
    assert.equal(bits.findNextZero(70), 70);
    bits.clear(33);
    assert.equal(bits.findNextZero(5), 33);
    assert.equal(bits.findNextZero(34), 69);
  });

  test('RegionBits works as a view into a larger buffer', () => {
    const buffer = new Uint8Array(2048);
    const bits = new RegionBits({ bitCount: 32, storage: buffer.subarray(1024) });
    bits.setAll();
    bits.clear(4);
    assert.deepEqual([...buffer.subarray(1024, 1028)], [0xef, 0xff, 0xff, 0xff]);
  });

  test('RegionBits matches a boolean-array model (property)', () => {
    const runs = Number(process.env.UMIRROR_PROPERTY_RUNS ?? 100);
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 200 }),
        fc.array(
          fc.record({
            op: fc.constantFrom('set', 'clear', 'fill', 'next'),
            a: fc.nat(),
            b: fc.nat(),
            value: fc.boolean(),
          }),
          { maxLength: 60 },
        ),
        (bitCount, ops) => {
          const bits = new RegionBits({ bitCount });
          const model = new Array<boolean>(bitCount).fill(false);
          for (const { op, a, b, value } of ops) {
            const i = a % bitCount;
            if (op === 'set') {
              bits.set(i);
              model[i] = true;
            } else if (op === 'clear') {
              bits.clear(i);
              model[i] = false;
            } else if (op === 'fill') {
              const j = i + (b % (bitCount - i + 1));
              bits.fillRange({ from: i, to: j, value });
              for (let k = i; k < j; k++) model[k] = value;
            } else {
              const expected = model.indexOf(false, i);
              assert.equal(bits.findNextZero(i), expected === -1 ? bitCount : expected);
            }
          }
          assert.equal(bits.count(), model.filter(Boolean).length);
          for (let k = 0; k < bitCount; k++) assert.equal(bits.test(k), model[k]);
        },
      ),
      { numRuns: runs },
    );
  });
});
