// MappedDevice (dm core): routing and splitting across segments, suspend/resume with held and parked
// I/O, table swaps, events, info and dmsetup's table/status text.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { BlockError, ControlError, TableError } from '../../src/errors.js';
import { MappedDevice } from '../../src/target/mapped-device.js';
import { testTargets } from '../helpers/table-targets.js';
import { blockDeviceSuite, pattern, supportsAll } from '../conformance/block-device.suite.js';
import { mappedMirrorStack } from '../helpers/mapped-stack.js';

// The device NBD serves: linear, mirror (core log), mirror (disk log) and linear lines, built by the
// daemon's own targetBuilder. A zero line cannot take part: dm-zero drops writes by design.
blockDeviceSuite({
  name: 'MappedDevice (linear + mirror core + mirror disk + linear)',
  create: async (sizeBytes) => (await mappedMirrorStack({ sizeBytes })).device,
  supports: { ...supportsAll, persistent: true, reopen: (dev) => mappedMirrorStack.reopen(dev) },
});

const knownTypes = ['linear', 'zero', 'error', 'holding'];
const S = 512;

/** Resolves on the next macrotask, after every pending microtask has run. */
const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** Tracks whether a promise has settled, without letting a rejection go unhandled. */
function track<T>(promise: Promise<T>): { settled: () => boolean; result: Promise<T> } {
  let done = false;
  const result = promise.finally(() => {
    done = true;
  });
  result.catch(() => undefined);
  return { settled: () => done, result };
}

async function device(text: string, devices: Record<string, number> = {}) {
  const targets = testTargets(devices);
  const md = new MappedDevice({ name: 'm', buildTarget: targets.buildTarget, knownTypes });
  await md.load(text);
  await md.resume();
  return { md, targets };
}

describe('MappedDevice routing', () => {
  const table = '0 8 linear a 16\n8 8 zero\n16 8 linear b 0\n24 8 error';

  test('sizeBytes is the sum of the segment lengths', async () => {
    const { md } = await device(table, { a: 64, b: 8 });
    assert.equal(md.sizeBytes, 32 * S);
  });

  test('a write across linear and zero segments is split; the linear part lands at its offset once', async () => {
    const { md, targets } = await device(table, { a: 64, b: 8 });
    const data = pattern(8 * S, 1);
    await md.write(4 * S, data); // sectors 4..11: 4 to linear a (a sectors 20..23), 4 to zero
    const a = targets.devices.get('a');
    assert.ok(a !== undefined);
    assert.deepEqual(await a.read(20 * S, 4 * S), data.subarray(0, 4 * S));
    assert.deepEqual(await a.read(16 * S, 4 * S), Buffer.alloc(4 * S), 'sectors before the write untouched');
    assert.deepEqual(await md.read(4 * S, 8 * S), Buffer.concat([data.subarray(0, 4 * S), Buffer.alloc(4 * S)]));
  });

  test('the segment start is subtracted once: a write at sector 16 reaches device b at 0', async () => {
    const { md, targets } = await device(table, { a: 64, b: 8 });
    const data = pattern(3 * S + 100, 2);
    await md.write(16 * S, data);
    const b = targets.devices.get('b');
    assert.ok(b !== undefined);
    assert.deepEqual(await b.read(0, data.length), data);
  });

  test('byte-granular I/O spanning three segments is reassembled in order', async () => {
    const { md } = await device(table, { a: 64, b: 8 });
    const first = pattern(300, 3);
    const last = pattern(300, 4);
    await md.write(8 * S - 300, first);
    await md.write(16 * S, last);
    const read = await md.read(8 * S - 300, 8 * S + 600);
    assert.deepEqual(read.subarray(0, 300), first);
    assert.deepEqual(read.subarray(300, 300 + 8 * S), Buffer.alloc(8 * S));
    assert.deepEqual(read.subarray(300 + 8 * S), last);
  });

  test('I/O touching the error segment fails with EIO; I/O beside it succeeds', async () => {
    const { md } = await device(table, { a: 64, b: 8 });
    await assert.rejects(md.read(23 * S, 2 * S), (e: unknown) => e instanceof BlockError && e.code === 'EIO');
    await assert.rejects(md.write(24 * S, Buffer.alloc(S)), (e: unknown) => e instanceof BlockError && e.code === 'EIO');
    await md.write(23 * S, Buffer.alloc(S, 1));
  });

  test('I/O past the end is refused by the base checks', async () => {
    const { md } = await device('0 8 zero');
    await assert.rejects(md.read(8 * S, 1), (e: unknown) => e instanceof BlockError && e.code === 'EINVAL');
    await assert.rejects(md.write(7 * S, Buffer.alloc(S + 1)), (e: unknown) => e instanceof BlockError && e.code === 'ENOSPC');
  });

  test('flush goes to every target', async () => {
    const { md, targets } = await device('0 8 holding\n8 8 holding');
    await md.flush();
    assert.deepEqual(targets.holding.map((h) => h.flushes), [1, 1]);
  });
});

