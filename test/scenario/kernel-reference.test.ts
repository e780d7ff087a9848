/**
 * Replays the oracle's scenarios (../shared/oracle/scenarios: core.sh, fail-write.sh,
 * fail-read-sync.sh, invalid.sh) through MappedDevice + targetBuilder with a dmsetup look-alike, and
 * compares what it prints with what the real kernel printed (reference/*.out): table and status lines,
 * health letters, sync counts, event numbers, dd results and, for rejected tables, dmsetup's error and
 * the kernel log lines. Each section's hidden steps (gate, fail_dev, wait_sync) are the scenario's.
 *
 * The reference is read at run time, so the test follows it rather than copies of it. Known
 * differences: the kernel rate-limits repeated raid1 lines (we compare distinct lines), and commands
 * we do not emulate (md5sum, deps, environment) are left out.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { comparableLines, DmsetupEmulator, oracleReference, raid1Lines, referenceSections } from '../helpers/dmsetup-emulator.js';

const skipCommands = [/^md5sum /, /^dmsetup deps /, /^uname /, /^cat /, /^dmsetup version/, /^dmsetup targets/];
const mib16 = 16 * 1024 * 1024;

function reference(name: string): Map<string, string[]> | undefined {
  const text = oracleReference(name);
  return text === undefined ? undefined : referenceSections(text);
}

function sectionOf(sections: Map<string, string[]>, prefix: string): string[] {
  for (const [title, lines] of sections) if (title.startsWith(prefix)) return lines;
  throw new Error(`no reference section starting "${prefix}"`);
}

/** Runs one section's steps on a fresh emulator and compares with the reference section. */
async function replay(options: {
  sections: Map<string, string[]>;
  prefix: string;
  disks?: readonly number[];
  /** The kernel's DMERR_LIMIT ran out in an earlier section: its raid1 lines may be a subset of ours. */
  rateLimited?: boolean;
  steps: (emu: DmsetupEmulator) => Promise<void>;
}): Promise<DmsetupEmulator> {
  const expected = sectionOf(options.sections, options.prefix);
  const emu = new DmsetupEmulator({ disks: options.disks ?? [mib16, mib16, mib16] });
  try {
    await options.steps(emu);
    const ours = comparableLines(emu.transcript, skipCommands).filter((l) => l !== '');
    const theirs = comparableLines(expected, skipCommands).filter((l) => l !== '');
    assert.deepEqual(ours, theirs, `section "${options.prefix}" transcript`);
    const ourLines = raid1Lines(emu.kmsg);
    const theirLines = raid1Lines(expected);
    if (options.rateLimited === true) {
      for (const line of theirLines) assert.ok(ourLines.includes(line), `missing kernel line ${line}`);
    } else {
      assert.deepEqual(ourLines, theirLines, `section "${options.prefix}" raid1 kernel lines`);
    }
  } finally {
    await emu.cleanup();
  }
  return emu;
}

const core = reference('core');
const failWrite = reference('fail-write');
const failReadSync = reference('fail-read-sync');
const invalid = reference('invalid');

