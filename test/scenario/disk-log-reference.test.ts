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
import type { BlockDevice } from '../../src/block/block-device.js';
import { FaultyBlockDevice } from '../../src/block/faulty-block-device.js';
import { MemoryBlockDevice } from '../../src/block/memory-block-device.js';
import { createMirrorSet } from '../../src/mirror/create-mirror-set.js';
import type { MirrorSet } from '../../src/mirror/mirror-set.js';
import { comparableLines, DmsetupEmulator, oracleReference, raid1Lines, referenceSections } from '../helpers/dmsetup-emulator.js';
import { waitInSync } from '../helpers/mirror-fixture.js';
import { Journal, ProbeDevice } from '../helpers/probe-device.js';

const mib = 1024 * 1024;
/** Commands of the flush-only failure stacks (emulated by a flush fault instead). */
const skipCommands = [/^dmsetup create fl /, /^dmsetup load \S+ --table '0 \d+ delay /, /^dmsetup table l1$/];

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

/**
 * Runs scenario lines in guest-lib terms: `$ CMD` (run: echoed with its output), `quiet CMD`, `gate NAME
 * DEV`, `fail_dev NAME`, `hexdump DISK LEN`, `events NAME`, `wait_sync NAME`, `sleep` (settle) and
 * `echo TEXT`.
 */
async function script(emu: DmsetupEmulator, lines: readonly string[]): Promise<void> {
  for (const line of lines) {
    const [word = '', ...rest] = line.split(' ');
    const arg = rest.join(' ');
    switch (word) {
      case '$':
        await emu.run(arg);
        break;
      case 'quiet':
        await emu.quiet(arg);
        break;
      case 'gate':
        await emu.gate(rest[0] ?? '', rest[1] ?? '');
        break;
      case 'fail_dev':
        await emu.failDev(arg);
        break;
      case 'hexdump':
        await emu.hexdump(rest[0] ?? '', Number(rest[1]));
        break;
      case 'events':
        emu.events(arg);
        break;
      case 'wait_sync':
        await emu.waitSync(arg);
        break;
      case 'sleep':
        await emu.settle(100);
        break;
      case 'echo':
        emu.echo(arg);
        break;
      default:
        throw new Error(`unknown scenario line: ${line}`);
    }
  }
}

/** A resumed 16 MiB mirror (32 regions of 1024 sectors) over memory legs with a disk log on `log`. */
async function memoryLegMirror(options: { log: BlockDevice; onWarning?: (line: string) => void }): Promise<MirrorSet> {
  const legs = new Map<string, BlockDevice>([0, 1].map((i) => [`l${i}`, new MemoryBlockDevice({ sizeBytes: 16 * mib, name: `l${i}` })]));
  const mirror = await createMirrorSet({
    args: 'disk 2 log 1024 2 l0 0 l1 0'.split(' '),
    lengthSectors: 32768,
    openDevice: (name) => {
      const device = name === 'log' ? options.log : legs.get(name);
      return device === undefined ? Promise.reject(new Error(`no device ${name}`)) : Promise.resolve(device);
    },
    ...(options.onWarning === undefined ? {} : { log: { onWarning: options.onWarning } }),
  });
  await mirror.resume();
  return mirror;
}

const disklog = oracleReference('disklog');
const resize = oracleReference('disklog-resize');
const failLog = oracleReference('fail-disklog-log');
const failLeg = oracleReference('fail-disklog-leg');

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
      const frozen = (table: string, log: string): string[] => [
        'gate g /dev/vdb',
        `$ dmsetup create m --table '${table}'`,
        '$ dmsetup status m',
        '$ dmsetup table m',
        ...(log === 'vdc' ? ['events m', 'echo -- log A while frozen (header written at resume, no region clean yet):'] : []),
        `hexdump ${log} 2048`,
        '$ dmsetup resume g',
        'wait_sync m',
        '$ dmsetup status m',
      ];
      run.section('1. fresh (all-zero) log device vdc');
      await script(emu, ['hexdump vdc 2048']);

      run.section('2. log A: create; status immediately (resync frozen by a gate on leg 2); resync');
      await script(emu, [...frozen(A, 'vdc'), 'events m', 'echo -- log A after resync:', 'hexdump vdc 2048', '$ dmsetup remove m', '$ dmsetup remove g']);

      run.section("3. log A: a write held in flight (leg 2 = linear 'g', suspended) -> region 4 dirty in the log");
      await script(emu, ["$ dmsetup create g --table '0 32768 linear /dev/vdb 0'", `$ dmsetup create m --table '${A}'`, '$ dmsetup status m', '$ dmsetup suspend g']);
      const held = 'dd if=/dev/zero of=/dev/mapper/m bs=512 seek=5000 count=8 conv=fsync';
      emu.echo(`$ ${held} &`);
      const dd = emu.startDd(held);
      await script(emu, ['sleep', '$ dmsetup status m', 'echo -- log A with the write to region 4 in flight:', 'hexdump vdc 2048', '$ dmsetup resume g']);
      emu.echo((await dd.done).at(-1) ?? ''); // dd ran with 2>/dev/null: only its exit status shows.
      await script(emu, ['sleep', '$ dmsetup status m', 'echo -- log A after the write completed (+1 s):', 'hexdump vdc 2048', '$ dmsetup remove m', '$ dmsetup remove g']);

      run.section("4. log A: re-create with 'disk 3 /dev/vdc 1024 sync' (forces a fresh log)");
      const sync = '0 32768 mirror disk 3 /dev/vdc 1024 sync 2 /dev/vda 0 /dev/mapper/g 0 1 handle_errors';
      await script(emu, [...frozen(sync, 'vdc').filter((l) => !l.startsWith('echo') && l !== 'events m'), '$ dmsetup remove m', '$ dmsetup remove g']);

      run.section('5. log A: the plain table on /dev/vda + /dev/vdb (log already in sync): write, suspend, resume, remove');
      await script(emu, [
        "$ dmsetup create m --table '0 32768 mirror disk 2 /dev/vdc 1024 2 /dev/vda 0 /dev/vdb 0 1 handle_errors'",
        '$ dmsetup status m',
        '$ dmsetup table m',
        '$ dmsetup measure m',
        'events m',
        `$ ${held}`,
        'sleep',
        '$ dmsetup status m',
        'echo -- log A after the write completed (+1 s):',
        'hexdump vdc 2048',
        '$ dmsetup suspend m',
        '$ dmsetup status m',
        '$ dmsetup info m',
        'echo -- log A while suspended:',
        'hexdump vdc 2048',
        '$ dmsetup resume m',
        '$ dmsetup status m',
        'events m',
        '$ dmsetup remove m',
        'echo -- log A after remove (compare with the host dump of vdc.img below):',
        'hexdump vdc 2048',
      ]);

      run.section('6. log B: region 128, length 30000 (235 regions), default sync');
      const logB = '0 30000 mirror disk 2 /dev/vdd 128 2 /dev/vda 0 /dev/mapper/g 0';
      await script(emu, [...frozen(logB, 'vdd'), '$ dmsetup remove m', '$ dmsetup remove g', 'echo -- log B after resync + remove:', 'hexdump vdd 2048']);

      run.section('7. log C: disk 3 /dev/vde 1024 nosync, length 32768');
      await script(emu, [
        "$ dmsetup create m --table '0 32768 mirror disk 3 /dev/vde 1024 nosync 2 /dev/vda 0 /dev/vdb 0'",
        '$ dmsetup status m',
        '$ dmsetup table m',
        '$ dmsetup measure m',
        '$ dmsetup remove m',
        'hexdump vde 2048',
      ]);

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
    const mk = (len: number, region: number): string[] => [
      'gate g /dev/vdb',
      `$ dmsetup create m --table '0 ${len} mirror disk 2 /dev/vdc ${region} 2 /dev/vda 0 /dev/mapper/g 0'`,
      '$ dmsetup status m',
    ];
    const thaw = ['quiet dmsetup resume g', 'wait_sync m', '$ dmsetup status m', 'quiet dmsetup remove m', 'quiet dmsetup remove g'];
    const finish = [...thaw, 'hexdump vdc 2048'];
    try {
      run.section('length 16384 (16 regions), fresh log');
      await script(emu, [...mk(16384, 1024), 'hexdump vdc 2048', ...finish]);
      run.section('grown to 32768 (32 regions): regions 16..31 start out of sync');
      await script(emu, [...mk(32768, 1024), 'hexdump vdc 2048', ...finish]);
      run.section('shrunk to 20000 (20 regions)');
      await script(emu, [...mk(20000, 1024), 'hexdump vdc 2048', ...finish]);
      run.section('same log, region size 512 with length 20000 (40 regions; header said 20)');
      await script(emu, [...mk(20000, 512), 'hexdump vdc 2048', ...finish]);
      run.section("bad magic: overwrite bytes 0-3 with 'XXXX' -> treated as a fresh log");
      await emu.poke('vdc', 0, Buffer.from('XXXX'));
      await script(emu, ['hexdump vdc 64', ...mk(20000, 512), ...finish]);
      run.section('header version 1 (bytes 4-7 = 01 00 00 00): accepted on little-endian, rewritten as 2');
      await emu.poke('vdc', 4, Buffer.from([1]));
      await script(emu, ['hexdump vdc 64', ...mk(20000, 512), 'hexdump vdc 64', ...finish]);
      run.section('header version 3 -> rejected');
      await emu.poke('vdc', 4, Buffer.from([3]));
      await script(emu, [
        'hexdump vdc 64',
        ...mk(20000, 512),
        '$ dmsetup info m',
        'sleep',
        '$ dmsetup status m',
        ...thaw,
        "echo -- restore a valid log for the host dump: fresh 'sync' log, length 32768, region 1024",
        'gate g /dev/vdb',
        "$ dmsetup create m --table '0 32768 mirror disk 3 /dev/vdc 1024 sync 2 /dev/vda 0 /dev/mapper/g 0'",
        '$ dmsetup status m',
        ...finish,
      ]);

      const reference = referenceSections(resize ?? '');
      run.compare(reference);
      await run.compareHostDumps(reference, ['vdc']);
    } finally {
      await emu.cleanup();
    }
  });
});

