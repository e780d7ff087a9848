/**
 * docs/errors.md lists every error code of src/errors.ts, section by section (fastify's rule: a code
 * that is not documented, or a documented code that does not exist, fails the build).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { CONTROL_ERRNOS, ERRNOS, LISTEN_ERRNOS, TABLE_ERRNOS } from '../../src/errors.js';

function codesIn(section: string): string[] {
  const text = readFileSync('docs/errors.md', 'utf8');
  const start = text.indexOf(`## ${section}`);
  assert.ok(start >= 0, `docs/errors.md has a "${section}" section`);
  const next = text.indexOf('\n## ', start + 1);
  const body = text.slice(start, next < 0 ? undefined : next);
  return [...body.matchAll(/^\| `([A-Z]+)` \|/gm)].map((m) => m[1] ?? '');
}

test('docs/errors.md documents exactly the BlockError codes', () => {
  assert.deepEqual(codesIn('BlockError').sort(), [...ERRNOS].sort());
});

test('docs/errors.md documents exactly the TableError codes', () => {
  assert.deepEqual(codesIn('TableError').sort(), [...TABLE_ERRNOS].sort());
});

test('docs/errors.md documents exactly the ControlError codes', () => {
  assert.deepEqual(codesIn('ControlError').sort(), [...CONTROL_ERRNOS].sort());
});

test('docs/errors.md documents exactly the ListenError codes', () => {
  assert.deepEqual(codesIn('ListenError').sort(), [...LISTEN_ERRNOS].sort());
});