describe('kernel reference: core.out', { skip: core === undefined ? 'no oracle reference' : false }, () => {
  const sections = core ?? new Map<string, string[]>();
  const T = '0 32768 mirror core 1 1024 2 /dev/vda 0 /dev/vdb 0';

  test('MappedDevice mirror: core log default sync resyncs to 32/32 with one event (core.out)', async () => {
    // Create over two disks of different content. Expected: 32/32 AA, canonical table, event 1, legs equal.
    const emu = await replay({
      sections,
      prefix: 'core log, default sync',
      steps: async (emu) => {
        await emu.disks.get('vda')?.write(0, Buffer.alloc(mib16, 'vda-pattern-0123456789\n'));
        await emu.disks.get('vdb')?.write(0, Buffer.alloc(mib16, 'vdb-other-content\n'));
        await emu.run(`dmsetup create m --table '${T}'`);
        // The oracle marks this first status as timing-dependent (the kernel had finished under TCG);
        // the gated test below checks the exact initial state.
        await emu.waitSync('m');
        await emu.run('dmsetup status m');
        await emu.run('dmsetup status m');
        await emu.run('dmsetup table m');
        await emu.run('dmsetup info m');
        await emu.run('dmsetup deps m');
        await emu.run('dmsetup measure m');
        assert.deepEqual(await emu.disks.get('vdb')?.read(0, mib16), await emu.disks.get('vda')?.read(0, mib16), 'md5 equal');
        await emu.run('dmsetup remove m');
      },
    });
    assert.equal(emu.dm.size, 0);
  });

  test('MappedDevice mirror: a gated leg shows 0/32 and event 0 until the gate opens (core.out)', async () => {
    // Second leg behind a suspended linear gate. Expected: 0/32 AA, event 0; after resume g: 32/32, event 1.
    await replay({
      sections,
      prefix: 'initial status made deterministic',
      steps: async (emu) => {
        await emu.gate('g', '/dev/vdb');
        await emu.run("dmsetup create m --table '0 32768 mirror core 1 1024 2 /dev/vda 0 /dev/mapper/g 0'");
        await emu.run('dmsetup status m');
        await emu.run('dmsetup table m');
        emu.events('m');
        await emu.run('dmsetup resume g');
        await emu.waitSync('m');
        await emu.run('dmsetup status m');
        emu.events('m');
        await emu.run('dmsetup remove m');
        await emu.run('dmsetup remove g');
      },
    });
  });

  test('MappedDevice mirror: an inactive table reports 0/32 and the live status is empty (core.out)', async () => {
    // create --notable, load. Expected: status --inactive 0/32, plain status empty, 32/32 after resume.
    await replay({
      sections,
      prefix: 'inactive (loaded, never resumed)',
      steps: async (emu) => {
        await emu.run('dmsetup create m --notable');
        await emu.run(`dmsetup load m --table '${T}'`);
        await emu.run('dmsetup status --inactive m');
        await emu.run('dmsetup table --inactive m');
        await emu.run('dmsetup status m');
        await emu.run('dmsetup resume m');
        await emu.waitSync('m');
        await emu.run('dmsetup status m');
        await emu.run('dmsetup remove m');
      },
    });
  });

  const simple: readonly { prefix: string; table: string; wait: boolean; measure: boolean; status: boolean }[] = [
    { prefix: 'core 2 1024 nosync', table: '0 32768 mirror core 2 1024 nosync 2 /dev/vda 0 /dev/vdb 0', wait: false, measure: true, status: true },
    { prefix: 'core 2 1024 sync', table: '0 32768 mirror core 2 1024 sync 2 /dev/vda 0 /dev/vdb 0', wait: true, measure: false, status: true },
    { prefix: 'features: 1 handle_errors', table: `${T} 1 handle_errors`, wait: true, measure: true, status: true },
    { prefix: 'features: 2 handle_errors keep_log', table: `${T} 2 handle_errors keep_log`, wait: true, measure: true, status: true },
    { prefix: 'features: 0', table: `${T} 0`, wait: false, measure: false, status: false },
    { prefix: 'non-zero leg offsets', table: '0 16384 mirror core 1 1024 2 /dev/vda 2048 /dev/vdb 8192', wait: true, measure: false, status: true },
  ];
  for (const c of simple) {
    test(`MappedDevice mirror: table and status for "${c.prefix}" (core.out)`, async () => {
      // Create, (resync), status/table/measure. Expected: the kernel's lines verbatim.
      await replay({
        sections,
        prefix: c.prefix,
        steps: async (emu) => {
          await emu.run(`dmsetup create m --table '${c.table}'`);
          if (c.wait) await emu.waitSync('m');
          if (c.status) await emu.run('dmsetup status m');
          await emu.run('dmsetup table m');
          if (c.measure) await emu.run('dmsetup measure m');
          await emu.run('dmsetup remove m');
        },
      });
    });
  }

  test('MappedDevice mirror: 3 legs, gated and nosync (core.out)', async () => {
    // Third leg gated. Expected: 0/32 AAA, then 32/32 AAA; nosync with handle_errors 32/32 at once.
    await replay({
      sections,
      prefix: '3 legs',
      steps: async (emu) => {
        await emu.gate('g', '/dev/vdc');
        await emu.run("dmsetup create m --table '0 32768 mirror core 1 1024 3 /dev/vda 0 /dev/vdb 0 /dev/mapper/g 0'");
        await emu.run('dmsetup status m');
        await emu.run('dmsetup resume g');
        await emu.waitSync('m');
        await emu.run('dmsetup status m');
        await emu.run('dmsetup table m');
        await emu.run('dmsetup remove m');
        await emu.run('dmsetup remove g');
        await emu.run("dmsetup create m --table '0 32768 mirror core 2 1024 nosync 3 /dev/vda 0 /dev/vdb 0 /dev/vdc 0 1 handle_errors'");
        await emu.run('dmsetup status m');
        await emu.run('dmsetup table m');
        await emu.run('dmsetup remove m');
      },
    });
  });

  test('MappedDevice mirror: a length that is not a multiple of the region size has a short last region (core.out)', async () => {
    // 30000 sectors, region 1024, gated. Expected: 0/30 then 30/30.
    await replay({
      sections,
      prefix: 'length not a multiple',
      steps: async (emu) => {
        await emu.gate('g', '/dev/vdb');
        await emu.run("dmsetup create m --table '0 30000 mirror core 1 1024 2 /dev/vda 0 /dev/mapper/g 0'");
        await emu.run('dmsetup status m');
        await emu.run('dmsetup resume g');
        await emu.waitSync('m');
        await emu.run('dmsetup status m');
        await emu.run('dmsetup remove m');
        await emu.run('dmsetup remove g');
      },
    });
  });

  test('MappedDevice mirror: region sizes 2 to 32768 give the kernel region counts (core.out)', async () => {
    // nosync with region 2, 8, 128, 4096, 32768. Expected: 16384/16384 ... 1/1.
    await replay({
      sections,
      prefix: 'other region sizes',
      steps: async (emu) => {
        for (const rs of [2, 8, 128, 4096, 32768]) {
          await emu.run(`dmsetup create m --table '0 32768 mirror core 2 ${rs} nosync 2 /dev/vda 0 /dev/vdb 0'`);
          await emu.run('dmsetup status m');
          await emu.run('dmsetup table m');
          await emu.run('dmsetup remove m');
        }
      },
    });
  });

  test('MappedDevice mirror: status answers while suspended and info shows SUSPENDED (core.out)', async () => {
    // Suspend a synced mirror. Expected: same status, State SUSPENDED, event 1; resume keeps 32/32.
    await replay({
      sections,
      prefix: 'suspend/resume of a core-log mirror',
      steps: async (emu) => {
        await emu.run(`dmsetup create m --table '${T}'`);
        await emu.waitSync('m');
        await emu.run('dmsetup suspend m');
        await emu.run('dmsetup status m');
        await emu.run('dmsetup info m');
        await emu.run('dmsetup resume m');
        await emu.run('dmsetup status m');
        await emu.run('dmsetup remove m');
      },
    });
  });
});

