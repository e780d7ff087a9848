/**
 * What a mirror set reports, as pure functions over a snapshot: the status line (STATUSTYPE_INFO), the
 * table line (STATUSTYPE_TABLE), the IMA measurement (`dmsetup measure`) and the JSON summary the
 * control socket and `serve` print. MirrorSet.snapshot() takes the snapshot; nothing here touches a set,
 * so the formats are tested on snapshots alone (test/unit/mirror-status.test.ts). The kernel's word order
 * lives in table.ts (formatMirrorStatus, formatMirrorTable, formatMeasure); this module chooses what
 * goes into them.
 *
 * Also the set's counters (MirrorStats), read by the metrics endpoint.
 */
import { assert, assertCount } from '../assert.js';
import { sectorBytes } from '../limits.js';
import type { LegHealth } from './leg.js';
import { formatMeasure, formatMirrorStatus, formatMirrorTable, type MirrorFeatures } from './table.js';

/** Counters of one mirror set (metrics); they only grow. */
export interface MirrorStats {
  readsTotal: number;
  writesTotal: number;
  readBytesTotal: number;
  writeBytesTotal: number;
  recoveredRegionsTotal: number;
  recoveryBytesTotal: number;
  logFlushFailuresTotal: number;
  /** Read errors corrected by read repair (the failing leg got the good data and stayed A). */
  correctedReadErrorsTotal: number;
}

export function newMirrorStats(): MirrorStats {
  return {
    readsTotal: 0,
    writesTotal: 0,
    readBytesTotal: 0,
    writeBytesTotal: 0,
    recoveredRegionsTotal: 0,
    recoveryBytesTotal: 0,
    logFlushFailuresTotal: 0,
    correctedReadErrorsTotal: 0,
  };
}

export interface MirrorLegSnapshot {
  /** How status lines show the leg (the kernel prints maj:min). */
  readonly displayName: string;
  readonly offsetBytes: number;
  readonly health: LegHealth;
}

export interface MirrorSnapshot {
  readonly legs: readonly MirrorLegSnapshot[];
  readonly features: MirrorFeatures;
  readonly regionCount: number;
  /** Regions the log counts in sync. */
  readonly syncCount: number;
  readonly log: {
    readonly type: string;
    /** The log's STATUSTYPE_INFO words ("1 core", "3 disk log A"). */
    readonly statusInfo: string;
    /** The log's STATUSTYPE_TABLE words ("core 1 1024"). */
    readonly statusTable: string;
  };
}

/** The mirror's part of `dmsetup status --json` and of the serve status line: sync progress and health. */
export interface MirrorStatusJson {
  readonly regionCount: number;
  readonly syncRegions: number;
  readonly health: string;
}

function checkSnapshot(snapshot: MirrorSnapshot): void {
  assertCount(snapshot.regionCount, 'regionCount');
  assertCount(snapshot.syncCount, 'syncCount');
  assert(snapshot.syncCount <= snapshot.regionCount, 'syncCount <= regionCount');
  for (const leg of snapshot.legs) assert(leg.offsetBytes % sectorBytes === 0, 'leg offsets are whole sectors');
}

function health(snapshot: MirrorSnapshot): string {
  return snapshot.legs.map((leg) => leg.health).join('');
}

/** STATUSTYPE_INFO params: `2 l0 l1 15/16 1 AD 1 core`. */
export function statusInfo(snapshot: MirrorSnapshot): string {
  checkSnapshot(snapshot);
  return formatMirrorStatus({
    legs: snapshot.legs.map((leg) => leg.displayName),
    syncCount: snapshot.syncCount,
    regionCount: snapshot.regionCount,
    health: health(snapshot),
    logInfo: snapshot.log.statusInfo,
  });
}

/** STATUSTYPE_TABLE params: `core 1 128 2 l0 0 l1 0 1 handle_errors`. */
export function statusTable(snapshot: MirrorSnapshot): string {
  checkSnapshot(snapshot);
  return formatMirrorTable(
    {
      log: { type: snapshot.log.type, args: [] },
      legs: snapshot.legs.map((leg) => ({ device: leg.displayName, offsetSectors: leg.offsetBytes / sectorBytes })),
      features: snapshot.features,
    },
    { logTable: snapshot.log.statusTable, displayName: (device) => device },
  );
}

/** STATUSTYPE_IMA params (`dmsetup measure`). */
export function statusMeasure(snapshot: MirrorSnapshot): string {
  checkSnapshot(snapshot);
  return formatMeasure({ legs: snapshot.legs.map((leg) => leg.displayName), health: health(snapshot), features: snapshot.features });
}

export function statusJson(snapshot: MirrorSnapshot): MirrorStatusJson {
  checkSnapshot(snapshot);
  return { regionCount: snapshot.regionCount, syncRegions: snapshot.syncCount, health: health(snapshot) };
}
