/**
 * The daemon's /metrics as a whole, read with a strict text-format parser (test/helpers/prom-text.ts):
 * every family well formed and typed, the process and Node runtime families (prom-client's defaults),
 * umirror_build_info with the package version, and the device event number as a counter that follows
 * `dmsetup info`'s Event number. A real daemon; the mirror's second leg is an `error` device, so a
 * resync fails and raises an event.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { startDaemon, until } from '../helpers/daemon-process.js';
import { parsePrometheusText, promValue, type FamilyType, type PromFamily } from '../helpers/prom-text.js';

async function scrape(url: string): Promise<Map<string, PromFamily>> {
  const response = await fetch(url);
  assert.equal(response.status, 200);
  return parsePrometheusText(await response.text());
}

test('daemon /metrics parses strictly: runtime families, build info, events as a counter, no precomputed rates', async (t) => {
  const daemon = await startDaemon();
  t.after(() => daemon.dispose());
  const leg = join(daemon.dir, 'a.img');
  await writeFile(leg, '');
  await truncate(leg, 4 * 1024 * 1024);
  for (const [name, table] of [
    ['bad', '0 8192 error'],
    ['m', `0 8192 mirror core 1 1024 2 ${leg} 0 bad 0 1 handle_errors`],
  ] as const) {
    const created = await daemon.cli(['create', name, '--table', table]);
    assert.equal(created.code, 0, created.stderr);
  }
  await until('the error leg to fail', async () => / 0\/8 1 AS 1 core/.test((await daemon.cli(['status', 'm'])).stdout));
  const families = await scrape(daemon.metricsUrl);

  const expected: readonly [string, FamilyType][] = [
    ['process_cpu_seconds_total', 'counter'],
    ['process_resident_memory_bytes', 'gauge'],
    ['process_open_fds', 'gauge'],
    ['process_start_time_seconds', 'gauge'],
    ['nodejs_eventloop_lag_seconds', 'gauge'],
    ['nodejs_heap_size_used_bytes', 'gauge'],
    ['umirror_build_info', 'gauge'],
    ['umirror_devices', 'gauge'],
    ['umirror_device_events_total', 'counter'],
    ['umirror_mirror_recovery_bytes_total', 'counter'],
    ['umirror_leg_errors_total', 'counter'],
  ];
  for (const [name, type] of expected) assert.equal(families.get(name)?.type, type, `${name} is a ${type}`);
  for (const family of families.values()) {
    assert.ok(family.help !== undefined && family.help !== '', `${family.name} has a HELP`);
    if (family.type === 'counter') assert.match(family.name, /_total$/, `counter ${family.name} ends in _total`);
    assert.doesNotMatch(family.name, /_per_second$/, 'rates are rate() of counters, not gauges');
  }
  const { version } = JSON.parse(await readFile(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
  assert.equal(promValue(families, 'umirror_build_info', { version, node: process.version }), 1);
  assert.ok(promValue(families, 'process_resident_memory_bytes') > 0);
  assert.equal(promValue(families, 'umirror_devices'), 2);

  const eventNr = Number(/^Event number: +(\d+)$/m.exec((await daemon.cli(['info', 'm'])).stdout)?.[1]);
  assert.ok(eventNr >= 1, 'the failed leg raised an event');
  assert.equal(promValue(families, 'umirror_device_events_total', { device: 'm' }), eventNr);
  assert.equal(promValue(families, 'umirror_device_events_total', { device: 'bad' }), 0);
  assert.equal(promValue(families, 'umirror_leg_valid', { device: 'm', leg: 'bad' }), 0);
});
