/**
 * `umirror daemon --direct-io` on ordinary image files of a real file system (issue 9 item 12): the legs
 * are opened O_DIRECT, the initial resync copies leg 0 onto leg 1, unaligned writes of a real NBD client
 * (qemu-io) complete, the health stays `AA`, and the legs end byte-identical. Before aligned bounce
 * buffers every recovery write failed with EINVAL (status `AS`) and the first client write hung, held.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { startDaemon, until } from '../helpers/daemon-process.js';
import { makeDirectIoDir } from '../helpers/direct-io-dir.js';
import { requireTools, runOk } from '../helpers/nbd-tools.js';

const sizeBytes = 8 * 1024 * 1024;
const sectors = sizeBytes / 512;

test('umirror daemon --direct-io resyncs image files and serves unaligned client writes; legs end identical', async (t) => {
  if (!requireTools(t, 'qemu-io')) return;
  const dir = await makeDirectIoDir('umirror-direct-daemon-');
  t.after(() => rm(dir, { recursive: true, force: true }));
  const leg0 = join(dir, 'leg0.img');
  const leg1 = join(dir, 'leg1.img');
  const data = randomBytes(sizeBytes);
  await writeFile(leg0, data);
  await writeFile(leg1, '');
  await truncate(leg1, sizeBytes);

  const daemon = await startDaemon({ args: ['--direct-io'] });
  t.after(() => daemon.dispose().then(() => undefined));
  const socket = join(dir, 'm.sock');
  // A core log without nosync: every region starts out of sync and is copied from leg 0.
  const table = `0 ${sectors} mirror core 1 64 2 ${leg0} 0 ${leg1} 0 1 handle_errors`;
  const created = await daemon.cli(['create', 'm', '--table', table, '--nbd', `unix:${socket}`]);
  assert.equal(created.code, 0, created.stderr);
  const regions = sectors / 64;
  let status = '';
  await until('the resync to finish', async () => {
    status = (await daemon.cli(['status', 'm'])).stdout;
    assert.doesNotMatch(status, / 1 A[DSFR] /, `a leg failed during the resync: ${status}`);
    return status.includes(` ${regions}/${regions} 1 AA `);
  }, 60_000);

  const uri = `nbd+unix:///m?socket=${socket}`;
  const writes: [number, number, number][] = [[1000, 5000, 0x33], [65_536, 131_072, 0x44], [sizeBytes - 700, 700, 0x55], [10_241, 1, 0x66]];
  for (const [offset, length, byte] of writes) {
    data.fill(byte, offset, offset + length);
    await runOk('qemu-io', ['-f', 'raw', '-c', `write -P ${byte} ${offset} ${length}`, uri], { timeoutMs: 30_000 });
  }
  for (const [offset, length, byte] of writes) {
    await runOk('qemu-io', ['-f', 'raw', '-c', `read -P ${byte} ${offset} ${length}`, uri], { timeoutMs: 30_000 });
  }
  assert.match((await daemon.cli(['status', 'm'])).stdout, new RegExp(` ${regions}/${regions} 1 AA `));
  const removed = await daemon.cli(['remove', 'm']);
  assert.equal(removed.code, 0, removed.stderr);

  const got0 = await readFile(leg0);
  const got1 = await readFile(leg1);
  assert.ok(got0.equals(data), 'leg 0 holds the data and every client write');
  assert.ok(got1.equals(got0), 'the legs are identical');
});
