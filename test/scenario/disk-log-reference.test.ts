/**
 * Replays the oracle's disk-log scenarios (../shared/oracle/scenarios: disklog.sh, disklog-resize.sh,
 * fail-disklog-log.sh, fail-disklog-leg.sh) through MappedDevice + targetBuilder with the dmsetup
 * look-alike and compares with what the real kernel printed (reference/*.out): table and status lines,
 * log health letters, events, dd results, the raid1 kernel lines and the exact bytes of the log device
 * (guest hexdumps and the host's xxd after the VM exited). kernel-reference.test.ts does the same for
 * the core-log scenarios; DiskDirtyLog's own byte tests are in test/unit/disk-dirty-log.test.ts.
 *
 * Unlike kernel-reference.test.ts a scenario here runs in one emulator from start to end: its sections
 * share the log device, as in the VM. Not emulated: the dm-delay + dm-flakey stacks that fail only
 * flushes (sections M and S) are replaced by a flush fault on the disk underneath, and their commands
 * are left out of the comparison; dirty-log warnings ("Failed to read header ...") are checked in the
 * direct tests at the end, since the emulator's target builder does not route them.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { MemoryBlockDevice } from '../../src/block/memory-block-device.js';
import { createMirrorSet } from '../../src/mirror/create-mirror-set.js';
import { comparableLines, DmsetupEmulator, raid1Lines, referenceSections } from '../helpers/dmsetup-emulator.js';
import { shared } from '../helpers/mirror-fixture.js';
import { Journal, ProbeDevice } from '../helpers/probe-device.js';

const referenceDir = process.env['UMIRROR_ORACLE_REFERENCE'] ?? resolve('..', 'shared', 'oracle', 'reference');
const mib = 1024 * 1024;
/** Commands of the flush-only failure stacks (emulated by a flush fault instead). */
const skipCommands = [/^dmsetup create fl /, /^dmsetup load \S+ --table '0 \d+ delay /, /^dmsetup table l1$/];

function referenceText(name: string): string | undefined {
  const path = `${referenceDir}/${name}.out`;
  if (!existsSync(path)) {
    if (process.env['CI'] === 'true') throw new Error(`oracle reference ${path} is missing`);
    console.log(`skipping kernel reference ${name}: ${path} not found`);
    return undefined;
  }
  return readFileSync(path, 'utf8');
}

/** Runs a whole scenario in one emulator, marking sections, then compares section by section. */
class ScenarioRun {
  readonly emu: DmsetupEmulator;
  readonly #marks: { title: string; transcriptAt: number; kmsgAt: number }[] = [];

  constructor(disks: readonly number[]) {
    this.emu = new DmsetupEmulator({ disks });
  }

  section(title: string): void {
    this.#marks.push({ title, transcriptAt: this.emu.transcript.length, kmsgAt: this.emu.kmsg.length });
  }

  /** Compares every section we ran with the reference's section of the same title. */
  compare(reference: Map<string, string[]>): void {
    const ends = [...this.#marks.slice(1), { transcriptAt: this.emu.transcript.length, kmsgAt: this.emu.kmsg.length }];
    this.#marks.forEach((mark, i) => {
      const end = ends[i];
      assert.ok(end !== undefined);
      const expected = reference.get(mark.title);
      assert.ok(expected !== undefined, `reference has no section "${mark.title}"`);
      const ours = comparableLines(this.emu.transcript.slice(mark.transcriptAt, end.transcriptAt), skipCommands).filter((l) => l !== '');
      const theirs = comparableLines(expected, skipCommands).filter((l) => l !== '');
      assert.deepEqual(ours, theirs, `section "${mark.title}" transcript`);
      assert.deepEqual(raid1Lines(this.emu.kmsg.slice(mark.kmsgAt, end.kmsgAt)), raid1Lines(expected), `section "${mark.title}" raid1 lines`);
    });
  }

  /** Compares the host's `xxd -l 4096 DISK.img` sections. */
  async compareHostDumps(reference: Map<string, string[]>, disks: readonly string[]): Promise<void> {
    for (const disk of disks) {
      const expected = reference.get(`host: xxd -l 4096 ${disk}.img (after the VM exited)`);
      assert.ok(expected !== undefined, `reference has no host dump of ${disk}`);
      assert.deepEqual(await this.emu.hostDump(disk, 4096), expected, `host dump of ${disk}`);
    }
  }
}

