/**
 * A hostile operator's tables against a real `umirror daemon`: a seeded run of mutated mirror, linear,
 * zero and error tables (huge, negative, fractional and non-numbers, missing and extra words, odd
 * features, URIs that answer nothing, many lines) sent with `create` and `load` over the control socket.
 *
 * The fail-fast policy stops the process on a programmer error (TypeError, RangeError, AssertionError),
 * so any table that reaches one instead of a TableError/ControlError would kill every device of the
 * daemon. Expected: every request gets an answer, the daemon stays up, a device created before the run
 * still serves its data, and every device the fuzzer managed to create can be removed.
 *
 * Seeded (UMIRROR_FUZZ_SEED, printed) and bounded (UMIRROR_TABLE_FUZZ_CASES, default 300).
 */
import assert from 'node:assert/strict';
import { writeFile, truncate } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { ControlClient } from '../../src/control/control-client.js';
import { startDaemon } from '../helpers/daemon-process.js';
import { fuzzSeed, SeededRandom } from '../helpers/seeded-random.js';

const casesTotal = Number(process.env['UMIRROR_TABLE_FUZZ_CASES'] ?? '300');

test('umirror daemon answers a seeded run of hostile tables and keeps serving', async (t) => {
  const seed = fuzzSeed();
  t.diagnostic(`table fuzz seed ${seed} (replay with UMIRROR_FUZZ_SEED=${seed}), ${casesTotal} cases`);
  const random = new SeededRandom(seed);
  const next = (): number => random.next();
  const int = (n: number): number => random.int(n);
  const pick = <T>(items: readonly T[]): T => random.pick(items);

  const d = await startDaemon();
  t.after(() => d.dispose());
  const images = Array.from({ length: 4 }, (_, i) => join(d.dir, `f${i}.img`));
  for (const image of images) {
    await writeFile(image, '');
    await truncate(image, 4 * 1024 * 1024);
  }
  const tiny = join(d.dir, 'tiny.img');
  await writeFile(tiny, Buffer.alloc(100));
  const keeper = join(d.dir, 'keep.img');
  await writeFile(keeper, Buffer.alloc(1024 * 1024, 0x5a));

  const client = await ControlClient.connect(d.socketPath);
  t.after(() => client.close());
  const created = await client.call({ verb: 'create', name: 'keep', table: `0 2048 linear ${keeper} 0`, readOnly: false });
  assert.equal(created.ok, true, JSON.stringify(created));

  const number = (): string =>
    pick([
      '0', '1', '2', '3', '8', '1024', '8192', '-1', '1.5', '1e3', '0x10', 'abc', '', '18446744073709551615',
      '18446744073709551616', '9007199254740993', '4294967296', '2147483648', String(int(20000)), 'NaN', 'Infinity',
    ]);
  const device = (): string =>
    pick([...images, tiny, join(d.dir, 'missing.img'), 'keep', 'nbd://127.0.0.1:1/x', `nbd+unix:///x?socket=${join(d.dir, 'none.sock')}`, '/dev/null', d.dir, '']);
  const logArgs = (): string[] => {
    switch (int(4)) {
      case 0:
        return ['core', number(), number(), ...(next() < 0.5 ? [pick(['sync', 'nosync', 'bogus'])] : [])];
      case 1:
        return ['disk', number(), device(), number(), ...(next() < 0.5 ? [pick(['sync', 'nosync', 'bogus'])] : [])];
      case 2:
        return [pick(['clustered-core', 'userspace', 'nope']), number()];
      default:
        return ['core', '1', '1024'];
    }
  };
  const mirrorLine = (start: string, length: string): string => {
    const legs = int(12) - 1;
    const words = [start, length, 'mirror', ...logArgs(), String(legs)];
    for (let i = 0; i < Math.max(0, Math.min(legs, 10)); i += 1) words.push(device(), number());
    if (next() < 0.6) words.push(pick(['1', '2', '3', '0', '-1']), ...Array.from({ length: int(3) }, () => pick(['handle_errors', 'keep_log', 'bogus'])));
    // Drop or duplicate a word now and then.
    if (next() < 0.2) words.splice(int(words.length), 1);
    if (next() < 0.1) words.splice(int(words.length), 0, pick(words));
    return words.join(' ');
  };
  const line = (start: string, length: string): string => {
    switch (int(5)) {
      case 0:
        return `${start} ${length} linear ${device()} ${number()}`;
      case 1:
        return `${start} ${length} ${pick(['zero', 'error', 'striped', 'nope'])}${next() < 0.3 ? ` ${number()}` : ''}`;
      default:
        return mirrorLine(start, length);
    }
  };
  const table = (): string => {
    const lines = 1 + (next() < 0.2 ? int(6) : 0);
    const out: string[] = [];
    let start = 0;
    for (let i = 0; i < lines; i += 1) {
      const length = next() < 0.7 ? String(pick([2048, 8192, 1, 7, 0])) : number();
      out.push(line(next() < 0.8 ? String(start) : number(), length));
      start += Number(length) || 0;
    }
    return out.join(next() < 0.1 ? '\r\n' : '\n');
  };

  const names: string[] = [];
  for (let i = 0; i < casesTotal; i += 1) {
    const text = table();
    const name = `f${i}`;
    const response = await client.call({ verb: 'create', name, table: text, readOnly: false });
    if (response.ok) names.push(name);
    else assert.match(response.error.code, /^E[A-Z]+$/, `an error code for ${JSON.stringify(text)}`);
    if (i % 25 === 0) {
      assert.equal(d.process.exitCode, null, `the daemon died on ${JSON.stringify(text)}`);
      const listed = await client.call({ verb: 'ls' });
      assert.equal(listed.ok, true);
    }
  }
  assert.equal(d.process.exitCode, null, 'the daemon is still running');
  const read = await d.cli(['status', 'keep']);
  assert.equal(read.code, 0, read.stderr);
  for (const name of names) {
    const removed = await client.call({ verb: 'remove', name });
    assert.equal(removed.ok, true, `remove ${name}: ${JSON.stringify(removed)}`);
  }
  t.diagnostic(`${names.length} of ${casesTotal} hostile tables were accepted (and removed again)`);
  assert.equal(await d.stop(), 0, d.logs().map((l) => l.msg).join('\n'));
});
