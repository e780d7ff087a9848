/**
 * The CLI's control socket path: --socket anywhere (hoisted from before the verb), $UMIRROR_SOCKET, a
 * per-user runtime path.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { defaultSocketPath, hoistSocketOption } from '../../src/cli/socket-path.js';

test('hoistSocketOption moves a --socket given before the verb behind it', () => {
  assert.deepEqual(hoistSocketOption(['--socket', '/s', 'status', 'm']), ['status', '--socket', '/s', 'm']);
  assert.deepEqual(hoistSocketOption(['--socket=/s', 'info', 'm']), ['info', '--socket=/s', 'm']);
  assert.deepEqual(hoistSocketOption(['status', 'm', '--socket', '/s']), ['status', 'm', '--socket', '/s']);
  assert.deepEqual(hoistSocketOption(['--socket', '/s']), ['--socket', '/s']);
  assert.deepEqual(hoistSocketOption([]), []);
});

test('defaultSocketPath prefers $UMIRROR_SOCKET, then $XDG_RUNTIME_DIR, then a per-user temp path', () => {
  assert.equal(defaultSocketPath({ UMIRROR_SOCKET: '/x/ctl.sock', XDG_RUNTIME_DIR: '/run/user/1' }), '/x/ctl.sock');
  assert.equal(defaultSocketPath({ XDG_RUNTIME_DIR: '/run/user/1' }), '/run/user/1/umirror/control.sock');
  assert.equal(defaultSocketPath({}), join(tmpdir(), `umirror-${userInfo().uid}`, 'control.sock'));
});
