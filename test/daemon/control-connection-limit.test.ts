/**
 * The control socket at its connection bound (issue 9, item 1): with controlConnectionsMax (64) connections
 * open, every further connection is refused with one EBUSY line and closed. A client that opens one and
 * goes away without reading (a reset, or a close before the EBUSY line was written) must not take the
 * daemon down: before the fix the refused socket had no 'error' handler, and its EPIPE/ECONNRESET was an
 * unhandled 'error' event that killed the process. And a client that sends without reading its answers
 * is paused (before, the daemon buffered every answer: 16 MiB of `ls` requests cost it about 400 MiB).
 * A real `umirror daemon`, the real `umirror` command and qemu-io on the device it serves.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { open, writeFile } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { LineDecoder, parseResponse } from '../../src/control/control-protocol.js';
import { controlConnectionsMax } from '../../src/limits.js';
import { startDaemon } from '../helpers/daemon-process.js';
import { requireTools } from '../helpers/tools.js';

const execFileAsync = promisify(execFile);
const sizeBytes = 4 * 1024 * 1024;

function connected(path: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect(path);
    socket.on('error', () => undefined);
    socket.once('connect', () => resolve(socket));
    socket.once('error', reject);
  });
}

/** The first line the daemon sends on `socket`, parsed; undefined when it closes without one. */
function firstLine(socket: Socket): Promise<ReturnType<typeof parseResponse> | undefined> {
  const decoder = new LineDecoder();
  return new Promise((resolve) => {
    socket.on('data', (chunk: Buffer) => {
      for (const item of decoder.push(chunk)) if (item.kind === 'line') resolve(parseResponse(item.text));
    });
    socket.once('close', () => resolve(undefined));
  });
}

test('control socket: connections over the limit that close unread leave the daemon answering and serving', async (t) => {
  if (!requireTools(t, ['qemu-io'])) return;
  const daemon = await startDaemon();
  const held: Socket[] = [];
  t.after(async () => {
    for (const socket of held) socket.destroy();
    await daemon.dispose();
  });
  const leg = async (name: string): Promise<string> => {
    const path = join(daemon.dir, name);
    await writeFile(path, '');
    const handle = await open(path, 'r+');
    await handle.truncate(sizeBytes);
    await handle.close();
    return path;
  };
  const [a, b] = [await leg('a.img'), await leg('b.img')];
  const nbdPath = join(daemon.dir, 'm.sock');
  const created = await daemon.cli(['create', 'm', '--nbd', `unix:${nbdPath}`, '--table', `0 ${sizeBytes / 512} mirror core 2 1024 nosync 2 ${a} 0 ${b} 0`]);
  assert.equal(created.code, 0, created.stderr);
  const uri = created.stdout.trim();

  for (let i = 0; i < controlConnectionsMax; i++) held.push(await connected(daemon.socketPath));
  // One more that reads: it gets the EBUSY line, then the daemon closes it.
  const reader = await connected(daemon.socketPath);
  const refusal = await firstLine(reader);
  assert.ok(refusal !== undefined && !refusal.ok, JSON.stringify(refusal));
  assert.equal(refusal.ok ? '' : refusal.error.code, 'EBUSY');
  reader.destroy();
  // Ones that go away without reading: closed at once, or half-closed and then closed.
  for (let i = 0; i < 20; i++) {
    const socket = await connected(daemon.socketPath);
    if (i % 2 === 0) socket.end();
    socket.destroy();
  }
  await sleep(300);
  assert.equal(daemon.process.exitCode, null, `the daemon is still running\n${daemon.logs().map((l) => l.msg).join('\n')}`);

  // Free the slots: the daemon answers the CLI again, and still serves its device.
  for (const socket of held.splice(0)) socket.destroy();
  await sleep(200);
  const ls = await daemon.cli(['ls']);
  assert.equal(ls.code, 0, ls.stderr);
  assert.match(ls.stdout, /^m\t/m);
  const status = await daemon.cli(['status', 'm']);
  assert.equal(status.code, 0, status.stderr);
  assert.match(status.stdout, / 8\/8 1 AA 1 core\n$/);
  const { stdout } = await execFileAsync('qemu-io', ['-f', 'raw', '-c', 'write -P 0x3c 0 64k', '-c', 'read -P 0x3c 0 64k', uri]);
  assert.match(stdout, /read 65536\/65536 bytes at offset 0/);
  assert.equal(await daemon.stop(), 0, 'SIGTERM still suspends cleanly');
});

test('control socket: a client that sends requests and never reads its answers is paused, not buffered without bound', async (t) => {
  const daemon = await startDaemon();
  t.after(() => daemon.dispose());
  const flooder = await connected(daemon.socketPath);
  flooder.pause(); // Never read: the answers pile up on the daemon's side unless it stops reading.
  const line = `${JSON.stringify({ id: 1, verb: 'ls' })}\n`;
  const chunk = Buffer.from(line.repeat(Math.floor((256 * 1024) / line.length)));
  const limitBytes = 16 * 1024 * 1024;
  let sentBytes = 0;
  let blocked = false;
  while (sentBytes < limitBytes && !blocked) {
    sentBytes += chunk.length;
    if (flooder.write(chunk)) continue;
    // The daemon drains our writes only while it reads: no drain within 2 s means it stopped reading.
    blocked = await Promise.race([
      new Promise<boolean>((resolve) => flooder.once('drain', () => resolve(false))),
      sleep(2000).then(() => true),
    ]);
  }
  assert.ok(blocked, `the daemon kept reading: ${sentBytes} bytes of requests were taken without their answers being read`);
  flooder.destroy();
  const ls = await daemon.cli(['ls']);
  assert.equal(ls.code, 0, ls.stderr);
  assert.equal(await daemon.stop(), 0);
});
