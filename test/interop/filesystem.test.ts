/**
 * A real ext4 filesystem on the served mirror (DESIGN §6): the mirror (a disk log, an image file leg and
 * a leg on a real failing file from failing-leg.ts) is served over NBD, exposed as a file by nbdfuse,
 * formatted with mkfs.ext4 and loop-mounted. Files are written, the second leg is failed in the middle,
 * writing goes on, and after unmounting fsck.ext4 -fn finds the filesystem clean and every checksum
 * matches after a remount.
 *
 * The device runs in this process (MappedDevice + NbdServer, as `umirror serve` composes them) so the
 * test can play dmeventd: with handle_errors the kernel holds failed writes until userspace reloads the
 * table, so on the leg failure the test suspends with noflush, loads `linear <good leg>` and resumes,
 * and the held writes complete in the new table. Without handle_errors the write is acknowledged from
 * the good default leg and the filesystem never notices. Every filesystem action runs in a child
 * process (mount, sh, sha256sum, sync), so nothing in this process blocks on its own server.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { FileBlockDevice } from '../../src/block/file-block-device.js';
import { targetBuilder } from '../../src/control/build-target.js';
import { mirrorExport } from '../../src/control/mirror-export.js';
import { MirrorSet } from '../../src/mirror/mirror-set.js';
import { NbdServer } from '../../src/nbd/server.js';
import { MappedDevice } from '../../src/target/mapped-device.js';
import { startFailingLeg, type FailingLeg } from '../helpers/failing-leg.js';
import { waitFor } from '../helpers/mirror-fixture.js';
import { mountNbdfuse, type NbdfuseFile } from '../helpers/nbdfuse-file.js';
import { requireTools, run, runOk } from '../helpers/nbd-tools.js';

const MiB = 1024 * 1024;
const sizeBytes = 64 * MiB;
const lengthSectors = sizeBytes / 512;
const tools = ['nbdkit', 'nbdfuse', 'fusermount3', 'mkfs.ext4', 'fsck.ext4', 'mount', 'umount', 'sha256sum'];

interface FsRig {
  readonly dir: string;
  readonly md: MappedDevice;
  readonly good: string;
  readonly log: string;
  readonly failing: FailingLeg;
  readonly fuse: NbdfuseFile;
  readonly mnt: string;
  mirror(): MirrorSet;
}

const sh = (script: string): Promise<string> => runOk('sh', ['-c', script], { timeoutMs: 120_000 });

/** Mirror "good"/"failing" with a disk log (nosync: both legs start zeroed), served, nbdfuse-mounted. */
async function fsRig(t: TestContext, options: { handleErrors: boolean }): Promise<FsRig> {
  const dir = await mkdtemp(join(tmpdir(), 'umirror-fs-'));
  const failing = await startFailingLeg({ sizeBytes });
  const good = join(dir, 'good.img');
  const log = join(dir, 'log.img');
  const mnt = join(dir, 'mnt');
  await mkdir(mnt);
  for (const [path, bytes] of [[good, sizeBytes], [log, MiB]] as const) {
    await writeFile(path, '');
    await truncate(path, bytes);
  }
  const md = new MappedDevice({
    name: 'fs',
    buildTarget: targetBuilder({
      // The failing leg with O_DIRECT, so no page cache hides its failure.
      resolver: { open: (name) => FileBlockDevice.open(name, name === failing.path ? { direct: true } : {}) },
    }),
  });
  const server = new NbdServer({ exports: [mirrorExport({ name: 'fs', device: md })] });
  let fuse: NbdfuseFile | undefined;
  t.after(async () => {
    await run('umount', ['-l', mnt]);
    await fuse?.close();
    await server.close({ graceful: false });
    await md.close();
    await failing.heal();
    await failing.close();
    await rm(dir, { recursive: true, force: true });
  });
  const features = options.handleErrors ? ' 1 handle_errors' : '';
  await md.load(`0 ${lengthSectors} mirror disk 3 ${log} 1024 nosync 2 ${good} 0 ${failing.path} 0${features}`);
  await md.resume();
  const listener = await server.listen({ path: join(dir, 'nbd.sock') });
  fuse = await mountNbdfuse({ uri: listener.uri, dir, sizeBytes });
  const mirror = (): MirrorSet => {
    const target = md.segments()[0]?.target;
    assert.ok(target instanceof MirrorSet, 'the mirror table is live');
    return target;
  };
  return { dir, md, good, log, failing, fuse, mnt, mirror };
}

/** Writes `count` files of uneven sizes (some not block multiples) under mnt/sub, then syncs the fs. */
function writeFiles(rig: FsRig, sub: string, count: number): Promise<string> {
  const dir = join(rig.mnt, sub);
  return sh(
    `mkdir -p ${dir} && for i in $(seq 1 ${count}); do head -c $((i * 151 * 1024 + i * 7)) /dev/urandom > ${dir}/f$i; done && sync -f ${rig.mnt}`,
  );
}

