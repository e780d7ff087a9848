/**
 * `umirror scrub`'s summary lines (src/cli/scrub-verb.ts) and the scrub request on the control protocol.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { scrubSummaryLines } from '../../src/cli/scrub-verb.js';
import { parseRequest } from '../../src/control/control-protocol.js';
import type { DeviceScrubResult, SegmentScrubResult } from '../../src/control/mirror-integrity.js';
import { rateOption, scrubEveryOption } from '../../src/cli/option-values.js';

function segment(overrides: Partial<SegmentScrubResult>): SegmentScrubResult {
  return {
    start: 0,
    state: 'complete',
    repair: false,
    regionCount: 2048,
    scrubbedRegions: 2048,
    skippedRegions: 0,
    mismatchedRegions: 0,
    repairedRegions: 0,
    regions: [],
    readErrors: 0,
    startedAtMs: 0,
    finishedAtMs: 1,
    ...overrides,
  };
}

function device(segments: SegmentScrubResult[]): DeviceScrubResult {
  return {
    name: 'vol',
    state: segments.every((s) => s.state === 'complete') ? 'complete' : 'aborted',
    repair: segments.some((s) => s.repair),
    regionCount: segments.reduce((sum, s) => sum + s.regionCount, 0),
    mismatchedRegions: segments.reduce((sum, s) => sum + s.mismatchedRegions, 0),
    repairedRegions: segments.reduce((sum, s) => sum + s.repairedRegions, 0),
    segments,
  };
}

describe('scrubSummaryLines', () => {
  test('the issue\'s summary, a line per region naming the outvoted leg, repaired and unresolved', () => {
    const l1 = { leg: 1, name: 'l1' };
    const l2 = { leg: 2, name: 'l2' };
    const lines = scrubSummaryLines(
      device([
        segment({
          repair: true,
          mismatchedRegions: 3,
          repairedRegions: 2,
          regions: [
            { region: 17, outvoted: [l1], verdict: 'repaired' },
            { region: 18, outvoted: [l2], verdict: 'repaired' },
            { region: 1033, outvoted: [], verdict: 'unresolved' },
          ],
        }),
      ]),
    );
    assert.deepEqual(lines, [
      'scrub vol: 3 of 2048 regions differ (regions 17, 18, 1033), 2 repaired',
      '  region 17: l1 outvoted, repaired',
      '  region 18: l2 outvoted, repaired',
      '  region 1033: no majority, not repaired',
    ]);
    assert.deepEqual(scrubSummaryLines(device([segment({})])), ['scrub vol: 0 of 2048 regions differ']);
  });

  test('at most 32 regions are named; an aborted scrub says how far it got; segments are told apart', () => {
    const regions = Array.from({ length: 40 }, (_, region) => ({ region, outvoted: [{ leg: 1, name: 'l1' }], verdict: 'differs' as const }));
    const lines = scrubSummaryLines(device([segment({ mismatchedRegions: 40, regions })]));
    assert.match(lines[0] ?? '', /\(regions 0, 1, .*, 31, and 8 more\)$/);
    assert.equal(lines.length, 33);
    const aborted = scrubSummaryLines(device([segment({ start: 0 }), segment({ start: 4096, state: 'aborted', scrubbedRegions: 10, skippedRegions: 2 })]));
    assert.deepEqual(aborted, [
      'scrub vol (segment at sector 0): 0 of 2048 regions differ',
      'scrub vol (segment at sector 4096): 0 of 2048 regions differ; aborted after 12 regions',
    ]);
  });
});

describe('the scrub request', () => {
  test('parses repair and a rate, and refuses a rate out of range', () => {
    assert.deepEqual(parseRequest('{"id":1,"verb":"scrub","name":"vol","repair":true,"rateMiBPerSecond":2.5}'), {
      id: 1,
      verb: 'scrub',
      name: 'vol',
      repair: true,
      rateMiBPerSecond: 2.5,
    });
    assert.deepEqual(parseRequest('{"id":2,"verb":"scrub","name":"vol"}'), { id: 2, verb: 'scrub', name: 'vol', repair: false });
    assert.throws(() => parseRequest('{"id":3,"verb":"scrub","name":"vol","rateMiBPerSecond":0}'), { code: 'EINVAL' });
    assert.throws(() => parseRequest('{"id":3,"verb":"scrub","name":"vol","rateMiBPerSecond":"4"}'), { code: 'EINVAL' });
  });

  test('--rate and --resync-rate take decimal MiB/s; --scrub-every whole hours', () => {
    assert.equal(rateOption('--rate', '4'), 4);
    assert.equal(rateOption('--rate', '1.5'), 1.5);
    for (const bad of ['0', '-1', '1e3', 'fast', '0.5']) assert.throws(() => rateOption('--rate', bad), { code: 'EINVAL' });
    assert.equal(scrubEveryOption('24'), 24);
    assert.throws(() => scrubEveryOption('0'), { code: 'EINVAL' });
  });
});
