/**
 * The DirtyLog compliance suite: what every log (core, disk) must do, whatever it persists. Called from
 * test/unit/<impl>.test.ts with a factory. The suite resumes each log itself (creation does not).
 * Persistence tests run only where `supports.persistent` is set and `supports.reopen` is given.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { DirtyLog, LogSyncMode } from '../../src/dirty-log/dirty-log.js';

export interface DirtyLogFactoryOptions {
  readonly regionCount: number;
  readonly regionSizeSectors: number;
  readonly syncMode: LogSyncMode;
}

export interface DirtyLogSuiteOptions {
  readonly name: string;
  readonly create: (options: DirtyLogFactoryOptions) => Promise<DirtyLog>;
  readonly supports: {
    readonly persistent?: boolean;
    /** Closes `log` and opens a new, not yet resumed log on the same storage with the same options. */
    readonly reopen?: (log: DirtyLog, options: DirtyLogFactoryOptions) => Promise<DirtyLog>;
  };
}

const defaults: DirtyLogFactoryOptions = { regionCount: 100, regionSizeSectors: 1024, syncMode: 'default' };

/** Hands out every resync region until none is left. */
function drainResync(log: DirtyLog): number[] {
  const out: number[] = [];
  for (let n = 0; n <= log.regionCount; n++) {
    const regionIndex = log.getResyncWork();
    if (regionIndex === null) return out;
    out.push(regionIndex);
  }
  assert.fail('getResyncWork returned more regions than exist');
}

