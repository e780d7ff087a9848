/**
 * mirror-status.ts: the status, table, IMA and JSON formats of a mirror set, from snapshots alone (no
 * set is built), and MirrorSet.snapshot() feeding them. Expected lines from the kernel's references
 * (core.out, fail-write.out).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { LegHealth } from '../../src/mirror/leg.js';
import { statusInfo, statusJson, statusMeasure, statusTable, type MirrorSnapshot } from '../../src/mirror/mirror-status.js';
import { mirrorFixture, waitInSync } from '../helpers/mirror-fixture.js';

function snapshot(options: { health?: readonly LegHealth[]; syncCount?: number; handleErrors?: boolean; disk?: boolean } = {}): MirrorSnapshot {
  const health = options.health ?? ['A', 'A'];
  return {
    legs: health.map((letter, index) => ({ displayName: `253:${index}`, offsetBytes: index * 1024 * 512, health: letter })),
    features: { handleErrors: options.handleErrors ?? false, keepLog: false },
    regionCount: 32,
    syncCount: options.syncCount ?? 32,
    log:
      options.disk === true
        ? { type: 'disk', statusInfo: '3 disk 254:32 A', statusTable: 'disk 2 254:32 1024' }
        : { type: 'core', statusInfo: '1 core', statusTable: 'core 1 1024' },
  };
}

describe('mirror-status formatters over snapshots', () => {
  test('statusInfo prints legs, sync count, health and the log status (core.out)', () => {
    assert.equal(statusInfo(snapshot()), '2 253:0 253:1 32/32 1 AA 1 core');
    assert.equal(statusInfo(snapshot({ health: ['A', 'D'], syncCount: 31, disk: true })), '2 253:0 253:1 31/32 1 AD 3 disk 254:32 A');
  });

  test('statusTable prints the log table, legs with offsets in sectors, and canonical features', () => {
    assert.equal(statusTable(snapshot()), 'core 1 1024 2 253:0 0 253:1 1024');
    assert.equal(statusTable(snapshot({ handleErrors: true, disk: true })), 'disk 2 254:32 1024 2 253:0 0 253:1 1024 1 handle_errors');
  });

  test('statusMeasure prints the IMA string with one status letter per leg (fail-write.out)', () => {
    assert.equal(
      statusMeasure(snapshot({ health: ['A', 'D'], handleErrors: true })),
      'target_name=mirror,target_version=1.14.0,nr_mirrors=2,mirror_device_0=253:0,mirror_device_0_status=A,' +
        'mirror_device_1=253:1,mirror_device_1_status=D,handle_errors=y,keep_log=n,log_type_status=;',
    );
  });

  test('statusJson gives the sync progress and the health letters', () => {
    assert.deepEqual(statusJson(snapshot({ health: ['S', 'A', 'R'], syncCount: 7 })), { regionCount: 32, syncRegions: 7, health: 'SAR' });
  });

  test('the formatters refuse an inconsistent snapshot', () => {
    assert.throws(() => statusInfo(snapshot({ syncCount: 33 })), /syncCount <= regionCount/);
    assert.throws(() => statusJson({ ...snapshot(), regionCount: -1 }), /regionCount/);
    const misaligned = snapshot();
    assert.throws(() => statusTable({ ...misaligned, legs: [{ displayName: 'a', offsetBytes: 100, health: 'A' }, ...misaligned.legs.slice(1)] }), /whole sectors/);
  });

  test('MirrorSet.snapshot feeds the same lines the set prints', async () => {
    const { mirror } = await mirrorFixture({ legCount: 3, features: '1 handle_errors', legOffsetSectors: 8 });
    await waitInSync(mirror);
    const taken = mirror.snapshot();
    assert.deepEqual(
      taken.legs.map((leg) => [leg.displayName, leg.offsetBytes, leg.health]),
      [
        ['l0', 8 * 512, 'A'],
        ['l1', 8 * 512, 'A'],
        ['l2', 8 * 512, 'A'],
      ],
    );
    assert.equal(statusInfo(taken), mirror.statusInfo());
    assert.equal(statusInfo(taken), '3 l0 l1 l2 16/16 1 AAA 1 core');
    assert.equal(statusTable(taken), mirror.statusTable());
    assert.equal(statusMeasure(taken), mirror.statusMeasure());
    assert.deepEqual(statusJson(taken), { regionCount: 16, syncRegions: 16, health: 'AAA' });
    await mirror.destroy();
  });
});
