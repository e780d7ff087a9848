/**
 * docs/errors.md lists every error code of src/errors.ts, section by section (fastify's rule: a code
 * that is not documented, or a documented code that does not exist, fails the build). The BlockError
 * wire column must say what toNbdError sends, and the system-code table must be SYSTEM_ERRNOS.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { BlockError, CONTROL_ERRNOS, ERRNOS, isErrno, LISTEN_ERRNOS, SYSTEM_ERRNOS, TABLE_ERRNOS } from '../../src/errors.js';
import { nbdErrorName, toNbdError } from '../../src/nbd/errors.js';
import { commandFlag } from '../../src/nbd/protocol.js';

/** The table rows of a section: the cells of every line that starts with a code in backquotes. */
function rowsIn(section: string): string[][] {
  const text = readFileSync('docs/errors.md', 'utf8');
  const start = text.indexOf(`## ${section}`);
  assert.ok(start >= 0, `docs/errors.md has a "${section}" section`);
  const next = text.indexOf('\n## ', start + 1);
  const body = text.slice(start, next < 0 ? undefined : next);
  return body
    .split('\n')
    .filter((line) => /^\| `[A-Z]+` \|/.test(line))
    .map((line) => line.split('|').slice(1, -1).map((cell) => cell.trim()));
}

function codesIn(section: string): string[] {
  return rowsIn(section).map((cells) => (cells[0] ?? '').replaceAll('`', ''));
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

test('docs/errors.md gives the wire value toNbdError sends for every BlockError code', () => {
  for (const [cell, , wire] of rowsIn('BlockError')) {
    const code = (cell ?? '').replaceAll('`', '');
    assert.ok(isErrno(code), code);
    const names = [...(wire ?? '').matchAll(/`(NBD_[A-Z]+)`/g)].map((m) => m[1]);
    assert.ok(names.length > 0, `${code}: the wire column names an NBD error`);
    const error = new BlockError(code, 'x');
    // "X with FLAG, else Y": the first name is sent with FAST_ZERO and DF set, the last without flags.
    assert.equal(`NBD_${nbdErrorName(toNbdError(error, commandFlag.fastZero | commandFlag.df))}`, names[0], `${code} with flags`);
    assert.equal(`NBD_${nbdErrorName(toNbdError(error, 0))}`, names.at(-1), `${code} without flags`);
  }
});

test('docs/errors.md lists exactly SYSTEM_ERRNOS, each with the code it becomes', () => {
  const rows = rowsIn('System error codes').map(([system, ours]) => [(system ?? '').replaceAll('`', ''), (ours ?? '').replaceAll('`', '')]);
  assert.deepEqual(new Map(rows.map(([system, ours]) => [system ?? '', ours ?? ''])), new Map(SYSTEM_ERRNOS));
  assert.equal(rows.length, SYSTEM_ERRNOS.size, 'no system code listed twice');
});
