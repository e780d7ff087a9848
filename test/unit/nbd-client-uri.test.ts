/**
 * parseNbdUri against the examples of the NBD URI spec (NetworkBlockDevice/nbd doc/uri.md) and the
 * malformed URIs it must diagnose rather than ignore.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BlockError } from '../../src/errors.js';
import { isNbdUri, parseNbdUri } from '../../src/nbd/client-uri.js';

test('parseNbdUri takes the export name from the path, as the URI spec tabulates', () => {
  const cases: readonly [string, string][] = [
    ['nbd://example.com/disk', 'disk'],
    ['nbd+unix:///disk?socket=sock', 'disk'],
    ['nbd://example.com/', ''],
    ['nbd://example.com', ''],
    ['nbd://example.com//disk', '/disk'],
    ['nbd://example.com/hello%20world', 'hello world'],
  ];
  for (const [uri, exportName] of cases) assert.equal(parseNbdUri(uri).exportName, exportName, uri);
});

test('parseNbdUri reads TCP hosts and ports, with 10809 by default and IPv6 in brackets', () => {
  assert.deepEqual(parseNbdUri('nbd://example.com/disk').endpoint, { kind: 'tcp', host: 'example.com', port: 10809 });
  assert.deepEqual(parseNbdUri('nbd://127.0.0.1:10810/x').endpoint, { kind: 'tcp', host: '127.0.0.1', port: 10810 });
  assert.deepEqual(parseNbdUri('nbd://[::1]:4000/x').endpoint, { kind: 'tcp', host: '::1', port: 4000 });
  const target = parseNbdUri('nbd://h/x');
  assert.equal(target.tls, undefined);
  assert.equal(target.uri, 'nbd://h/x');
});

test('parseNbdUri reads Unix socket paths decoded as RFC 3986 says (a + stays a +)', () => {
  assert.deepEqual(parseNbdUri('nbd+unix:///vol?socket=/run/a+b%20c.sock').endpoint, { kind: 'unix', path: '/run/a+b c.sock' });
  assert.deepEqual(parseNbdUri('nbd+unix:///?socket=relative.sock').endpoint, { kind: 'unix', path: 'relative.sock' });
});

test('parseNbdUri parses TLS schemes and their parameters', () => {
  const target = parseNbdUri('nbds://alice@h:1/x?tls-type=psk&tls-psk-file=/etc/keys.psk&tls-verify-peer=0');
  assert.deepEqual(target.tls, {
    type: 'psk',
    hostname: undefined,
    verifyPeer: false,
    pskFile: '/etc/keys.psk',
    certificatesDir: undefined,
    username: 'alice',
  });
  assert.equal(parseNbdUri('nbds+unix:///x?socket=s').tls?.verifyPeer, true);
});

test('parseNbdUri diagnoses malformed URIs with EINVAL', () => {
  const bad = [
    'not a uri',
    'http://example.com/disk',
    'nbd:///disk',
    'nbd+unix:///disk',
    'nbd+unix:///disk?socket=',
    'nbd+unix://host/disk?socket=s',
    'nbd://h/x?socket=s',
    'nbd://h/x?tls-type=psk',
    'nbd://user@h/x',
    'nbds://h/x?tls-type=kerberos',
    'nbds://h/x?tls-verify-peer=yes',
    'nbds://u:secret@h/x',
    'nbd://h/x?color=blue',
    'nbd+unix:///x?socket=a&socket=b',
    'nbd://h/x#frag',
    'nbd://h:0/x',
    'nbd://h/%zz',
  ];
  for (const uri of bad) {
    assert.throws(() => parseNbdUri(uri), (err: unknown) => err instanceof BlockError && err.code === 'EINVAL', uri);
  }
  assert.throws(() => parseNbdUri('nbd+vsock:///x'), (err: unknown) => err instanceof BlockError && err.code === 'ENOTSUP');
});

test('isNbdUri tells NBD URIs from paths', () => {
  assert.equal(isNbdUri('nbd://h/x'), true);
  assert.equal(isNbdUri('nbds+unix:///x?socket=s'), true);
  assert.equal(isNbdUri('/dev/sdb'), false);
  assert.equal(isNbdUri('leg0.img'), false);
  assert.equal(isNbdUri('nbdname'), false);
});

test('parseNbdUri takes the PSK identity from the user, also without a host (libnbd\'s nbds+unix://alice@/), or from tls-username', () => {
  assert.equal(parseNbdUri('nbds+unix://alice@/vol?socket=/run/s').tls?.username, 'alice');
  assert.equal(parseNbdUri('nbds+unix://alice@/vol?socket=/run/s').exportName, 'vol');
  assert.equal(parseNbdUri('nbds+unix:///?socket=s&tls-username=bob').tls?.username, 'bob');
  assert.equal(parseNbdUri('nbds://al%40ice@h/?tls-username=al@ice').tls?.username, 'al@ice');
  assert.equal(parseNbdUri('nbds://h/').tls?.username, undefined);
  for (const uri of ['nbds://alice@h/?tls-username=bob', 'nbds://h/?tls-username=', 'nbd+unix://alice@/?socket=s', 'nbds+unix://a:pw@/?socket=s', 'nbd://h/?tls-username=bob']) {
    assert.throws(() => parseNbdUri(uri), (err: unknown) => err instanceof BlockError && err.code === 'EINVAL', uri);
  }
});