const disklog = referenceText('disklog');
const resize = referenceText('disklog-resize');
const failLog = referenceText('fail-disklog-log');
const failLeg = referenceText('fail-disklog-leg');

describe('kernel reference: disklog.out', { skip: disklog === undefined ? 'no oracle reference' : false }, () => {
  test('MappedDevice mirror with a disk log: status, table and log bytes of disklog.sh, section by section', async () => {
    // Sections 1-7 on one set of disks (vda, vdb legs; vdc log A, vdd log B, vde log C). Expected: the
    // kernel's lines and log bytes: header at resume, 0/32 frozen, ffff ffff after resync, efff ffff with
    // the write to region 4 held, sync forcing a fresh log, 235 regions (29 x ff, 07), nosync all clean,
    // and the host's dumps of vdc, vdd and vde after everything.
    const run = new ScenarioRun([16 * mib, 16 * mib, mib, mib, mib]);
    const emu = run.emu;
    const A = "0 32768 mirror disk 2 /dev/vdc 1024 2 /dev/vda 0 /dev/mapper/g 0 1 handle_errors";
    try {
      run.section('1. fresh (all-zero) log device vdc');
      await emu.hexdump('vdc', 2048);

      run.section('2. log A: create; status immediately (resync frozen by a gate on leg 2); resync');
      await emu.gate('g', '/dev/vdb');
      await emu.run(`dmsetup create m --table '${A}'`);
      await emu.run('dmsetup status m');
      await emu.run('dmsetup table m');
      emu.events('m');
      emu.echo('-- log A while frozen (header written at resume, no region clean yet):');
      await emu.hexdump('vdc', 2048);
      await emu.run('dmsetup resume g');
      await emu.waitSync('m');
      await emu.run('dmsetup status m');
      emu.events('m');
      emu.echo('-- log A after resync:');
      await emu.hexdump('vdc', 2048);
      await emu.run('dmsetup remove m');
      await emu.run('dmsetup remove g');

      run.section("3. log A: a write held in flight (leg 2 = linear 'g', suspended) -> region 4 dirty in the log");
      await emu.run("dmsetup create g --table '0 32768 linear /dev/vdb 0'");
      await emu.run(`dmsetup create m --table '${A}'`);
      await emu.run('dmsetup status m');
      await emu.run('dmsetup suspend g');
      const held = 'dd if=/dev/zero of=/dev/mapper/m bs=512 seek=5000 count=8 conv=fsync';
      emu.echo(`$ ${held} &`);
      const dd = emu.startDd(held);
      await emu.settle(100);
      await emu.run('dmsetup status m');
      emu.echo('-- log A with the write to region 4 in flight:');
      await emu.hexdump('vdc', 2048);
      await emu.run('dmsetup resume g');
      emu.echo((await dd.done).at(-1) ?? ''); // dd ran with 2>/dev/null: only its exit status shows.
      await emu.settle(100);
      await emu.run('dmsetup status m');
      emu.echo('-- log A after the write completed (+1 s):');
      await emu.hexdump('vdc', 2048);
      await emu.run('dmsetup remove m');
      await emu.run('dmsetup remove g');

      run.section("4. log A: re-create with 'disk 3 /dev/vdc 1024 sync' (forces a fresh log)");
      await emu.gate('g', '/dev/vdb');
      await emu.run("dmsetup create m --table '0 32768 mirror disk 3 /dev/vdc 1024 sync 2 /dev/vda 0 /dev/mapper/g 0 1 handle_errors'");
      await emu.run('dmsetup status m');
      await emu.run('dmsetup table m');
      await emu.hexdump('vdc', 2048);
      await emu.run('dmsetup resume g');
      await emu.waitSync('m');
      await emu.run('dmsetup status m');
      await emu.run('dmsetup remove m');
      await emu.run('dmsetup remove g');

      run.section('5. log A: the plain table on /dev/vda + /dev/vdb (log already in sync): write, suspend, resume, remove');
      await emu.run("dmsetup create m --table '0 32768 mirror disk 2 /dev/vdc 1024 2 /dev/vda 0 /dev/vdb 0 1 handle_errors'");
      await emu.run('dmsetup status m');
      await emu.run('dmsetup table m');
      await emu.run('dmsetup measure m');
      emu.events('m');
      await emu.run('dd if=/dev/zero of=/dev/mapper/m bs=512 seek=5000 count=8 conv=fsync');
      await emu.settle(100);
      await emu.run('dmsetup status m');
      emu.echo('-- log A after the write completed (+1 s):');
      await emu.hexdump('vdc', 2048);
      await emu.run('dmsetup suspend m');
      await emu.run('dmsetup status m');
      await emu.run('dmsetup info m');
      emu.echo('-- log A while suspended:');
      await emu.hexdump('vdc', 2048);
      await emu.run('dmsetup resume m');
      await emu.run('dmsetup status m');
      emu.events('m');
      await emu.run('dmsetup remove m');
      emu.echo('-- log A after remove (compare with the host dump of vdc.img below):');
      await emu.hexdump('vdc', 2048);

      run.section('6. log B: region 128, length 30000 (235 regions), default sync');
      await emu.gate('g', '/dev/vdb');
      await emu.run("dmsetup create m --table '0 30000 mirror disk 2 /dev/vdd 128 2 /dev/vda 0 /dev/mapper/g 0'");
      await emu.run('dmsetup status m');
      await emu.run('dmsetup table m');
      await emu.hexdump('vdd', 2048);
      await emu.run('dmsetup resume g');
      await emu.waitSync('m');
      await emu.run('dmsetup status m');
      await emu.run('dmsetup remove m');
      await emu.run('dmsetup remove g');
      emu.echo('-- log B after resync + remove:');
      await emu.hexdump('vdd', 2048);

      run.section('7. log C: disk 3 /dev/vde 1024 nosync, length 32768');
      await emu.run("dmsetup create m --table '0 32768 mirror disk 3 /dev/vde 1024 nosync 2 /dev/vda 0 /dev/vdb 0'");
      await emu.run('dmsetup status m');
      await emu.run('dmsetup table m');
      await emu.run('dmsetup measure m');
      await emu.run('dmsetup remove m');
      await emu.hexdump('vde', 2048);

      const reference = referenceSections(disklog ?? '');
      run.compare(reference);
      await run.compareHostDumps(reference, ['vdc', 'vdd', 'vde']);
    } finally {
      await emu.cleanup();
    }
  });
});

