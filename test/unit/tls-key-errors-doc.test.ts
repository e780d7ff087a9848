/**
 * docs/errors.md lists exactly the TlsKeyError codes of src/errors.ts (the rule of errors-doc.test.ts,
 * for the key-file errors of the TLS options).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { TLS_KEY_ERRNOS } from '../../src/errors.js';

test('docs/errors.md documents exactly the TlsKeyError codes', () => {
  const text = readFileSync('docs/errors.md', 'utf8');
  const start = text.indexOf('## TlsKeyError');
  assert.ok(start >= 0, 'docs/errors.md has a "TlsKeyError" section');
  const next = text.indexOf('\n## ', start + 1);
  const body = text.slice(start, next < 0 ? undefined : next);
  const codes = [...body.matchAll(/^\| `([A-Z]+)` \|/gm)].map((m) => m[1] ?? '');
  assert.deepEqual(codes.sort(), [...TLS_KEY_ERRNOS].sort());
});
