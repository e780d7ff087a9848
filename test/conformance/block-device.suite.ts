/**
 * The BlockDevice conformance suite: one set of node:test cases that every BlockDevice must pass —
 * Memory, File, Faulty (pass-through), Nbd, the MirrorSet (core and disk logs) and the MappedDevice NBD
 * serves. Call it from test/unit/<impl>.test.ts with a factory. It relies only on the BlockDevice
 * interface: trim contents are unspecified where trim may deallocate, so only writeZeroes is checked for
 * content there.
 *
 * `create(sizeBytes)` must return a fresh, zero-filled, open device of exactly that size (sizes used here
 * are multiples of 64 KiB). Every device a test creates is closed by the suite, even when the test fails.
 *
 * The `supports` manifest (abstract-level's) says what the implementation promises beyond the interface:
 *   flush, fua, trim, writeZeroes  the capabilities it must advertise, exactly. `trim: false` also means
 *                                  trim is a no-op, so the data under a trim must read back unchanged.
 *   persistent + reopen(dev)       data survives close and reopen: reopen is handed the closed device and
 *                                  returns a new device on the same backing store (a flushed write, and
 *                                  a FUA write with no flush after it).
 * A manifest entry left out is not checked.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { BlockError, type Errno } from '../../src/errors.js';
import type { BlockDevice } from '../../src/block/block-device.js';

export interface BlockDeviceSupports {
  readonly flush?: boolean;
  readonly fua?: boolean;
  readonly trim?: boolean;
  readonly writeZeroes?: boolean;
  readonly persistent?: boolean;
  readonly reopen?: (dev: BlockDevice) => Promise<BlockDevice>;
}

export interface BlockDeviceSuiteOptions {
  readonly name: string;
  readonly create: (sizeBytes: number) => Promise<BlockDevice>;
  readonly supports?: BlockDeviceSupports;
}

/** The manifest of a device that advertises every capability (Memory, MirrorSet, MappedDevice). */
export const supportsAll = { flush: true, fua: true, trim: true, writeZeroes: true } as const satisfies BlockDeviceSupports;

const KiB = 1024;
const deviceBytes = 1024 * KiB;

/** A deterministic pattern that differs at every offset and between seeds. */
export function pattern(lengthBytes: number, seed: number): Buffer {
  const out = Buffer.alloc(lengthBytes);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < lengthBytes; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}

/** Asserts that `promise` rejects with a BlockError carrying `code`. */
export async function rejectsWithCode(promise: Promise<unknown>, code: Errno): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof BlockError, `expected a BlockError, got ${String(err)}`);
    assert.equal(err.code, code);
    return true;
  });
}