describe('kernel reference: disklog-resize.out', { skip: resize === undefined ? 'no oracle reference' : false }, () => {
  test('MappedDevice mirror reusing a disk log: grown, shrunk, new region size, bad magic, version 1 and 3 (disklog-resize.out)', async () => {
    // One log on vdc through every section. Expected: 0/16; grown 16/32 (ffff 0000); shrunk 20/20
    // (ffff 0f00); region 512: 20/40; bad magic: fresh (0/40); version 1 accepted and rewritten as 2
    // (40/40); version 3 rejected (0/40, log D, event 1); the host dump of the final fresh sync log.
    const run = new ScenarioRun([16 * mib, 16 * mib, mib]);
    const emu = run.emu;
    const mk = async (len: number, region: number): Promise<void> => {
      await emu.gate('g', '/dev/vdb');
      await emu.run(`dmsetup create m --table '0 ${len} mirror disk 2 /dev/vdc ${region} 2 /dev/vda 0 /dev/mapper/g 0'`);
      await emu.run('dmsetup status m');
    };
    const finish = async (): Promise<void> => {
      await emu.quiet('dmsetup resume g');
      await emu.waitSync('m');
      await emu.run('dmsetup status m');
      await emu.quiet('dmsetup remove m');
      await emu.quiet('dmsetup remove g');
      await emu.hexdump('vdc', 2048);
    };
    try {
      run.section('length 16384 (16 regions), fresh log');
      await mk(16384, 1024);
      await emu.hexdump('vdc', 2048);
      await finish();
      run.section('grown to 32768 (32 regions): regions 16..31 start out of sync');
      await mk(32768, 1024);
      await emu.hexdump('vdc', 2048);
      await finish();
      run.section('shrunk to 20000 (20 regions)');
      await mk(20000, 1024);
      await emu.hexdump('vdc', 2048);
      await finish();
      run.section('same log, region size 512 with length 20000 (40 regions; header said 20)');
      await mk(20000, 512);
      await emu.hexdump('vdc', 2048);
      await finish();
      run.section("bad magic: overwrite bytes 0-3 with 'XXXX' -> treated as a fresh log");
      await emu.poke('vdc', 0, Buffer.from('XXXX'));
      await emu.hexdump('vdc', 64);
      await mk(20000, 512);
      await finish();
      run.section('header version 1 (bytes 4-7 = 01 00 00 00): accepted on little-endian, rewritten as 2');
      await emu.poke('vdc', 4, Buffer.from([1]));
      await emu.hexdump('vdc', 64);
      await mk(20000, 512);
      await emu.hexdump('vdc', 64);
      await finish();
      run.section('header version 3 -> rejected');
      await emu.poke('vdc', 4, Buffer.from([3]));
      await emu.hexdump('vdc', 64);
      await mk(20000, 512);
      await emu.run('dmsetup info m');
      await emu.settle(100);
      await emu.run('dmsetup status m');
      await emu.quiet('dmsetup resume g');
      await emu.waitSync('m');
      await emu.run('dmsetup status m');
      await emu.quiet('dmsetup remove m');
      await emu.quiet('dmsetup remove g');
      emu.echo("-- restore a valid log for the host dump: fresh 'sync' log, length 32768, region 1024");
      await emu.gate('g', '/dev/vdb');
      await emu.run("dmsetup create m --table '0 32768 mirror disk 3 /dev/vdc 1024 sync 2 /dev/vda 0 /dev/mapper/g 0'");
      await emu.run('dmsetup status m');
      await finish();

      const reference = referenceSections(resize ?? '');
      run.compare(reference);
      await run.compareHostDumps(reference, ['vdc']);
    } finally {
      await emu.cleanup();
    }
  });
});

