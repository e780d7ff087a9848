/**
 * The leg generation record (issue 11): which legs of a mirror are stale, kept in the disk log's header
 * bytes 16..1023, which the kernel reads and writes back untouched (measured on Linux 6.1 with the
 * oracle: a pattern written there survived create, writes, suspend/resume and remove). A pure codec,
 * no I/O; LegGenerations (leg-generations.ts) keeps it in a DiskDirtyLog's buffer.
 *
 *   log byte 0        16                                                    1024     headEnd          end of bits
 *        +---------+--//record//-----------------------------------+--//--+-------//---+-------//------+
 *        | kernel  | magic "ULEG" | version 1 | legCount | ...     | zero | head bits  | tail bits     |
 *        | header  |   see the layout below                        |      | (in the    | (the blocks   |
 *        | 16 B    |                                               |      | header's   | after it)     |
 *        +---------+-----------------------------------------------+------+ blocks)    +---------------+
 *        |<----- the header blocks: [0, headEnd), one write ------------------------->|
 *
 * Record layout, at log byte 16, little-endian:
 *
 *   off size field
 *    0   4   magic 0x47454c55 ("ULEG")
 *    4   2   version (1)
 *    6   2   legCount, 1..legsMax
 *    8   8   nrRegions        the region count of the bitmap it describes (= the kernel header's)
 *   16   4   bitsBytes        bytes of clean bits (ceil(nrRegions / 32) * 4), from log byte 1024
 *   20   4   headEndBytes     where the header blocks end: bits before it are written with the record
 *   24   4   crcHead          CRC-32 of the bits in [1024, min(headEnd, 1024 + bitsBytes))
 *   28   4   crcTail          CRC-32 of the bits from headEnd on (the rest of the bitmap)
 *   32   4   crcTailBefore    crcTail of the bitmap as on disk before the write that carried this record
 *   36   4   reserved (0)
 *   40  16n  legs, in table order: 8 bytes identity (legIdentity: SHA-256 of the table name, first 8
 *            bytes), u32 flags (bit 0: stale), u32 reserved (0)
 *   40+16n 4 CRC-32 of record bytes [0, 40+16n)
 *
 * Why the bitmap checksums: the record must be ignored once the kernel has used the log after us (the
 * kernel rewrites magic, version, nr_regions and the bits, never bytes 16..1023, so a stale flag would
 * outlive the resync that made it wrong). The record is therefore bound to the exact bits it was
 * written with: every log write umirror makes re-encodes it. Torn writes: the header blocks (record and
 * head bits) go out in one write, first; the tail bits follow. A crash between the two leaves the tail
 * as it was before, so a tail equal to crcTailBefore is accepted too (the step that was cut short
 * acknowledged nothing). DiskLogWriter makes the tail one write while a leg is stale, so no other mix of
 * old and new blocks exists then. Any other mismatch: the record does not describe this bitmap.
 *
 * Paired assertions: a record is checked before encoding and again after decoding.
 */
import { createHash } from 'node:crypto';
import * as zlib from 'node:zlib';
import { assert, assertCount } from '../assert.js';
import { legsMax } from '../limits.js';
import { diskLogBitsOffsetBytes, diskLogHeaderBytes } from './disk-log-format.js';

export const legRecordOffsetBytes = diskLogHeaderBytes;
export const legRecordMagic = 0x47454c55;
export const legRecordVersion = 1;
export const legIdentityBytes = 8;
const fixedBytes = 40;
const legEntryBytes = 16;
const staleFlag = 1;

/** Bytes of a record of `legCount` legs. */
export function legRecordBytes(legCount: number): number {
  return fixedBytes + legEntryBytes * legCount + 4;
}
assert(legRecordOffsetBytes + legRecordBytes(legsMax) <= diskLogBitsOffsetBytes, 'the record fits in the bytes the kernel keeps');

export interface LegRecordEntry {
  /** legIdentity() of the leg's table name. */
  readonly identity: Uint8Array;
  readonly stale: boolean;
}

export interface LegGenerationRecord {
  readonly nrRegions: number;
  readonly bitsBytes: number;
  readonly headEndBytes: number;
  readonly crcHead: number;
  readonly crcTail: number;
  readonly crcTailBefore: number;
  readonly legs: readonly LegRecordEntry[];
}