/** fail-write.sh / fail-read-sync.sh legs: l0, l1 linear over vda, vdb. */
async function legs(emu: DmsetupEmulator): Promise<void> {
  await emu.quiet("dmsetup create l0 --table '0 32768 linear /dev/vda 0'");
  await emu.quiet("dmsetup create l1 --table '0 32768 linear /dev/vdb 0'");
}

function mk(features = ''): string {
  return `dmsetup create m --table '0 32768 mirror core 1 1024 2 /dev/mapper/l0 0 /dev/mapper/l1 0${features === '' ? '' : ` ${features}`}'`;
}

async function setup(emu: DmsetupEmulator, features = ''): Promise<void> {
  await legs(emu);
  await emu.run(mk(features));
  await emu.waitSync('m');
  await emu.run('dmsetup status m');
  emu.events('m');
}

async function teardown(emu: DmsetupEmulator): Promise<void> {
  await emu.quiet('dmsetup remove m');
  await emu.quiet('dmsetup remove l1');
  await emu.quiet('dmsetup remove l0');
}

describe('kernel reference: fail-write.out', { skip: failWrite === undefined ? 'no oracle reference' : false }, () => {
  const sections = failWrite ?? new Map<string, string[]>();
  const ddWrite = 'dd if=/dev/zero of=/dev/mapper/m bs=4096 seek=10 count=1 conv=fsync';

  test('MirrorSet handle_errors holds a failed write; noflush suspend + reload linear completes it (fail-write A)', async () => {
    // Fail leg l1, write region 0. Expected: held, 31/32 AD, event 2; noflush suspend keeps AD; reload
    // linear on l0 + resume completes the write (dd exit 0); event stays 2.
    await replay({
      sections,
      prefix: 'A. handle_errors',
      disks: [mib16, mib16],
      steps: async (emu) => {
        await setup(emu, '1 handle_errors');
        await emu.failDev('l1');
        await emu.run('dmsetup table l1');
        emu.echo(`$ ${ddWrite} &   # region 0`);
        const dd = emu.startDd(ddWrite);
        await emu.settle(100);
        emu.echo(`-- 1 s later the write is still held by the mirror (dd still running: ${dd.settled ? 'no' : 'yes'})`);
        await emu.run('dmsetup status m');
        await emu.run('dmsetup measure m');
        emu.events('m');
        await emu.run('dmsetup suspend --noflush m');
        await emu.run('dmsetup status m');
        await emu.run("dmsetup load m --table '0 32768 linear /dev/mapper/l0 0'");
        await emu.run('dmsetup resume m');
        await emu.waitDd(dd);
        await emu.run('dmsetup table m');
        emu.events('m');
        await teardown(emu);
      },
    });
  });

  test('MirrorSet handle_errors: a plain suspend fails the held write with EIO (fail-write B)', async () => {
    // Fail l1, write, plain suspend. Expected: dd EIO; 31/32 AD; after resume the resync of region 0
    // fails (S, hidden behind D) and raises event 3.
    await replay({
      sections,
      prefix: 'B. handle_errors',
      disks: [mib16, mib16],
      steps: async (emu) => {
        await setup(emu, '1 handle_errors');
        await emu.failDev('l1');
        emu.echo(`$ ${ddWrite} &`);
        const dd = emu.startDd(ddWrite);
        await emu.settle(100);
        await emu.run('dmsetup status m');
        emu.events('m');
        await emu.run('dmsetup suspend m');
        await emu.waitDd(dd);
        await emu.run('dmsetup status m');
        await emu.run('dmsetup resume m');
        await emu.run('dmsetup status m');
        emu.events('m');
        await teardown(emu);
      },
    });
  });

  test('MirrorSet without handle_errors acknowledges the write and resyncs after resume (fail-write C)', async () => {
    // Fail l1, writes to regions 0 and 20. Expected: both succeed, 31/32 then 30/32 AD, no event;
    // suspend/resume resyncs ignoring errors: 32/32 AA, event 2.
    await replay({
      sections,
      prefix: 'C. no handle_errors',
      disks: [mib16, mib16],
      steps: async (emu) => {
        await setup(emu);
        await emu.failDev('l1');
        await emu.run(ddWrite);
        await emu.run('dmsetup status m');
        await emu.run('dmsetup measure m');
        emu.events('m');
        emu.echo('-- a second write to another region (region 20)');
        await emu.run('dd if=/dev/zero of=/dev/mapper/m bs=4096 seek=2560 count=1 conv=fsync');
        await emu.run('dmsetup status m');
        emu.events('m');
        emu.echo('-- suspend/resume restarts resync; errors are ignored without handle_errors');
        await emu.run('dmsetup suspend m');
        await emu.run('dmsetup resume m');
        await emu.waitSync('m');
        await emu.run('dmsetup status m');
        emu.events('m');
        await teardown(emu);
      },
    });
  });

  test('MirrorSet with both legs dead fails the write with EIO (fail-write D)', async () => {
    // Fail l1 and l0, write. Expected: EIO, 31/32 DD, event 2, "All sides of mirror have failed."
    await replay({
      sections,
      prefix: 'D. handle_errors',
      disks: [mib16, mib16],
      steps: async (emu) => {
        await setup(emu, '1 handle_errors');
        await emu.failDev('l1');
        await emu.failDev('l0');
        await emu.run(ddWrite);
        await emu.run('dmsetup status m');
        emu.events('m');
        await teardown(emu);
      },
    });
  });
});

