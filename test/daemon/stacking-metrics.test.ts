/**
 * Operating the daemon end to end: stacking (a mirror whose disk log lives on another mirror device of
 * the same daemon), the Prometheus endpoint scraped over HTTP with exact values, resync progress
 * (`wait --progress`, `status --watch`), and SIGTERM leaving every disk log clean. A real daemon, the
 * real `umirror` command and qemu-io as the NBD client.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { startDaemonFor, until } from '../helpers/daemon-process.js';
import { sparseImage } from '../helpers/temp-files.js';
import { requireTools } from '../helpers/tools.js';

const execFileAsync = promisify(execFile);
const MiB = 1024 * 1024;

async function qemuIo(uri: string, commands: readonly string[]): Promise<string> {
  const { stdout } = await execFileAsync('qemu-io', ['-f', 'raw', ...commands.flatMap((c) => ['-c', c]), uri]);
  return stdout;
}

/** One sample of a scrape: `name{labels} value`. */
function sample(metrics: string, series: string): number {
  const line = metrics.split('\n').find((l) => l.startsWith(`${series} `));
  assert.ok(line !== undefined, `metrics have ${series}`);
  return Number(line.slice(series.length + 1));
}

test('stacking: a disk log on another mirror device; remove refused while stacked; SIGTERM leaves both logs clean', async (t) => {
  if (!requireTools(t, ['qemu-io'])) return;
  const { d, ok } = await startDaemonFor(t);
  const [c, e, a, b] = await Promise.all([
    sparseImage(d.dir, 'c.img', MiB),
    sparseImage(d.dir, 'e.img', MiB),
    sparseImage(d.dir, 'a.img', 16 * MiB),
    sparseImage(d.dir, 'b.img', 16 * MiB),
  ]);
  // lg: a small mirror that holds top's disk log; top: 32 regions of 512 KiB, log on lg.
  await ok(['create', 'lg', '--table', `0 2048 mirror core 1 256 2 ${c} 0 ${e} 0 1 handle_errors`]);
  const uri = (await ok(['create', 'top', '--nbd', `unix:${join(d.dir, 'top.sock')}`, '--table', `0 32768 mirror disk 2 lg 1024 2 ${a} 0 ${b} 0 1 handle_errors`])).trim();
  await ok(['wait', '--progress', 'top']);
  assert.equal(await ok(['status', 'top']), `0 32768 mirror 2 ${a} ${b} 32/32 1 AA 3 disk lg A\n`);
  assert.match(await ok(['info', 'lg']), /^Open count: {8}1$/m);
  const busy = await d.cli(['remove', 'lg']);
  assert.equal(busy.code, 1);
  assert.match(busy.stderr, /Device or resource busy/);

  // Writes to top dirty its log on lg: top's worker waits on lg's worker, never on itself.
  const written = await qemuIo(uri, ['write -P 0x5a 0 4M', 'write -P 0xa5 8M 1M', 'flush', 'read -P 0x5a 0 4M', 'read -P 0xa5 8M 1M']);
  assert.doesNotMatch(written, /failed|Pattern verification/);
  const metrics = await (await fetch(d.metricsUrl)).text();
  assert.ok(sample(metrics, 'umirror_log_flushes_total{device="top",segment="0"}') >= 1);
  // At least the marks (a 512-byte log block each); the clears wait for the daemon's lazy clean (1 s).
  assert.ok(sample(metrics, 'umirror_log_bytes_written_total{device="top",segment="0"}') >= 512);
  assert.ok(sample(metrics, `umirror_leg_write_bytes_total{device="lg",segment="0",leg="${c}"}`) >= 512, 'the log writes went through lg to its legs');
  assert.equal(sample(metrics, 'umirror_device_open_count{device="lg"}'), 1);

  assert.equal(await d.stop(), 0);
  const closed = d.logs().filter((line) => line.msg === 'device suspended and closed').map((line) => line.device);
  assert.deepEqual(closed, ['top', 'lg'], 'the upper device closes first');
  for (const leg of [c, e]) {
    const log = await readFile(leg);
    assert.equal(log.readUInt32LE(0), 0x4d695272, `${leg} holds top's disk log header`);
    assert.equal(log.readUInt32LE(4), 2);
    assert.equal(Number(log.readBigUInt64LE(8)), 32);
    assert.deepEqual([...log.subarray(1024, 1032)], [0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0], 'every region clean after SIGTERM');
  }
  assert.deepEqual(await readFile(a), await readFile(b), 'the legs of top are identical');
});

