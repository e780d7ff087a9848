/**
 * RegionBits: a compact bit set over regions, the storage behind the dirty logs' clean, sync and
 * recovering bits (dm-log's uint32_t bitsets with the kernel's *_le bit operations).
 *
 * Bit i lives in 32-bit word i >> 5 at bit i & 31, and the words are little-endian, so bit i is byte
 * i >> 3, bit i & 7 of the byte view: exactly the on-disk layout of the disk log's clean bits. A disk log
 * therefore builds its clean bits as a view into its I/O buffer (`storage`), as dm-log points clean_bits
 * into disk_header, and the buffer is written with no conversion.
 *
 * The set always owns whole words: bits from `bitCount` up to the next multiple of 32 exist (the kernel
 * clears them at resume) but search and count never report them unless the caller set them.
 * Memory: ceil(bitCount / 32) * 4 bytes, so 32M regions (16 TiB at 512 KiB regions) cost 4 MiB.
 *
 * Called by CoreDirtyLog and DiskDirtyLog only; never waits.
 */
import { endianness } from 'node:os';
import { assert, assertCount } from '../assert.js';
import { regionCountMax } from '../limits.js';

// The byte view equals the disk format only on a little-endian host (x86-64, arm64).
assert(endianness() === 'LE', 'RegionBits needs a little-endian host');

const wordBits = 32;
const allOnes = 0xffffffff;

export interface RegionBitsOptions {
  /** Number of addressable bits (the region count). */
  readonly bitCount: number;
  /**
   * Optional backing bytes (a view into a larger I/O buffer); must be 4-byte aligned and hold at least
   * wordCount * 4 bytes. Without it, zeroed memory is allocated.
   */
  readonly storage?: Uint8Array;
}

/** Bytes of a bit set of `bitCount` bits: whole 32-bit words, as dm-log's bitset_size. */
export function regionBitsBytes(bitCount: number): number {
  assertCount(bitCount, 'bitCount');
  return Math.ceil(bitCount / wordBits) * 4;
}

export class RegionBits {
  readonly bitCount: number;
  readonly wordCount: number;
  readonly words: Uint32Array;

  constructor(options: RegionBitsOptions) {
    assertCount(options.bitCount, 'bitCount');
    assert(options.bitCount <= regionCountMax, 'bitCount <= regionCountMax (createDirtyLog refuses larger logs)');
    this.bitCount = options.bitCount;
    this.wordCount = Math.ceil(options.bitCount / wordBits);
    if (options.storage === undefined) {
      this.words = new Uint32Array(this.wordCount);
    } else {
      const storage = options.storage;
      assert(storage.byteOffset % 4 === 0, 'RegionBits storage must be 4-byte aligned');
      assert(storage.byteLength >= this.wordCount * 4, 'RegionBits storage is too small');
      this.words = new Uint32Array(storage.buffer, storage.byteOffset, this.wordCount);
    }
    assert(this.words.length === this.wordCount);
  }

  /** The bits as bytes (little-endian bit order), sharing memory with the set. */
  bytes(): Uint8Array {
    return new Uint8Array(this.words.buffer, this.words.byteOffset, this.words.byteLength);
  }

  test(bitIndex: number): boolean {
    this.#check(bitIndex);
    return ((this.words[bitIndex >>> 5] ?? 0) & (1 << (bitIndex & 31))) !== 0;
  }

  /** Sets a bit. @returns true when it changed. */
  set(bitIndex: number): boolean {
    this.#check(bitIndex);
    const w = bitIndex >>> 5;
    const mask = 1 << (bitIndex & 31);
    const before = this.words[w] ?? 0;
    this.words[w] = before | mask;
    return (before & mask) === 0;
  }

  /** Clears a bit. @returns true when it changed. */
  clear(bitIndex: number): boolean {
    this.#check(bitIndex);
    const w = bitIndex >>> 5;
    const mask = 1 << (bitIndex & 31);
    const before = this.words[w] ?? 0;
    this.words[w] = before & ~mask;
    return (before & mask) !== 0;
  }

  /**
   * Sets or clears the bits in [from, to). `to` may pass bitCount up to the end of the last word (the
   * kernel's "clear up to the next 32-bit boundary" at resume).
   */
  fillRange(options: { from: number; to: number; value: boolean }): void {
    const { from, to, value } = options;
    assertCount(from, 'from');
    assertCount(to, 'to');
    assert(from <= to, `fillRange from ${from} > to ${to}`);
    assert(to <= this.wordCount * wordBits, `fillRange to ${to} passes the last word`);
    let i = from;
    while (i < to) {
      const w = i >>> 5;
      const bit = i & 31;
      const n = Math.min(wordBits - bit, to - i);
      const mask = n === wordBits ? allOnes : ((2 ** n - 1) * 2 ** bit) >>> 0;
      const before = this.words[w] ?? 0;
      this.words[w] = value ? (before | mask) >>> 0 : (before & ~mask) >>> 0;
      i += n;
    }
  }

  setAll(): void {
    this.fillRange({ from: 0, to: this.bitCount, value: true });
  }

  clearAll(): void {
    this.words.fill(0);
  }

  /** Copies every word of `source` (same size) into this set. */
  copyFrom(source: RegionBits): void {
    assert(source.wordCount === this.wordCount, 'copyFrom needs sets of the same size');
    this.words.set(source.words);
  }

  /** Set bits in the whole words (popcount), as the kernel's memweight over the bitset. */
  count(): number {
    let total = 0;
    for (let w = 0; w < this.wordCount; w++) total += popcount32(this.words[w] ?? 0);
    return total;
  }

  /** The first clear bit at or after `from`, or bitCount when none (find_next_zero_bit_le). */
  findNextZero(from: number): number {
    assertCount(from, 'from');
    if (from >= this.bitCount) return this.bitCount;
    let w = from >>> 5;
    // Treat the bits below `from` in its word as set, so they are skipped.
    let word = ((this.words[w] ?? 0) | (2 ** (from & 31) - 1)) >>> 0;
    for (;;) {
      if (word !== allOnes) {
        const inverted = ~word >>> 0;
        const lowest = 31 - Math.clz32(inverted & -inverted);
        const found = w * wordBits + lowest;
        return Math.min(found, this.bitCount);
      }
      w++;
      if (w >= this.wordCount) return this.bitCount;
      word = this.words[w] ?? 0;
    }
  }

  #check(bitIndex: number): void {
    if (!Number.isSafeInteger(bitIndex) || bitIndex < 0 || bitIndex >= this.bitCount) {
      throw new RangeError(`region ${bitIndex} is outside 0..${this.bitCount - 1}`);
    }
  }
}

function popcount32(value: number): number {
  let v = value >>> 0;
  v = v - ((v >>> 1) & 0x55555555);
  v = (v & 0x33333333) + ((v >>> 2) & 0x33333333);
  return (((v + (v >>> 4)) & 0x0f0f0f0f) * 0x01010101) >>> 24;
}