describe('kernel reference: fail-read-sync.out', { skip: failReadSync === undefined ? 'no oracle reference' : false }, () => {
  const sections = failReadSync ?? new Map<string, string[]>();
  const rd = (block: number): string => `dd if=/dev/mapper/m of=/dev/null bs=4096 skip=${block} count=1 iflag=direct`;

  for (const handleErrors of [true, false]) {
    test(`MirrorSet read error on the primary is retried on the other leg (fail-read-sync ${handleErrors ? 'E' : 'F'})`, async () => {
      // Fail l0, read twice. Expected: reads succeed, RA; with handle_errors one event (2), else none.
      await replay({
        sections,
        prefix: handleErrors ? 'E. handle_errors' : 'F. no handle_errors',
        disks: [mib16, mib16],
        steps: async (emu) => {
          await legs(emu);
          await emu.run(mk(handleErrors ? '1 handle_errors' : ''));
          await emu.waitSync('m');
          if (handleErrors) {
            await emu.run('dmsetup status m');
            emu.events('m');
          }
          await emu.failDev('l0');
          await emu.run(rd(10));
          await emu.run('dmsetup status m');
          emu.events('m');
          if (handleErrors) emu.echo('-- second read (default mirror has been switched to l1)');
          await emu.run(rd(20));
          await emu.run('dmsetup status m');
          if (handleErrors) emu.events('m');
          await teardown(emu);
        },
      });
    });
  }

  test('MirrorSet handle_errors with a leg dead at creation: resync fails, 0/32 AS (fail-read-sync G)', async () => {
    await replay({
      sections,
      prefix: 'G. handle_errors',
      disks: [mib16, mib16],
      steps: async (emu) => {
        await legs(emu);
        await emu.failDev('l1');
        await emu.run(mk('1 handle_errors'));
        await emu.settle(100);
        await emu.run('dmsetup status m');
        emu.events('m');
        await teardown(emu);
      },
    });
  });

  test('MirrorSet without handle_errors ignores a leg dead at creation: 32/32 AA (fail-read-sync H)', async () => {
    await replay({
      sections,
      prefix: 'H. no handle_errors',
      disks: [mib16, mib16],
      // G, just before, used up the kernel's 10-line burst: H's recovery errors were rate-limited away.
      rateLimited: true,
      steps: async (emu) => {
        await legs(emu);
        await emu.failDev('l1');
        await emu.run(mk());
        await emu.waitSync('m');
        await emu.run('dmsetup status m');
        emu.events('m');
        await teardown(emu);
      },
    });
  });

  test('MirrorSet handle_errors with the primary dead at creation: SA, reads of out-of-sync regions EIO (fail-read-sync I)', async () => {
    await replay({
      sections,
      prefix: 'I. handle_errors',
      disks: [mib16, mib16],
      steps: async (emu) => {
        await legs(emu);
        await emu.failDev('l0');
        await emu.run(mk('1 handle_errors'));
        await emu.settle(100);
        await emu.run('dmsetup status m');
        emu.events('m');
        await emu.run(rd(10));
        await emu.run('dmsetup status m');
        await teardown(emu);
      },
    });
  });
});

