/**
 * LegGenerations: a disk log's memory of which legs are stale (issue 11), kept as the leg generation
 * record (leg-generation-record.ts) in the log buffer's header bytes 16..1023.
 *
 * It owns the legs' identities (from their table names, in table order), their stale flags, and the
 * checksum of the tail bits as last written to the device. DiskLogWriter calls it around every write:
 *
 *   resume   load(buffer as read)   decode the record, check it describes these bits; adopt the stale
 *                                   flags of legs it lists (by identity, so a reordered table keeps
 *                                   them); remember what was found (legGenerations' `record`)
 *   any step encode(buffer)         re-encode the record for the bits as they are now (called at the
 *                                   start of every write step, with the snapshot of the step taken at
 *                                   once after it); reports whether the header bytes changed
 *            written(tail crc)      the step's blocks all reached the device: its tail is now on disk
 *   suspend  sealed(buffer)         whether the record on disk accepts only these bits (the writer's
 *                                   seal step rewrites the header blocks until it does)
 *
 * States of the record found at resume: 'bound' (it describes the bits read: its flags are adopted),
 * 'none' (no record: a new log, or one only the kernel wrote), 'unbound' (a record whose bits changed
 * since: the kernel used the log after us; ignored), 'invalid' (damaged, another version, or the log
 * header itself was unusable; ignored). Without a bound record every leg starts current, as in the
 * kernel.
 *
 * A stale flag set with setStale() is durable once the log's next flush (the mark step that also
 * carries the dirty marks) resolves: the caller sets it before that flush. Called by DiskDirtyLog and
 * DiskLogWriter only; never waits.
 */
import { assert, assertCount } from '../assert.js';
import { legsMax } from '../limits.js';
import { diskLogBitsOffsetBytes } from './disk-log-format.js';
import {
  bitsChecksums,
  checkLegRecordBinding,
  decodeLegRecord,
  encodeLegRecord,
  legIdentity,
  legRecordBytes,
  legRecordOffsetBytes,
  type LegGenerationRecord,
  sameIdentity,
} from './leg-generation-record.js';

export type LegRecordFound = 'bound' | 'none' | 'unbound' | 'invalid';

/** What a resume found, and the legs' flags now. */
export interface LegGenerationsView {
  readonly record: LegRecordFound;
  /** Why an 'unbound' or 'invalid' record was ignored. */
  readonly reason: string | undefined;
  /** Per leg, in table order: stale now; recorded: listed in the bound record found at resume. */
  readonly legs: readonly { readonly stale: boolean; readonly recorded: boolean }[];
}

export class LegGenerations {
  readonly legCount: number;
  readonly #identities: readonly Uint8Array[];
  readonly #stale: boolean[];
  readonly #recorded: boolean[];
  #found: LegRecordFound = 'none';
  #reason: string | undefined;
  /** CRC of the tail bits on the device (as read at resume, then as each complete step wrote them). */
  #diskTailCrc = 0;
  /** The record bytes last encoded (to tell whether a step changes the header blocks). */
  #encoded: Uint8Array | undefined;

  constructor(options: { legNames: readonly string[] }) {
    const count = options.legNames.length;
    assert(count >= 1 && count <= legsMax, `a mirror has 1..${legsMax} legs`);
    this.legCount = count;
    this.#identities = options.legNames.map((name) => legIdentity(name));
    this.#stale = new Array<boolean>(count).fill(false);
    this.#recorded = new Array<boolean>(count).fill(false);
  }

  get view(): LegGenerationsView {
    return {
      record: this.#found,
      reason: this.#reason,
      legs: this.#stale.map((stale, index) => ({ stale, recorded: this.#recorded[index] === true })),
    };
  }

  get anyStale(): boolean {
    return this.#stale.includes(true);
  }

  isStale(legIndex: number): boolean {
    this.#check(legIndex);
    return this.#stale[legIndex] === true;
  }

