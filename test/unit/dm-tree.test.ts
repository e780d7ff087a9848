/** `deps` and `ls --tree` (src/cli/dm-tree.ts): the kernel's dependency order and dmsetup's tree drawing. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { depsLine, tableDependencies, treeLines, utf8Locale } from '../../src/cli/dm-tree.js';

test('tableDependencies lists a table\'s devices newest first, each once, as DM_TABLE_DEPS does', () => {
  assert.deepEqual(tableDependencies('0 32768 mirror core 1 1024 2 /dev/vda 0 /dev/vdb 0'), ['/dev/vdb', '/dev/vda']);
  assert.deepEqual(tableDependencies('0 2048 mirror disk 2 lg 1024 2 a 0 b 0 1 handle_errors\n2048 8 zero\n2056 8 linear a 8\n2064 8 linear c 0'), ['c', 'b', 'a', 'lg']);
  assert.deepEqual(tableDependencies('0 8 error'), []);
  assert.equal(depsLine({ dependencies: ['/dev/vdb', '/dev/vda'] }), '2 dependencies\t: (/dev/vdb) (/dev/vda)');
  assert.equal(depsLine({ dependencies: [], name: 'z' }), 'z: 0 dependencies\t:');
});

test('treeLines draws dmsetup\'s tree: roots in order, branches, verticals and leaves; UTF-8 when asked', () => {
  const devices = new Map<string, string[]>([
    ['low', ['/d/c']],
    ['mid', ['/d/b', 'low']],
    ['top', ['mid', '/d/a']],
    ['solo', []],
  ]);
  assert.deepEqual(treeLines(devices), ['top', ' |-mid', ' |  |- (/d/b)', ' |  `-low', ' |     `- (/d/c)', ' `- (/d/a)', 'solo']);
  assert.deepEqual(treeLines(devices, { utf8: true }).slice(0, 3), ['top', ' \u251c\u2500mid', ' \u2502  \u251c\u2500 (/d/b)']);
  assert.deepEqual(treeLines(new Map()), []);
});

test('utf8Locale reads LC_ALL, then LC_CTYPE, then LANG', () => {
  assert.equal(utf8Locale({ LANG: 'en_US.UTF-8' }), true);
  assert.equal(utf8Locale({ LC_ALL: 'C', LANG: 'en_US.UTF-8' }), false);
  assert.equal(utf8Locale({ LC_CTYPE: 'C.utf8' }), true);
  assert.equal(utf8Locale({}), false);
});
