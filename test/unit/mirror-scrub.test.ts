/**
 * MirrorSet.scrub (src/mirror/scrub.ts): legs corrupted behind the mirror's back are found region by
 * region, repaired from the default leg (two legs) or the majority (three or more), ties are reported and
 * left alone, and a writer racing the scrub never makes it report a difference.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { pattern } from '../conformance/block-device.suite.js';
import { mirrorFixture, waitInSync, type MirrorFixture } from '../helpers/mirror-fixture.js';
import { voteChunk } from '../../src/mirror/scrub.js';
import { Leg } from '../../src/mirror/leg.js';
import { MemoryBlockDevice } from '../../src/block/memory-block-device.js';
import type { MirrorEvent } from '../../src/mirror/mirror-set.js';

const regionSectors = 128;
const regionBytes = regionSectors * 512;

/** Writes `bytes` into leg `legIndex`'s memory at the region's start plus `offsetBytes`, behind the mirror. */
async function corrupt(f: MirrorFixture, options: { legIndex: number; regionIndex: number; offsetBytes?: number; seed?: number }): Promise<void> {
  const memory = f.memories[options.legIndex];
  assert.ok(memory !== undefined);
  await memory.write(options.regionIndex * regionBytes + (options.offsetBytes ?? 512), pattern(512, options.seed ?? 99 + options.legIndex));
}

async function legsIdentical(f: MirrorFixture): Promise<boolean> {
  const first = await f.memories[0]?.read(0, f.mirror.sizeBytes);
  for (const memory of f.memories.slice(1)) if (!first?.equals(await memory.read(0, f.mirror.sizeBytes))) return false;
  return true;
}

async function inSyncFixture(legCount: number, options: { handleErrors?: boolean } = {}): Promise<MirrorFixture> {
  const features = options.handleErrors === false ? {} : { features: '1 handle_errors' };
  const f = await mirrorFixture({ legCount, lengthSectors: 4096, regionSectors, ...features });
  await waitInSync(f.mirror);
  await f.mirror.write(0, pattern(f.mirror.sizeBytes, 1));
  await f.mirror.idle();
  return f;
}