describe('MappedDevice tables and text', () => {
  test('table and status print dmsetup\'s lines, with the trailing space of empty params', async () => {
    const { md } = await device('0 32768 error');
    assert.equal(md.table(), '0 32768 error \n');
    assert.equal(md.status(), '0 32768 error \n');
  });

  test('table of several segments, status of a linear segment, and the inactive variants', async () => {
    const { md } = await device('0 8 linear a 2\n8 8 zero', { a: 16, b: 16 });
    assert.equal(md.table(), '0 8 linear a 2\n8 8 zero \n');
    assert.equal(md.status(), '0 8 linear \n8 8 zero \n');
    assert.equal(md.table({ inactive: true }), '\n');
    await md.load('0 16 linear b 0');
    assert.equal(md.table({ inactive: true }), '0 16 linear b 0\n');
    assert.equal(md.table(), '0 8 linear a 2\n8 8 zero \n');
  });

  test('a device with no table prints an empty line (dmsetup status on --notable)', () => {
    const md = new MappedDevice({ name: 'm', buildTarget: testTargets({}).buildTarget });
    assert.equal(md.status(), '\n');
    assert.equal(md.table(), '\n');
    assert.equal(md.sizeBytes, 0);
  });

  test('info follows the lifecycle: None, INACTIVE, LIVE, LIVE & INACTIVE, SUSPENDED', async () => {
    const targets = testTargets({ a: 16 });
    const md = new MappedDevice({ name: 'm', buildTarget: targets.buildTarget, knownTypes });
    assert.deepEqual(md.info(), {
      name: 'm',
      state: 'ACTIVE',
      tablesPresent: 'None',
      openCount: 0,
      eventNr: 0,
      targetCount: 0,
    });
    await md.load('0 8 zero\n8 8 error');
    assert.equal(md.info().tablesPresent, 'INACTIVE');
    await md.resume();
    assert.equal(md.info().tablesPresent, 'LIVE');
    assert.equal(md.info().targetCount, 2);
    await md.load('0 16 linear a 0');
    assert.equal(md.info().tablesPresent, 'LIVE & INACTIVE');
    await md.suspend();
    assert.equal(md.info().state, 'SUSPENDED');
    await md.resume();
    assert.deepEqual(md.info(), {
      name: 'm',
      state: 'ACTIVE',
      tablesPresent: 'LIVE',
      openCount: 0,
      eventNr: 0,
      targetCount: 1,
    });
    md.holdOpen();
    assert.equal(md.info().openCount, 1);
    md.releaseOpen();
  });

  test('a failing target constructor destroys the targets already built and keeps the old inactive table', async () => {
    const targets = testTargets({ a: 16 });
    const md = new MappedDevice({ name: 'm', buildTarget: targets.buildTarget, knownTypes });
    await md.load('0 16 zero');
    await assert.rejects(md.load('0 8 holding\n8 8 linear nonexistent 0'), (e: unknown) => {
      assert.ok(e instanceof TableError);
      assert.equal(e.kernelError, 'Device lookup failed');
      assert.equal(e.code, 'ENODEV');
      return true;
    });
    assert.equal(targets.holding[0]?.destroyed, true);
    assert.equal(md.table({ inactive: true }), '0 16 zero \n');
  });

  test('linear argument errors are dm-linear\'s', async () => {
    const md = new MappedDevice({ name: 'm', buildTarget: testTargets({ a: 16 }).buildTarget });
    const kernelError = async (text: string): Promise<string> => {
      try {
        await md.load(text);
      } catch (error) {
        assert.ok(error instanceof TableError);
        return error.kernelError;
      }
      return 'accepted';
    };
    assert.equal(await kernelError('0 8 linear a'), 'Invalid argument count');
    assert.equal(await kernelError('0 8 linear a x'), 'Invalid device sector');
    assert.equal(await kernelError('0 8 linear a 12'), 'a too small for target: start=12, len=8, dev_size=16');
    assert.equal(await kernelError('0 8 zero extra'), 'No arguments required');
  });

  test('the size is fixed at the first resume: a reload of another length is rejected', async () => {
    const { md } = await device('0 16 zero');
    await assert.rejects(md.load('0 32 zero'), (e: unknown) => e instanceof TableError && e.source === 'core');
    await md.load('0 8 zero\n8 8 error');
    await md.resume();
    assert.equal(md.sizeBytes, 16 * S);
  });

  test('resume swaps tables and destroys the old live table afterwards', async () => {
    const { md, targets } = await device('0 8 holding');
    const [old] = targets.holding;
    assert.ok(old !== undefined);
    await md.load('0 8 zero');
    assert.equal(old.destroyed, false);
    await md.resume();
    assert.equal(old.destroyed, true);
    assert.equal(md.table(), '0 8 zero \n');
  });

  test('remove refuses an open device, then destroys the tables; later I/O fails with ESHUTDOWN', async () => {
    const { md, targets } = await device('0 8 holding');
    await md.load('0 8 zero');
    md.holdOpen();
    await assert.rejects(md.remove(), (e: unknown) => e instanceof ControlError && e.code === 'EBUSY');
    md.releaseOpen();
    await md.remove();
    assert.equal(targets.holding[0]?.destroyed, true);
    const inactive = targets.built[1];
    assert.ok(inactive !== undefined);
    await assert.rejects(inactive.read(0, S), (e: unknown) => e instanceof BlockError && e.code === 'ESHUTDOWN', 'the inactive table is destroyed too');
    await assert.rejects(md.read(0, S), (e: unknown) => e instanceof BlockError && e.code === 'ESHUTDOWN');
  });
});