export function dirtyLogSuite(options: DirtyLogSuiteOptions): void {
  const { name, create, supports } = options;
  const open = async (overrides: Partial<DirtyLogFactoryOptions> = {}): Promise<DirtyLog> => {
    const log = await create({ ...defaults, ...overrides });
    await log.resume();
    return log;
  };

  describe(`DirtyLog conformance: ${name}`, () => {
    test(`${name} reports its geometry and sync mode`, async () => {
      const log = await open({ regionCount: 37, regionSizeSectors: 128, syncMode: 'sync' });
      assert.equal(log.regionCount, 37);
      assert.equal(log.regionSizeSectors, 128);
      assert.equal(log.syncMode, 'sync');
      assert.equal(log.health, 'A');
      await log.close();
    });

    test(`${name} starts with every region clean and none in sync (default mode, fresh)`, async () => {
      const log = await open();
      assert.equal(log.syncCount(), 0);
      for (let r = 0; r < log.regionCount; r++) {
        assert.equal(log.inSync(r), false);
      }
      await log.close();
    });

    test(`${name} starts with every region in sync with nosync`, async () => {
      const log = await open({ syncMode: 'nosync' });
      assert.equal(log.syncCount(), log.regionCount);
      assert.equal(log.inSync(0), true);
      assert.equal(log.inSync(log.regionCount - 1), true);
      assert.equal(log.getResyncWork(), null);
      await log.close();
    });

    test(`${name} markRegion makes a region dirty and clearRegion clean again`, async () => {
      const log = await open({ syncMode: 'nosync' });
      assert.equal(log.isClean(7), true);
      log.markRegion(7);
      assert.equal(log.isClean(7), false);
      assert.equal(log.isClean(6), true);
      await log.flush();
      log.clearRegion(7);
      assert.equal(log.isClean(7), true);
      await log.flush();
      assert.equal(log.isClean(7), true);
      await log.close();
    });

    test(`${name} mark and clear do not change sync bits`, async () => {
      const log = await open({ syncMode: 'nosync' });
      log.markRegion(3);
      await log.flush();
      assert.equal(log.inSync(3), true);
      assert.equal(log.syncCount(), log.regionCount);
      await log.close();
    });

    test(`${name} getResyncWork hands out out-of-sync regions in order, each once`, async () => {
      const log = await open({ regionCount: 40 });
      const got = drainResync(log);
      assert.deepEqual(got, Array.from({ length: 40 }, (_, i) => i));
      assert.equal(log.getResyncWork(), null);
      await log.close();
    });

    test(`${name} getResyncWork skips regions in sync and regions still recovering`, async () => {
      const log = await open({ regionCount: 10 });
      // As the mirror does after a recovery: in sync, then clean (a persistent log reloads sync from clean).
      for (const r of [0, 2]) {
        log.setRegionSync(r, true);
        log.clearRegion(r);
      }
      await log.flush();
      assert.equal(log.getResyncWork(), 1);
      assert.equal(log.getResyncWork(), 3);
      await log.resume(); // Restarts the search; 1 and 3 are still recovering.
      assert.equal(log.getResyncWork(), 4);
      await log.close();
    });

    test(`${name} setRegionSync counts regions in and out of sync`, async () => {
      const log = await open({ regionCount: 10 });
      const r = log.getResyncWork();
      assert.equal(r, 0);
      log.setRegionSync(0, true);
      assert.equal(log.syncCount(), 1);
      assert.equal(log.inSync(0), true);
      log.setRegionSync(0, false);
      assert.equal(log.syncCount(), 0);
      assert.equal(log.inSync(0), false);
      log.setRegionSync(5, false); // Not in sync: no change.
      assert.equal(log.syncCount(), 0);
      await log.close();
    });

    test(`${name} a failed recovery frees the region for the next search only after resume`, async () => {
      const log = await open({ regionCount: 4 });
      assert.deepEqual(drainResync(log), [0, 1, 2, 3]);
      log.setRegionSync(0, false); // Recovery of 0 failed: no longer recovering, still out of sync.
      for (const r of [1, 2, 3]) {
        log.setRegionSync(r, true);
        log.clearRegion(r);
      }
      await log.flush();
      assert.equal(log.getResyncWork(), null);
      await log.resume();
      assert.deepEqual(drainResync(log), [0]);
      await log.close();
    });

    test(`${name} a region that drops out of sync behind the search waits for resume`, async () => {
      const log = await open({ regionCount: 4 });
      for (const r of drainResync(log)) {
        log.setRegionSync(r, true);
        log.clearRegion(r);
      }
      await log.flush();
      assert.equal(log.syncCount(), 4);
      // A write to region 1 fails on one leg: the region is dirty and out of sync.
      log.markRegion(1);
      await log.flush();
      log.setRegionSync(1, false);
      assert.equal(log.syncCount(), 3);
      assert.equal(log.getResyncWork(), null);
      await log.resume();
      assert.deepEqual(drainResync(log), [1]);
      await log.close();
    });

    test(`${name} with sync mode starts with no region in sync`, async () => {
      const log = await open({ syncMode: 'sync', regionCount: 8 });
      assert.equal(log.syncCount(), 0);
      assert.deepEqual(drainResync(log), [0, 1, 2, 3, 4, 5, 6, 7]);
      await log.close();
    });

    test(`${name} status lines follow dm-log`, async () => {
      const log = await open({ regionSizeSectors: 1024 });
      assert.match(log.statusInfo(), new RegExp(`^\\d+ ${log.type}( |$)`));
      assert.match(log.statusTable(), new RegExp(`^${log.type} \\d+ .*1024$`));
      const nosync = await open({ regionSizeSectors: 512, syncMode: 'nosync' });
      assert.match(nosync.statusTable(), / 512 nosync$/);
      await log.close();
      await nosync.close();
    });

    test(`${name} rejects region indexes outside the log`, async () => {
      const log = await open({ regionCount: 5 });
      assert.throws(() => log.isClean(5), RangeError);
      assert.throws(() => log.markRegion(-1), RangeError);
      assert.throws(() => log.inSync(1.5), RangeError);
      await log.close();
    });

    test(`${name} handles a region count that is not a multiple of 32`, async () => {
      const log = await open({ regionCount: 33 });
      const got = drainResync(log);
      assert.equal(got.length, 33);
      for (const r of got) log.setRegionSync(r, true);
      assert.equal(log.syncCount(), 33);
      await log.close();
    });

    const reopen = supports.reopen;
    if (supports.persistent === true && reopen !== undefined) {
      test(`${name} persists clean regions across reopen (no resync after a clean shutdown)`, async () => {
        const opts = { ...defaults, regionCount: 50 };
        const log = await create(opts);
        await log.resume();
        for (const r of drainResync(log)) {
          log.setRegionSync(r, true);
          log.clearRegion(r);
        }
        await log.flush();
        await log.presuspend();
        await log.postsuspend();
        const again = await reopen(log, opts);
        await again.resume();
        assert.equal(again.syncCount(), 50);
        assert.equal(again.getResyncWork(), null);
        await again.close();
      });

      test(`${name} persists a dirty region across reopen (resync only that region)`, async () => {
        const opts = { ...defaults, regionCount: 50, syncMode: 'nosync' as const };
        const log = await create(opts);
        await log.resume();
        log.markRegion(17);
        await log.flush();
        // Crash: no postsuspend. Reopen in default mode, which trusts the log.
        const again = await reopen(log, { ...opts, syncMode: 'default' });
        await again.resume();
        assert.equal(again.syncCount(), 49);
        assert.equal(again.inSync(17), false);
        assert.deepEqual(drainResync(again), [17]);
        await again.close();
      });
    }
  });
}
