/**
 * MirrorSet write admission: the write queue is bounded (writeQueueMax pieces), and no request size may
 * deadlock it. A request is split at region boundaries into pieces; before the bound was per span, many
 * concurrent requests (or one large request over small regions) filled the queue part way through
 * their pieces and waited for a pass that nothing had asked for (on an idle set: no pass pending and no
 * write in flight whose completion would wake the worker). Each test fails by timing out.
 * The same defect through a real NBD client is in test/interop/serve-admission.test.ts.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryBlockDevice } from '../../src/block/memory-block-device.js';
import { CoreDirtyLog } from '../../src/dirty-log/core-dirty-log.js';
import { requestBytesMax, sectorBytes, spanPiecesMax, writeQueueMax } from '../../src/limits.js';
import { MirrorSet } from '../../src/mirror/mirror-set.js';
import { pattern } from '../conformance/block-device.suite.js';
import { mirrorFixture, waitInSync } from '../helpers/mirror-fixture.js';

/**
 * Lets pending worker passes run, so the next requests meet an idle worker (the old admission hung only
 * then; the fixed one completes either way, so no timing margin decides the verdict).
 */
async function idle(mirror: MirrorSet): Promise<void> {
  await waitInSync(mirror);
  await mirror.idle();
}

/** A resumed two-leg set over plain memory legs and a nosync core log: the cheapest per piece. */
async function plainMirror(options: { lengthBytes: number; regionSectors: number }): Promise<{ mirror: MirrorSet; memories: MemoryBlockDevice[] }> {
  const memories = [0, 1].map((i) => new MemoryBlockDevice({ sizeBytes: options.lengthBytes, name: `l${i}` }));
  const lengthSectors = options.lengthBytes / sectorBytes;
  const log = new CoreDirtyLog({
    regionCount: Math.ceil(lengthSectors / options.regionSectors),
    regionSizeSectors: options.regionSectors,
    syncMode: 'nosync',
  });
  const mirror = new MirrorSet({
    lengthSectors,
    log,
    legs: memories.map((device, i) => ({ device, tableName: `l${i}`, offsetSectors: 0 })),
    features: { handleErrors: true, keepLog: false },
  });
  await mirror.resume();
  return { mirror, memories };
}

const MiB = 1024 * 1024;
/** A hang fails the test instead of the run. */
const hangTimeoutMs = 120_000;

describe('MirrorSet admission', () => {
  test('MirrorSet completes 33 concurrent 1 MiB writes over 8 KiB regions', { timeout: hangTimeoutMs }, async () => {
    // 33 x 128 pieces: more than the old 4096-piece queue, filled part way through every request.
    const count = 33;
    const { mirror, memories } = await mirrorFixture({ lengthSectors: (count * MiB) / sectorBytes, regionSectors: 16, log: 'core 2 16 nosync' });
    // An idle set: no pass pending and nothing in flight whose completion would wake the worker.
    await idle(mirror);
    const datas = Array.from({ length: count }, (_, i) => pattern(MiB, i + 1));
    await Promise.all(datas.map((data, i) => mirror.write(i * MiB, data)));
    for (const [i, data] of datas.entries()) {
      assert.ok((await mirror.read(i * MiB, MiB)).equals(data), `write ${i} reads back`);
      for (const memory of memories) assert.ok((await memory.read(i * MiB, MiB)).equals(data), `write ${i} on ${memory.name}`);
    }
    assert.equal(mirror.statusInfo(), `2 l0 l1 ${mirror.regionCount}/${mirror.regionCount} 1 AA 1 core`);
    await mirror.destroy();
  });

  test('MirrorSet admits more smallest-region pieces than the write queue holds (trims of 32 MiB over 1 KiB regions)', { timeout: hangTimeoutMs }, async () => {
    // Two spans of spanPiecesMax - 1 pieces fill the queue; a third trim arrives while they are queued and
    // waits for a pass to take them (before the fix: a wait nothing woke).
    assert.ok(2 * (spanPiecesMax - 1) + 1 > writeQueueMax, 'the test overfills the queue');
    const { mirror, memories } = await plainMirror({ lengthBytes: 2 * requestBytesMax + MiB, regionSectors: 2 });
    const marks = [12_288, requestBytesMax + 12_288, 2 * requestBytesMax + 4096];
    for (const at of marks) await mirror.write(at, pattern(4096, at));
    await idle(mirror);
    await Promise.all([
      mirror.trim(0, requestBytesMax),
      mirror.trim(requestBytesMax, requestBytesMax),
      mirror.trim(2 * requestBytesMax, MiB),
    ]);
    for (const at of marks) {
      for (const memory of memories) assert.ok((await memory.read(at, 4096)).equals(Buffer.alloc(4096)), `${memory.name} trimmed at ${at}`);
    }
    await mirror.destroy();
  });

  test('MirrorSet runs a request larger than requestBytesMax in spans (one 80 MiB write-zeroes)', { timeout: hangTimeoutMs }, async () => {
    // NBD write-zeroes and trim carry no payload: their length is not bounded by requestBytesMax.
    const lengthBytes = 80 * MiB;
    const { mirror, memories } = await plainMirror({ lengthBytes, regionSectors: 128 });
    const at = lengthBytes - 8192;
    await mirror.write(at, pattern(8192, 5));
    await idle(mirror);
    await mirror.writeZeroes(1024, lengthBytes - 1024);
    for (const memory of memories) assert.ok((await memory.read(at, 8192)).equals(Buffer.alloc(8192)), `${memory.name} zeroed`);
    await mirror.destroy();
  });
});
