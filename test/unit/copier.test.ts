import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Copier, type CopyEndpoint } from '../../src/copy/copier.js';
import { MemoryBlockDevice } from '../../src/block/memory-block-device.js';
import { FaultyBlockDevice } from '../../src/block/faulty-block-device.js';
import { BlockDeviceBase } from '../../src/block/block-device-base.js';
import type { BlockCapabilities, BlockDevice, ReadOptions, WriteOptions } from '../../src/block/block-device.js';
import { BlockError } from '../../src/errors.js';
import { pattern } from '../conformance/block-device.suite.js';

const MiB = 1024 * 1024;

/** Wraps a device, recording the order of requests and the most requests ever in flight at once. */
class WatchedBlockDevice extends BlockDeviceBase {
  readonly inner: BlockDevice;
  readonly name: string;
  readonly log: string[] = [];
  inFlight = 0;
  inFlightPeak = 0;
  readonly #delayMs: number;

  constructor(inner: BlockDevice, options: { delayMs?: number } = {}) {
    super();
    this.inner = inner;
    this.name = `watched(${inner.name})`;
    this.#delayMs = options.delayMs ?? 0;
    this.checkGeometry();
  }
  get sizeBytes(): number {
    return this.inner.sizeBytes;
  }
  get logicalBlockBytes(): number {
    return this.inner.logicalBlockBytes;
  }
  get capabilities(): BlockCapabilities {
    return this.inner.capabilities;
  }
  protected doRead(offsetBytes: number, lengthBytes: number, options: ReadOptions): Promise<Buffer> {
    return this.#watch(`read ${offsetBytes}+${lengthBytes}`, () => this.inner.read(offsetBytes, lengthBytes, options));
  }
  protected doWrite(offsetBytes: number, data: Uint8Array, options: WriteOptions): Promise<void> {
    return this.#watch(`write ${offsetBytes}+${data.length}`, () => this.inner.write(offsetBytes, data, options));
  }
  protected doFlush(): Promise<void> {
    return this.inner.flush();
  }
  protected doClose(): Promise<void> {
    return this.inner.close();
  }
  async #watch<T>(entry: string, run: () => Promise<T>): Promise<T> {
    this.log.push(entry);
    this.inFlight += 1;
    this.inFlightPeak = Math.max(this.inFlightPeak, this.inFlight);
    try {
      if (this.#delayMs > 0) await new Promise((resolve) => setTimeout(resolve, this.#delayMs));
      return await run();
    } finally {
      this.inFlight -= 1;
    }
  }
}

async function sourceWith(sizeBytes: number, seed: number): Promise<{ dev: MemoryBlockDevice; data: Buffer }> {
  const dev = new MemoryBlockDevice({ sizeBytes, name: 'source' });
  const data = pattern(sizeBytes, seed);
  await dev.write(0, data);
  return { dev, data };
}

test('Copier copies byte-exact to 1..8 targets at their own offsets', async () => {
  const { dev: source, data } = await sourceWith(4 * MiB, 1);
  const copier = new Copier({ chunkBytes: 64 * 1024, inFlightMax: 3 });
  for (let count = 1; count <= 8; count++) {
    const targets = Array.from({ length: count }, (_, i) => ({
      device: new MemoryBlockDevice({ sizeBytes: 4 * MiB, name: `t${i}` }),
      offsetBytes: i * 4096 + 512,
    }));
    const lengthBytes = 3 * MiB + 12345; // not a multiple of the chunk
    const result = await copier.copy({ source: { device: source, offsetBytes: 777 }, targets, lengthBytes });
    assert.deepEqual(result, { readError: null, writeErrors: targets.map(() => null), bytesCopied: lengthBytes });
    for (const target of targets) {
      assert.deepEqual(await target.device.read(target.offsetBytes, lengthBytes), data.subarray(777, 777 + lengthBytes));
      assert.deepEqual(await target.device.read(0, target.offsetBytes), Buffer.alloc(target.offsetBytes), 'nothing before');
      const after = target.offsetBytes + lengthBytes;
      assert.deepEqual(await target.device.read(after, 4 * MiB - after), Buffer.alloc(4 * MiB - after), 'nothing after');
    }
  }
  assert.equal(copier.jobsTotal, 8);
  assert.equal(copier.bytesCopiedTotal, 8 * (3 * MiB + 12345));
});

test('Copier completes a zero-length job without I/O', async () => {
  const source = new WatchedBlockDevice(new MemoryBlockDevice({ sizeBytes: MiB }));
  const target = new MemoryBlockDevice({ sizeBytes: MiB });
  const result = await new Copier().copy({ source: { device: source, offsetBytes: 0 }, targets: [{ device: target, offsetBytes: 0 }], lengthBytes: 0 });
  assert.deepEqual(result, { readError: null, writeErrors: [null], bytesCopied: 0 });
  assert.deepEqual(source.log, []);
});

