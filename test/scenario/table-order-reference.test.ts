/**
 * Replays test/scenario/oracle/table-order.sh through MappedDevice + targetBuilder with the dmsetup
 * look-alike and compares, line by line, what dmsetup and the kernel printed (table-order.out, Linux 6.1):
 * legs and logs too small or mapped past their end, and which error a bad table gets first (mirror_ctr
 * creates the dirty log, then looks each leg up, then parses the features; dm core checks the areas
 * after every line's constructor ran).
 *
 * Known difference, left out: the kernel checks a reload's areas when it resumes (the load succeeds and
 * `dmsetup resume` fails); we refuse the load (last section of the recording).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { DmsetupEmulator, localOracleReference, referenceSections } from '../helpers/dmsetup-emulator.js';

const mib = 1024 * 1024;
/** vda, vdb 16 MiB, vdc 1 MiB, vdd a 100-byte image (qemu shows it as 1 sector), vde empty. */
const disks = [16 * mib, 16 * mib, mib, 512, 0];
/** loop0 unused, loop1 an empty file, loop2 a 1000-byte file (1 sector). */
const loops = [100, 0, 1000];

interface Attempt {
  readonly command: string;
  /** The table file's lines when the command reads one (`-- table file:` block). */
  readonly file: readonly string[];
  readonly lines: readonly string[];
}

/** Every attempt of a section: the create command, its table file if any, the lines up to the next. */
function attempts(lines: readonly string[]): Attempt[] {
  const out: { command: string; file: string[]; lines: string[] }[] = [];
  let file: string[] | undefined;
  for (const line of lines) {
    if (line === '-- table file:') file = [];
    else if (file !== undefined && line.startsWith('   ')) file.push(line.slice(3));
    else if (line.startsWith('$ dmsetup create ')) {
      out.push({ command: line.slice(2), file: file ?? [], lines: [line] });
      file = undefined;
    } else if (line !== '') out.at(-1)?.lines.push(line);
  }
  return out;
}

const sections = referenceSections(localOracleReference('table-order'));

for (const title of ['mirror legs and logs too small or offsets past the end', 'which error comes first']) {
  describe(`table-order.out: ${title}`, () => {
    const cases = attempts(sections.get(title) ?? []);
    test('the section has its attempts', () => {
      assert.ok(cases.length >= 7, `${cases.length} attempts`);
    });
    for (const c of cases) {
      const name = c.file.length > 0 ? c.file.join(' | ') : c.command.replace(/^dmsetup create m --table /, '');
      test(`MappedDevice.load + targetBuilder: ${name}`, async () => {
        // One table. Expected: dmsetup's output and exit status, the kernel's lines, in order.
        const emu = new DmsetupEmulator({ disks, loops });
        try {
          if (c.file.length > 0) emu.files.set('/tmp/table', c.file.join('\n'));
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
}

test('MappedDevice.load refuses a reload whose area does not fit (the kernel refuses it at resume instead)', async () => {
  // table-order.out, last section: the kernel loads "0 2048 linear vdc 1" and fails the resume with
  // "vdc too small for target"; we fail the load with the same line. Either way the old table stays live.
  const emu = new DmsetupEmulator({ disks, loops });
  try {
    await emu.run("dmsetup create m --table '0 2048 linear /dev/vda 0'");
    await emu.run("dmsetup load m --table '0 2048 linear /dev/vdc 1'");
    assert.deepEqual(emu.kmsg.slice(0, 1), ['device-mapper: table: 253:0: vdc too small for target: start=1, len=2048, dev_size=2048']);
    await emu.run('dmsetup table m');
    assert.equal(emu.transcript.at(-1), '0 2048 linear 254:0 0');
  } finally {
    await emu.cleanup();
  }
});
