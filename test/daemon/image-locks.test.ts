/**
 * Image locks in the daemon (issue 9 item 10): two devices of one daemon never share a leg or log file
 * (the second `create` is refused with EBUSY naming the holder, and leaves nothing behind), stacking on a
 * device name is still fine, a table reload of the same device reopens its own images, and another
 * process (`umirror serve`) is refused an image the daemon holds.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { startDaemon } from '../helpers/daemon-process.js';
import { umirrorMain } from '../helpers/serve-process.js';

const sectors = 8192;

test('umirror daemon refuses a second device on a leg file another device holds; stacking and reloads are fine', async (t) => {
  const daemon = await startDaemon();
  t.after(() => daemon.dispose().then(() => undefined));
  const a = join(daemon.dir, 'a.img');
  const b = join(daemon.dir, 'b.img');
  for (const path of [a, b]) {
    await writeFile(path, '');
    await truncate(path, sectors * 512);
  }
  const mirror = `0 ${sectors} mirror core 2 64 nosync 2 ${a} 0 ${b} 0`;
  const ok = async (args: string[]): Promise<string> => {
    const r = await daemon.cli(args);
    assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
  await ok(['create', 'm', '--table', mirror]);

  const refused = await daemon.cli(['create', 'other', '--table', `0 ${sectors} linear ${b} 0`]);
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /Device or resource busy/);
  assert.ok(refused.stderr.includes(`umirror: ${b} is in use by device m (lock held)`), refused.stderr);
  assert.doesNotMatch(await ok(['ls']), /other/, 'the refused device does not exist');

  // Stacking names the device, not its files; a reload of m reopens its own images.
  await ok(['create', 'top', '--table', `0 ${sectors} linear m 0`]);
  await ok(['load', 'm', '--table', mirror]);
  await ok(['suspend', 'm']);
  await ok(['resume', 'm']);
  assert.match(await ok(['status', 'm']), /AA/);

  // Another process is refused too.
  const serve = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
    const child = spawn(process.execPath, [umirrorMain, 'serve', '--table', `0 ${sectors} linear ${a} 0`, '--nbd', `unix:${join(daemon.dir, 's.sock')}`], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.once('close', (code) => resolve({ code, stderr }));
  });
  assert.equal(serve.code, 1);
  assert.equal(serve.stderr.trimEnd(), `umirror: ${a} is in use by another process (lock held)`);

  // Once m is gone, its files are free for another device.
  await ok(['remove', 'top']);
  await ok(['remove', 'm']);
  await ok(['create', 'other', '--table', `0 ${sectors} linear ${b} 0`]);
});