describe('MappedDevice suspend and resume', () => {
  test('suspend holds new I/O until resume', async () => {
    const { md, targets } = await device('0 8 linear a 0', { a: 8 });
    await md.suspend();
    const data = pattern(S, 5);
    const write = track(md.write(0, data));
    await tick();
    assert.equal(write.settled(), false);
    assert.equal(md.heldCount, 1);
    const a = targets.devices.get('a');
    assert.ok(a !== undefined);
    assert.deepEqual(await a.read(0, S), Buffer.alloc(S), 'nothing reached the device while suspended');
    await md.resume();
    await write.result;
    assert.deepEqual(await a.read(0, S), data);
    assert.equal(md.heldCount, 0);
  });

  test('status still answers while suspended', async () => {
    const { md } = await device('0 8 zero');
    await md.suspend();
    assert.equal(md.status(), '0 8 zero \n');
  });

  test('noflush parks I/O a target requeues and re-issues it on the new table after load and resume', async () => {
    const { md, targets } = await device('0 8 holding', { b: 8 });
    const [holding] = targets.holding;
    assert.ok(holding !== undefined);
    const data = pattern(2 * S, 6);
    const write = track(md.write(S, data));
    await holding.waitHeld(1);
    await md.suspend({ noflush: true });
    assert.equal(md.info().state, 'SUSPENDED');
    assert.equal(md.heldCount, 1, 'the requeued write is parked');
    await tick();
    assert.equal(write.settled(), false);
    await md.load('0 8 linear b 0');
    await md.resume();
    await write.result;
    const b = targets.devices.get('b');
    assert.ok(b !== undefined);
    assert.deepEqual(await b.read(S, 2 * S), data);
    assert.equal(holding.destroyed, true);
  });

  test('a plain suspend does not park: the requeued write fails with EIO', async () => {
    const { md, targets } = await device('0 8 holding');
    const [holding] = targets.holding;
    assert.ok(holding !== undefined);
    const write = track(md.write(0, Buffer.alloc(S, 1)));
    await holding.waitHeld(1);
    await md.suspend();
    await assert.rejects(write.result, (e: unknown) => e instanceof BlockError && e.code === 'EIO');
    assert.equal(md.heldCount, 0);
  });

  test('a RequeueRequest while no noflush suspend runs fails the I/O with EIO', async () => {
    const { md, targets } = await device('0 8 holding');
    const [holding] = targets.holding;
    assert.ok(holding !== undefined);
    const write = track(md.write(0, Buffer.alloc(S, 1)));
    await holding.waitHeld(1);
    await holding.presuspend({ noflush: true }); // the target requeues on its own
    await assert.rejects(write.result, (e: unknown) => e instanceof BlockError && e.code === 'EIO');
  });

  test('suspend waits for I/O in flight; I/O queued during suspend reaches the new table', async () => {
    const { md, targets } = await device('0 8 holding', { b: 8 });
    const [holding] = targets.holding;
    assert.ok(holding !== undefined);
    holding.holding = false;
    await md.suspend({ noflush: true });
    const queued = track(md.write(0, Buffer.alloc(S, 9)));
    await md.load('0 8 linear b 0');
    await md.resume();
    await queued.result;
    const b = targets.devices.get('b');
    assert.ok(b !== undefined);
    assert.deepEqual(await b.read(0, S), Buffer.alloc(S, 9));
  });

  test('held I/O is bounded: beyond heldIoMax it fails with ENOMEM', async () => {
    const targets = testTargets({});
    const md = new MappedDevice({ name: 'm', buildTarget: targets.buildTarget, heldIoMax: 2 });
    await md.load('0 8 zero');
    await md.resume();
    await md.suspend();
    const held = [track(md.read(0, S)), track(md.read(0, S))];
    await assert.rejects(md.read(0, S), (e: unknown) => e instanceof BlockError && e.code === 'ENOMEM');
    await md.resume();
    await Promise.all(held.map((h) => h.result));
  });
});