test('metrics: NBD requests, latency histogram, mirror and leg counters and connections, scraped over HTTP', async (t) => {
  if (!requireTools(t, ['qemu-io'])) return;
  const { d, ok } = await startDaemonFor(t);
  const [a, b] = await Promise.all([sparseImage(d.dir, 'a.img', 16 * MiB), sparseImage(d.dir, 'b.img', 16 * MiB)]);
  const uri = (await ok(['create', 'mm', '--nbd', `unix:${join(d.dir, 'mm.sock')}`, '--table', `0 32768 mirror core 2 1024 nosync 2 ${a} 0 ${b} 0`])).trim();
  await qemuIo(uri, ['write -P 0x11 1M 1M']);
  const scrape = await fetch(d.metricsUrl);
  assert.equal(scrape.status, 200);
  assert.equal(scrape.headers.get('content-type'), 'text/plain; version=0.0.4; charset=utf-8');
  const m = await scrape.text();
  const dev = 'device="mm"';
  const seg = `${dev},segment="0"`;
  assert.equal(sample(m, 'umirror_devices'), 1);
  assert.equal(sample(m, `umirror_nbd_requests_total{${dev},op="write"}`), 1);
  assert.equal(sample(m, `umirror_nbd_request_bytes_total{${dev},op="write"}`), MiB);
  assert.equal(sample(m, `umirror_nbd_request_errors_total{${dev},op="write"}`), 0);
  assert.equal(sample(m, `umirror_nbd_request_duration_seconds_count{${dev},op="write"}`), 1);
  assert.equal(sample(m, `umirror_nbd_request_duration_seconds_bucket{${dev},op="write",le="+Inf"}`), 1);
  assert.ok(sample(m, `umirror_nbd_request_duration_seconds_sum{${dev},op="write"}`) > 0);
  assert.equal(sample(m, `umirror_mirror_writes_total{${seg}}`), 1);
  assert.equal(sample(m, `umirror_mirror_write_bytes_total{${seg}}`), MiB);
  assert.equal(sample(m, `umirror_mirror_regions{${seg}}`), 32);
  assert.equal(sample(m, `umirror_mirror_regions_in_sync{${seg}}`), 32);
  assert.ok(!m.includes('_bytes_per_second'), 'no precomputed rate: rate() of the _total counters gives it');
  for (const leg of [a, b]) {
    // 1 MiB over 512 KiB regions: two writes per leg.
    assert.equal(sample(m, `umirror_leg_writes_total{${seg},leg="${leg}"}`), 2);
    assert.equal(sample(m, `umirror_leg_write_bytes_total{${seg},leg="${leg}"}`), MiB);
    assert.equal(sample(m, `umirror_leg_errors_total{${seg},leg="${leg}",kind="write"}`), 0);
    assert.equal(sample(m, `umirror_leg_valid{${seg},leg="${leg}"}`), 1);
  }
  assert.equal(sample(m, `umirror_log_flushes_total{${seg}}`), 0, 'a core log never touches a device');
  assert.equal(sample(m, `umirror_nbd_connections{${dev}}`), 0);
  const { connect } = await import('node:net');
  const client = connect(join(d.dir, 'mm.sock'));
  client.on('error', () => undefined);
  await until('the NBD connection counted', async () => sample(await (await fetch(d.metricsUrl)).text(), `umirror_nbd_connections{${dev}}`) === 1);
  client.destroy();
  await until('the NBD connection gone', async () => sample(await (await fetch(d.metricsUrl)).text(), `umirror_nbd_connections{${dev}}`) === 0);
  assert.equal((await fetch(new URL('/other', d.metricsUrl))).status, 404);
});

test('progress: wait --progress draws a resync bar to 100%; status --watch prints the status line', async (t) => {
  const { d, ok } = await startDaemonFor(t);
  const [a, b] = await Promise.all([sparseImage(d.dir, 'a.img', 64 * MiB), sparseImage(d.dir, 'b.img', 64 * MiB)]);
  await ok(['create', 'r', '--table', `0 131072 mirror core 1 1024 2 ${a} 0 ${b} 0`]);
  const progress = await d.cli(['wait', '--progress', 'r']);
  assert.equal(progress.code, 0, progress.stderr);
  assert.match(progress.stderr.trimEnd().split('\n').at(-1) ?? '', /^r: in sync \(128\/128 regions\)$/);
  const json = await d.cli(['wait', '--progress', '--json', 'r']);
  assert.deepEqual(JSON.parse(json.stdout.trim()), { syncRegions: 128, regionCount: 128 });
  const watch = d.spawnCli(['status', '--watch', 'r']);
  let seen = '';
  watch.child.stdout?.on('data', (chunk: string) => (seen += chunk));
  await until('status --watch output', () => seen.includes('\n'));
  watch.child.kill('SIGTERM');
  await watch.done;
  assert.equal(seen.split('\n')[0], `0 131072 mirror 2 ${a} ${b} 128/128 1 AA 1 core`);
});
