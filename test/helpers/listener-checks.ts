/**
 * Checks for start-up failures of `serve` and `daemon` listeners: a TCP port something else holds, and
 * the one-line message a refused start must print.
 */
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:net';
import type { TestContext } from 'node:test';

/** A TCP port on 127.0.0.1 something else listens on, for the test's duration. */
export async function busyPort(t: Pick<TestContext, 'after'>): Promise<number> {
  const server: Server = createServer((socket) => socket.destroy());
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const address = server.address();
  assert.ok(address !== null && typeof address === 'object');
  return address.port;
}

/** Exactly one non-empty line on stderr, matching `pattern`, and no stack trace. */
export function assertOneLine(stderr: string, pattern: RegExp): void {
  const lines = stderr.split('\n').filter((line) => line !== '');
  assert.equal(lines.length, 1, `one line on stderr, got:\n${stderr}`);
  assert.match(lines[0] ?? '', pattern);
  assert.doesNotMatch(stderr, /\n\s+at /, 'no stack trace');
}
