import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FaultyBlockDevice } from '../../src/block/faulty-block-device.js';
import { MemoryBlockDevice } from '../../src/block/memory-block-device.js';
import { blockDeviceSuite, pattern, rejectsWithCode, supportsAll } from '../conformance/block-device.suite.js';

blockDeviceSuite({
  name: 'FaultyBlockDevice (pass-through)',
  create: (sizeBytes) => Promise.resolve(new FaultyBlockDevice(new MemoryBlockDevice({ sizeBytes }))),
  supports: supportsAll,
});

const sizeBytes = 1024 * 1024;
function make(): { inner: MemoryBlockDevice; dev: FaultyBlockDevice } {
  const inner = new MemoryBlockDevice({ sizeBytes, name: 'm' });
  return { inner, dev: new FaultyBlockDevice(inner) };
}

test('FaultyBlockDevice takes its name and geometry from the inner device', async () => {
  const { inner, dev } = make();
  assert.equal(dev.name, 'faulty(m)');
  assert.equal(dev.sizeBytes, inner.sizeBytes);
  assert.equal(dev.logicalBlockBytes, inner.logicalBlockBytes);
  assert.deepEqual(dev.capabilities, inner.capabilities);
  const named = new FaultyBlockDevice(inner, { name: 'leg-b', closeInner: false });
  assert.equal(named.name, 'leg-b');
  await named.close();
  await inner.read(0, 1); // closeInner: false left the inner device open
  await dev.close();
  await rejectsWithCode(inner.read(0, 1), 'ESHUTDOWN');
});

test('FaultyBlockDevice fails reads with EIO and leaves writes alone (error_reads)', async () => {
  const { inner, dev } = make();
  dev.setFaults({ errors: [{ ops: ['read'] }] });
  await dev.write(0, Buffer.from('abc'));
  await rejectsWithCode(dev.read(0, 3), 'EIO');
  assert.deepEqual(await inner.read(0, 3), Buffer.from('abc'));
  await dev.flush();
  assert.equal(dev.counts.readErrors, 1);
  assert.equal(dev.counts.writeErrors, 0);
});

test('FaultyBlockDevice fails writes, trims and zeroes without touching the inner device (error_writes)', async () => {
  const { inner, dev } = make();
  await inner.write(0, Buffer.from('old'));
  dev.setFaults({ errors: [{ ops: ['write'], code: 'ENOSPC' }] });
  await rejectsWithCode(dev.write(0, Buffer.from('new')), 'ENOSPC');
  await rejectsWithCode(dev.writeZeroes(0, 3), 'ENOSPC');
  await rejectsWithCode(dev.trim(0, 3), 'ENOSPC');
  assert.deepEqual(await dev.read(0, 3), Buffer.from('old'));
  assert.equal(dev.counts.writeErrors, 3);
});

test('FaultyBlockDevice fails flushes only when asked', async () => {
  const { dev } = make();
  dev.setFaults({ errors: [{ ops: ['flush'] }] });
  await rejectsWithCode(dev.flush(), 'EIO');
  await dev.write(0, Buffer.from('x'));
  assert.deepEqual(await dev.read(0, 1), Buffer.from('x'));
  assert.deepEqual(dev.counts, { readErrors: 0, writeErrors: 0, flushErrors: 1, droppedWrites: 0, corruptedReads: 0, delayedRequests: 0 });
});

test('FaultyBlockDevice fails only requests that overlap the range (dm-dust bad blocks)', async () => {
  const { dev } = make();
  dev.setFaults({ errors: [{ ops: ['read', 'write'], range: { offsetBytes: 4096, lengthBytes: 512 } }] });
  await dev.write(0, Buffer.alloc(4096, 1)); // ends exactly where the range starts
  await dev.write(4608, Buffer.alloc(100, 2)); // starts exactly where it ends
  await rejectsWithCode(dev.write(4095, Buffer.alloc(2)), 'EIO');
  await rejectsWithCode(dev.read(4600, 100), 'EIO');
  await rejectsWithCode(dev.read(0, sizeBytes), 'EIO');
  assert.deepEqual(await dev.read(4608, 100), Buffer.alloc(100, 2));
  await dev.flush(); // a ranged fault never applies to flush
  assert.equal(dev.counts.readErrors, 2);
  assert.equal(dev.counts.writeErrors, 1);
});

test('FaultyBlockDevice fails every Nth matching request', async () => {
  const { dev } = make();
  dev.setFaults({ errors: [{ ops: ['write'], everyNth: 3 }] });
  const outcomes: string[] = [];
  for (let i = 0; i < 9; i++) {
    outcomes.push(await dev.write(i, Buffer.from([i])).then(() => 'ok', () => 'EIO'));
  }
  assert.deepEqual(outcomes, ['ok', 'ok', 'EIO', 'ok', 'ok', 'EIO', 'ok', 'ok', 'EIO']);
  assert.deepEqual(await dev.read(0, 9), Buffer.from([0, 1, 0, 3, 4, 0, 6, 7, 0]));
  // setFaults resets the counter.
  dev.setFaults({ errors: [{ ops: ['write'], everyNth: 2 }] });
  assert.equal(await dev.write(0, Buffer.from([1])).then(() => 'ok', () => 'EIO'), 'ok');
  assert.equal(await dev.write(0, Buffer.from([1])).then(() => 'ok', () => 'EIO'), 'EIO');
});

