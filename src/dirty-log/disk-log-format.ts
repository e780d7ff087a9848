/**
 * The disk log's on-disk format (dm-log.c, byte-compatible with the kernel): a pure codec, no I/O.
 *
 *   byte 0           4           8                       16                1024
 *        +-----------+-----------+-----------------------+-------//--------+------------------------+
 *        | magic u32 | version   | nr_regions u64 LE     | zero (unused)   | clean bits, LE words,  |
 *        | 0x4D695272| u32 LE = 2| regions the bits cover|                 | 1 = clean, ceil(n/32)*4|
 *        | "rRiM"    |           |                       |                 | bytes                  |
 *        +-----------+-----------+-----------------------+-------//--------+------------------------+
 *        |<------------- the whole buffer, rounded up to the log device's logical block ------------->|
 *
 * Bit i of the clean set is byte 1024 + (i >> 3), bit (i & 7). The region size is not stored: a log
 * reused with another region size is reinterpreted bit by bit. Version 1 (the same layout) is accepted
 * and rewritten as 2; any other version is incompatible.
 *
 * What a resume makes of the header it read (reconcileHeader, disk_resume and read_header; the first
 * matching row applies):
 *
 *   header read              | log is         | regions kept       | new bits   | header written
 *   -------------------------+----------------+--------------------+------------+------------------------
 *   magic ok, version 2 or 1 | reused         | min(nr, count)     | table mode | magic, 2, count
 *   foreign magic, or a      | new            | 0                  | table mode | magic, 2, count
 *     sync/nosync table      |                |                    |            |
 *   magic ok, other version  | failed (D)     | 0                  | table mode | magic, that version, count
 *   unreadable               | failed (D)     | 0                  | table mode | magic, 2, count
 *
 * "Regions kept" keep their clean bits from disk; the bits from there up to the region count (grown,
 * new or failed) are set with `nosync` and cleared otherwise; bits past the region count are cleared
 * (shrunk) up to the next 64-bit boundary (BITS_PER_LONG on the kernel's 64-bit hosts).
 *
 * Callers: DiskDirtyLog (resume reads, flush writes). Paired assertions: a header is checked before
 * encoding and again after decoding.
 */
import { assert, assertCount, isPowerOfTwo } from '../assert.js';
import type { LogSyncMode } from './dirty-log.js';
import { regionBitsBytes } from './region-bits.js';

export const diskLogMagic = 0x4d695272;
export const diskLogVersion = 2;
/** The older version with the same layout (big-endian hosts wrote it differently; LE is the same). */
export const diskLogVersionLegacy = 1;
/** Where the clean bits start: LOG_OFFSET (2) sectors. */
export const diskLogBitsOffsetBytes = 1024;
export const diskLogHeaderBytes = 16;

export interface DiskLogHeader {
  readonly magic: number;
  readonly version: number;
  /** Regions the clean bits cover. Decoding clamps a u64 beyond 2^53 to MAX_SAFE_INTEGER. */
  readonly nrRegions: number;
}

/** The size of the log buffer (header + clean bits) for `regionCount` regions on a device. */
export function diskLogBufferBytes(options: { regionCount: number; logicalBlockBytes: number }): number {
  assertCount(options.regionCount, 'regionCount');
  assert(isPowerOfTwo(options.logicalBlockBytes), 'logicalBlockBytes must be a power of two');
  const raw = diskLogBitsOffsetBytes + regionBitsBytes(options.regionCount);
  const bytes = Math.ceil(raw / options.logicalBlockBytes) * options.logicalBlockBytes;
  assert(bytes >= raw && bytes % options.logicalBlockBytes === 0);
  return bytes;
}

function assertHeader(header: DiskLogHeader): void {
  assert(Number.isInteger(header.magic) && header.magic >= 0 && header.magic <= 0xffffffff, 'magic must be a u32');
  assert(Number.isInteger(header.version) && header.version >= 0 && header.version <= 0xffffffff, 'version must be a u32');
  assertCount(header.nrRegions, 'nrRegions');
}

/** Writes the 16 header bytes at the start of `buffer`; the rest of the buffer is left alone. */
export function encodeDiskLogHeader(header: DiskLogHeader, buffer: Uint8Array): void {
  assertHeader(header);
  assert(header.magic === diskLogMagic, 'only a log with our magic is written');
  assert(buffer.byteLength >= diskLogBitsOffsetBytes, 'a log buffer holds at least the header sectors');
  const view = new DataView(buffer.buffer, buffer.byteOffset, diskLogHeaderBytes);
  view.setUint32(0, header.magic, true);
  view.setUint32(4, header.version, true);
  view.setBigUint64(8, BigInt(header.nrRegions), true);
}

/** Reads the 16 header bytes; no validation of meaning (the log decides what a bad magic implies). */
export function decodeDiskLogHeader(buffer: Uint8Array): DiskLogHeader {
  assert(buffer.byteLength >= diskLogHeaderBytes, 'a log header is 16 bytes');
  const view = new DataView(buffer.buffer, buffer.byteOffset, diskLogHeaderBytes);
  const nr = view.getBigUint64(8, true);
  const header: DiskLogHeader = {
    magic: view.getUint32(0, true),
    version: view.getUint32(4, true),
    nrRegions: nr > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(nr),
  };
  assertHeader(header);
  return header;
}

/** Why a resume fails the log device: a version we cannot read, or no header at all. */
export type HeaderFailure = 'incompatible-version' | 'unreadable';

export interface ReconciledHeader {
  /** The header to write back: always our magic and the region count; the version as the table says. */
  readonly header: DiskLogHeader;
  /** Regions whose clean bits are taken from disk: min(nrRegions, regionCount), 0 for a new log. */
  readonly keptRegions: number;
  /** The value of the clean bits from keptRegions up to regionCount (set only with `nosync`). */
  readonly newBitsClean: boolean;
  /** Set when the log device is to be failed (D): disk_resume's "Failed to read header". */
  readonly failure: HeaderFailure | undefined;
}

/**
 * The resume rules of the disk log (see the table in the banner), pure: what to keep from the header
 * read (`read`, undefined when the read failed) for a log of `regionCount` regions in `syncMode`.
 */
export function reconcileHeader(options: {
  readonly read: DiskLogHeader | undefined;
  readonly syncMode: LogSyncMode;
  readonly regionCount: number;
}): ReconciledHeader {
  const { read, syncMode, regionCount } = options;
  assertCount(regionCount, 'regionCount');
  if (read !== undefined) assertHeader(read);
  let version = diskLogVersion;
  let nrRegions = 0;
  let failure: HeaderFailure | undefined;
  if (read === undefined) {
    failure = 'unreadable';
  } else if (syncMode === 'default' && read.magic === diskLogMagic) {
    // read_header: a version 1 log has the same layout on a little-endian host and is rewritten as 2.
    version = read.version === diskLogVersionLegacy ? diskLogVersion : read.version;
    nrRegions = read.nrRegions;
    if (version !== diskLogVersion) failure = 'incompatible-version';
  }
  // New log required? A forced sync mode or a foreign magic start from nothing (read_header), and an
  // unreadable log proves nothing: every region is out of sync (or in sync with nosync).
  const keptRegions = failure === undefined ? Math.min(nrRegions, regionCount) : 0;
  const reconciled: ReconciledHeader = {
    header: { magic: diskLogMagic, version, nrRegions: regionCount },
    keptRegions,
    newBitsClean: syncMode === 'nosync',
    failure,
  };
  assert(reconciled.keptRegions <= regionCount);
  if (reconciled.failure === undefined) assert(reconciled.header.version === diskLogVersion);
  return reconciled;
}