describe('MappedDevice events', () => {
  test('targets of the live table raise events; eventNr only grows', async () => {
    const { md, targets } = await device('0 8 holding');
    const seen: number[] = [];
    const off = md.onEvent((nr) => seen.push(nr));
    targets.holding[0]?.context.raiseEvent();
    targets.holding[0]?.context.raiseEvent();
    off();
    targets.holding[0]?.context.raiseEvent();
    assert.deepEqual(seen, [1, 2]);
    assert.equal(md.eventNr, 3);
    assert.equal(md.info().eventNr, 3);
  });

  test('events from a table that is not live are dropped', async () => {
    const { md, targets } = await device('0 8 zero');
    await md.load('0 8 holding');
    targets.holding[0]?.context.raiseEvent();
    assert.equal(md.eventNr, 0);
    await md.resume();
    targets.holding[0]?.context.raiseEvent();
    assert.equal(md.eventNr, 1);
  });

  test('waitEvent resolves once the counter exceeds the number given, at once if it already does', async () => {
    const { md } = await device('0 8 zero');
    const waiting = track(md.waitEvent(1));
    md.raiseEvent();
    await tick();
    assert.equal(waiting.settled(), false, 'event 1 does not exceed 1');
    md.raiseEvent();
    assert.equal(await waiting.result, 2);
    assert.equal(await md.waitEvent(0), 2);
  });

  test('waitEvent rejects on abort and on remove', async () => {
    const { md } = await device('0 8 zero');
    const controller = new AbortController();
    const aborted = track(md.waitEvent(0, controller.signal));
    controller.abort(new Error('stop'));
    await assert.rejects(aborted.result, /stop/);
    const removed = track(md.waitEvent(0));
    await md.remove();
    await assert.rejects(removed.result, (e: unknown) => e instanceof ControlError && e.code === 'ENXIO');
  });
});