interface InvalidCase {
  readonly command: string;
  readonly lines: readonly string[];
}

/** Every `try` block of invalid.out: the create command and the lines up to the next create. */
function invalidCases(sections: Map<string, string[]>): InvalidCase[] {
  const cases: { command: string; lines: string[] }[] = [];
  for (const lines of sections.values()) {
    for (const line of lines) {
      if (line.startsWith('$ dmsetup create ')) cases.push({ command: line.slice(2), lines: [line] });
      else if (line !== '') cases.at(-1)?.lines.push(line);
    }
  }
  return cases;
}

describe('kernel reference: invalid.out', { skip: invalid === undefined ? 'no oracle reference' : false }, () => {
  const cases = invalidCases(invalid ?? new Map<string, string[]>());

  test('invalid.out parses into the scenario\'s 52 tables', () => {
    assert.equal(cases.length, 52);
  });

  for (const c of cases) {
    test(`MappedDevice.load + createMirrorSet: ${c.command.replace(/^dmsetup create m --table /, '')}`, async () => {
      // One table from invalid.sh. Expected: the same dmsetup output, exit code, kernel lines and,
      // for accepted tables, the same table line.
      const emu = new DmsetupEmulator({ disks: [mib16, mib16, mib16] });
      try {
        await emu.run(c.command);
        if (emu.dm.has('m')) {
          await emu.run('dmsetup table m');
          await emu.quiet('dmsetup remove m');
        }
        const expectedOut = c.lines.filter((l) => !l.startsWith('kmsg: '));
        const expectedKmsg = c.lines.filter((l) => l.startsWith('kmsg: ')).map((l) => l.slice('kmsg: '.length));
        assert.deepEqual(emu.transcript, expectedOut, 'dmsetup output');
        assert.deepEqual(emu.kmsg, expectedKmsg, 'kernel lines');
      } finally {
        await emu.cleanup();
      }
    });
  }
});
