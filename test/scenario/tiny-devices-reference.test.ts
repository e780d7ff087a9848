/**
 * Replays test/scenario/oracle/tiny-devices.sh through MappedDevice + targetBuilder with the dmsetup
 * look-alike and compares it with what Linux 6.1 printed (tiny-devices.out): devices with no whole
 * sector (a 100-byte or empty loop file, an empty virtio disk) are accepted under linear and mirror
 * targets, and their I/O then fails (EIO; the mirror fails the leg, with its usual messages); a 1-sector
 * device is checked as any other. Compared: dmsetup's output, dd's, status/table lines, event numbers and
 * the raid1 kernel lines (distinct, in order; the kernel rate-limits repeats). Block-layer lines
 * ("attempt to access beyond end of device", "Buffer I/O error") are not emulated.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { comparableLines, DmsetupEmulator, localOracleReference, raid1Lines, referenceSections } from '../helpers/dmsetup-emulator.js';

const mib = 1024 * 1024;
/** vda, vdb 16 MiB, vdc 1 MiB, vdd a 100-byte image (qemu shows 1 sector), vde an empty image. */
const disks = [16 * mib, 16 * mib, mib, 512, 0];
/** loop0 a 100-byte file, loop1 an empty file, loop2 a 1000-byte file. */
const loops = [100, 0, 1000];
const sections = referenceSections(localOracleReference('tiny-devices'));

function section(title: string): string[] {
  const lines = sections.get(title);
  assert.ok(lines !== undefined, `section ${title}`);
  return lines;
}

/** The block-layer lines the emulator does not produce are dropped; raid1 lines are compared apart. */
function compare(emu: DmsetupEmulator, expected: readonly string[]): void {
  const ours = comparableLines(emu.transcript, []).filter((l) => l !== '');
  const theirs = comparableLines(expected, []).filter((l) => l !== '');
  assert.deepEqual(ours, theirs, 'transcript');
  assert.deepEqual(raid1Lines(emu.kmsg), raid1Lines(expected), 'raid1 kernel lines');
}

describe('tiny-devices.out', () => {
  test('linear over devices with no whole sector is accepted and every I/O fails with EIO; 1-sector devices are checked', async () => {
    // Expected: loop0, loop1, vde accepted (table shows 7:0, 7:1, 254:64), reads and writes EIO;
    // vdd (1 sector) refused as "too small"; offsets past the end of an empty device accepted.
    const emu = new DmsetupEmulator({ disks, loops });
    try {
      for (const d of ['loop0', 'loop1', 'vdd', 'vde']) {
        await emu.run(`dmsetup create m --table '0 8 linear /dev/${d} 0'`);
        if (emu.dm.has('m')) {
          await emu.run('dmsetup table m');
          await emu.run('dmsetup status m');
          await emu.run('dd if=/dev/mapper/m of=/dev/null bs=512 count=1 iflag=direct');
          await emu.run('dd if=/dev/zero of=/dev/mapper/m bs=512 count=1 oflag=direct');
          await emu.run('dd if=/dev/mapper/m of=/dev/null bs=512 count=1 iflag=direct');
          await emu.quiet('dmsetup remove m');
        }
      }
      emu.echo(`-- file sizes after: tiny ${emu.disks.get('loop0')?.sizeBytes} empty ${emu.disks.get('loop1')?.sizeBytes}`);
      for (const table of [
        '0 8 linear /dev/loop1 8',
        '0 8 linear /dev/vde 100',
        '0 1 linear /dev/loop2 0',
        '0 2 linear /dev/loop2 0',
        '0 8 linear /dev/vdc 2048',
        '0 8 linear /dev/vdc 4000',
        '0 4096 linear /dev/vdc 0',
      ]) {
        await emu.run(`dmsetup create m --table '${table}'`);
        if (emu.dm.has('m')) {
          await emu.run('dmsetup table m');
          await emu.quiet('dmsetup remove m');
        }
      }
      compare(emu, section('linear over devices smaller than one sector'));
    } finally {
      await emu.cleanup();
    }
  });

  test('MirrorSet with a leg that has no whole sector: accepted, the leg fails as a dead leg would', async () => {
    // Expected: vde as leg 2 with handle_errors: 0/32 AS, event 1, reads served by vda; without:
    // 32/32 AA (errors ignored), then a write leaves 31/32 AD; vde as primary: SA and reads of
    // out-of-sync regions EIO ("Mirror read failed."); an empty loop file as the plain case.
    const emu = new DmsetupEmulator({ disks, loops });
    try {
      for (const t of [
        'core 1 1024 2 /dev/vda 0 /dev/vde 0 1 handle_errors',
        'core 1 1024 2 /dev/vda 0 /dev/vde 0',
        'core 1 1024 2 /dev/vde 0 /dev/vda 0 1 handle_errors',
        'core 1 1024 2 /dev/vda 0 /dev/loop1 0',
      ]) {
        await emu.run(`dmsetup create m --table '0 32768 mirror ${t}'`);
        await emu.settle(100);
        await emu.run('dmsetup table m');
        await emu.run('dmsetup status m');
        emu.events('m');
        if (!t.includes('handle_errors')) await emu.run('dd if=/dev/zero of=/dev/mapper/m bs=4096 seek=2560 count=1 oflag=direct');
        await emu.run('dd if=/dev/mapper/m of=/dev/null bs=4096 skip=1280 count=1 iflag=direct');
        await emu.run('dmsetup status m');
        emu.events('m');
        await emu.quiet('dmsetup remove m');
      }
      emu.echo(`-- file size after: empty ${emu.disks.get('loop1')?.sizeBytes}`);
      compare(emu, section('mirror with a leg smaller than one sector'));
    } finally {
      await emu.cleanup();
    }
  });
});
