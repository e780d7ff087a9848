/**
 * Issue 9 item 4 through a real `umirror daemon`: the clean bits of a disk log change on disk while the
 * device is suspended, `umirror resume` rereads them and resyncs those regions, and the default leg
 * (a real file that fails with EIO: nbdkit error filter + nbdfuse) then fails a client write issued by
 * qemu-io while copies from it are still in flight (the other leg's writes take 1 s each: nbdkit's
 * delay filter). Before the fix the daemon kept its in-sync flag, moved the default leg and died on
 * the recovery's "default leg changed" assertion; now the default leg stays, the daemon serves on and
 * the device can be removed cleanly.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { open, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { startDaemon, until, type Daemon } from '../helpers/daemon-process.js';
import { startFailingLeg, type FailingLeg } from '../helpers/failing-leg.js';
import { requireTools } from '../helpers/tools.js';

const tools = ['nbdkit', 'nbdfuse', 'fusermount3', 'qemu-io'];
const sizeBytes = 8 * 1024 * 1024;
const regionSectors = 1024;
const regionCount = sizeBytes / 512 / regionSectors;

/** A kernel-format disk log (magic, version 2, nr_regions, clean bits from byte 1024) with every region clean. */
async function cleanLog(path: string): Promise<void> {
  const buffer = Buffer.alloc(1024 * 1024);
  buffer.writeUInt32LE(0x4d695272, 0);
  buffer.writeUInt32LE(2, 4);
  buffer.writeBigUInt64LE(BigInt(regionCount), 8);
  buffer.writeUInt16LE(0xffff, 1024);
  await writeFile(path, buffer);
}

function qemuWrite(uri: string): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('qemu-io', ['-f', 'raw', '-c', 'write -P 0x5a 0 4096', uri], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (output += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (output += c));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, output }));
  });
}

test('umirror daemon keeps the default leg when it fails during the resync a resume found (clean bits changed on disk)', async (t) => {
  if (!requireTools(t, tools)) return;
  const legs: FailingLeg[] = [];
  let daemon: Daemon | undefined;
  t.after(async () => {
    for (const leg of legs) await leg.heal();
    await daemon?.dispose();
    for (const leg of legs) await leg.close();
  });
  const primary = await startFailingLeg({ sizeBytes });
  legs.push(primary);
  const slow = await startFailingLeg({ sizeBytes, delayMs: { write: 1000 } });
  legs.push(slow);
  daemon = await startDaemon();
  const d = daemon;
  const log = join(d.dir, 'log.img');
  await cleanLog(log);
  const ok = async (args: readonly string[]): Promise<string> => {
    const result = await d.cli(args);
    assert.equal(result.code, 0, `umirror ${args.join(' ')}: ${result.stderr}\n${d.logs().map((l) => l.msg).join('\n')}`);
    return result.stdout;
  };
  const socket = join(d.dir, 'm.sock');
  const table = `0 ${sizeBytes / 512} mirror disk 2 ${log} ${regionSectors} 2 ${primary.path} 0 ${slow.path} 0`;
  const uri = (await ok(['create', 'm', '--nbd', `unix:${socket}`, '--table', table])).trim();
  await ok(['wait', 'm', '0']); // In sync at once (the log says every region is clean): event 1.
  assert.match(await ok(['status', 'm']), / 16\/16 1 AA 3 disk /);

  await ok(['suspend', 'm']);
  // Regions 8..15 were marked dirty on disk behind the suspended device's back.
  const handle = await open(log, 'r+');
  await handle.write(Buffer.from([0]), 0, 1, 1025);
  await handle.close();
  await ok(['resume', 'm']);
  // The resume found 8 regions out of sync; copies (1 s each onto the slow leg) may have finished a few.
  const resumed = / (\d+)\/16 1 AA /.exec(await ok(['status', 'm']));
  assert.ok(resumed !== null, 'status after resume');
  const syncAfterResume = Number(resumed[1]);
  assert.ok(syncAfterResume >= 8 && syncAfterResume < 16, `the resume found regions out of sync: ${syncAfterResume}/16`);

  // Copies of regions 8.. are writing to the slow leg now. The default leg fails a client write to
  // region 0 (in sync: it goes to both legs).
  await primary.fail();
  const written = await qemuWrite(uri);
  assert.match(written.output, /write failed: Input\/output error/, 'the default leg failed the write: EIO, not pretended');
  await until('the write error on the default leg (D)', async () => / \d+\/16 1 D[AS] 3 disk /.test(await ok(['status', 'm'])));
  // Let every copy started from the default leg end (each slow write takes 1 s).
  await sleep(3000);
  assert.equal(d.process.exitCode, null, `the daemon died:\n${d.logs().map((l) => l.msg).join('\n')}`);
  const status = await ok(['status', 'm']);
  assert.match(status, / 1 D[AS] 3 disk /, status);
  assert.ok(
    d.logs().every((line) => !line.msg.includes('default leg changed')),
    'no recovery saw its source change',
  );
  await primary.heal();
  await ok(['remove', 'm']);
  assert.equal(await d.stop(), 0);
});
