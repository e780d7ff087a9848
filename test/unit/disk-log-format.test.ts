/**
 * reconcileHeader(): the disk log's resume rules (disk_resume, read_header) as a table. Each row is a
 * header as read (or none: the read failed), the table's sync mode and region count, and what the log
 * must keep, set and write back. The bytes these rules produce on a device are checked against the
 * kernel in disk-dirty-log.test.ts and test/scenario/disk-log-reference.test.ts.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { LogSyncMode } from '../../src/dirty-log/dirty-log.js';
import {
  diskLogMagic,
  diskLogVersion,
  diskLogVersionLegacy,
  reconcileHeader,
  type DiskLogHeader,
  type ReconciledHeader,
} from '../../src/dirty-log/disk-log-format.js';

interface Row {
  readonly name: string;
  readonly read: DiskLogHeader | undefined;
  readonly syncMode: LogSyncMode;
  readonly regionCount: number;
  readonly expected: ReconciledHeader;
}

const ours = (nrRegions: number, version = diskLogVersion): DiskLogHeader => ({ magic: diskLogMagic, version, nrRegions });
const written = (regionCount: number, version = diskLogVersion): DiskLogHeader => ({ magic: diskLogMagic, version, nrRegions: regionCount });

const rows: readonly Row[] = [
  {
    name: 'the same region count: every bit is kept',
    read: ours(32),
    syncMode: 'default',
    regionCount: 32,
    expected: { header: written(32), keptRegions: 32, newBitsClean: false, failure: undefined },
  },
  {
    name: 'grown: the old regions are kept, the new ones start dirty',
    read: ours(32),
    syncMode: 'default',
    regionCount: 40,
    expected: { header: written(40), keptRegions: 32, newBitsClean: false, failure: undefined },
  },
  {
    name: 'shrunk: the regions that remain are kept',
    read: ours(40),
    syncMode: 'default',
    regionCount: 32,
    expected: { header: written(32), keptRegions: 32, newBitsClean: false, failure: undefined },
  },
  {
    name: 'a count beyond 2^53 (clamped by the decoder) keeps every region',
    read: ours(Number.MAX_SAFE_INTEGER),
    syncMode: 'default',
    regionCount: 8,
    expected: { header: written(8), keptRegions: 8, newBitsClean: false, failure: undefined },
  },
  {
    name: 'version 1 is read as 2 and written back as 2',
    read: ours(32, diskLogVersionLegacy),
    syncMode: 'default',
    regionCount: 32,
    expected: { header: written(32), keptRegions: 32, newBitsClean: false, failure: undefined },
  },
  {
    name: 'another version fails the log, keeps nothing and is written back unchanged',
    read: ours(32, 3),
    syncMode: 'default',
    regionCount: 32,
    expected: { header: written(32, 3), keptRegions: 0, newBitsClean: false, failure: 'incompatible-version' },
  },
  {
    name: 'a nosync table ignores even an unknown version: a new log, every region clean',
    read: ours(32, 0),
    syncMode: 'nosync',
    regionCount: 32,
    expected: { header: written(32), keptRegions: 0, newBitsClean: true, failure: undefined },
  },
  {
    name: 'a foreign magic is a new log: nothing kept, no failure',
    read: { magic: 0, version: 0, nrRegions: 0 },
    syncMode: 'default',
    regionCount: 16,
    expected: { header: written(16), keptRegions: 0, newBitsClean: false, failure: undefined },
  },
  {
    name: 'a foreign magic with an unknown version is still a new log',
    read: { magic: 0x12345678, version: 7, nrRegions: 99 },
    syncMode: 'default',
    regionCount: 16,
    expected: { header: written(16), keptRegions: 0, newBitsClean: false, failure: undefined },
  },
  {
    name: 'a sync table ignores a valid log: nothing kept, every region dirty',
    read: ours(32),
    syncMode: 'sync',
    regionCount: 32,
    expected: { header: written(32), keptRegions: 0, newBitsClean: false, failure: undefined },
  },
  {
    name: 'a nosync table ignores a valid log: nothing kept, every region clean',
    read: ours(32),
    syncMode: 'nosync',
    regionCount: 32,
    expected: { header: written(32), keptRegions: 0, newBitsClean: true, failure: undefined },
  },
  {
    name: 'an unreadable log fails, keeps nothing and is written as version 2',
    read: undefined,
    syncMode: 'default',
    regionCount: 32,
    expected: { header: written(32), keptRegions: 0, newBitsClean: false, failure: 'unreadable' },
  },
  {
    name: 'an unreadable nosync log fails; every region starts clean',
    read: undefined,
    syncMode: 'nosync',
    regionCount: 32,
    expected: { header: written(32), keptRegions: 0, newBitsClean: true, failure: 'unreadable' },
  },
];

describe('reconcileHeader applies the disk log resume rules', () => {
  for (const row of rows) {
    test(`reconcileHeader: ${row.name}`, () => {
      assert.deepEqual(reconcileHeader({ read: row.read, syncMode: row.syncMode, regionCount: row.regionCount }), row.expected);
    });
  }
});