  /** @returns true when the flag changed (the record must be written). */
  setStale(legIndex: number, stale: boolean): boolean {
    this.#check(legIndex);
    if (this.#stale[legIndex] === stale) return false;
    this.#stale[legIndex] = stale;
    return true;
  }

  /**
   * Resume, on the buffer just read and before the log reconciles its bits. `nrRegions` is the kernel
   * header's as read, or undefined when the header is unusable (unreadable, foreign magic, another
   * version): then no record is trusted. `bitsBytes`/`headEndBytes` are this log's.
   */
  load(buffer: Uint8Array, options: { nrRegions: number | undefined; bitsBytes: number; headEndBytes: number }): void {
    this.#stale.fill(false);
    this.#recorded.fill(false);
    this.#encoded = undefined;
    this.#reason = undefined;
    this.#diskTailCrc = bitsChecksums(buffer, { bitsBytes: options.bitsBytes, headEndBytes: options.headEndBytes }).crcTail;
    const decoded = decodeLegRecord(buffer);
    if (decoded.kind === 'none') {
      this.#found = 'none';
      return;
    }
    if (decoded.kind === 'invalid') {
      this.#found = 'invalid';
      this.#reason = decoded.reason;
      return;
    }
    if (options.nrRegions === undefined) {
      this.#found = 'invalid';
      this.#reason = 'the log header is not usable';
      return;
    }
    const problem = checkLegRecordBinding(decoded.record, buffer, { nrRegions: options.nrRegions });
    if (problem !== undefined) {
      this.#found = 'unbound';
      this.#reason = problem;
      return;
    }
    this.#found = 'bound';
    const entries = decoded.record.legs;
    const used = new Set<number>();
    this.#identities.forEach((identity, legIndex) => {
      // The same position first (a table may list one device twice), else the first unused match.
      const samePlace = entries[legIndex];
      let match = samePlace !== undefined && sameIdentity(samePlace.identity, identity) && !used.has(legIndex) ? legIndex : -1;
      if (match < 0) match = entries.findIndex((entry, at) => !used.has(at) && sameIdentity(entry.identity, identity));
      if (match < 0) return;
      used.add(match);
      this.#recorded[legIndex] = true;
      this.#stale[legIndex] = entries[match]?.stale === true;
    });
  }

  /**
   * Encodes the record for the bits in `buffer` now (a write step is about to snapshot it).
   * @returns changed: the record bytes differ from the last encoding; crcTail: what the step writes.
   */
  encode(buffer: Uint8Array, options: { nrRegions: number; bitsBytes: number; headEndBytes: number }): { changed: boolean; crcTail: number } {
    assertCount(options.nrRegions, 'nrRegions');
    assert(options.bitsBytes === Math.ceil(options.nrRegions / 32) * 4, 'bitsBytes matches nrRegions');
    assert(options.headEndBytes >= diskLogBitsOffsetBytes && options.headEndBytes <= buffer.byteLength, 'the header blocks lie in the buffer');
    const record = this.#record(buffer, options);
    encodeLegRecord(record, buffer);
    const bytes = buffer.slice(legRecordOffsetBytes, legRecordOffsetBytes + legRecordBytes(this.legCount));
    const before = this.#encoded;
    const changed = before === undefined || !bytes.every((byte, index) => byte === before[index]);
    this.#encoded = bytes;
    return { changed, crcTail: record.crcTail };
  }

  /** The record for the bits in `buffer` now and the flags now. */
  #record(buffer: Uint8Array, options: { nrRegions: number; bitsBytes: number; headEndBytes: number }): LegGenerationRecord {
    const sums = bitsChecksums(buffer, { bitsBytes: options.bitsBytes, headEndBytes: options.headEndBytes });
    return {
      nrRegions: options.nrRegions,
      bitsBytes: options.bitsBytes,
      headEndBytes: options.headEndBytes,
      crcHead: sums.crcHead,
      crcTail: sums.crcTail,
      crcTailBefore: this.#diskTailCrc,
      legs: this.#identities.map((identity, index) => ({ identity, stale: this.#stale[index] === true })),
    };
  }

  /**
   * True when the record on the device accepts only the bits in `buffer`: it was written for them with
   * crcTailBefore equal to their tail (see DiskLogWriter.sealRecord), and nothing changed since.
   */
  sealed(buffer: Uint8Array, options: { nrRegions: number; bitsBytes: number; headEndBytes: number }): boolean {
    const encoded = this.#encoded;
    if (encoded === undefined) return false;
    const record = this.#record(buffer, options);
    if (record.crcTailBefore !== record.crcTail) return false;
    const scratch = new Uint8Array(diskLogBitsOffsetBytes);
    encodeLegRecord(record, scratch);
    const bytes = scratch.subarray(legRecordOffsetBytes, legRecordOffsetBytes + legRecordBytes(this.legCount));
    return bytes.every((byte, index) => byte === encoded[index]);
  }

  /** Every block of a step reached the device: the tail on disk is the one that step encoded. */
  written(crcTail: number): void {
    assert(Number.isInteger(crcTail) && crcTail >= 0 && crcTail <= 0xffffffff);
    this.#diskTailCrc = crcTail;
  }

  #check(legIndex: number): void {
    assert(Number.isSafeInteger(legIndex) && legIndex >= 0 && legIndex < this.legCount, `leg index ${legIndex} out of range`);
  }
}