/** fail-disklog-*.sh: l0, l1, lg linear over vda, vdb, vdc (253:0..2), then the mirror m (253:3). */
async function diskLogSetup(run: ScenarioRun, features = ''): Promise<void> {
  const emu = run.emu;
  await emu.quiet("dmsetup create l0 --table '0 32768 linear /dev/vda 0'");
  await emu.quiet("dmsetup create l1 --table '0 32768 linear /dev/vdb 0'");
  await emu.quiet("dmsetup create lg --table '0 2048 linear /dev/vdc 0'");
  const tail = features === '' ? '' : ` ${features}`;
  await emu.run(`dmsetup create m --table '0 32768 mirror disk 2 /dev/mapper/lg 1024 2 /dev/mapper/l0 0 /dev/mapper/l1 0${tail}'`);
}

async function diskLogTeardown(run: ScenarioRun): Promise<void> {
  for (const name of ['m', 'lg', 'l1', 'l0']) await run.emu.quiet(`dmsetup remove ${name}`);
  await run.emu.settle(100);
}

async function syncedSetup(run: ScenarioRun, features = ''): Promise<void> {
  await diskLogSetup(run, features);
  await run.emu.waitSync('m');
  await run.emu.run('dmsetup status m');
  run.emu.events('m');
}

const ddRegion0 = 'dd if=/dev/zero of=/dev/mapper/m bs=4096 seek=10 count=1 conv=fsync';

