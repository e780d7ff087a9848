import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { CoreDirtyLog } from '../../src/dirty-log/core-dirty-log.js';
import { dirtyLogSuite } from '../conformance/dirty-log.suite.js';

dirtyLogSuite({
  name: 'CoreDirtyLog',
  create: (options) => Promise.resolve(new CoreDirtyLog(options)),
  supports: { persistent: false },
});

describe('CoreDirtyLog', () => {
  test('CoreDirtyLog status lines match dm-log core_status', () => {
    const plain = new CoreDirtyLog({ regionCount: 32, regionSizeSectors: 1024, syncMode: 'default' });
    assert.equal(plain.statusInfo(), '1 core');
    assert.equal(plain.statusTable(), 'core 1 1024');
    const nosync = new CoreDirtyLog({ regionCount: 32, regionSizeSectors: 1024, syncMode: 'nosync' });
    assert.equal(nosync.statusTable(), 'core 2 1024 nosync');
    const sync = new CoreDirtyLog({ regionCount: 32, regionSizeSectors: 2, syncMode: 'sync' });
    assert.equal(sync.statusTable(), 'core 2 2 sync');
  });

  test('CoreDirtyLog keeps its bits across resume (nothing persisted, only the search restarts)', async () => {
    const log = new CoreDirtyLog({ regionCount: 3, regionSizeSectors: 8, syncMode: 'default' });
    await log.resume();
    log.setRegionSync(1, true);
    log.markRegion(2);
    await log.resume();
    assert.equal(log.syncCount(), 1);
    assert.equal(log.isClean(2), false);
    assert.equal(log.getResyncWork(), 0);
    assert.equal(log.getResyncWork(), 2);
  });

  test('CoreDirtyLog health is always A and stats are zero', async () => {
    const log = new CoreDirtyLog({ regionCount: 3, regionSizeSectors: 8, syncMode: 'default' });
    log.markRegion(0);
    await log.flush();
    await log.postsuspend();
    assert.equal(log.health, 'A');
    assert.deepEqual(log.stats, { logBytesWritten: 0, logWritesTotal: 0, logFlushesTotal: 0 });
  });

  test('CoreDirtyLog counts a repeated in-sync report once', () => {
    const log = new CoreDirtyLog({ regionCount: 3, regionSizeSectors: 8, syncMode: 'default' });
    log.setRegionSync(0, true);
    log.setRegionSync(0, true);
    assert.equal(log.syncCount(), 1);
  });

  test('CoreDirtyLog handles 32M regions (16 TiB at 512 KiB regions) in a few MiB', () => {
    const before = process.memoryUsage().arrayBuffers;
    const log = new CoreDirtyLog({ regionCount: 32 * 1024 * 1024, regionSizeSectors: 1024, syncMode: 'nosync' });
    const grown = process.memoryUsage().arrayBuffers - before;
    assert.ok(grown <= 13 * 1024 * 1024, `three bit sets took ${grown} bytes`);
    log.setRegionSync(32 * 1024 * 1024 - 1, false);
    assert.equal(log.syncCount(), 32 * 1024 * 1024 - 1);
  });
});
