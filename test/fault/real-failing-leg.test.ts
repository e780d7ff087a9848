/**
 * End to end with a leg that fails for real (DESIGN §6): a mirror over a real image file and an nbdfuse
 * file backed by nbdkit's error filter (test/helpers/failing-leg.ts), both opened as FileBlockDevices
 * (the failing one with O_DIRECT so no page cache hides the failure), driven through MappedDevice and
 * targetBuilder exactly as the daemon drives them. Skips locally without nbdkit/nbdfuse; fails under CI.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BlockDevice } from '../../src/block/block-device.js';
import { FileBlockDevice } from '../../src/block/file-block-device.js';
import { targetBuilder } from '../../src/control/build-target.js';
import { sectorBytes } from '../../src/limits.js';
import { MirrorSet } from '../../src/mirror/mirror-set.js';
import { MappedDevice } from '../../src/target/mapped-device.js';
import { pattern } from '../conformance/block-device.suite.js';
import { startFailingLeg, type FailingLeg } from '../helpers/failing-leg.js';
import { shared, waitFor } from '../helpers/mirror-fixture.js';
import { requireTools } from '../helpers/tools.js';

const tools = ['nbdkit', 'nbdfuse', 'fusermount3'];
const sizeBytes = 8 * 1024 * 1024;
const lengthSectors = sizeBytes / sectorBytes;
const slotBytes = 64 * 1024;

interface Rig {
  readonly md: MappedDevice;
  readonly good: FileBlockDevice;
  readonly bad: FileBlockDevice;
  readonly failing: FailingLeg;
  mirror(): MirrorSet;
}

/** A mirror "good"/"bad" (or "bad"/"good") with handle_errors, resumed and in sync. */
async function rig(t: TestContext, options: { badFirst: boolean }): Promise<Rig> {
  const dir = await mkdtemp(join(tmpdir(), 'umirror-real-'));
  const failing = await startFailingLeg({ sizeBytes });
  const devices: BlockDevice[] = [];
  let md: MappedDevice | undefined;
  // One hook, in order: the mapped device, then the files, then the FUSE mount and the temp dir.
  t.after(async () => {
    await failing.heal();
    await md?.close();
    await Promise.all(devices.map((d) => d.close()));
    await failing.close();
    await rm(dir, { recursive: true, force: true });
  });
  const good = await FileBlockDevice.create(join(dir, 'good.img'), sizeBytes);
  devices.push(good);
  const bad = await FileBlockDevice.open(failing.path, { direct: true });
  devices.push(bad);
  const byName = new Map<string, BlockDevice>([
    ['good', good],
    ['bad', bad],
  ]);
  const open = (name: string): Promise<BlockDevice> => {
    const device = byName.get(name);
    return device === undefined ? Promise.reject(new Error(`no device ${name}`)) : Promise.resolve(shared(device));
  };
  md = new MappedDevice({ name: 'm', buildTarget: targetBuilder({ resolver: { open } }) });
  const legs = options.badFirst ? 'bad 0 good 0' : 'good 0 bad 0';
  await md.load(`0 ${lengthSectors} mirror core 1 1024 2 ${legs} 1 handle_errors`);
  await md.resume();
  const device = md;
  const mirror = (): MirrorSet => {
    const target = device.segments()[0]?.target;
    assert.ok(target instanceof MirrorSet);
    return target;
  };
  await waitFor(() => mirror().inSync, 'the initial resync', 30_000);
  return { md: device, good, bad, failing, mirror };
}

test('MirrorSet over a real failing leg: held writes complete after a noflush suspend and a linear reload on the good leg', async (t) => {
  // Write load from 8 writers; fail leg "bad" mid-way. Expected: status AD, writes held, no write
  // acknowledged with an error; noflush suspend + "linear good 0" + resume completes every held write;
  // the good leg holds every acknowledged write.
  if (!requireTools(t, tools)) return;
  const r = await rig(t, { badFirst: false });
  const slots = sizeBytes / slotBytes;
  const lastSeed = new Map<number, number>();
  let stop = false;
  let seed = 1;
  const writer = async (first: number): Promise<void> => {
    for (let round = 0; !stop; round++) {
      const slot = (first + round * 8) % slots;
      const mySeed = seed++;
      await r.md.write(slot * slotBytes, pattern(slotBytes, mySeed));
      lastSeed.set(slot, mySeed);
    }
  };
  const writers = Array.from({ length: 8 }, (_, i) => writer(i));
  await waitFor(() => lastSeed.size >= 32, 'some writes before the failure', 30_000);
  await r.failing.fail();
  await waitFor(() => r.mirror().healthLetters() === 'AD' && r.mirror().heldWrites > 0, 'the leg failure and a held write', 30_000);
  stop = true;
  assert.match(r.md.status(), /^0 16384 mirror 2 good bad \d+\/16 1 AD 1 core\n$/);
  assert.ok(r.md.eventNr >= 2, 'the leg failure raised an event');
  await r.md.suspend({ noflush: true });
  await r.md.load('0 16384 linear good 0');
  await r.md.resume();
  await Promise.all(writers);
  assert.equal(r.md.table(), '0 16384 linear good 0\n');
  for (const [slot, s] of lastSeed) {
    assert.deepEqual(await r.good.read(slot * slotBytes, slotBytes), pattern(slotBytes, s), `slot ${slot} on the good leg`);
    assert.deepEqual(await r.md.read(slot * slotBytes, slotBytes), pattern(slotBytes, s), `slot ${slot} through the device`);
  }
});

test('MirrorSet over a real failing leg: reads fail over from a dead primary to the good leg', async (t) => {
  // Primary "bad" fails after the data was mirrored. Expected: every read returns the written data
  // (from "good"), status RA, the default leg switches (handle_errors) with one event.
  if (!requireTools(t, tools)) return;
  const r = await rig(t, { badFirst: true });
  const data = pattern(sizeBytes, 42);
  await r.md.write(0, data);
  await r.md.flush();
  const eventsBefore = r.md.eventNr;
  await r.failing.fail();
  for (let at = 0; at < sizeBytes; at += 1024 * 1024) {
    assert.deepEqual(await r.md.read(at, 1024 * 1024), data.subarray(at, at + 1024 * 1024));
  }
  assert.match(r.md.status(), /^0 16384 mirror 2 bad good 16\/16 1 RA 1 core\n$/);
  assert.equal(r.mirror().defaultLegIndex, 1);
  await waitFor(() => r.md.eventNr === eventsBefore + 1, 'one event for the read failure');
  assert.deepEqual(await r.good.read(0, 4096), data.subarray(0, 4096));
});