export type DecodedLegRecord =
  | { readonly kind: 'none' }
  | { readonly kind: 'invalid'; readonly reason: string }
  | { readonly kind: 'record'; readonly record: LegGenerationRecord };

/** A leg's identity in the record: the first 8 bytes of SHA-256 of its table name (path or URI). */
export function legIdentity(tableName: string): Uint8Array {
  const digest = createHash('sha256').update(tableName, 'utf8').digest();
  return new Uint8Array(digest.subarray(0, legIdentityBytes));
}

/** CRC-32 (zlib's polynomial): zlib.crc32 where Node has it (20.15+), else a table. */
export function crc32(data: Uint8Array): number {
  const native = (zlib as { crc32?: (data: Uint8Array) => number }).crc32;
  if (typeof native === 'function') return native(data) >>> 0;
  let crc = 0xffffffff;
  for (const byte of data) crc = (crcTable[(crc ^ byte) & 0xff] ?? 0) ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

const crcTable = new Uint32Array(256).map((_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

/** The bits' two checksums in a log buffer: the head (written with the record) and the tail. */
export function bitsChecksums(buffer: Uint8Array, options: { bitsBytes: number; headEndBytes: number }): { crcHead: number; crcTail: number } {
  const { bitsBytes, headEndBytes } = options;
  assertCount(bitsBytes, 'bitsBytes');
  assert(headEndBytes >= diskLogBitsOffsetBytes, 'the header blocks hold at least the header sectors');
  const bitsEnd = diskLogBitsOffsetBytes + bitsBytes;
  assert(bitsEnd <= buffer.byteLength, 'the buffer holds the bits');
  const split = Math.min(headEndBytes, bitsEnd);
  return { crcHead: crc32(buffer.subarray(diskLogBitsOffsetBytes, split)), crcTail: crc32(buffer.subarray(split, bitsEnd)) };
}

function assertRecord(record: LegGenerationRecord): void {
  assert(record.legs.length >= 1 && record.legs.length <= legsMax, 'a record lists 1..legsMax legs');
  assertCount(record.nrRegions, 'nrRegions');
  assert(record.bitsBytes === Math.ceil(record.nrRegions / 32) * 4, 'bitsBytes matches nrRegions');
  assert(record.bitsBytes <= 0xffffffff && record.headEndBytes <= 0xffffffff, 'sizes fit u32');
  assert(record.headEndBytes >= diskLogBitsOffsetBytes, 'the header blocks hold at least the header sectors');
  for (const crc of [record.crcHead, record.crcTail, record.crcTailBefore]) assert(Number.isInteger(crc) && crc >= 0 && crc <= 0xffffffff);
  for (const leg of record.legs) assert(leg.identity.byteLength === legIdentityBytes, 'an identity is 8 bytes');
}

/** Writes the record at log byte 16 of `buffer`; bytes 0..15 and the bits are left alone. */
export function encodeLegRecord(record: LegGenerationRecord, buffer: Uint8Array): void {
  assertRecord(record);
  const bytes = legRecordBytes(record.legs.length);
  assert(buffer.byteLength >= diskLogBitsOffsetBytes, 'a log buffer holds the header sectors');
  const view = new DataView(buffer.buffer, buffer.byteOffset + legRecordOffsetBytes, bytes);
  view.setUint32(0, legRecordMagic, true);
  view.setUint16(4, legRecordVersion, true);
  view.setUint16(6, record.legs.length, true);
  view.setBigUint64(8, BigInt(record.nrRegions), true);
  view.setUint32(16, record.bitsBytes, true);
  view.setUint32(20, record.headEndBytes, true);
  view.setUint32(24, record.crcHead, true);
  view.setUint32(28, record.crcTail, true);
  view.setUint32(32, record.crcTailBefore, true);
  view.setUint32(36, 0, true);
  record.legs.forEach((leg, index) => {
    const at = fixedBytes + legEntryBytes * index;
    buffer.set(leg.identity, legRecordOffsetBytes + at);
    view.setUint32(at + 8, leg.stale ? staleFlag : 0, true);
    view.setUint32(at + 12, 0, true);
  });
  const crcAt = bytes - 4;
  view.setUint32(crcAt, crc32(buffer.subarray(legRecordOffsetBytes, legRecordOffsetBytes + crcAt)), true);
}

/**
 * Reads the record at log byte 16: 'none' when the bytes are not a record (all zero, or another magic:
 * a log the kernel or an older umirror made), 'invalid' when a record is there but damaged or of
 * another version. Decoding does not check the bitmap: see checkLegRecordBinding().
 */
export function decodeLegRecord(buffer: Uint8Array): DecodedLegRecord {
  assert(buffer.byteLength >= diskLogBitsOffsetBytes, 'a log buffer holds the header sectors');
  const view = new DataView(buffer.buffer, buffer.byteOffset + legRecordOffsetBytes, diskLogBitsOffsetBytes - legRecordOffsetBytes);
  if (view.getUint32(0, true) !== legRecordMagic) return { kind: 'none' };
  const version = view.getUint16(4, true);
  if (version !== legRecordVersion) return { kind: 'invalid', reason: `leg generation record version ${version} (this umirror reads ${legRecordVersion})` };
  const legCount = view.getUint16(6, true);
  if (legCount < 1 || legCount > legsMax) return { kind: 'invalid', reason: `leg generation record lists ${legCount} legs` };
  const crcAt = legRecordBytes(legCount) - 4;
  const crc = crc32(buffer.subarray(legRecordOffsetBytes, legRecordOffsetBytes + crcAt));
  if (crc !== view.getUint32(crcAt, true)) return { kind: 'invalid', reason: 'leg generation record checksum mismatch' };
  const nr = view.getBigUint64(8, true);
  const bitsBytes = view.getUint32(16, true);
  const headEndBytes = view.getUint32(20, true);
  if (nr > BigInt(Number.MAX_SAFE_INTEGER) || bitsBytes !== Math.ceil(Number(nr) / 32) * 4 || headEndBytes < diskLogBitsOffsetBytes) {
    return { kind: 'invalid', reason: 'leg generation record sizes are inconsistent' };
  }
  const legs: LegRecordEntry[] = [];
  for (let index = 0; index < legCount; index++) {
    const at = fixedBytes + legEntryBytes * index;
    const identity = buffer.slice(legRecordOffsetBytes + at, legRecordOffsetBytes + at + legIdentityBytes);
    legs.push({ identity, stale: (view.getUint32(at + 8, true) & staleFlag) !== 0 });
  }
  const record: LegGenerationRecord = {
    nrRegions: Number(nr),
    bitsBytes,
    headEndBytes,
    crcHead: view.getUint32(24, true),
    crcTail: view.getUint32(28, true),
    crcTailBefore: view.getUint32(32, true),
    legs,
  };
  assertRecord(record);
  return { kind: 'record', record };
}

/**
 * Whether `record` describes the bitmap in `buffer` (read from the log device with the kernel header's
 * `nrRegions`): undefined when it does, else why not. The head bits must match crcHead (they are
 * written with the record), the tail crcTail or crcTailBefore (a write cut short after its header).
 */
export function checkLegRecordBinding(record: LegGenerationRecord, buffer: Uint8Array, options: { nrRegions: number }): string | undefined {
  assertRecord(record);
  if (record.nrRegions !== options.nrRegions) return `the log header says ${options.nrRegions} regions, the record ${record.nrRegions}`;
  if (diskLogBitsOffsetBytes + record.bitsBytes > buffer.byteLength) return 'the record describes more bits than the log holds';
  const sums = bitsChecksums(buffer, { bitsBytes: record.bitsBytes, headEndBytes: record.headEndBytes });
  if (sums.crcHead !== record.crcHead) return 'the clean bits changed since umirror wrote the record (the kernel used the log)';
  if (sums.crcTail !== record.crcTail && sums.crcTail !== record.crcTailBefore) {
    return 'the clean bits changed since umirror wrote the record (the kernel used the log)';
  }
  return undefined;
}

/** True when two identities are the same bytes. */
export function sameIdentity(a: Uint8Array, b: Uint8Array): boolean {
  return a.byteLength === b.byteLength && a.every((byte, index) => byte === b[index]);
}
