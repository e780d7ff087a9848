/**
 * The resync progress shown by `serve`, `status --watch`, `wait --progress` (src/cli/output.ts and
 * src/cli/progress.ts): mdstat's words, the measured rate, and the in-place redraw on a terminal.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { syncSuffix, syncTotals } from '../../src/cli/output.js';
import { LiveLines, ProgressRate, formatSpeed, mdstatBar, mdstatLine } from '../../src/cli/progress.js';

const MiB = 2 ** 20;

test('syncTotals sums every mirror segment, regions and bytes', () => {
  assert.deepEqual(
    syncTotals([
      { syncRegions: 3, regionCount: 4, health: 'AA', sizeBytes: 4 * MiB },
      { syncRegions: 8, regionCount: 8, health: 'AA', sizeBytes: 8 * MiB },
    ]),
    { synced: 11, total: 12, syncedBytes: 11 * MiB, totalBytes: 12 * MiB },
  );
});

test('syncSuffix: mdstat words while out of sync, a waiting label with a failed leg, nothing in sync', () => {
  assert.equal(syncSuffix([{ syncRegions: 8, regionCount: 8, health: 'AA', sizeBytes: 8 * MiB }]), '');
  assert.equal(syncSuffix([]), '');
  assert.equal(syncSuffix([{ syncRegions: 2, regionCount: 8, health: 'AA', sizeBytes: 8 * MiB }]), '  [=====>..............]  resync = 25.0% (2/8)');
  assert.equal(
    syncSuffix([{ syncRegions: 7, regionCount: 8, health: 'AD', sizeBytes: 8 * MiB }]),
    '  out of sync (a leg failed): 7/8 regions in sync, waiting for a new table',
  );
});

test('syncSuffix with a rate: finish time and speed from two readings, as /proc/mdstat prints them', () => {
  const rate = new ProgressRate();
  const mirror = (syncRegions: number) => [{ syncRegions, regionCount: 2048, health: 'AA', sizeBytes: 2048 * MiB }];
  assert.equal(syncSuffix(mirror(300), { rate, nowMs: 0 }), '  [==>.................]  resync = 14.6% (300/2048)');
  // 256 MiB in 1 s: 1492 MiB left at 256 MiB/s is 5.8 s, 0.1 min.
  assert.equal(syncSuffix(mirror(556), { rate, nowMs: 1000 }), '  [=====>..............]  resync = 27.1% (556/2048) finish=0.1min speed=256MiB/s');
  // A reading that went backwards (a reload restarted the resync) starts the window again: no speed.
  assert.equal(syncSuffix(mirror(10), { rate, nowMs: 2000 }), '  [>...................]  resync = 0.4% (10/2048)');
});

test('ProgressRate averages over a window of at most 10 s', () => {
  const rate = new ProgressRate();
  assert.equal(rate.bytesPerSecond(), undefined);
  rate.sample({ atMs: 0, doneBytes: 0 });
  assert.equal(rate.bytesPerSecond(), undefined);
  for (let second = 1; second <= 30; second++) rate.sample({ atMs: second * 1000, doneBytes: second <= 20 ? second * 100 * MiB : 2000 * MiB + (second - 20) * MiB });
  // The last 10 s moved 1 MiB a second, whatever came before.
  assert.equal(rate.bytesPerSecond(), MiB);
});

test('mdstatLine and its parts: percent truncated, no finish at speed 0, binary units', () => {
  assert.equal(mdstatLine({ action: 'resync', done: 1999, total: 2000, remainingBytes: 1, bytesPerSecond: 0 }), 'resync = 99.9% (1999/2000) speed=0B/s');
  assert.equal(mdstatLine({ action: 'check', done: 0, total: 0, remainingBytes: 0 }), 'check = 100.0% (0/0)');
  assert.equal(formatSpeed(231 * MiB), '231MiB/s');
  assert.equal(formatSpeed(1.5 * 1024 * MiB), '1.5GiB/s');
  assert.equal(formatSpeed(12 * 1024), '12KiB/s');
  assert.equal(formatSpeed(900), '900B/s');
  assert.equal(mdstatBar(0, 10), '[>...................]');
  assert.equal(mdstatBar(10, 10), '[====================]');
});

function recorder(options: { tty: boolean; columns?: number }): { out: { write(text: string): boolean; isTTY: boolean; columns?: number }; text: () => string } {
  let text = '';
  const out = {
    isTTY: options.tty,
    ...(options.columns === undefined ? {} : { columns: options.columns }),
    write: (chunk: string) => {
      text += chunk;
      return true;
    },
  };
  return { out, text: () => text };
}

test('LiveLines on a terminal redraws in place: carriage return, cursor up, erase down, never a new line', () => {
  const { out, text } = recorder({ tty: true, columns: 20 });
  const live = new LiveLines(out);
  live.show(['one']);
  live.show(['two']);
  live.show(['a', 'b', 'c']);
  live.show(['a line longer than twenty columns']);
  assert.equal(text(), '\r\x1b[Jone\r\x1b[Jtwo\r\x1b[Ja\nb\nc\r\x1b[2A\x1b[Ja line longer than ');
  live.end();
  live.end();
  assert.ok(text().endsWith('than \n'));
});

test('LiveLines elsewhere prints each block as new lines', () => {
  const { out, text } = recorder({ tty: false });
  const live = new LiveLines(out);
  live.show(['one']);
  live.show([]);
  live.show(['a', 'b']);
  live.end();
  assert.equal(text(), 'one\na\nb\n');
});