/** fail-disklog-*.sh setup: l0, l1, lg linear over vda, vdb, vdc (253:0..2), then the mirror m (253:3). */
function diskLogSetup(options: { features?: string; synced?: boolean; failLog?: boolean } = {}): string[] {
  const tail = options.features === undefined ? '' : ` ${options.features}`;
  return [
    "quiet dmsetup create l0 --table '0 32768 linear /dev/vda 0'",
    "quiet dmsetup create l1 --table '0 32768 linear /dev/vdb 0'",
    "quiet dmsetup create lg --table '0 2048 linear /dev/vdc 0'",
    ...(options.failLog === true ? ['fail_dev lg'] : []),
    `$ dmsetup create m --table '0 32768 mirror disk 2 /dev/mapper/lg 1024 2 /dev/mapper/l0 0 /dev/mapper/l1 0${tail}'`,
    'wait_sync m',
    ...(options.synced === false ? [] : ['$ dmsetup status m', 'events m']),
  ];
}

const teardown = ['quiet dmsetup remove m', 'quiet dmsetup remove lg', 'quiet dmsetup remove l1', 'quiet dmsetup remove l0', 'sleep'];
const ddRegion0 = 'dd if=/dev/zero of=/dev/mapper/m bs=4096 seek=10 count=1 conv=fsync';
const ddDirect = (block: number): string => `$ dd if=/dev/zero of=/dev/mapper/m bs=4096 seek=${block} count=1 oflag=direct`;

