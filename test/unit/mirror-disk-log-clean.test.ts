/**
 * Clears off the mark path: a clean bit must wait for a flush of every leg, but a dirty mark must not.
 * A MirrorSet with a disk log whose legs' flushes wait at a gate the test opens: the clean step of one
 * region is waiting for the legs while a write to another region needs its dirty mark. Expected: that
 * write completes while the leg flush is still shut (no timing involved: had the mark waited for the leg
 * flush, the write would never complete and the race below times out); the clean follows the leg flush;
 * a suspend leaves every region clean.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { BlockDevice } from '../../src/block/block-device.js';
import { MemoryBlockDevice } from '../../src/block/memory-block-device.js';
import { diskLogBitsOffsetBytes } from '../../src/dirty-log/disk-log-format.js';
import { sectorBytes } from '../../src/limits.js';
import { createMirrorSet } from '../../src/mirror/create-mirror-set.js';
import { Journal, ProbeDevice } from '../helpers/probe-device.js';

/** Only a bound for a failing run: a correct run never waits for it. */
const stuckMs = 5000;
const regionSectors = 8;
const regionBytes = regionSectors * sectorBytes;
const regionCount = 64;

/** A leg whose flush (fdatasync) waits until the test opens the gate. */
class SlowFlushDevice extends ProbeDevice {
  slowFlushesInFlight = 0;
  #open!: () => void;
  readonly #gate = new Promise<void>((resolve) => {
    this.#open = resolve;
  });

  openGate(): void {
    this.#open();
  }

  override async flush(): Promise<void> {
    this.slowFlushesInFlight += 1;
    try {
      await this.#gate;
      await super.flush();
    } finally {
      this.slowFlushesInFlight -= 1;
    }
  }
}

function cleanBit(image: Uint8Array, regionIndex: number): boolean {
  return ((image[diskLogBitsOffsetBytes + (regionIndex >>> 3)] ?? 0) & (1 << (regionIndex & 7))) !== 0;
}

describe('MirrorSet + DiskDirtyLog: clears off the mark path', () => {
  for (const writeMode of ['changed-blocks', 'whole-buffer'] as const) {
    test(`MirrorSet does not hold a dirty mark behind a slow leg flush of a pending clean (${writeMode})`, async () => {
      const journal = new Journal();
      const legs = [0, 1].map(
        (i) => new SlowFlushDevice(new MemoryBlockDevice({ sizeBytes: regionCount * regionBytes, name: `l${i}` }), { name: `l${i}`, journal }),
      );
      const logMemory = new MemoryBlockDevice({ sizeBytes: 64 * 1024, name: 'log' });
      const devices = new Map<string, BlockDevice>([
        ['l0', legs[0] as BlockDevice],
        ['l1', legs[1] as BlockDevice],
        ['log', logMemory],
      ]);
      const mirror = await createMirrorSet({
        args: `disk 3 log ${regionSectors} nosync 2 l0 0 l1 0`.split(' '),
        lengthSectors: regionCount * regionSectors,
        openDevice: (name) => {
          const device = devices.get(name);
          return device === undefined ? Promise.reject(new Error(`no device ${name}`)) : Promise.resolve(device);
        },
        log: { writeMode, lazyCleanMs: 0 },
      });
      await mirror.resume();
      const leg0 = legs[0];
      assert.ok(leg0 !== undefined);

      // Region 0 gets a write; once it is done, the next pass queues its clean and flushes the legs.
      await mirror.write(0, Buffer.alloc(regionBytes, 1));
      const flushesBefore = leg0.started('flush').length;
      const waitStart = performance.now();
      while (leg0.slowFlushesInFlight === 0 && performance.now() - waitStart < stuckMs) await sleep(1);
      assert.equal(leg0.slowFlushesInFlight, 1, 'the clean step of region 0 is waiting for the leg flush');

      // Region 5 is new: its write needs a dirty mark on the log device first.
      const outcome = await Promise.race([
        mirror.write(5 * regionBytes, Buffer.alloc(regionBytes, 5)).then(() => 'written' as const),
        sleep(stuckMs).then(() => 'stuck behind the leg flush' as const),
      ]);
      assert.equal(outcome, 'written', 'the write to a new region does not wait for the leg flush of a clean');
      assert.equal(leg0.started('flush').length, flushesBefore, 'the slow leg flush has not even started its inner flush yet');
      const during = await logMemory.read(0, 4096);
      assert.equal(cleanBit(during, 5), false, 'region 5 is dirty on the log device');
      assert.equal(cleanBit(during, 0), false, 'region 0 stays dirty until its leg flush ends');

      // Suspend waits for every clean to be durable: a clean deactivation needs no resync.
      for (const leg of legs) leg.openGate();
      await mirror.suspend();
      const after = await logMemory.read(0, 4096);
      for (let r = 0; r < regionCount; r++) assert.equal(cleanBit(after, r), true, `region ${r} clean after suspend`);
      await mirror.destroy();
    });
  }
});