export function blockDeviceSuite(options: BlockDeviceSuiteOptions): void {
  const { name, supports = {} } = options;
  const opened: BlockDevice[] = [];
  const create = async (sizeBytes: number = deviceBytes): Promise<BlockDevice> => {
    const dev = await options.create(sizeBytes);
    opened.push(dev);
    return dev;
  };

  describe(`BlockDevice conformance: ${name}`, () => {
    after(async () => {
      await Promise.allSettled(opened.map((dev) => dev.close()));
    });

    test(`${name} reports the geometry it was created with`, async () => {
      const dev = await create();
      assert.equal(dev.sizeBytes, deviceBytes);
      assert.ok(Number.isSafeInteger(dev.logicalBlockBytes) && dev.logicalBlockBytes > 0);
      assert.equal(dev.logicalBlockBytes & (dev.logicalBlockBytes - 1), 0, 'logicalBlockBytes is a power of two');
      assert.equal(typeof dev.name, 'string');
      assert.ok(dev.name.length > 0);
      for (const key of ['flush', 'fua', 'trim', 'writeZeroes'] as const) {
        assert.equal(typeof dev.capabilities[key], 'boolean', `capabilities.${key}`);
        const promised = supports[key];
        if (promised !== undefined) assert.equal(dev.capabilities[key], promised, `capabilities.${key} as the manifest says`);
      }
    });

    test(`${name} reads zeroes from a fresh device`, async () => {
      const dev = await create();
      assert.deepEqual(await dev.read(0, 64 * KiB), Buffer.alloc(64 * KiB));
      assert.deepEqual(await dev.read(deviceBytes - 4 * KiB, 4 * KiB), Buffer.alloc(4 * KiB));
      assert.deepEqual(await dev.read(12345, 777), Buffer.alloc(777));
    });

    test(`${name} reads back what it wrote at unaligned offsets and lengths`, async () => {
      const dev = await create();
      const cases: readonly [number, number][] = [
        [0, 1],
        [1, 3],
        [511, 2],
        [513, 1000],
        [4095, 4098],
        [65535, 3],
        [deviceBytes - 7, 7],
      ];
      for (const [i, [offsetBytes, lengthBytes]] of cases.entries()) {
        const data = pattern(lengthBytes, i + 1);
        await dev.write(offsetBytes, data);
        assert.deepEqual(await dev.read(offsetBytes, lengthBytes), data, `${lengthBytes} bytes at ${offsetBytes}`);
      }
      // Neighbours of a small write are untouched.
      await dev.write(200 * KiB + 10, Buffer.from([0xaa, 0xbb]));
      assert.deepEqual(await dev.read(200 * KiB + 8, 6), Buffer.from([0, 0, 0xaa, 0xbb, 0, 0]));
    });

    test(`${name} writes and reads ranges spanning many KiB`, async () => {
      const dev = await create();
      const data = pattern(300 * KiB + 5, 42);
      await dev.write(70 * KiB + 3, data);
      assert.deepEqual(await dev.read(70 * KiB + 3, data.length), data);
      // A read straddling the written range sees zeroes, data, zeroes.
      const around = await dev.read(70 * KiB, data.length + 6);
      assert.deepEqual(around.subarray(0, 3), Buffer.alloc(3));
      assert.deepEqual(around.subarray(3, 3 + data.length), data);
      assert.deepEqual(around.subarray(3 + data.length), Buffer.alloc(3));
    });

    test(`${name} accepts a Uint8Array view into a larger buffer`, async () => {
      const dev = await create();
      const backing = pattern(100, 9);
      const view = new Uint8Array(backing.buffer, backing.byteOffset + 10, 50);
      await dev.write(1000, view);
      assert.deepEqual(await dev.read(1000, 50), backing.subarray(10, 60));
    });

    test(`${name} completes zero-length requests`, async () => {
      const dev = await create();
      assert.equal((await dev.read(0, 0)).length, 0);
      assert.equal((await dev.read(deviceBytes, 0)).length, 0);
      await dev.write(deviceBytes, Buffer.alloc(0));
      await dev.write(0, Buffer.alloc(0), { fua: true });
      await dev.writeZeroes(5, 0);
      await dev.trim(5, 0);
      assert.deepEqual(await dev.read(0, 16), Buffer.alloc(16));
    });

    test(`${name} fails reads past the end with EINVAL`, async () => {
      const dev = await create();
      await rejectsWithCode(dev.read(deviceBytes - 1, 2), 'EINVAL');
      await rejectsWithCode(dev.read(deviceBytes, 1), 'EINVAL');
      await rejectsWithCode(dev.read(deviceBytes * 4, 512), 'EINVAL');
    });

    test(`${name} fails writes, trims and zeroes past the end with ENOSPC`, async () => {
      const dev = await create();
      await rejectsWithCode(dev.write(deviceBytes - 1, Buffer.alloc(2, 1)), 'ENOSPC');
      await rejectsWithCode(dev.write(deviceBytes, Buffer.alloc(1, 1)), 'ENOSPC');
      await rejectsWithCode(dev.trim(deviceBytes - 512, 1024), 'ENOSPC');
      await rejectsWithCode(dev.writeZeroes(deviceBytes - 512, 1024), 'ENOSPC');
      // Nothing was written by the failed requests.
      assert.deepEqual(await dev.read(deviceBytes - 1024, 1024), Buffer.alloc(1024));
    });

    test(`${name} fails negative and non-integer offsets and lengths with EINVAL`, async () => {
      const dev = await create();
      await rejectsWithCode(dev.read(-1, 1), 'EINVAL');
      await rejectsWithCode(dev.read(1.5, 1), 'EINVAL');
      await rejectsWithCode(dev.read(0, -1), 'EINVAL');
      await rejectsWithCode(dev.read(0, 2.5), 'EINVAL');
      await rejectsWithCode(dev.read(Number.NaN, 1), 'EINVAL');
      await rejectsWithCode(dev.write(-512, Buffer.alloc(1)), 'EINVAL');
      await rejectsWithCode(dev.write(0.5, Buffer.alloc(1)), 'EINVAL');
      await rejectsWithCode(dev.trim(-1, 1), 'EINVAL');
      await rejectsWithCode(dev.writeZeroes(1, Number.POSITIVE_INFINITY), 'EINVAL');
    });

    test(`${name} writeZeroes zeroes exactly its range`, async () => {
      const dev = await create();
      const data = pattern(200 * KiB, 7);
      await dev.write(0, data);
      await dev.writeZeroes(1000, 130 * KiB + 3);
      const back = await dev.read(0, data.length);
      assert.deepEqual(back.subarray(0, 1000), data.subarray(0, 1000));
      assert.deepEqual(back.subarray(1000, 1000 + 130 * KiB + 3), Buffer.alloc(130 * KiB + 3));
      assert.deepEqual(back.subarray(1000 + 130 * KiB + 3), data.subarray(1000 + 130 * KiB + 3));
      await dev.writeZeroes(0, 10, { fua: true });
      assert.deepEqual(await dev.read(0, 11), Buffer.concat([Buffer.alloc(10), data.subarray(10, 11)]));
    });

    test(`${name} trims inside the device and keeps data outside the range`, async () => {
      const dev = await create();
      const data = pattern(128 * KiB, 3);
      await dev.write(0, data);
      await dev.trim(64 * KiB, 32 * KiB);
      const back = await dev.read(0, data.length);
      // Trimmed contents are unspecified; everything outside the range must be intact.
      assert.deepEqual(back.subarray(0, 64 * KiB), data.subarray(0, 64 * KiB));
      assert.deepEqual(back.subarray(96 * KiB), data.subarray(96 * KiB));
      // Without the trim capability, trim is a no-op (BlockCapabilities.trim): nothing changed at all.
      if (supports.trim === false) assert.deepEqual(back, data);
    });

    test(`${name} resolves FUA writes and flushes`, async () => {
      const dev = await create();
      const data = pattern(8 * KiB, 11);
      await dev.write(4 * KiB, data, { fua: true });
      await dev.flush();
      await dev.flush();
      assert.deepEqual(await dev.read(4 * KiB, data.length), data);
    });

    test(`${name} lands concurrent writes to distinct ranges`, async () => {
      const dev = await create();
      const count = 32;
      const stride = deviceBytes / count;
      const chunks = Array.from({ length: count }, (_, i) => pattern(stride - (i % 7), 100 + i));
      await Promise.all(chunks.map((data, i) => dev.write(i * stride, data, { fua: i % 5 === 0 })));
      const reads = await Promise.all(chunks.map((data, i) => dev.read(i * stride, data.length)));
      for (const [i, data] of chunks.entries()) assert.deepEqual(reads[i], data, `chunk ${i}`);
    });

    test(`${name} fails every request after close with ESHUTDOWN`, async () => {
      const dev = await create();
      await dev.write(0, Buffer.from('x'));
      await dev.close();
      await rejectsWithCode(dev.read(0, 1), 'ESHUTDOWN');
      await rejectsWithCode(dev.write(0, Buffer.alloc(1)), 'ESHUTDOWN');
      await rejectsWithCode(dev.flush(), 'ESHUTDOWN');
      await rejectsWithCode(dev.trim(0, 512), 'ESHUTDOWN');
      await rejectsWithCode(dev.writeZeroes(0, 512), 'ESHUTDOWN');
    });

    test(`${name} close is idempotent`, async () => {
      const dev = await create();
      const first = dev.close();
      const second = dev.close();
      await Promise.all([first, second]);
      await dev.close();
      await rejectsWithCode(dev.read(0, 1), 'ESHUTDOWN');
    });

    if (supports.persistent === true) {
      test(`${name} keeps written data across close and reopen`, async () => {
        const { reopen } = supports;
        assert.ok(reopen !== undefined, 'supports.persistent needs supports.reopen');
        const dev = await create();
        const data = pattern(100 * KiB + 1, 77);
        await dev.write(333, data);
        await dev.writeZeroes(333 + 1000, 10);
        await dev.flush();
        await dev.close();
        const again = await reopen(dev);
        opened.push(again);
        assert.equal(again.sizeBytes, deviceBytes);
        const expected = Buffer.from(data);
        expected.fill(0, 1000, 1010);
        assert.deepEqual(await again.read(333, data.length), expected);
        assert.deepEqual(await again.read(0, 333), Buffer.alloc(333));
      });

      test(`${name} keeps a FUA write across close and reopen without a flush`, async () => {
        const { reopen } = supports;
        assert.ok(reopen !== undefined, 'supports.persistent needs supports.reopen');
        const dev = await create();
        const durable = pattern(4 * KiB + 1, 78);
        await dev.write(deviceBytes - durable.length, durable, { fua: true });
        await dev.close();
        const again = await reopen(dev);
        opened.push(again);
        assert.deepEqual(await again.read(deviceBytes - durable.length, durable.length), durable);
      });
    }
  });
}
