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
 * Callers: DiskDirtyLog (resume reads, flush writes). Paired assertions: a header is checked before
 * encoding and again after decoding.
 */
import { assert, assertCount, isPowerOfTwo } from '../assert.js';
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
