/**
 * Replays test/scenario/oracle/read-path.sh through MappedDevice + targetBuilder with the dmsetup
 * look-alike and compares it with what Linux 6.1 printed (read-path.out): the read-failure messages of
 * both read paths (an in-sync read issued at map time, mirror_end_io; a read the worker issues,
 * read_callback + end_io), where the default leg moves (only with handle_errors: 3 legs failing reads on
 * l0 and l2 stay RAR without it), and a disk log whose header flush fails at resume ("Failed to write
 * header on dirty region log device", log F). Compared per section: dmsetup's and dd's output,
 * status lines, event numbers, and the raid1 kernel lines (distinct, in order of first appearance) plus
 * the dirty-log lines.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { comparableLines, DmsetupEmulator, localOracleReference, raid1Lines, referenceSections } from '../helpers/dmsetup-emulator.js';

const mib16 = 16 * 1024 * 1024;
const sections = referenceSections(localOracleReference('read-path'));
const rd = (block: number): string => `dd if=/dev/mapper/m of=/dev/null bs=4096 skip=${block} count=1 iflag=direct`;

function sectionOf(prefix: string): string[] {
  for (const [title, lines] of sections) if (title.startsWith(prefix)) return lines;
  throw new Error(`no section ${prefix}`);
}

/** The kernel lines we compare: raid1's (distinct) and dm-log's. */
function kernelLines(lines: readonly string[]): string[] {
  const log = lines.flatMap((line) => /^(?:kmsg: )?(device-mapper: dirty region log: .*)$/.exec(line)?.slice(1) ?? []);
  return [...raid1Lines(lines), ...log];
}

async function replay(prefix: string, steps: (emu: DmsetupEmulator) => Promise<void>): Promise<void> {
  const expected = sectionOf(prefix);
  const emu = new DmsetupEmulator({ disks: [mib16, mib16, mib16, 1024 * 1024] });
  try {
    await steps(emu);
    assert.deepEqual(comparableLines(emu.transcript, []).filter((l) => l !== ''), comparableLines(expected, []).filter((l) => l !== ''), 'transcript');
    assert.deepEqual(kernelLines(emu.kmsg), kernelLines(expected), 'kernel lines');
  } finally {
    await emu.cleanup();
  }
}

async function legs(emu: DmsetupEmulator, count: number): Promise<void> {
  for (let i = 0; i < count; i++) await emu.quiet(`dmsetup create l${i} --table '0 32768 linear /dev/vd${'abc'[i] ?? 'a'} 0'`);
}

function mk(count: number, features = ''): string {
  const legWords = Array.from({ length: count }, (_, i) => `/dev/mapper/l${i} 0`).join(' ');
  return `dmsetup create m --table '0 32768 mirror core 1 1024 ${count} ${legWords}${features === '' ? '' : ` ${features}`}'`;
}

async function teardown(emu: DmsetupEmulator): Promise<void> {
  await emu.quiet('dmsetup remove m');
  for (const l of ['l2', 'l1', 'l0']) if (emu.dm.has(l)) await emu.quiet(`dmsetup remove ${l}`);
}

describe('read-path.out', () => {
  for (const handleErrors of [true, false]) {
    test(`MirrorSet: a worker read of an out-of-sync region fails on the default leg: "Failing I/O" then "Mirror read failed." (${handleErrors ? 'J' : 'K'})`, async () => {
      // Resync frozen behind a suspended l1; l0 -> error; read region 10. Expected: EIO, RA; with
      // handle_errors first "Primary mirror (253:0) failed while out-of-sync"; a second read gets
      // only "Mirror read failed."; once l1 resumes the resync fails reading l0.
      await replay(handleErrors ? 'J. handle_errors' : 'K. no handle_errors', async (emu) => {
        await legs(emu, 2);
        await emu.quiet('dmsetup suspend l1');
        await emu.run(mk(2, handleErrors ? '1 handle_errors' : ''));
        if (handleErrors) await emu.run('dmsetup status m');
        await emu.failDev('l0');
        await emu.run(rd(1280));
        await emu.run('dmsetup status m');
        emu.events('m');
        if (handleErrors) emu.echo('-- a second read of another out-of-sync region (the default leg now has an error)');
        await emu.run(rd(2560));
        await emu.run('dmsetup status m');
        await emu.quiet('dmsetup resume l1');
        await emu.settle(100);
        await teardown(emu);
      });
    });
  }

  for (const handleErrors of [false, true]) {
    test(`MirrorSet: 3 legs, reads failing on l0 and l2 ${handleErrors ? 'move the default leg: RAA (M)' : 'keep the default leg: RAR (L)'}`, async () => {
      // Expected without handle_errors: l0 fails at map time ("Mirror read failed from 253:0"), the
      // retry picks l2 (the leg before the default), which fails in the worker ("Read failure on mirror
      // device 253:2. Trying alternative device."), then l1 serves it: RAR, no event. With it: the
      // default moves to l1 at once: RAA, event 2.
      await replay(handleErrors ? 'M. handle_errors' : 'L. no handle_errors', async (emu) => {
        await legs(emu, 3);
        await emu.run(mk(3, handleErrors ? '1 handle_errors' : ''));
        await emu.waitSync('m');
        await emu.failDev('l0');
        await emu.failDev('l2');
        await emu.run(rd(10));
        await emu.run('dmsetup status m');
        emu.events('m');
        await emu.run(rd(20));
        await emu.run('dmsetup status m');
        if (handleErrors) emu.events('m');
        await teardown(emu);
      });
    });
  }

  for (const handleErrors of [false, true]) {
    test(`MirrorSet: both legs fail an in-sync read: map-time message, then the worker's "Failing I/O" (${handleErrors ? 'O' : 'N'})`, async () => {
      // Expected: EIO, RR; with handle_errors "All sides of mirror have failed." before the worker's
      // line, and event 3.
      await replay(handleErrors ? 'O. handle_errors' : 'N. no handle_errors', async (emu) => {
        await legs(emu, 2);
        await emu.run(mk(2, handleErrors ? '1 handle_errors' : ''));
        await emu.waitSync('m');
        await emu.failDev('l0');
        await emu.failDev('l1');
        await emu.run(rd(10));
        await emu.run('dmsetup status m');
        emu.events('m');
        await emu.run(rd(20));
        await emu.run('dmsetup status m');
        if (handleErrors) emu.events('m');
        await teardown(emu);
      });
    });
  }

  test('DiskDirtyLog: a header flush that fails at resume prints "Failed to write header", log F (P)', async () => {
    // The log device fails only flushes before the mirror is created (the oracle: dm-delay sending
    // flushes to an always-down dm-flakey; here: vdd fails flushes). Expected: the dm-log line, "log
    // resume failed", resync still completes: 32/32 AA, log F, event 2; "log postsuspend failed" at remove.
    await replay('P. disk log', async (emu) => {
      await legs(emu, 2);
      await emu.quiet("dmsetup create fl --table '0 2048 zero'");
      await emu.quiet("dmsetup create lg --table '0 2048 linear /dev/vdd 0'");
      emu.faults.get('vdd')?.setFaults({ errors: [{ ops: ['flush'] }] });
      await emu.run("dmsetup create m --table '0 32768 mirror disk 2 /dev/mapper/lg 1024 2 /dev/mapper/l0 0 /dev/mapper/l1 0 1 handle_errors'");
      await emu.waitSync('m');
      await emu.run('dmsetup status m');
      emu.events('m');
      for (const name of ['m', 'lg', 'fl', 'l1', 'l0']) await emu.quiet(`dmsetup remove ${name}`);
    });
  });
});