test('Copier rejects more than 8 targets, no targets and ranges past the end with RangeError', async () => {
  const source = new MemoryBlockDevice({ sizeBytes: MiB });
  const copier = new Copier();
  const nine: CopyEndpoint[] = Array.from({ length: 9 }, () => ({ device: new MemoryBlockDevice({ sizeBytes: MiB }), offsetBytes: 0 }));
  await assert.rejects(copier.copy({ source: { device: source, offsetBytes: 0 }, targets: nine, lengthBytes: 512 }), RangeError);
  await assert.rejects(copier.copy({ source: { device: source, offsetBytes: 0 }, targets: [], lengthBytes: 512 }), RangeError);
  const one = nine.slice(0, 1);
  await assert.rejects(copier.copy({ source: { device: source, offsetBytes: 512 }, targets: one, lengthBytes: MiB }), RangeError);
  await assert.rejects(copier.copy({ source: { device: source, offsetBytes: 0 }, targets: [{ device: source, offsetBytes: -1 }], lengthBytes: 1 }), RangeError);
  await assert.rejects(copier.copy({ source: { device: source, offsetBytes: 0 }, targets: one, lengthBytes: 1.5 }), RangeError);
  assert.throws(() => new Copier({ chunkBytes: 1000 }), RangeError);
  assert.throws(() => new Copier({ inFlightMax: 0 }), RangeError);
  assert.throws(() => new Copier({ throttle: { bytesPerSecond: 0 } }), RangeError);
});

test('Copier reports every target\'s error', async () => {
  const { dev: source, data } = await sourceWith(2 * MiB, 2);
  const healthy = new MemoryBlockDevice({ sizeBytes: 2 * MiB, name: 'healthy' });
  const failing = new FaultyBlockDevice(new MemoryBlockDevice({ sizeBytes: 2 * MiB, name: 'b' }));
  const alsoFailing = new FaultyBlockDevice(new MemoryBlockDevice({ sizeBytes: 2 * MiB, name: 'c' }));
  // b fails its third chunk only (a bad range); c fails everything with ENOSPC.
  failing.setFaults({ errors: [{ ops: ['write'], range: { offsetBytes: 2 * 128 * 1024, lengthBytes: 1 } }] });
  alsoFailing.setFaults({ errors: [{ ops: ['write'], code: 'ENOSPC' }] });
  const copier = new Copier({ chunkBytes: 128 * 1024, inFlightMax: 2 });
  const result = await copier.copy({
    source: { device: source, offsetBytes: 0 },
    targets: [
      { device: failing, offsetBytes: 0 },
      { device: healthy, offsetBytes: 0 },
      { device: alsoFailing, offsetBytes: 0 },
    ],
    lengthBytes: 2 * MiB,
  });
  assert.equal(result.readError, null);
  assert.equal(result.writeErrors.length, 3);
  assert.ok(result.writeErrors[0] instanceof BlockError);
  assert.equal(result.writeErrors[0].code, 'EIO');
  assert.equal(result.writeErrors[1], null);
  assert.ok(result.writeErrors[2] instanceof BlockError);
  assert.equal(result.writeErrors[2].code, 'ENOSPC');
  assert.equal(result.bytesCopied, 2 * MiB);
  assert.deepEqual(await healthy.read(0, 2 * MiB), data, 'the healthy target got every chunk');
  assert.equal(failing.counts.writeErrors, 1);
  // After its failure b is skipped: chunks from the 5th on never reached it (the window is 2).
  assert.deepEqual(await failing.inner.read(MiB, MiB), Buffer.alloc(MiB));
  assert.deepEqual(await failing.inner.read(0, 2 * 128 * 1024), data.subarray(0, 2 * 128 * 1024));
});

test('Copier stops at a source read error and keeps what it copied', async () => {
  const { dev: inner, data } = await sourceWith(2 * MiB, 3);
  const source = new FaultyBlockDevice(inner);
  source.setFaults({ errors: [{ ops: ['read'], range: { offsetBytes: MiB, lengthBytes: 1 } }] });
  const targets = [0, 1].map((i) => new WatchedBlockDevice(new MemoryBlockDevice({ sizeBytes: 2 * MiB, name: `t${i}` })));
  const copier = new Copier({ chunkBytes: 256 * 1024, inFlightMax: 1 });
  const result = await copier.copy({
    source: { device: source, offsetBytes: 0 },
    targets: targets.map((device) => ({ device, offsetBytes: 0 })),
    lengthBytes: 2 * MiB,
  });
  assert.ok(result.readError instanceof BlockError);
  assert.equal(result.readError.code, 'EIO');
  assert.deepEqual(result.writeErrors, [null, null]);
  assert.equal(result.bytesCopied, MiB, 'with a window of 1, the four chunks before the bad one');
  for (const target of targets) {
    assert.equal(target.log.length, 4, 'nothing written after the read error');
    assert.deepEqual(await target.read(0, MiB), data.subarray(0, MiB));
    assert.deepEqual(await target.read(MiB, MiB), Buffer.alloc(MiB));
  }
  assert.equal(copier.bytesCopiedTotal, MiB);
});

