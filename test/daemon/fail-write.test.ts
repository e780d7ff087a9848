/**
 * The kernel's fail-write scenarios (reference/fail-write.out, sections A and B) end to end: a real
 * `umirror daemon`, the real `umirror` command for every dmsetup step, a leg that fails for real
 * (nbdkit error filter + nbdfuse, test/helpers/failing-leg.ts) and the write issued by a real NBD client
 * (qemu-io) that blocks while the mirror holds it. The status and table lines and the event numbers are
 * compared with the kernel's, with 253:0/253:1 replaced by the leg paths.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { open, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { referenceSections } from '../helpers/dmsetup-emulator.js';
import { startDaemon, until, type CliResult, type Daemon } from '../helpers/daemon-process.js';
import { startFailingLeg, type FailingLeg } from '../helpers/failing-leg.js';
import { requireTools } from '../helpers/tools.js';

const tools = ['nbdkit', 'nbdfuse', 'fusermount3', 'qemu-io'];
const sizeBytes = 16 * 1024 * 1024;
const referenceDir = process.env['UMIRROR_ORACLE_REFERENCE'] ?? resolve('..', 'shared', 'oracle', 'reference');

interface Rig {
  readonly daemon: Daemon;
  readonly failing: FailingLeg;
  readonly good: string;
  readonly uri: string;
  ok(args: readonly string[]): Promise<string>;
  eventNr(): Promise<number>;
}

/** The kernel's answers for one section: mirror/linear lines and event numbers, legs renamed. */
function expected(section: string, names: { good: string; bad: string }): { lines: string[]; events: number[] } | undefined {
  const path = join(referenceDir, 'fail-write.out');
  if (!existsSync(path)) {
    if (process.env['CI'] === 'true') throw new Error(`oracle reference ${path} is missing`);
    return undefined;
  }
  const body = [...referenceSections(readFileSync(path, 'utf8')).entries()].find(([title]) => title.startsWith(section))?.[1];
  assert.ok(body !== undefined, `reference section ${section}`);
  const lines = body
    .filter((line) => /^0 32768 (mirror|linear) /.test(line) && !line.includes('target_name='))
    .map((line) => line.replaceAll('253:0', names.good).replaceAll('253:1', names.bad));
  const events = body.flatMap((line) => /^event_nr\(m\)=(\d+)$/.exec(line)?.slice(1).map(Number) ?? []);
  return { lines, events };
}

/** What one section printed: status/table lines and event numbers, checked against the kernel's. */
function transcript(r: Rig, section: string): {
  line: (verb: 'status' | 'table') => Promise<void>;
  event: () => Promise<void>;
  check: (events: readonly number[]) => string[];
} {
  const lines: string[] = [];
  const events: number[] = [];
  return {
    line: async (verb) => void lines.push(await r.ok([verb, 'm'])),
    event: async () => void events.push(await r.eventNr()),
    check: (expectedEvents) => {
      const got = lines.join('').trimEnd().split('\n');
      const reference = expected(section, { good: r.good, bad: r.failing.path });
      if (reference !== undefined) {
        assert.deepEqual(got, reference.lines);
        assert.deepEqual(events, reference.events);
      }
      assert.deepEqual(events, expectedEvents);
      return got;
    },
  };
}

async function rig(t: TestContext): Promise<Rig> {
  const failing = await startFailingLeg({ sizeBytes });
  let daemon: Daemon | undefined;
  t.after(async () => {
    await failing.heal();
    await daemon?.dispose();
    await failing.close();
  });
  daemon = await startDaemon();
  const d = daemon;
  const good = join(d.dir, 'good.img');
  await writeFile(good, '');
  const handle = await open(good, 'r+');
  await handle.truncate(sizeBytes);
  await handle.close();
  const ok = async (args: readonly string[]): Promise<string> => {
    const result = await d.cli(args);
    assert.equal(result.code, 0, `umirror ${args.join(' ')}: ${result.stderr}`);
    return result.stdout;
  };
  const nbd = `unix:${join(d.dir, 'm.sock')}`;
  const uri = (await ok(['create', 'm', '--nbd', nbd, '--table', `0 32768 mirror core 1 1024 2 ${good} 0 ${failing.path} 0 1 handle_errors`])).trim();
  assert.equal(uri, `nbd+unix:///m?socket=${join(d.dir, 'm.sock')}`);
  const eventNr = async (): Promise<number> => {
    const info: unknown = JSON.parse(await ok(['info', '--json', 'm']));
    assert.ok(typeof info === 'object' && info !== null && 'eventNr' in info && typeof info.eventNr === 'number');
    return info.eventNr;
  };
  // The initial resync raises event 1 (sync complete), as in the kernel.
  await ok(['wait', 'm', '0']);
  return { daemon: d, failing, good, uri, ok, eventNr };
}

/**
 * qemu-io writing 4 KiB of 0x5a at 40960 (region 0), then flushing when `flush` (dd's conv=fsync; dd
 * skips the fsync after a failed write, qemu-io would not, so B writes without it), in the background.
 */
