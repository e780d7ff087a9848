/**
 * SerialQueue: operations run one at a time in queue order, each caller gets its own outcome, and a
 * failing operation neither fails nor skips the ones queued after it.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SerialQueue } from '../../src/serial-queue.js';

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve: () => void = () => undefined;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

test('SerialQueue starts an operation only after the previous one settled, in queue order', async () => {
  const queue = new SerialQueue();
  const log: string[] = [];
  const gate = deferred();
  const first = queue.run(async () => {
    log.push('first start');
    await gate.promise;
    log.push('first end');
    return 1;
  });
  const second = queue.run(async () => {
    log.push('second');
    return 2;
  });
  await new Promise((resolve) => setImmediate(resolve));
  assert.deepEqual(log, ['first start'], 'the second waits for the first');
  gate.resolve();
  assert.deepEqual(await Promise.all([first, second]), [1, 2]);
  assert.deepEqual(log, ['first start', 'first end', 'second']);
});

test('SerialQueue gives a rejection to its caller only; later operations still run', async () => {
  const queue = new SerialQueue();
  const failing = queue.run(() => Promise.reject(new Error('boom')));
  const after = queue.run(() => Promise.resolve('ran'));
  await assert.rejects(failing, /boom/);
  assert.equal(await after, 'ran');
});

test('SerialQueue.idle resolves once everything queued so far settled, and never rejects', async () => {
  const queue = new SerialQueue();
  let done = false;
  const failing = queue.run(async () => {
    await new Promise((resolve) => setImmediate(resolve));
    done = true;
    throw new Error('boom');
  });
  await queue.idle();
  assert.equal(done, true);
  await assert.rejects(failing, /boom/);
});