async function checksums(rig: FsRig): Promise<string> {
  return sh(`cd ${rig.mnt} && find . -type f ! -path './lost+found/*' | sort | xargs sha256sum`);
}

/** Unmounts, checks with fsck.ext4 -fn (through the export and on the good leg file), remounts, compares. */
async function assertCleanAfterRemount(rig: FsRig, sums: string): Promise<void> {
  await runOk('umount', [rig.mnt]);
  for (const path of [rig.fuse.path, rig.good]) {
    const fsck = await run('fsck.ext4', ['-fn', path], { timeoutMs: 120_000 });
    assert.equal(fsck.code, 0, `fsck.ext4 -fn ${path}\n${fsck.stdout}${fsck.stderr}`);
  }
  await runOk('mount', ['-o', 'loop', rig.fuse.path, rig.mnt]);
  assert.equal(await checksums(rig), sums);
  await runOk('umount', [rig.mnt]);
}

/** Loop mounts need root: like a missing tool, not being root skips locally and fails under CI=true. */
function requireRoot(t: TestContext): boolean {
  if (process.getuid?.() === 0) return true;
  const reason = 'mount -o loop needs root';
  if (process.env['CI'] === 'true') throw new Error(`${reason} (required under CI=true)`);
  console.log(`# skip: ${reason}`);
  t.skip(reason);
  return false;
}

/** A rig with ext4 made, mounted and holding files; then the second leg starts failing. */
async function filledThenFailed(t: TestContext, options: { handleErrors: boolean }): Promise<{ rig: FsRig; eventsBefore: number }> {
  const rig = await fsRig(t, options);
  await runOk('mkfs.ext4', ['-q', '-F', rig.fuse.path], { timeoutMs: 120_000 });
  await runOk('mount', ['-o', 'loop', rig.fuse.path, rig.mnt]);
  await writeFiles(rig, 'before', 12);
  assert.match(rig.md.status(), / 1 AA 3 disk /);
  const eventsBefore = rig.md.eventNr;
  await rig.failing.fail();
  return { rig, eventsBefore };
}

/** The status line of the mirror with its second leg failed by a write (D) and the log alive. */
function assertSecondLegDead(rig: FsRig): void {
  assert.match(rig.md.status(), new RegExp(`^0 ${lengthSectors} mirror 2 ${rig.good} ${rig.failing.path} \\d+/128 1 AD 3 disk ${rig.log} A\\n$`));
}

test('ext4 on a served mirror with handle_errors: a leg fails mid-write, held writes complete after a reload on the good leg', async (t) => {
  // Expected: status AD with one event for the failure and a write held; after noflush suspend + linear
  // reload + resume, every write completes; fsck clean; checksums match after a remount.
  if (!requireTools(t, ...tools) || !requireRoot(t)) return;
  const { rig, eventsBefore } = await filledThenFailed(t, { handleErrors: true });
  const writing = writeFiles(rig, 'after', 12);
  await waitFor(() => rig.mirror().healthLetters() === 'AD' && rig.mirror().heldWrites > 0, 'the leg failure and a held write', 60_000);
  assertSecondLegDead(rig);
  assert.equal(rig.md.eventNr, eventsBefore + 1, 'one event for the write failure');
  // dmeventd's part: drop the failed leg.
  await rig.md.suspend({ noflush: true });
  await rig.md.load(`0 ${lengthSectors} linear ${rig.good} 0`);
  await rig.md.resume();
  await writing;
  await writeFiles(rig, 'later', 4);
  assert.equal(rig.md.table(), `0 ${lengthSectors} linear ${rig.good} 0\n`);
  await assertCleanAfterRemount(rig, await checksums(rig));
});

test('ext4 on a served mirror without handle_errors: a leg fails mid-write and writing goes on from the good leg', async (t) => {
  // Expected: status AD (the failure is recorded), no event (the kernel raises none without
  // handle_errors), no write held or failed; fsck clean; checksums match after a remount.
  if (!requireTools(t, ...tools) || !requireRoot(t)) return;
  const { rig, eventsBefore } = await filledThenFailed(t, { handleErrors: false });
  await writeFiles(rig, 'after', 12);
  await waitFor(() => rig.mirror().healthLetters() === 'AD', 'the leg failure', 60_000);
  await writeFiles(rig, 'later', 4);
  assertSecondLegDead(rig);
  assert.equal(rig.mirror().heldWrites, 0);
  assert.equal(rig.md.eventNr, eventsBefore, 'no event without handle_errors');
  await assertCleanAfterRemount(rig, await checksums(rig));
});
