/**
 * The fail-fast policy (src/fail-fast.ts) in the engine: a programmer error (TypeError, RangeError,
 * AssertionError) thrown where an I/O error is expected is never turned into a leg failure, a log
 * failure or an EIO. Where the caller awaits, it reaches the caller unchanged; in detached work (the
 * worker pass, leg writes) it reaches failFast and the process exits with the stack trace, which a
 * child process (test/helpers/programmer-error-child.ts) shows.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { AssertionError } from 'node:assert';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { BlockDevice } from '../../src/block/block-device.js';
import { forwardingDevice } from '../../src/block/forwarding-device.js';
import { MemoryBlockDevice } from '../../src/block/memory-block-device.js';
import { DiskDirtyLog } from '../../src/dirty-log/disk-dirty-log.js';
import { BlockError, toBlockError } from '../../src/errors.js';
import { detach, isProgrammerError, rethrowProgrammerError, settleOperating } from '../../src/fail-fast.js';
import { mirrorFixture, waitInSync } from '../helpers/mirror-fixture.js';

const childPath = fileURLToPath(new URL('../helpers/programmer-error-child.js', import.meta.url));

function runChild(mode: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [childPath, mode], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.on('error', reject);
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

/** A device whose `op` throws a TypeError (a bug in the device code) while `armed.on`. */
function buggy(device: BlockDevice, op: 'write' | 'flush', armed: { on: boolean }): BlockDevice {
  return forwardingDevice(device, {
    around: (kind, _bytes, run) => {
      if (armed.on && kind === op) return Promise.reject(new TypeError(`injected: ${op} bug`));
      return run();
    },
  });
}

describe('fail-fast helpers', () => {
  test('isProgrammerError tells bugs from operating errors', () => {
    assert.equal(isProgrammerError(new TypeError('x')), true);
    assert.equal(isProgrammerError(new RangeError('x')), true);
    assert.equal(isProgrammerError(new AssertionError({ message: 'x' })), true);
    assert.equal(isProgrammerError(new BlockError('EIO', 'x')), false);
    assert.equal(isProgrammerError(Object.assign(new Error('x'), { code: 'ECONNRESET' })), false);
    assert.throws(() => rethrowProgrammerError(new TypeError('x')), TypeError);
    rethrowProgrammerError(new BlockError('EIO', 'x'));
  });

  test('toBlockError rethrows a programmer error instead of wrapping it as EIO', () => {
    assert.throws(() => toBlockError(new TypeError('bug'), 'Cannot write'), TypeError);
    assert.equal(toBlockError(new Error('disk gone'), 'Cannot write').code, 'EIO');
  });

  test('settleOperating rethrows a programmer error found among the rejections, after all settle', async () => {
    let lastSettled = false;
    const slow = new Promise<void>((resolve) => setTimeout(() => {
      lastSettled = true;
      resolve();
    }, 5));
    await assert.rejects(
      settleOperating([Promise.reject(new BlockError('EIO', 'leg')), Promise.reject(new TypeError('bug')), slow]),
      TypeError,
    );
    assert.equal(lastSettled, true);
    const results = await settleOperating([Promise.resolve(1), Promise.reject(new BlockError('EIO', 'leg'))]);
    assert.deepEqual(results.map((r) => r.status), ['fulfilled', 'rejected']);
  });

  test('detach hands an operating error to its handler', async () => {
    const seen: unknown[] = [];
    detach(Promise.reject(new BlockError('EIO', 'leg')), (err) => seen.push(err));
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(seen.length, 1);
  });
});

describe('programmer errors in the engine', () => {
  test('MirrorSet leg write throwing a TypeError stops the process instead of failing the leg', async () => {
    const { code, stdout, stderr } = await runChild('leg-write');
    assert.doesNotMatch(stdout, /survived|leg-failed|timeout/, `the bug was handled as an I/O error:\n${stdout}`);
    assert.match(stdout, /^armed$/m);
    assert.match(stderr, /TypeError: injected: l1 write bug/);
    assert.equal(code, 1);
  });

  test('MirrorSet log flush throwing a TypeError stops the process instead of failing the log', async () => {
    const { code, stdout, stderr } = await runChild('log-flush');
    assert.doesNotMatch(stdout, /survived|log-failed|timeout/, `the bug was handled as an I/O error:\n${stdout}`);
    assert.match(stdout, /^armed$/m);
    assert.match(stderr, /TypeError: injected: log flush bug/);
    assert.equal(code, 1);
  });

  test('DiskDirtyLog flush passes a TypeError from its device to the caller and keeps health A', async () => {
    const armed = { on: false };
    const device = buggy(new MemoryBlockDevice({ sizeBytes: 64 * 1024, name: 'log' }), 'flush', armed);
    let events = 0;
    const log = new DiskDirtyLog({
      device,
      displayName: 'log',
      regionCount: 16,
      regionSizeSectors: 128,
      syncMode: 'nosync',
      flushData: () => Promise.resolve(),
      raiseEvent: () => events++,
    });
    await log.resume();
    armed.on = true;
    log.markRegion(3);
    await assert.rejects(log.flush(), { name: 'TypeError', message: 'injected: flush bug' });
    assert.equal(log.health, 'A');
    assert.equal(events, 0);
    armed.on = false;
    await log.close();
  });

  test('DiskDirtyLog clean step passes a TypeError from the leg flush to the caller and keeps its clean bits', async () => {
    const armed = { on: false };
    const log = new DiskDirtyLog({
      device: new MemoryBlockDevice({ sizeBytes: 64 * 1024, name: 'log' }),
      displayName: 'log',
      regionCount: 16,
      regionSizeSectors: 128,
      syncMode: 'nosync',
      flushData: () => (armed.on ? Promise.reject(new TypeError('injected: leg flush bug')) : Promise.resolve()),
      raiseEvent: () => undefined,
    });
    await log.resume();
    log.markRegion(3);
    await log.flush();
    armed.on = true;
    log.clearRegion(3);
    await assert.rejects(log.flush(), { name: 'TypeError' });
    assert.equal(log.flushFailed, false, 'a bug is not a failed leg flush: the clean bits are not zeroed');
    assert.equal(log.isClean(0), true);
    armed.on = false;
    await log.close();
  });

  test('MirrorSet.flushLegs passes a TypeError from a leg flush to the caller and fails no leg', async () => {
    const armed = { on: false };
    const f = await mirrorFixture({ log: 'disk 2 log 128', resume: false });
    await f.mirror.resume();
    await waitInSync(f.mirror);
    const leg1 = f.legs[1];
    assert.ok(leg1 !== undefined);
    // The fixture's legs are FaultyBlockDevices: patch l1's flush through its public method.
    const flush = leg1.flush.bind(leg1);
    leg1.flush = () => (armed.on ? Promise.reject(new TypeError('injected: leg flush bug')) : flush());
    armed.on = true;
    await assert.rejects(f.mirror.flushLegs(), TypeError);
    assert.equal(f.mirror.healthLetters(), 'AA');
    armed.on = false;
    await f.mirror.destroy();
  });
});