describe('MirrorSet scrub', () => {
  test('scrub names exactly the regions a leg was corrupted in, and changes nothing without repair', async () => {
    const f = await inSyncFixture(2);
    await corrupt(f, { legIndex: 1, regionIndex: 3 });
    await corrupt(f, { legIndex: 1, regionIndex: 17, offsetBytes: regionBytes - 512 });
    const events: MirrorEvent[] = [];
    f.mirror.onEvent((event) => events.push(event));
    const eventsBefore = f.mirror.eventCount;
    const result = await f.mirror.scrub();
    assert.equal(result.state, 'complete');
    assert.equal(result.scrubbedRegions, f.mirror.regionCount);
    assert.equal(result.mismatchedRegions, 2);
    assert.deepEqual(result.regions.map((r) => r.region), [3, 17]);
    assert.deepEqual(result.regions.map((r) => r.verdict), ['differs', 'differs']);
    assert.deepEqual(result.regions[0]?.outvoted, [{ leg: 1, name: 'l1' }], 'the default leg wins between two legs');
    assert.equal(await legsIdentical(f), false, 'no repair without --repair');
    assert.equal(f.mirror.healthLetters(), 'AA');
    assert.deepEqual(f.mirror.lastScrub, result);
    await f.mirror.idle();
    assert.equal(f.mirror.eventCount, eventsBefore + 1, 'one dm event when the scrub ends');
    assert.deepEqual(events, [{ kind: 'scrub-complete', mismatchedRegions: 2, repairedRegions: 0, aborted: false }]);
    assert.ok(f.messages.some((m) => m.includes('scrub complete: 2 of 32 regions differ')), f.messages.join('\n'));
    await f.mirror.destroy();
  });

  test('scrub --repair rewrites differing regions from the default leg; the legs then compare equal', async () => {
    const f = await inSyncFixture(2);
    await corrupt(f, { legIndex: 1, regionIndex: 5 });
    await corrupt(f, { legIndex: 1, regionIndex: 6 });
    const result = await f.mirror.scrub({ repair: true });
    assert.deepEqual(result.regions.map((r) => [r.region, r.verdict]), [[5, 'repaired'], [6, 'repaired']]);
    assert.equal(result.repairedRegions, 2);
    await f.mirror.idle();
    assert.equal(await legsIdentical(f), true);
    assert.deepEqual(await f.memories[0]?.read(0, f.mirror.sizeBytes), pattern(f.mirror.sizeBytes, 1), 'the default leg kept its data');
    assert.equal((await f.mirror.scrub()).mismatchedRegions, 0, 'a second scrub finds nothing');
    assert.equal(f.mirror.healthLetters(), 'AA');
    await f.mirror.destroy();
  });

  test('with three legs the majority wins, even over the default leg, and the outvoted leg is named', async () => {
    const f = await inSyncFixture(3);
    await corrupt(f, { legIndex: 2, regionIndex: 4 });
    await corrupt(f, { legIndex: 0, regionIndex: 9 });
    const result = await f.mirror.scrub({ repair: true });
    assert.deepEqual(
      result.regions.map((r) => ({ region: r.region, outvoted: r.outvoted.map((leg) => leg.name), verdict: r.verdict })),
      [
        { region: 4, outvoted: ['l2'], verdict: 'repaired' },
        { region: 9, outvoted: ['l0'], verdict: 'repaired' },
      ],
    );
    await f.mirror.idle();
    assert.equal(await legsIdentical(f), true);
    assert.deepEqual(await f.memories[0]?.read(0, f.mirror.sizeBytes), pattern(f.mirror.sizeBytes, 1), 'the majority data everywhere');
    await f.mirror.destroy();
  });

  test('a tie (two against two) and a region where every leg differs are reported, not repaired', async () => {
    const f = await inSyncFixture(4);
    await corrupt(f, { legIndex: 2, regionIndex: 2, seed: 7 });
    await corrupt(f, { legIndex: 3, regionIndex: 2, seed: 7 });
    const three = await inSyncFixture(3);
    await corrupt(three, { legIndex: 1, regionIndex: 8, seed: 5 });
    await corrupt(three, { legIndex: 2, regionIndex: 8, seed: 6 });
    const before = await Promise.all(three.memories.map((m) => m.read(0, three.mirror.sizeBytes)));
    const tie = await f.mirror.scrub({ repair: true });
    const allDiffer = await three.mirror.scrub({ repair: true });
    assert.deepEqual(tie.regions.map((r) => [r.region, r.verdict]), [[2, 'unresolved']]);
    assert.equal(tie.repairedRegions, 0);
    assert.deepEqual(allDiffer.regions.map((r) => [r.region, r.verdict]), [[8, 'unresolved']]);
    await three.mirror.idle();
    const after = await Promise.all(three.memories.map((m) => m.read(0, three.mirror.sizeBytes)));
    assert.deepEqual(after, before, 'nothing guessed, nothing written');
    await f.mirror.destroy();
    await three.mirror.destroy();
  });

  test('regions out of sync are skipped (recovery owns them), and a scrub while suspended is refused', async () => {
    const f = await mirrorFixture({ lengthSectors: 4096, regionSectors, resume: false });
    await assert.rejects(f.mirror.scrub(), { code: 'EBUSY' });
    await f.mirror.destroy();
    const g = await inSyncFixture(2, { handleErrors: false });
    g.legs[1]?.setFaults({ errors: [{ ops: ['write'], range: { offsetBytes: 0, lengthBytes: regionBytes } }] });
    await g.mirror.write(0, pattern(512, 3));
    assert.equal(g.mirror.healthLetters(), 'AD');
    // Leg l1 failed a write: only one valid leg is left, so nothing can be compared.
    const result = await g.mirror.scrub();
    assert.equal(result.scrubbedRegions, 0);
    assert.equal(result.skippedRegions, g.mirror.regionCount);
    await g.mirror.destroy();
  });

  test('a scrub read that fails fails the leg (R), as a client read does; the region is compared without it', async () => {
    const f = await inSyncFixture(3);
    f.legs[2]?.setFaults({ errors: [{ ops: ['read'], range: { offsetBytes: 10 * regionBytes, lengthBytes: 512 } }] });
    const result = await f.mirror.scrub();
    assert.equal(result.readErrors, 1);
    assert.equal(result.mismatchedRegions, 0);
    assert.equal(f.mirror.healthLetters(), 'AAR');
    await f.mirror.destroy();
  });

  test('every leg is read once per region (a remote leg costs one request per region)', async () => {
    const f = await inSyncFixture(3);
    const before = f.mirror.legs.map((leg) => leg.stats.readsTotal);
    const result = await f.mirror.scrub();
    assert.equal(result.scrubbedRegions, f.mirror.regionCount);
    assert.deepEqual(
      f.mirror.legs.map((leg, index) => leg.stats.readsTotal - (before[index] ?? 0)),
      [f.mirror.regionCount, f.mirror.regionCount, f.mirror.regionCount],
    );
    await f.mirror.destroy();
  });

  test('a suspend aborts a running scrub after the region in hand', async () => {
    const f = await inSyncFixture(2);
    const running = f.mirror.scrub({ bytesPerSecond: regionBytes * 4 });
    await new Promise((resolve) => setTimeout(resolve, 30));
    await f.mirror.suspend();
    const result = await running;
    assert.equal(result.state, 'aborted');
    assert.ok(result.scrubbedRegions < f.mirror.regionCount);
    await f.mirror.destroy();
  });

  test('--rate bounds the scrub: 16 regions of 64 KiB at 4 MiB/s take at least 200 ms', async () => {
    const f = await mirrorFixture({ lengthSectors: 16 * regionSectors, regionSectors });
    await waitInSync(f.mirror);
    const startMs = performance.now();
    const result = await f.mirror.scrub({ bytesPerSecond: 4 * 1024 * 1024 });
    assert.equal(result.scrubbedRegions, 16);
    assert.ok(performance.now() - startMs >= 200, `took ${performance.now() - startMs} ms`);
    await f.mirror.destroy();
  });

  test('property: writers racing a scrub never make it report a difference', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.record({ sector: fc.integer({ min: 0, max: 4095 - 16 }), sectors: fc.integer({ min: 1, max: 16 }), seed: fc.nat() }), {
          minLength: 1,
          maxLength: 24,
        }),
        fc.integer({ min: 1, max: 3 }),
        async (writes, latencyMs) => {
          const f = await inSyncFixture(2);
          // The second leg applies writes later than the first: a write is half applied for a while.
          f.legs[1]?.setFaults({ latencyMs: { write: latencyMs } });
          const scrub = f.mirror.scrub();
          await Promise.all(writes.map((w) => f.mirror.write(w.sector * 512, pattern(w.sectors * 512, w.seed))));
          const result = await scrub;
          await f.mirror.idle();
          await f.mirror.destroy();
          assert.equal(result.mismatchedRegions, 0, JSON.stringify(result.regions));
        },
      ),
      { numRuns: 12 },
    );
  });
});

