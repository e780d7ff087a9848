/**
 * The CLI's control socket path: --socket anywhere (hoisted from before the verb), $UMIRROR_SOCKET,
 * /run/umirror for root, a per-user runtime path.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { defaultSocketPath, hoistSocketOption, isDefaultRuntimePath } from '../../src/cli/socket-path.js';

test('hoistSocketOption moves a --socket given before the verb behind it', () => {
  assert.deepEqual(hoistSocketOption(['--socket', '/s', 'status', 'm']), ['status', '--socket', '/s', 'm']);
  assert.deepEqual(hoistSocketOption(['--socket=/s', 'info', 'm']), ['info', '--socket=/s', 'm']);
  assert.deepEqual(hoistSocketOption(['status', 'm', '--socket', '/s']), ['status', 'm', '--socket', '/s']);
  assert.deepEqual(hoistSocketOption(['--socket', '/s']), ['--socket', '/s']);
  assert.deepEqual(hoistSocketOption([]), []);
});

test('defaultSocketPath prefers $UMIRROR_SOCKET, then (for others than root) $XDG_RUNTIME_DIR, then a per-user temp path', () => {
  const user = { uid: 1000, writable: () => true };
  assert.equal(defaultSocketPath({ UMIRROR_SOCKET: '/x/ctl.sock', XDG_RUNTIME_DIR: '/run/user/1' }, user), '/x/ctl.sock');
  assert.equal(defaultSocketPath({ XDG_RUNTIME_DIR: '/run/user/1000' }, user), '/run/user/1000/umirror/control.sock');
  assert.equal(defaultSocketPath({}, user), join(tmpdir(), 'umirror-1000', 'control.sock'));
});

test('defaultSocketPath for root is /run/umirror/control.sock when /run is writable, whatever $XDG_RUNTIME_DIR says', () => {
  const asked: string[] = [];
  const root = { uid: 0, writable: (path: string) => (asked.push(path), true) };
  assert.equal(defaultSocketPath({ XDG_RUNTIME_DIR: '/run/user/0' }, root), '/run/umirror/control.sock');
  assert.deepEqual(asked, ['/run']);
  assert.equal(defaultSocketPath({ UMIRROR_SOCKET: '/x/ctl.sock' }, root), '/x/ctl.sock', '$UMIRROR_SOCKET still wins');
  const readOnlyRun = { uid: 0, writable: () => false };
  assert.equal(defaultSocketPath({ XDG_RUNTIME_DIR: '/run/user/0' }, readOnlyRun), '/run/user/0/umirror/control.sock');
  assert.equal(defaultSocketPath({}, readOnlyRun), join(tmpdir(), 'umirror-0', 'control.sock'));
});

test('defaultSocketPath without arguments answers for this process', () => {
  const path = defaultSocketPath({});
  if (userInfo().uid === 0) assert.match(path, /^(\/run\/umirror\/control\.sock|.*umirror-0\/control\.sock)$/);
  else assert.equal(path, join(tmpdir(), `umirror-${userInfo().uid}`, 'control.sock'));
});

test('isDefaultRuntimePath: root\'s /run/umirror path is a default runtime path (its folder is made 0700), $UMIRROR_SOCKET\'s is not', () => {
  const root = { uid: 0, writable: () => true };
  const user = { uid: 1000, writable: () => true };
  assert.equal(isDefaultRuntimePath('/run/umirror/control.sock', {}, root), true);
  assert.equal(isDefaultRuntimePath('/run/umirror/control.sock', {}, user), false, 'not a user\'s default');
  assert.equal(isDefaultRuntimePath('/run/user/1000/umirror/control.sock', { XDG_RUNTIME_DIR: '/run/user/1000' }, user), true);
  assert.equal(isDefaultRuntimePath(join(tmpdir(), 'umirror-1000', 'control.sock'), {}, user), true);
  assert.equal(isDefaultRuntimePath('/x/ctl.sock', { UMIRROR_SOCKET: '/x/ctl.sock' }, root), false);
});