test('Copier splits into chunks and keeps at most inFlightMax of them in flight', async () => {
  const { dev: inner, data } = await sourceWith(4 * MiB, 4);
  const source = new WatchedBlockDevice(inner, { delayMs: 2 });
  const target = new WatchedBlockDevice(new MemoryBlockDevice({ sizeBytes: 4 * MiB }), { delayMs: 3 });
  const copier = new Copier({ chunkBytes: 128 * 1024, inFlightMax: 3 });
  const result = await copier.copy({ source: { device: source, offsetBytes: 0 }, targets: [{ device: target, offsetBytes: 0 }], lengthBytes: 4 * MiB });
  assert.equal(result.bytesCopied, 4 * MiB);
  assert.equal(source.log.length, 32);
  assert.equal(target.log.length, 32);
  assert.deepEqual(source.log, Array.from({ length: 32 }, (_, i) => `read ${i * 128 * 1024}+${128 * 1024}`), 'reads issued in order');
  assert.ok(source.inFlightPeak + target.inFlightPeak <= 3 + 3, 'bounded');
  assert.ok(source.inFlightPeak <= 3, `source peak ${source.inFlightPeak}`);
  assert.ok(target.inFlightPeak <= 3, `target peak ${target.inFlightPeak}`);
  assert.ok(source.inFlightPeak >= 2, 'the window is actually used');
  assert.deepEqual(await target.read(0, 4 * MiB), data);
});

test('Copier throttles: chunks are paced at the set rate', async () => {
  const { dev: inner, data } = await sourceWith(MiB, 5);
  const source = new WatchedBlockDevice(inner);
  const target = new MemoryBlockDevice({ sizeBytes: MiB });
  // 64 KiB chunks at 2 MiB/s: 16 chunks, the first at once and each next one 31.25 ms later.
  const copier = new Copier({ chunkBytes: 64 * 1024, inFlightMax: 4, throttle: { bytesPerSecond: 2 * MiB } });
  const started = performance.now();
  const result = await copier.copy({ source: { device: source, offsetBytes: 0 }, targets: [{ device: target, offsetBytes: 0 }], lengthBytes: MiB });
  const elapsedMs = performance.now() - started;
  assert.equal(result.bytesCopied, MiB);
  assert.deepEqual(source.log, Array.from({ length: 16 }, (_, i) => `read ${i * 64 * 1024}+${64 * 1024}`));
  assert.deepEqual(await target.read(0, MiB), data);
  assert.ok(elapsedMs >= 15 * 31.25 - 20, `16 chunks at 2 MiB/s took ${elapsedMs} ms`); // a lower bound cannot flake
});

test('Copier.setThrottle changes the rate of a running job', async () => {
  const { dev: inner, data } = await sourceWith(MiB, 5);
  const source = new WatchedBlockDevice(inner);
  const target = new MemoryBlockDevice({ sizeBytes: MiB });
  // 64 KiB/s: one 64 KiB chunk per second, so the whole job would take 15 s.
  const copier = new Copier({ chunkBytes: 64 * 1024, inFlightMax: 4, throttle: { bytesPerSecond: 64 * 1024 } });
  assert.equal(copier.bytesPerSecond, 64 * 1024);
  const copying = copier.copy({ source: { device: source, offsetBytes: 0 }, targets: [{ device: target, offsetBytes: 0 }], lengthBytes: MiB });
  await new Promise((resolve) => setTimeout(resolve, 100));
  assert.equal(source.log.length, 1, 'only the first chunk starts at once');
  copier.setThrottle(null); // lifted: the sleeping chunk wakes and the rest go at once
  const result = await copying;
  assert.equal(result.bytesCopied, MiB);
  assert.equal(source.log.length, 16);
  assert.deepEqual(await target.read(0, MiB), data);
  assert.equal(copier.bytesPerSecond, null);
  copier.setThrottle(MiB);
  assert.equal(copier.bytesPerSecond, MiB);
  assert.throws(() => copier.setThrottle(-1), RangeError);
});

test('Copier rejects with the abort reason and leaves no I/O in flight', async () => {
  const { dev: inner } = await sourceWith(MiB, 6);
  const source = new WatchedBlockDevice(inner, { delayMs: 5 });
  const target = new WatchedBlockDevice(new MemoryBlockDevice({ sizeBytes: MiB }), { delayMs: 5 });
  const copier = new Copier({ chunkBytes: 64 * 1024, inFlightMax: 2, throttle: { bytesPerSecond: 256 * 1024 } });
  const controller = new AbortController();
  const copying = copier.copy({ source: { device: source, offsetBytes: 0 }, targets: [{ device: target, offsetBytes: 0 }], lengthBytes: MiB, signal: controller.signal });
  setTimeout(() => controller.abort(new Error('stop now')), 100);
  await assert.rejects(copying, { message: 'stop now' });
  assert.equal(source.inFlight, 0);
  assert.equal(target.inFlight, 0);
  assert.ok(source.log.length < 16, `aborted early: ${source.log.length} chunks read`);
  assert.equal(copier.bytesCopiedTotal, 0, 'an aborted job adds nothing to the total');
});