test('FaultyBlockDevice fails a seeded rate of requests reproducibly', async () => {
  const run = async (seed: number): Promise<string> => {
    const { dev } = make();
    dev.setFaults({ errors: [{ ops: ['read'], rate: 0.3 }], seed });
    let out = '';
    for (let i = 0; i < 200; i++) out += await dev.read(0, 1).then(() => '.', () => 'x');
    return out;
  };
  const a = await run(7);
  assert.equal(await run(7), a, 'same seed, same faults');
  assert.notEqual(await run(8), a, 'another seed, other faults');
  const failures = [...a].filter((c) => c === 'x').length;
  assert.ok(failures > 30 && failures < 90, `about 30% of 200 failed: ${failures}`);
  const { dev } = make();
  dev.setFaults({ errors: [{ ops: ['read'], rate: 0 }] });
  for (let i = 0; i < 50; i++) await dev.read(0, 1);
  dev.setFaults({ errors: [{ ops: ['read'], rate: 1 }] });
  await rejectsWithCode(dev.read(0, 1), 'EIO');
});

test('FaultyBlockDevice adds latency per op kind', async () => {
  const { dev } = make();
  dev.setFaults({ latencyMs: { write: 30 } });
  await dev.read(0, 1);
  const started = performance.now();
  await dev.write(0, Buffer.from([1]));
  const writeMs = performance.now() - started;
  assert.ok(writeMs >= 25, `write took ${writeMs} ms`);
  assert.equal(dev.counts.delayedRequests, 1, 'the read was not delayed');
  assert.deepEqual(await dev.read(0, 1), Buffer.from([1]));
});

test('FaultyBlockDevice drops writes: success reported, nothing written (drop_writes)', async () => {
  const { inner, dev } = make();
  await dev.write(0, pattern(100, 1));
  dev.setFaults({ dropWrites: {} });
  await dev.write(0, Buffer.alloc(100, 0xee), { fua: true });
  await dev.writeZeroes(0, 50);
  await dev.trim(0, 50);
  assert.deepEqual(await inner.read(0, 100), pattern(100, 1));
  assert.equal(dev.counts.droppedWrites, 3);
  dev.setFaults({ dropWrites: { range: { offsetBytes: 1000, lengthBytes: 10 } } });
  await dev.write(0, Buffer.from('kept'));
  await dev.write(1005, Buffer.from('lost'));
  assert.deepEqual(await inner.read(0, 4), Buffer.from('kept'));
  assert.deepEqual(await inner.read(1005, 4), Buffer.alloc(4));
});

test('FaultyBlockDevice corrupts one byte of matching reads (corrupt_bio_byte)', async () => {
  const { dev } = make();
  const data = pattern(64, 2);
  await dev.write(0, data);
  dev.setFaults({ corruptReads: { byteIndex: 5, xorMask: 0x01 } });
  const back = await dev.read(0, 64);
  const expected = Buffer.from(data);
  expected[5] = (data[5] ?? 0) ^ 0x01;
  assert.deepEqual(back, expected);
  assert.deepEqual(await dev.read(0, 5), data.subarray(0, 5), 'a request shorter than the byte index passes');
  assert.equal(dev.counts.corruptedReads, 1);
  assert.deepEqual(await dev.inner.read(0, 64), data, 'the stored data is intact');
});

test('FaultyBlockDevice heals on clearFaults', async () => {
  const { dev } = make();
  dev.setFaults({ errors: [{ ops: ['read', 'write', 'flush'] }], corruptReads: {}, latencyMs: { read: 1 } });
  await rejectsWithCode(dev.write(0, Buffer.from('a')), 'EIO');
  await rejectsWithCode(dev.read(0, 1), 'EIO');
  await rejectsWithCode(dev.flush(), 'EIO');
  dev.clearFaults();
  assert.deepEqual(dev.faults, {});
  await dev.write(0, Buffer.from('a'));
  await dev.flush();
  assert.deepEqual(await dev.read(0, 1), Buffer.from('a'));
  assert.equal(dev.counts.readErrors, 1, 'counters keep what was injected');
});

test('FaultyBlockDevice rejects bad configs with RangeError', () => {
  const { dev } = make();
  assert.throws(() => dev.setFaults({ errors: [{ ops: ['read'], everyNth: 0 }] }), RangeError);
  assert.throws(() => dev.setFaults({ errors: [{ ops: ['read'], rate: 1.5 }] }), RangeError);
  assert.throws(() => dev.setFaults({ errors: [{ ops: [] }] }), RangeError);
  assert.throws(() => dev.setFaults({ corruptReads: { xorMask: 0 } }), RangeError);
  assert.throws(() => dev.setFaults({ dropWrites: { range: { offsetBytes: -1, lengthBytes: 1 } } }), RangeError);
  assert.throws(() => dev.setFaults({ latencyMs: { read: -5 } }), RangeError);
});
