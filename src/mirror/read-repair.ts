/**
 * ReadRepair: md raid1's fix_read_error, opt-in (`--read-repair`). When a read of an in-sync region
 * fails on one leg, the same bytes are read from another valid leg and written back to the leg that
 * failed; a bad sector is then usually remapped by the disk and the leg stays healthy.
 *
 *   step                                   on failure
 *   hold the bytes against writes          -
 *   region still in sync, leg still valid  give up: the read path goes on as without read repair
 *   read another valid leg                 give up (the read path then fails the leg, R, and retries)
 *   write the data back to the failing leg give up (the same: the leg fails with a read error, R)
 *   success                                the leg stays A, correctedReadErrorsTotal grows (set and
 *                                          leg), a message says where; the caller gets the data
 *
 * The hold (WriteQueue.hold, a barrier in the overlap gate) keeps client writes out between the read
 * of the good leg and the write back, so the write back never puts older data over a newer write. The
 * write back goes to the failing leg alone, straight to its device: the other legs hold the data
 * already, and a failure must not go through the write path (which would fail the leg with D, and hold
 * the client's read until a suspend under handle_errors).
 *
 * Off by default: the kernel fails the leg (R) at the first read error, and the kernel reference tests
 * expect exactly that. Used by ReadPath (client reads) and Scrub (a leg read that fails during a scrub).
 */
import { assert } from '../assert.js';
import { rethrowProgrammerError } from '../fail-fast.js';
import type { Leg } from './leg.js';
import type { LegSet } from './leg-set.js';
import type { MirrorEvents } from './mirror-events.js';
import type { RegionPiece } from './mirror-io.js';
import type { MirrorStats } from './mirror-status.js';

export interface ReadRepairOptions {
  readonly name: string;
  readonly legSet: LegSet;
  readonly events: MirrorEvents;
  readonly stats: MirrorStats;
  readonly regionInSync: (regionIndex: number) => boolean;
  /** Holds the set's bytes against writes (WriteQueue.hold); resolves with the release. */
  readonly hold: (offsetBytes: number, lengthBytes: number) => Promise<() => void>;
}

export class ReadRepair {
  readonly #options: ReadRepairOptions;

  constructor(options: ReadRepairOptions) {
    this.#options = options;
  }

  /**
   * A client read of `piece` failed on `leg`: reads it from another valid leg and writes it back.
   * Resolves with the data when the leg was repaired, undefined when the caller must go on as without
   * read repair. Never rejects for I/O errors.
   */
  async repairRead(piece: RegionPiece, leg: Leg): Promise<Buffer | undefined> {
    const { legSet, regionInSync, hold } = this.#options;
    if (!regionInSync(piece.regionIndex) || !leg.valid) return undefined;
    const release = await hold(piece.offsetBytes, piece.lengthBytes);
    try {
      if (!regionInSync(piece.regionIndex) || !leg.valid) return undefined;
      const source = legSet.legs.find((other) => other !== leg && other.valid);
      if (source === undefined) return undefined;
      source.stats.readsTotal += 1;
      source.stats.readBytesTotal += piece.lengthBytes;
      let data: Buffer;
      try {
        data = await source.device.read(source.offsetBytes + piece.offsetBytes, piece.lengthBytes);
      } catch (err) {
        rethrowProgrammerError(err);
        return undefined;
      }
      assert(data.length === piece.lengthBytes, 'a leg read returns its length');
      const fixed = await this.writeBack({ leg, atBytes: piece.offsetBytes, data, regionIndex: piece.regionIndex });
      return fixed ? data : undefined;
    } finally {
      release();
    }
  }

  /**
   * Writes `data` (what the other legs hold at the set's `atBytes`) to `leg`, whose read of it failed.
   * The caller holds the bytes against writes. Returns whether the write succeeded (then counted).
   */
  async writeBack(options: { leg: Leg; atBytes: number; data: Uint8Array; regionIndex: number }): Promise<boolean> {
    const { leg, atBytes, data, regionIndex } = options;
    assert(data.length > 0, 'a write back carries data');
    leg.stats.writesTotal += 1;
    leg.stats.writeBytesTotal += data.length;
    try {
      await leg.device.write(leg.offsetBytes + atBytes, data);
    } catch (err) {
      rethrowProgrammerError(err);
      return false;
    }
    leg.stats.correctedReadErrorsTotal += 1;
    this.#options.stats.correctedReadErrorsTotal += 1;
    const name = this.#options.legSet.displayName(leg);
    this.#options.events.message('warn', `${this.#options.name}: read error corrected (${data.length} bytes at byte ${atBytes} on ${name}, region ${regionIndex})`);
    return true;
  }
}