function backgroundWrite(uri: string, options: { flush: boolean }): { done: Promise<CliResult>; settled: () => boolean } {
  const commands = ['-c', 'write -P 0x5a 40960 4096', ...(options.flush ? ['-c', 'flush'] : [])];
  const child = spawn('qemu-io', ['-f', 'raw', ...commands, uri], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  let settled = false;
  child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
  child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  const done = new Promise<CliResult>((resolve) =>
    child.once('close', (code) => {
      settled = true;
      resolve({ code, stdout, stderr });
    }),
  );
  return { done, settled: () => settled };
}

async function heldWriteStatus(r: Rig): Promise<void> {
  await until('the held write (status AD)', async () => / AD 1 core\n$/.test(await r.ok(['status', 'm'])));
}

test('umirror daemon, fail-write A: a held write completes after suspend --noflush, a linear table on the good leg and resume', async (t) => {
  if (!requireTools(t, tools)) return;
  const r = await rig(t);
  const seen = transcript(r, 'A.');
  await seen.line('status');
  await seen.event();
  // `wait m 1` blocks until the leg failure raises event 2.
  const waiter = r.daemon.spawnCli(['wait', '--json', 'm', '1']);
  await r.failing.fail();
  const write = backgroundWrite(r.uri, { flush: true });
  await heldWriteStatus(r);
  await seen.line('status');
  // Once the mirror holds the write (its metric says so) nothing completes it before the suspend.
  await until('the write held by the mirror', async () => {
    const metrics = await (await fetch(r.daemon.metricsUrl)).text();
    return metrics.includes('umirror_mirror_held_writes{device="m",segment="0"} 1\n');
  });
  assert.equal(write.settled(), false, 'the write is still held by the mirror');
  assert.deepEqual(JSON.parse((await waiter.done).stdout), { eventNr: 2 });
  await seen.event();
  const metrics = await (await fetch(r.daemon.metricsUrl)).text();
  const leg = (path: string, kind: string): string => `umirror_leg_errors_total{device="m",segment="0",leg="${path}",kind="${kind}"} `;
  assert.ok(metrics.includes(`${leg(r.failing.path, 'write')}1\n`), 'one write error on the failed leg');
  assert.ok(metrics.includes(`${leg(r.good, 'write')}0\n`));
  assert.ok(metrics.includes('umirror_mirror_held_writes{device="m",segment="0"} 1\n'));
  assert.ok(metrics.includes(`umirror_leg_valid{device="m",segment="0",leg="${r.failing.path}"} 0\n`));
  await r.ok(['suspend', '--noflush', 'm']);
  await seen.line('status');
  await r.ok(['load', 'm', '--table', `0 32768 linear ${r.good} 0`]);
  await r.ok(['resume', 'm']);
  const written = await write.done;
  assert.equal(written.code, 0, written.stderr);
  assert.match(written.stdout, /wrote 4096\/4096 bytes at offset 40960/);
  await seen.line('table');
  await seen.event();
  const data = Buffer.alloc(4096);
  const handle = await open(r.good, 'r');
  await handle.read(data, 0, 4096, 40960);
  await handle.close();
  assert.ok(data.every((byte) => byte === 0x5a), 'the held write reached the good leg');
  const got = seen.check([1, 2, 2]);
  assert.equal(got[1], `0 32768 mirror 2 ${r.good} ${r.failing.path} 31/32 1 AD 1 core`);
});

test('umirror daemon, fail-write B: a plain suspend fails the held write with EIO', async (t) => {
  if (!requireTools(t, tools)) return;
  const r = await rig(t);
  const seen = transcript(r, 'B.');
  await seen.line('status');
  await seen.event();
  await r.failing.fail();
  const write = backgroundWrite(r.uri, { flush: false });
  await heldWriteStatus(r);
  await seen.line('status');
  await r.ok(['wait', 'm', '1']);
  await seen.event();
  await r.ok(['suspend', 'm']);
  // The write is answered with EIO at once (the metrics count it); qemu-io's flush on exit waits for
  // the resume (dd has no such flush), so its output is read after the resume.
  await until('the NBD write answered with an error', async () => {
    const metrics = await (await fetch(r.daemon.metricsUrl)).text();
    return metrics.includes('umirror_nbd_request_errors_total{device="m",op="write"} 1\n');
  });
  assert.equal(write.settled(), false);
  await seen.line('status');
  await r.ok(['resume', 'm']);
  const written = await write.done;
  assert.match(written.stdout, /write failed: Input\/output error/);
  assert.equal(written.code, 1);
  // Resume restarts recovery of region 0, whose copy to the dead leg fails: event 3.
  await r.ok(['wait', 'm', '2']);
  await seen.line('status');
  await seen.event();
  seen.check([1, 2, 3]);
  const kernel = r.daemon.logs().map((line) => line.msg);
  assert.ok(kernel.includes('device-mapper: raid1: Write error during recovery (error = 0x1)'), kernel.join('\n'));
});

test('umirror daemon: SIGTERM with a write held after a leg failure fails the write and exits cleanly', async (t) => {
  // The suspend at shutdown releases the held write with EIO, as a plain suspend does; the daemon must
  // not wait for the NBD request first (it would wait forever).
  if (!requireTools(t, tools)) return;
  const r = await rig(t);
  await r.failing.fail();
  const write = backgroundWrite(r.uri, { flush: false });
  await heldWriteStatus(r);
  assert.equal(await r.daemon.stop(), 0);
  const written = await write.done;
  assert.notEqual(written.code, 0);
  assert.ok(r.daemon.logs().some((line) => line.msg === 'device suspended and closed' && line.device === 'm'));
});