describe('kernel reference: fail-disklog-log.out', { skip: failLog === undefined ? 'no oracle reference' : false }, () => {
  test('MirrorSet with a failing disk log device: D/F letters, events, held and failed writes (fail-disklog-log O-S)', async () => {
    // O: log -> error, handle_errors: the write is held, log D, event 2; a plain suspend fails it (EIO).
    // P: no handle_errors: the write succeeds, log D. Q: log dead at the first resume: resync still
    // completes, 32/32 D, event 2, "log resume failed". R: keep_log: EIO at once. S: the log device
    // fails only flushes: log F, event 2, the bits written anyway (ffff ffff).
    const run = new ScenarioRun([16 * mib, 16 * mib, mib]);
    const emu = run.emu;
    try {
      run.section('O. disk log, handle_errors: LOG device lg -> error, write');
      await syncedSetup(run, '1 handle_errors');
      await emu.failDev('lg');
      emu.echo(`$ ${ddRegion0} &`);
      const dd = emu.startDd(ddRegion0);
      await emu.settle(100);
      emu.echo(`-- 1 s later dd still running: ${dd.settled ? 'no' : 'yes'}`);
      await emu.run('dmsetup status m');
      await emu.run('dmsetup measure m');
      emu.events('m');
      await emu.run('dmsetup suspend m');
      await emu.waitDd(dd);
      await emu.run('dmsetup status m');
      await diskLogTeardown(run);

      run.section('P. disk log, no handle_errors: LOG device lg -> error, write');
      await syncedSetup(run);
      await emu.failDev('lg');
      await emu.run(ddRegion0);
      await emu.settle(100);
      await emu.run('dmsetup status m');
      emu.events('m');
      await diskLogTeardown(run);

      run.section('Q. disk log device fails before the mirror is created (header read fails at resume)');
      await emu.quiet("dmsetup create l0 --table '0 32768 linear /dev/vda 0'");
      await emu.quiet("dmsetup create l1 --table '0 32768 linear /dev/vdb 0'");
      await emu.quiet("dmsetup create lg --table '0 2048 linear /dev/vdc 0'");
      await emu.failDev('lg');
      await emu.run("dmsetup create m --table '0 32768 mirror disk 2 /dev/mapper/lg 1024 2 /dev/mapper/l0 0 /dev/mapper/l1 0 1 handle_errors'");
      await emu.waitSync('m');
      await emu.run('dmsetup status m');
      emu.events('m');
      await diskLogTeardown(run);

      run.section('R. disk log, handle_errors + keep_log: LOG device lg -> error, write');
      await syncedSetup(run, '2 handle_errors keep_log');
      await emu.failDev('lg');
      await emu.run(ddRegion0);
      await emu.settle(100);
      await emu.run('dmsetup status m');
      emu.events('m');
      await diskLogTeardown(run);

      run.section('S. disk log: the LOG device fails ONLY flushes (dm-delay 3-class, flush class -> always-down dm-flakey)');
      await diskLogSetup(run);
      await emu.waitSync('m');
      // The oracle routes lg's flushes to an always-down dm-flakey; here vdc fails flushes.
      emu.faults.get('vdc')?.setFaults({ errors: [{ ops: ['flush'] }] });
      emu.events('m');
      await emu.run('dd if=/dev/zero of=/dev/mapper/m bs=4096 seek=10 count=1 oflag=direct');
      await emu.settle(100);
      await emu.run('dmsetup status m');
      emu.events('m');
      emu.echo('-- log (the header/bitset writes themselves succeed):');
      await emu.hexdump('vdc', 2048);
      await diskLogTeardown(run);
      emu.faults.get('vdc')?.clearFaults();

      run.compare(referenceSections(failLog ?? ''));
    } finally {
      await emu.cleanup();
    }
  });
});