describe('voteChunk', () => {
  const legs = [0, 1, 2, 3].map((index) => new Leg({ index, device: new MemoryBlockDevice({ sizeBytes: 512 }), tableName: `l${index}`, offsetBytes: 0 }));
  const [a, b, c, d] = legs;
  assert.ok(a !== undefined && b !== undefined && c !== undefined && d !== undefined);
  const x = Buffer.alloc(8, 1);
  const y = Buffer.alloc(8, 2);
  const z = Buffer.alloc(8, 3);

  test('two legs: the default leg wins; three: the majority; a tie or all different: no winner', () => {
    assert.deepEqual(voteChunk(new Map([[a, x], [b, x]]), a), { kind: 'same' });
    const two = voteChunk(new Map([[a, x], [b, y]]), b);
    assert.ok(two.kind === 'winner' && two.data === y && two.outvoted[0] === a);
    assert.equal(voteChunk(new Map([[a, x], [b, y]]), c).kind, 'none', 'the default leg was not read');
    const three = voteChunk(new Map([[a, y], [b, x], [c, x]]), a);
    assert.ok(three.kind === 'winner' && three.data === x && three.outvoted.length === 1 && three.outvoted[0] === a);
    assert.equal(voteChunk(new Map([[a, x], [b, y], [c, z]]), a).kind, 'none');
    assert.equal(voteChunk(new Map([[a, x], [b, x], [c, y], [d, y]]), a).kind, 'none', 'a tie is not guessed');
    assert.equal(voteChunk(new Map([[a, x], [b, x], [c, y], [d, z]]), a).kind, 'none', 'two of four is no majority');
  });
});
