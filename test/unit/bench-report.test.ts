/**
 * Smoke test of the NBD benchmark's own code (issue 12), so it cannot rot while npm test never runs the
 * bench: its argument parsing, reading a `--json` report back (a fixture, no fio), the medians, the
 * README table regenerated from it, and the README block it replaces. Also the fio report parser on a
 * minimal fio JSON.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { parseBenchArgs } from '../../bench/nbd-bench-args.js';
import { parseFioReport } from '../../bench/nbd-bench-fio.js';
import { jobs, median, parseBenchReport, readmeBegin, readmeEnd, readmeTable, replaceReadmeBlock, serverKinds } from '../../bench/nbd-bench-report.js';

const fixture = fileURLToPath(new URL('../../../test/unit/fixtures/nbd-bench-report.json', import.meta.url));

test('bench:nbd arguments: defaults, --quick, and one-line refusals', () => {
  const defaults = parseBenchArgs([], { data: '/d' });
  assert.deepEqual(
    { ...defaults, jobs: defaults.jobs.length },
    { sizeBytes: 2 ** 30, runtimeSeconds: 10, rounds: 3, images: 'filled', servers: serverKinds, jobs: jobs.length, resync: true, json: undefined, data: '/d' },
  );
  const quick = parseBenchArgs(['--quick', '--images', 'sparse', '--json', 'out.json', '--no-resync', '--servers', 'daemon-disk,qemu-nbd'], { data: '/d' });
  assert.deepEqual([quick.sizeBytes, quick.runtimeSeconds, quick.rounds, quick.images, quick.json, quick.resync], [256 * 2 ** 20, 3, 1, 'sparse', 'out.json', false]);
  assert.deepEqual(quick.servers, ['daemon-disk', 'qemu-nbd']);
  assert.deepEqual(parseBenchArgs(['--jobs', 'QD1 read 4k,seq write 1M'], { data: '/d' }).jobs.map((j) => j.iodepth), [1, 16]);
  assert.deepEqual(parseBenchArgs(['--jobs', 'none'], { data: '/d' }).jobs, [], 'the resync job alone');
  const refused: readonly [readonly string[], RegExp][] = [
    [['--images', 'thick'], /--images must be filled or sparse/],
    [['--rounds', '0'], /--rounds must be a whole number >= 1/],
    [['--runtime', '1.5'], /--runtime must be a whole number/],
    [['--size', '1536K'], /--size must be a positive multiple of 1 MiB/],
    [['--servers', 'umirror-core'], /unknown server "umirror-core"/],
    [['--jobs', 'seq write 4k'], /unknown job "seq write 4k"/],
  ];
  for (const [argv, message] of refused) assert.throws(() => parseBenchArgs(argv, { data: '/d' }), message);
  assert.throws(() => parseBenchArgs(['--bogus'], { data: '/d' }), { code: 'ERR_PARSE_ARGS_UNKNOWN_OPTION' });
});

test('bench:nbd JSON -> README table: medians of the rounds, ratios to qemu-nbd, misses in bold, date and machine', async () => {
  const report = parseBenchReport(await readFile(fixture, 'utf8'));
  assert.equal(median([3, 1, 2]), 2);
  assert.equal(median([4, 1, 3, 2]), 2.5);
  const table = readmeTable(report);
  assert.match(table, /^Measured 2026-12-01 on nproc 2, AMD EPYC, Linux 6\.18\.44, Node v20\.20\.2, fio-3\.33; .*1024 MiB filled images, 5 s per job .*3 interleaved rounds, medians/);
  const rows = table.split('\n').filter((line) => line.startsWith('|'));
  assert.deepEqual(rows, [
    '| path | seq write 1M QD16 | QD1 read 4k p50 / p99 |',
    '| --- | --- | --- |',
    // Round 3 (half speed) is outvoted by the median.
    '| `umirror serve`, core log | 1.20× | 0.80× / 0.80× |',
    '| `umirror daemon` + `create`, disk log | **0.90×** | 1.20× / **1.80×** |',
    '| qemu-nbd, for scale | 1000 MiB/s | 50 / 500 µs |',
  ]);
  // Per-pair ratios 0.86, 0.96, 0.96: their median.
  assert.match(table, /680 MiB\/s against 710 MiB\/s for `dd bs=1M conv=notrunc,fdatasync` of the same bytes \(medians of 3 pairs run back to back\); median ratio of the pairs 0\.96× \(goal ≥ 0\.95×\)/);

  const readme = `# x\n\n## Performance\n\n${readmeBegin}\nold table\n${readmeEnd}\n\nafter\n`;
  const updated = replaceReadmeBlock(readme, table);
  assert.equal(updated, `# x\n\n## Performance\n\n${readmeBegin}\n${table}\n${readmeEnd}\n\nafter\n`);
  assert.equal(replaceReadmeBlock(updated, table), updated, 'regenerating is idempotent');
  assert.throws(() => replaceReadmeBlock('# no block\n', table), /has no/);
  assert.throws(() => parseBenchReport('{"version":2}'), /version is not 1/);
  assert.throws(() => parseBenchReport(JSON.stringify({ ...report, samples: [{ server: 'x' }] })), /not a bench:nbd report: sample/);
});

test('bench:nbd reads bandwidth, IOPS and clat p50/p99 from fio\'s JSON report', () => {
  const side = (bw: number) => ({ bw_bytes: bw, iops: bw / 4096, clat_ns: { percentile: { '50.000000': 41_000, '99.000000': 250_000 } } });
  const stdout = `fio: a warning first\n${JSON.stringify({ jobs: [{ error: 0, read: side(4096 * 1000), write: side(0) }] })}`;
  const job = jobs.find((j) => j.name === 'QD1 read 4k');
  assert.ok(job !== undefined);
  assert.deepEqual(parseFioReport(stdout, job), { mibPerSecond: (4096 * 1000) / 2 ** 20, iops: 1000, clatP50Us: 41, clatP99Us: 250 });
  assert.throws(() => parseFioReport(JSON.stringify({ jobs: [{ error: 5, read: side(0), write: side(0) }] }), job), /fio QD1 read 4k failed/);
});