describe('kernel reference: fail-disklog-leg.out', { skip: failLeg === undefined ? 'no oracle reference' : false }, () => {
  test('MirrorSet with a disk log and a failing leg: AD/AF letters, log bits, held write (fail-disklog-leg K-N)', async () => {
    // K: no handle_errors: the write succeeds, 31/32 AD, region 0 dirty on disk (feff ffff), no event.
    // L: handle_errors: held, 31/32 AD, event 2, feff ffff; noflush suspend + linear reload completes it.
    // M: leg l1 fails only flushes: AF, 32/32, every bit cleared on disk (flush_failed), no event.
    // N: keep_log: not held, 31/32 AD, event 2.
    const run = new ScenarioRun([16 * mib, 16 * mib, mib]);
    const emu = run.emu;
    try {
      run.section('K. disk log, no handle_errors: leg l1 -> error, write');
      await syncedSetup(run);
      await emu.failDev('l1');
      await emu.run(ddRegion0);
      await emu.settle(100);
      await emu.run('dmsetup status m');
      await emu.run('dmsetup measure m');
      emu.events('m');
      emu.echo('-- log after the failed write:');
      await emu.hexdump('vdc', 2048);
      await diskLogTeardown(run);

      run.section('L. disk log, handle_errors: leg l1 -> error, write (held), noflush suspend + reload');
      await syncedSetup(run, '1 handle_errors');
      await emu.failDev('l1');
      emu.echo(`$ ${ddRegion0} &`);
      const dd = emu.startDd(ddRegion0);
      await emu.settle(100);
      await emu.run('dmsetup status m');
      emu.events('m');
      emu.echo('-- log while the write is held:');
      await emu.hexdump('vdc', 2048);
      await emu.run('dmsetup suspend --noflush m');
      await emu.run("dmsetup load m --table '0 32768 linear /dev/mapper/l0 0'");
      await emu.run('dmsetup resume m');
      await emu.waitDd(dd);
      await diskLogTeardown(run);

      run.section("M. disk log: leg l1 fails ONLY flushes, O_DIRECT write (no flush from above)");
      await diskLogSetup(run);
      await emu.waitSync('m');
      // The oracle routes l1's flushes to an always-down dm-flakey; here vdb fails flushes.
      emu.faults.get('vdb')?.setFaults({ errors: [{ ops: ['flush'] }] });
      emu.events('m');
      await emu.run('dd if=/dev/zero of=/dev/mapper/m bs=4096 seek=10 count=1 oflag=direct');
      await emu.settle(100);
      await emu.run('dmsetup status m');
      await emu.run('dmsetup measure m');
      emu.events('m');
      emu.echo('-- log after region 0 was cleaned while the leg flush failed:');
      await emu.hexdump('vdc', 2048);
      await emu.run('dd if=/dev/zero of=/dev/mapper/m bs=4096 seek=2560 count=1 oflag=direct');
      await emu.settle(100);
      await emu.run('dmsetup status m');
      await diskLogTeardown(run);
      emu.faults.get('vdb')?.clearFaults();

      run.section('N. disk log, handle_errors + keep_log: leg l1 -> error, write (not held)');
      await syncedSetup(run, '2 handle_errors keep_log');
      await emu.failDev('l1');
      await emu.run(ddRegion0);
      await emu.settle(100);
      await emu.run('dmsetup status m');
      emu.events('m');
      await diskLogTeardown(run);

      run.compare(referenceSections(failLeg ?? ''));
    } finally {
      await emu.cleanup();
    }
  });
});

