/**
 * Issue 13's scrub through a real `umirror daemon`: a leg image file is corrupted with dd behind the
 * daemon's back; `umirror scrub vol` names exactly those regions (exit 1, the legs differ), `--repair`
 * rewrites them from the default leg while fio writes and verifies (crc32c) other regions of the device
 * over NBD, and afterwards the leg files are byte-identical, a new scrub finds nothing, and status
 * --json, info and the metrics report the last scrub.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { startDaemon, until, type Daemon } from '../helpers/daemon-process.js';
import { run } from '../helpers/nbd-tools.js';
import { requireTools } from '../helpers/tools.js';

const MiB = 1024 * 1024;
const sizeBytes = 16 * MiB;
const regionSectors = 1024;
const regionBytes = regionSectors * 512;
const regionCount = sizeBytes / regionBytes;
const corrupted = [1, 14, 15];

test('umirror scrub names the regions dd corrupted on a leg file; --repair fixes them under a verifying fio workload', async (t) => {
  if (!requireTools(t, ['dd', 'fio', 'qemu-io'])) return;
  let daemon: Daemon | undefined;
  t.after(async () => {
    await daemon?.dispose();
  });
  daemon = await startDaemon();
  const d = daemon;
  const cli = async (args: readonly string[], expected = 0): Promise<string> => {
    const result = await d.cli(args, { timeoutMs: 120_000 });
    assert.equal(result.code, expected, `umirror ${args.join(' ')}: ${result.stdout}\n${result.stderr}`);
    return result.stdout;
  };
  const legs = [join(d.dir, 'leg0.img'), join(d.dir, 'leg1.img')];
  for (const leg of legs) {
    await writeFile(leg, '');
    await truncate(leg, sizeBytes);
  }
  const log = join(d.dir, 'log.img');
  await writeFile(log, '');
  await truncate(log, MiB);
  const socket = join(d.dir, 'vol.sock');
  const table = `0 ${sizeBytes / 512} mirror disk 2 ${log} ${regionSectors} 2 ${legs[0]} 0 ${legs[1]} 0 1 handle_errors`;
  const uri = (await cli(['create', 'vol', '--nbd', `unix:${socket}`, '--table', table])).trim();
  await until('vol in sync', async () => (await d.cli(['status', 'vol'])).stdout.includes(` ${regionCount}/${regionCount} `));
  const filled = await run('qemu-io', ['-f', 'raw', '-c', `write -P 0x6d 0 ${sizeBytes}`, uri], { timeoutMs: 60_000 });
  assert.equal(filled.code, 0, filled.stderr);

  // Behind the daemon's back: one sector of leg1 in each corrupted region.
  for (const region of corrupted) {
    const seek = (region * regionBytes) / 512 + 7;
    const dd = await run('dd', ['if=/dev/urandom', `of=${legs[1]}`, 'bs=512', `seek=${seek}`, 'count=1', 'conv=notrunc'], { timeoutMs: 30_000 });
    assert.equal(dd.code, 0, dd.stderr);
  }

  const check = await cli(['scrub', 'vol'], 1);
  assert.match(check, new RegExp(`^scrub vol: 3 of ${regionCount} regions differ \\(regions 1, 14, 15\\)$`, 'm'));
  assert.match(check, /^ {2}region 14: \S*leg1\.img outvoted$/m);
  const json = JSON.parse(await cli(['scrub', 'vol', '--json'], 1)) as { mismatchedRegions: number; segments: { regions: { region: number }[] }[] };
  assert.equal(json.mismatchedRegions, 3);
  assert.deepEqual(json.segments[0]?.regions.map((r) => r.region), corrupted);

  // Repair, throttled so that it overlaps a fio job writing and verifying regions 4..11 meanwhile.
  const repair = d.cli(['scrub', 'vol', '--repair', '--rate', '4'], { timeoutMs: 120_000 });
  const fio = await run(
    'fio',
    [
      '--name=verify',
      '--ioengine=nbd',
      `--uri=${uri}`,
      '--rw=randwrite',
      '--bs=4k',
      `--offset=${4 * regionBytes}`,
      `--size=${8 * regionBytes}`,
      '--iodepth=8',
      '--verify=crc32c',
      '--do_verify=1',
      '--verify_fatal=1',
      '--verify_state_save=0',
      '--output-format=json',
    ],
    { timeoutMs: 120_000 },
  );
  assert.equal(fio.code, 0, fio.stderr);
  const report = JSON.parse(fio.stdout.slice(fio.stdout.indexOf('{'))) as { jobs: { error: number }[] };
  assert.equal(report.jobs[0]?.error, 0);
  const repaired = await repair;
  assert.equal(repaired.code, 0, `${repaired.stdout}\n${repaired.stderr}`);
  assert.match(repaired.stdout, new RegExp(`^scrub vol: 3 of ${regionCount} regions differ \\(regions 1, 14, 15\\), 3 repaired$`, 'm'));
  assert.match(repaired.stderr, /scrub vol: repair = /, 'a progress line while it ran');

  const status = JSON.parse(await cli(['status', 'vol', '--json'])) as {
    mirrors: { scrub: { last: { mismatchedRegions: number; repairedRegions: number } | null }; resync: { mode: string } }[];
  };
  assert.equal(status.mirrors[0]?.scrub.last?.repairedRegions, 3);
  assert.match(await cli(['info', 'vol']), /^Last scrub: +\S+: 3 of 32 regions differ, 3 repaired$/m);
  const metrics = await (await fetch(d.metricsUrl)).text();
  assert.match(metrics, /^umirror_scrub_mismatched_regions\{device="vol",segment="0"\} 3$/m);
  assert.match(metrics, /^umirror_scrub_last_completed_timestamp_seconds\{device="vol",segment="0"\} \d+(\.\d+)?$/m);

  assert.match(await cli(['scrub', 'vol']), new RegExp(`^scrub vol: 0 of ${regionCount} regions differ$`, 'm'));
  await cli(['suspend', 'vol']);
  const [first, second] = await Promise.all(legs.map((leg) => readFile(leg)));
  assert.ok(first !== undefined && second !== undefined && first.equals(second), 'the leg files are byte-identical');
  await cli(['resume', 'vol']);
  assert.ok(d.logs().some((line) => line.msg === 'scrub finished: legs differ'), 'the daemon logged the scrub');
});