/** `dd ... 2>&1 &`: starts the write in the background, runs `whileHeld`, then `release` and prints dd's end. */
async function heldWrite(emu: DmsetupEmulator, steps: { whileHeld: readonly string[]; release: readonly string[] }): Promise<void> {
  emu.echo(`$ ${ddRegion0} &`);
  const dd = emu.startDd(ddRegion0);
  await emu.settle(100);
  await script(emu, steps.whileHeld.map((l) => l.replace('$RUNNING', dd.settled ? 'no' : 'yes')));
  await script(emu, steps.release);
  await emu.waitDd(dd);
}

/** The oracle's flush-only failure (dm-delay routing flushes to an always-down dm-flakey) as a flush fault. */
async function withFailingFlushes(emu: DmsetupEmulator, disk: string, lines: readonly string[]): Promise<void> {
  await script(emu, diskLogSetup({ synced: false }));
  emu.faults.get(disk)?.setFaults({ errors: [{ ops: ['flush'] }] });
  await script(emu, lines);
  emu.faults.get(disk)?.clearFaults();
}

describe('kernel reference: fail-disklog-log.out', { skip: failLog === undefined ? 'no oracle reference' : false }, () => {
  test('MirrorSet with a failing disk log device: D/F letters, events, held and failed writes (fail-disklog-log O-S)', async () => {
    // O: log -> error, handle_errors: the write is held, log D, event 2; a plain suspend fails it (EIO).
    // P: no handle_errors: the write succeeds, log D. Q: log dead at the first resume: resync still
    // completes, 32/32 D, event 2, "log resume failed". R: keep_log: EIO at once. S: the log device
    // fails only flushes: log F, event 2, the bits written anyway (ffff ffff).
    const run = new ScenarioRun([16 * mib, 16 * mib, mib]);
    const emu = run.emu;
    const afterWrite = ['sleep', '$ dmsetup status m', 'events m'];
    try {
      run.section('O. disk log, handle_errors: LOG device lg -> error, write');
      await script(emu, [...diskLogSetup({ features: '1 handle_errors' }), 'fail_dev lg']);
      await heldWrite(emu, {
        whileHeld: ['echo -- 1 s later dd still running: $RUNNING', '$ dmsetup status m', '$ dmsetup measure m', 'events m'],
        release: ['$ dmsetup suspend m'],
      });
      await script(emu, ['$ dmsetup status m', ...teardown]);

      run.section('P. disk log, no handle_errors: LOG device lg -> error, write');
      await script(emu, [...diskLogSetup(), 'fail_dev lg', `$ ${ddRegion0}`, ...afterWrite, ...teardown]);

      run.section('Q. disk log device fails before the mirror is created (header read fails at resume)');
      await script(emu, [...diskLogSetup({ features: '1 handle_errors', failLog: true, synced: false }), '$ dmsetup status m', 'events m', ...teardown]);

      run.section('R. disk log, handle_errors + keep_log: LOG device lg -> error, write');
      await script(emu, [...diskLogSetup({ features: '2 handle_errors keep_log' }), 'fail_dev lg', `$ ${ddRegion0}`, ...afterWrite, ...teardown]);

      run.section('S. disk log: the LOG device fails ONLY flushes (dm-delay 3-class, flush class -> always-down dm-flakey)');
      await withFailingFlushes(emu, 'vdc', [
        'events m',
        ddDirect(10),
        ...afterWrite,
        'echo -- log (the header/bitset writes themselves succeed):',
        'hexdump vdc 2048',
        ...teardown,
      ]);

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
      await script(emu, [
        ...diskLogSetup(),
        'fail_dev l1',
        `$ ${ddRegion0}`,
        'sleep',
        '$ dmsetup status m',
        '$ dmsetup measure m',
        'events m',
        'echo -- log after the failed write:',
        'hexdump vdc 2048',
        ...teardown,
      ]);

      run.section('L. disk log, handle_errors: leg l1 -> error, write (held), noflush suspend + reload');
      await script(emu, [...diskLogSetup({ features: '1 handle_errors' }), 'fail_dev l1']);
      await heldWrite(emu, {
        whileHeld: ['$ dmsetup status m', 'events m', 'echo -- log while the write is held:', 'hexdump vdc 2048'],
        release: ['$ dmsetup suspend --noflush m', "$ dmsetup load m --table '0 32768 linear /dev/mapper/l0 0'", '$ dmsetup resume m'],
      });
      await script(emu, teardown);

      run.section('M. disk log: leg l1 fails ONLY flushes, O_DIRECT write (no flush from above)');
      await withFailingFlushes(emu, 'vdb', [
        'events m',
        ddDirect(10),
        'sleep',
        '$ dmsetup status m',
        '$ dmsetup measure m',
        'events m',
        'echo -- log after region 0 was cleaned while the leg flush failed:',
        'hexdump vdc 2048',
        ddDirect(2560),
        'sleep',
        '$ dmsetup status m',
        ...teardown,
      ]);

      run.section('N. disk log, handle_errors + keep_log: leg l1 -> error, write (not held)');
      await script(emu, [...diskLogSetup({ features: '2 handle_errors keep_log' }), 'fail_dev l1', `$ ${ddRegion0}`, 'sleep', '$ dmsetup status m', 'events m', ...teardown]);

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
    // The same mirror (32 regions, resync, a write) on a 512- and a 4096-byte log device. Expected: on
    // 512 every log write stays within header + bits (3 sectors); on 4K every log write is the one 4 KiB
    // block; the first 4096 bytes of both devices match.
    const images: Buffer[] = [];
    for (const logicalBlockBytes of [512, 4096]) {
      const logMemory = new MemoryBlockDevice({ sizeBytes: mib, logicalBlockBytes, name: 'log' });
      const log = new ProbeDevice(logMemory, { name: 'log', journal: new Journal() });
      const mirror = await memoryLegMirror({ log });
      await waitInSync(mirror);
      await mirror.write(5000 * 512, Buffer.alloc(4096, 1));
      await mirror.destroy();
      const writes = log.started('write');
      assert.ok(writes.length > 0);
      for (const w of writes) {
        const [offset, length] = [w.offsetBytes ?? -1, w.lengthBytes ?? -1];
        if (logicalBlockBytes === 4096) assert.deepEqual([offset, length], [0, 4096]);
        else assert.ok(offset % 512 === 0 && offset + length <= 1536, 'within header + bits (3 sectors)');
      }
      images.push(await logMemory.read(0, 4096));
    }
    assert.deepEqual(images[1], images[0]);
    assert.equal(images[0]?.readUInt32LE(1024), 0xffffffff, 'all 32 regions clean after a clean shutdown');
  });

  for (const c of [
    { name: 'version 3', poke: [4, 3], lines: ['incompatible disk log version', 'log: Failed to read header on dirty region log device'] },
    { name: 'a dead log device', poke: null, lines: ['log: Failed to read header on dirty region log device', 'log: Failed to write header on dirty region log device'] },
  ] as const) {
    test(`DiskDirtyLog resume with ${c.name} prints the kernel's dirty-log warnings and resyncs everything`, async () => {
      // Expected: the dm-log lines of disklog-resize.out / fail-disklog-log.out Q (device names as
      // given), log D, every region out of sync at resume, and the set still reaches 32/32.
      const logMemory = new MemoryBlockDevice({ sizeBytes: mib, name: 'vdc' });
      const header = Buffer.alloc(1536);
      header.writeUInt32LE(0x4d695272, 0);
      header.writeUInt32LE(c.poke === null ? 2 : c.poke[1], 4);
      header.writeBigUInt64LE(32n, 8);
      header.fill(0xff, 1024, 1028);
      await logMemory.write(0, header);
      const log = new FaultyBlockDevice(logMemory, { name: 'vdc' });
      if (c.poke === null) log.setFaults({ errors: [{ ops: ['read', 'write', 'flush'] }] });
      const warnings: string[] = [];
      const mirror = await memoryLegMirror({ log, onWarning: (line) => warnings.push(line) });
      assert.equal(mirror.syncCount(), 0);
      assert.equal(mirror.log.health, 'D');
      assert.deepEqual(warnings, c.lines);
      await waitInSync(mirror);
      await mirror.destroy();
    });
  }
});
