/**
 * The public API (src/index.ts): a program can build a mirror set from a kernel table over its own
 * devices, run I/O through it and read its status, using only what the package exports.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryBlockDevice, TableError, createMirrorSet, parseTable } from '../../src/index.js';

test('parseTable validates a multi-line table with the kernel messages', () => {
  const lines = parseTable('0 1024 linear /dev/a 0\n1024 2048 mirror core 1 1024 2 /dev/b 0 /dev/c 0 1 handle_errors');
  assert.equal(lines.length, 2);
  assert.equal(lines[1]?.mirror?.legs.length, 2);
  assert.throws(() => parseTable('0 2048 mirror core 1 1000 2 a 0 b 0'), (err: unknown) => {
    assert.ok(err instanceof TableError);
    assert.equal(err.kernelError, 'Error creating mirror dirty log');
    assert.deepEqual(err.logLines, ['invalid region size 1000']);
    return true;
  });
});

test('createMirrorSet builds a working mirror from exported parts', async () => {
  const legs = new Map([
    ['a', new MemoryBlockDevice({ sizeBytes: 1024 * 1024, name: 'a' })],
    ['b', new MemoryBlockDevice({ sizeBytes: 1024 * 1024, name: 'b' })],
  ]);
  const mirror = await createMirrorSet({
    args: 'core 2 128 nosync 2 a 0 b 0'.split(' '),
    lengthSectors: 2048,
    openDevice: async (name) => {
      const device = legs.get(name);
      if (device === undefined) throw new Error(`no ${name}`);
      return device;
    },
  });
  await mirror.resume();
  await mirror.write(4096, Buffer.from('hello'));
  assert.equal((await mirror.read(4096, 5)).toString(), 'hello');
  assert.equal(mirror.statusInfo(), '2 a b 16/16 1 AA 1 core');
  await mirror.destroy();
});
