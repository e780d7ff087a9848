/**
 * dmsetup parity of the verbs (issue 14): `deps` and `ls --tree` show stacking in dmsetup's formats
 * (libdm/dm-tools/dmsetup.c: `%d dependencies\t:` then ` (dev)` per device, newest first as the
 * kernel lists them, cf. the oracle's `2 dependencies\t: (254, 16) (254, 0)`; the pstree-style tree),
 * `remove A B C` removes several, `remove --force` swaps in an `error` table first, `create NAME FILE`
 * and `create NAME` (stdin) read the table as dmsetup does, `version` prints umirror's and the targets'
 * versions, and an unknown option is one sentence (then dmsetup's "Command failed.") and exit status 1. A real daemon and the real command.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { startDaemonFor } from '../helpers/daemon-process.js';

// ls --tree draws with ASCII unless the locale is UTF-8, as dmsetup does; the children inherit this.
process.env['LC_ALL'] = 'C';

async function image(dir: string, name: string): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, '');
  await truncate(path, 8 * 1024 * 1024);
  return path;
}

test('deps and ls --tree show a mirror whose disk log is another device, in dmsetup formats', async (t) => {
  const { d, ok } = await startDaemonFor(t);
  const [a, b, c] = await Promise.all(['a.img', 'b.img', 'c.img'].map((name) => image(d.dir, name)));
  await ok(['create', 'lg', '--table', `0 2048 linear ${c} 0`]);
  await ok(['create', 'top', '--table', `0 16384 mirror disk 2 lg 1024 2 ${a} 0 ${b} 0`]);
  await ok(['create', 'z', '--table', '0 8 zero']);
  assert.equal(await ok(['deps', 'top']), `3 dependencies\t: (${b}) (${a}) (lg)\n`);
  assert.equal(await ok(['deps']), `lg: 1 dependencies\t: (${c})\ntop: 3 dependencies\t: (${b}) (${a}) (lg)\nz: 0 dependencies\t:\n`);
  assert.equal(await ok(['ls', '--tree']), ['top', ` |- (${b})`, ` |- (${a})`, ' `-lg', `    \`- (${c})`, 'z', ''].join('\n'));
  const missing = await d.cli(['deps', 'nope']);
  assert.deepEqual([missing.code, missing.stderr], [1, 'device-mapper: deps ioctl on nope  failed: No such device or address\nCommand failed.\n']);
});

test('remove A B C removes each; a failure is reported and the others still go; exit 1', async (t) => {
  const { d, ok } = await startDaemonFor(t);
  for (const name of ['a', 'b', 'c']) await ok(['create', name, '--table', '0 8 zero']);
  const result = await d.cli(['remove', 'a', 'nope', 'c']);
  assert.deepEqual([result.code, result.stderr], [1, 'device-mapper: remove ioctl on nope  failed: No such device or address\nCommand failed.\n']);
  assert.equal(await ok(['ls']), 'b\n');
  await ok(['remove', 'b']);
  assert.equal(await ok(['ls']), 'No devices found\n');
});

test('remove --force replaces the table with error and removes; still refused while open, but then all I/O fails', async (t) => {
  const { d, ok } = await startDaemonFor(t);
  const a = await image(d.dir, 'a.img');
  await ok(['create', 'low', '--table', `0 2048 linear ${a} 0`]);
  await ok(['create', 'up', '--table', '0 2048 linear low 0']);
  const busy = await d.cli(['remove', '--force', 'low']);
  assert.equal(busy.code, 1);
  assert.match(busy.stderr, /^device-mapper: remove ioctl on low {2}failed: Device or resource busy$/m);
  // dmsetup prints "START LEN TYPE " and then the (here empty) parameters.
  assert.equal(await ok(['table', 'low']), '0 2048 error \n');
  await ok(['remove', '-f', 'up', 'low']);
  assert.equal(await ok(['ls']), 'No devices found\n');
});

test('create NAME FILE and create NAME (stdin) read the table as dmsetup does; a missing file is its message', async (t) => {
  const { d, ok } = await startDaemonFor(t);
  const file = join(d.dir, 'z.table');
  await writeFile(file, '0 8 zero\n8 8 error\n');
  await ok(['create', 'f', file]);
  assert.equal(await ok(['table', 'f']), '0 8 zero \n8 8 error \n');
  await ok(['create', 's'], '0 16 zero\n');
  assert.equal(await ok(['table', 's']), '0 16 zero \n');
  await ok(['load', 'f', file]);
  const missing = await d.cli(['create', 'm', join(d.dir, 'none.table')]);
  assert.deepEqual([missing.code, missing.stdout, missing.stderr], [1, '', `Couldn't open '${join(d.dir, 'none.table')}' for reading.\nCommand failed.\n`]);
  const both = await d.cli(['create', 'm', file, '--table', '0 8 zero']);
  assert.deepEqual([both.code, both.stderr.split('\n')[0]], [1, 'umirror create: give the table with --table or in TABLE_FILE, not both']);
});

test('version prints umirror\'s version and the target versions (dmsetup version, dmsetup targets); an unknown option is one line (then Command failed.), exit 1', async (t) => {
  const { d, ok } = await startDaemonFor(t);
  const { version } = JSON.parse(await readFile(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
  assert.equal(await ok(['version']), `umirror version:  ${version}\nmirror           v1.14.0\nlinear           v1.4.0\nzero             v1.2.0\nerror            v1.5.0\n`);
  for (const args of [['ls', '--bogus'], ['remove', '-x', 'a'], ['status', '--tree']]) {
    const result = await d.cli(args);
    assert.equal(result.code, 1, args.join(' '));
    assert.equal(result.stderr.split('\n').filter((line) => line !== '').length, 2, result.stderr);
  }
  const unknown = await d.cli(['ls', '--bogus']);
  assert.equal(unknown.stderr, "umirror ls: Unknown option '--bogus' (see 'umirror ls --help')\nCommand failed.\n");
});
