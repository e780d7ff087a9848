/**
 * The resync's rate controller (src/mirror/resync-rate.ts): while clients are busy a resync keeps at
 * most one region and one chunk in flight, so a client request queues behind at most one recovery
 * request; the resync still progresses; the cap applies idle or busy. Measured in steps of a one-queue
 * "disk" (every leg request waits in one FIFO until the test completes it), with a fixed fake clock: no
 * wall-clock sleeps, no timing margins.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { BlockDevice } from '../../src/block/block-device.js';
import { forwardingDevice } from '../../src/block/forwarding-device.js';
import { MemoryBlockDevice } from '../../src/block/memory-block-device.js';
import { sectorBytes } from '../../src/limits.js';
import { createMirrorSet } from '../../src/mirror/create-mirror-set.js';
import { ResyncRate } from '../../src/mirror/resync-rate.js';

/** One FIFO for every leg request: step() completes the oldest. */
class OneQueueDisk {
  readonly #queue: { readonly run: () => void; readonly tag: string }[] = [];

  wrap(device: BlockDevice): BlockDevice {
    return forwardingDevice(device, {
      around: <T>(op: string, _bytes: number, run: () => Promise<T>): Promise<T> =>
        new Promise<T>((resolve, reject) => {
          this.#queue.push({ tag: `${device.name}:${op}`, run: () => void run().then(resolve, reject) });
        }),
    });
  }

  get length(): number {
    return this.#queue.length;
  }

  /** Completes the oldest request, then lets everything that reacts to it run. */
  async step(): Promise<void> {
    const next = this.#queue.shift();
    assert.ok(next !== undefined, 'a request to complete');
    next.run();
    await settle();
  }
}

async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await new Promise((resolve) => setImmediate(resolve));
}

const regionSectors = 128;
const regionCount = 64;

async function resyncingMirror(options: { busyParallelMax?: number } = {}) {
  const disk = new OneQueueDisk();
  const memories = [0, 1].map((i) => new MemoryBlockDevice({ sizeBytes: regionCount * regionSectors * sectorBytes, name: `l${i}` }));
  const clock = { nowMs: 1000 };
  const mirror = await createMirrorSet({
    args: `core 1 ${regionSectors} 2 l0 0 l1 0`.split(' '),
    lengthSectors: regionCount * regionSectors,
    openDevice: (name) => Promise.resolve(disk.wrap(memories[Number(name.slice(1))] ?? memories[0] as MemoryBlockDevice)),
    // No busy throttle: the rate would need real time; concurrency is what bounds the queue here.
    recoveryBusyBytesPerSecond: null,
    ...(options.busyParallelMax === undefined ? {} : { recoveryBusyParallelMax: options.busyParallelMax }),
    now: () => clock.nowMs,
  });
  await mirror.resume();
  await settle();
  return { disk, mirror, clock };
}

/** Reads one sector of region `regionIndex` and counts the steps until it completes. */
async function timedRead(disk: OneQueueDisk, read: Promise<Buffer>): Promise<number> {
  let done = false;
  void read.then(() => {
    done = true;
  });
  await settle();
  let steps = 0;
  while (!done) {
    await disk.step();
    steps += 1;
    assert.ok(steps < 1000, 'the read completes');
  }
  return steps;
}

describe('ResyncRate', () => {
  test('while clients are busy a client read waits behind at most one recovery request, and the resync progresses', async () => {
    const { disk, mirror } = await resyncingMirror();
    assert.equal(mirror.resyncRate.mode, 'idle');
    assert.equal(disk.length, 4, 'idle: recoveryParallel (4) regions at once');
    // The first read arrives while clients were idle: it waits for what was issued before it.
    const first = await timedRead(disk, mirror.read(0, 512));
    assert.ok(first <= 4 + 1, `first read took ${first} steps`);
    assert.equal(mirror.resyncRate.mode, 'busy', 'the fixed clock keeps clients busy from now on');
    const syncBefore = mirror.syncCount();
    const latencies: number[] = [];
    for (let i = 0; i < 40; i++) latencies.push(await timedRead(disk, mirror.read(((i * 7) % regionCount) * regionSectors * sectorBytes, 512)));
    // Drain what the idle mode issued before the switch (at most its window), then the bound holds.
    const steady = latencies.slice(4);
    assert.ok(Math.max(...steady) <= 2, `busy-mode read latencies in steps: ${latencies.join(' ')}`);
    assert.ok(mirror.syncCount() - syncBefore >= 10, `the resync went on: ${mirror.syncCount() - syncBefore} regions during 40 reads`);
    const status = mirror.resyncRate;
    assert.equal(status.regionsInFlightMax, 1);
    assert.equal(status.limitBytesPerSecond, null);
    assert.ok(mirror.recoveryInFlight <= 1);
    while (disk.length > 0) await disk.step();
    await mirror.suspend();
    await mirror.destroy();
  });

  test('without the busy mode (busy parallel = idle parallel) a client read waits behind several regions', async () => {
    const { disk, mirror } = await resyncingMirror({ busyParallelMax: 4 });
    await timedRead(disk, mirror.read(0, 512));
    const latencies: number[] = [];
    for (let i = 0; i < 20; i++) latencies.push(await timedRead(disk, mirror.read(((i * 7) % regionCount) * regionSectors * sectorBytes, 512)));
    assert.ok(Math.min(...latencies.slice(4)) > 2, `latencies ${latencies.join(' ')}: the queue holds several recovery requests`);
    while (disk.length > 0) await disk.step();
    await mirror.suspend();
    await mirror.destroy();
  });

  test('the cap applies idle and busy; the busy rate only while busy; regions at once follow the mode', () => {
    const clock = { nowMs: 0 };
    const rate = new ResyncRate({ parallelMax: 4, busyParallelMax: 1, busyBytesPerSecond: 64, capBytesPerSecond: 32, now: () => clock.nowMs });
    assert.deepEqual([rate.mode, rate.limitBytesPerSecond(), rate.regionsInFlightMax(), rate.chunksInFlightMax()], ['idle', 32, 4, undefined]);
    rate.clientIo();
    assert.deepEqual([rate.mode, rate.limitBytesPerSecond(), rate.regionsInFlightMax(), rate.chunksInFlightMax()], ['busy', 32, 1, 1]);
    clock.nowMs += 1000;
    assert.equal(rate.mode, 'idle', 'the busy window ended');
    const uncapped = new ResyncRate({ parallelMax: 2, busyParallelMax: 1, busyBytesPerSecond: 64, capBytesPerSecond: null, now: () => clock.nowMs });
    assert.equal(uncapped.limitBytesPerSecond(), null);
    uncapped.clientIo();
    assert.equal(uncapped.limitBytesPerSecond(), 64);
    uncapped.noteCopied(5000);
    assert.equal(uncapped.status().bytesPerSecond, 1000, '5000 bytes over the 5 s window');
    clock.nowMs += 6000;
    assert.equal(uncapped.status().bytesPerSecond, 0);
  });
});
