import { test } from 'node:test';
import assert from 'node:assert/strict';
import { findTool, requireTools } from '../helpers/tools.js';

test('findTool finds executables on PATH and not missing ones', () => {
  assert.ok(findTool('node') !== undefined || findTool('sh') !== undefined);
  assert.equal(findTool('umirror-no-such-tool'), undefined);
});

test('requireTools throws under CI=true when a tool is missing', async (t) => {
  const saved = process.env['CI'];
  process.env['CI'] = 'true';
  try {
    assert.throws(() => requireTools(t, ['umirror-no-such-tool']), /missing tools: umirror-no-such-tool/);
    assert.equal(requireTools(t, ['sh']), true);
  } finally {
    if (saved === undefined) delete process.env['CI'];
    else process.env['CI'] = saved;
  }
});

test('requireTools skips locally when a tool is missing', () => {
  const saved = process.env['CI'];
  delete process.env['CI'];
  try {
    const skipped: string[] = [];
    const context = { name: 'a test that needs a missing tool', skip: (message?: string) => void skipped.push(message ?? '') };
    assert.equal(requireTools(context, ['umirror-no-such-tool']), false);
    assert.deepEqual(skipped, ['missing tools: umirror-no-such-tool']);
    assert.equal(requireTools(context, ['sh']), true);
    assert.equal(skipped.length, 1);
  } finally {
    if (saved !== undefined) process.env['CI'] = saved;
  }
});