describe('disk log details the references do not record', () => {
  test('createMirrorSet: a log device too small for header and bits is rejected with the kernel\'s dm-log line', async () => {
    // 32 regions need 1024 + 4 bytes, rounded to 1536; the log disk has 1024. Expected: dmsetup's
    // reload error, "Error creating mirror dirty log" and "log device 254:32 too small: need 1536 bytes".
    const emu = new DmsetupEmulator({ disks: [16 * mib, 16 * mib, 1024] });
    try {
      await emu.run("dmsetup create m --table '0 32768 mirror disk 2 /dev/vdc 1024 2 /dev/vda 0 /dev/vdb 0'");
      assert.deepEqual(emu.transcript, [
        "$ dmsetup create m --table '0 32768 mirror disk 2 /dev/vdc 1024 2 /dev/vda 0 /dev/vdb 0'",
        'device-mapper: reload ioctl on m (253:0) failed: Invalid argument',
        'Command failed.',
        '[exit 1]',
      ]);
      assert.deepEqual(emu.kmsg, [
        'device-mapper: dirty region log: log device 254:32 too small: need 1536 bytes',
        'device-mapper: table: 253:0: mirror: Error creating mirror dirty log (-EINVAL)',
        'device-mapper: ioctl: error adding target to table',
      ]);
    } finally {
      await emu.cleanup();
    }
  });

  test('DiskDirtyLog on a 4096-byte logical block device writes whole 4 KiB blocks with the same bytes as on 512', async () => {
    // The same mirror (32 regions, resync, a write) on a 512- and a 4096-byte log device. Expected: every
    // log write on the 4K device is 4096 bytes at offset 0; the first 4096 bytes of both devices match.
    const images: Buffer[] = [];
    for (const logicalBlockBytes of [512, 4096]) {
      const journal = new Journal();
      const logMemory = new MemoryBlockDevice({ sizeBytes: mib, logicalBlockBytes, name: 'log' });
      const log = new ProbeDevice(logMemory, { name: 'log', journal });
      const legs = [0, 1].map((i) => new MemoryBlockDevice({ sizeBytes: 16 * mib, name: `l${i}` }));
      const mirror = await createMirrorSet({
        args: 'disk 2 log 1024 2 l0 0 l1 0'.split(' '),
        lengthSectors: 32768,
        openDevice: (name) => Promise.resolve(name === 'log' ? log : shared(legs[Number(name.slice(1))] ?? legs[0] ?? log)),
      });
      await mirror.resume();
      while (mirror.syncCount() < mirror.regionCount) await new Promise((resolve) => setTimeout(resolve, 2));
      await mirror.write(5000 * 512, Buffer.alloc(4096, 1));
      await mirror.destroy();
      const writes = log.started('write');
      assert.ok(writes.length > 0);
      for (const w of writes) {
        assert.equal((w.offsetBytes ?? -1) % logicalBlockBytes, 0);
        assert.equal(w.lengthBytes, logicalBlockBytes === 4096 ? 4096 : w.lengthBytes);
        if (logicalBlockBytes === 512) assert.ok((w.offsetBytes ?? 0) + (w.lengthBytes ?? 0) <= 1536, 'within header + bits (3 sectors)');
      }
      images.push(await logMemory.read(0, 4096));
    }
    assert.deepEqual(images[1], images[0]);
    assert.equal(images[0]?.readUInt32LE(1024), 0xffffffff, 'all 32 regions clean after a clean shutdown');
  });

  for (const c of [
    { name: 'version 3', poke: [4, 3], lines: ['incompatible disk log version', 'vdc: Failed to read header on dirty region log device'] },
    { name: 'a dead log device', poke: null, lines: ['vdc: Failed to read header on dirty region log device', 'vdc: Failed to write header on dirty region log device'] },
  ] as const) {
    test(`DiskDirtyLog resume with ${c.name} prints the kernel's dirty-log warnings and resyncs everything`, async () => {
      // Expected: the dm-log lines of disklog-resize.out / fail-disklog-log.out Q (device names as
      // given), log D, every region out of sync at resume, and the set still reaches 32/32.
      const logMemory = new MemoryBlockDevice({ sizeBytes: mib, name: 'vdc' });
      const header = Buffer.alloc(1536);
      header.writeUInt32LE(0x4d695272, 0);
      header.writeUInt32LE(2, 4);
      header.writeBigUInt64LE(32n, 8);
      header.fill(0xff, 1024, 1028);
      await logMemory.write(0, header);
      if (c.poke !== null) await logMemory.write(0, Buffer.from(header.subarray(0, 512)).fill(c.poke[1], c.poke[0], c.poke[0] + 1));
      const { FaultyBlockDevice } = await import('../../src/block/faulty-block-device.js');
      const faulty = new FaultyBlockDevice(logMemory, { name: 'vdc' });
      if (c.poke === null) faulty.setFaults({ errors: [{ ops: ['read', 'write', 'flush'] }] });
      const warnings: string[] = [];
      const legs = [0, 1].map((i) => new MemoryBlockDevice({ sizeBytes: 16 * mib, name: `l${i}` }));
      const mirror = await createMirrorSet({
        args: 'disk 2 vdc 1024 2 l0 0 l1 0'.split(' '),
        lengthSectors: 32768,
        openDevice: (name) => Promise.resolve(name === 'vdc' ? faulty : shared(legs[Number(name.slice(1))] ?? faulty)),
        log: { onWarning: (line) => warnings.push(line) },
      });
      await mirror.resume();
      assert.equal(mirror.syncCount(), 0);
      assert.equal(mirror.log.health, 'D');
      assert.deepEqual(warnings, c.lines);
      while (mirror.syncCount() < mirror.regionCount) await new Promise((resolve) => setTimeout(resolve, 2));
      await mirror.destroy();
    });
  }
});
