/**
 * ReadPath: the reads of one mirror set (dm-raid1's mirror_map for reads, do_reads, read_callback and
 * mirror_end_io's read retry).
 *
 *   region                       read goes to
 *   in sync (regionInSync)       chooseLeg() at once, at submission (mirror_map)
 *   out of sync                  the read queue; the next pass reads the default leg, while it is valid
 *   no leg to read               EIO ("Mirror read failed." from the pass)
 * A failed read fails its leg (read) and is queued again for the pass while the default leg is valid or
 * the region is in sync on another valid leg (default_ok || mirror_available), at most once per leg
 * (readRetriesMax); else EIO. Never stale data: an out-of-sync region is read only from the default leg,
 * which recovery copies from. The kernel's messages differ by path (#readFailed).
 *
 * With read repair (read-repair.ts, opt-in) a failed read of an in-sync region is first repaired from
 * another leg; only when that fails does it go on as above. The repair counts as the read in flight.
 *
 * The worker takes the queue at the start of each pass (takeAll) and hands it back to run() in
 * do_mirror's order. A read completes exactly once, with its data or an error; reads take no region
 * pending count. quiet() resolves once no leg read is in flight (part of MirrorSet.idle()).
 */
import { assert } from '../assert.js';
import { BlockError } from '../errors.js';
import { detach, failFast, rethrowProgrammerError } from '../fail-fast.js';
import { readRetriesMax } from '../limits.js';
import type { RegionHash } from '../region/region-hash.js';
import type { Leg } from './leg.js';
import type { LegSet } from './leg-set.js';
import type { MirrorEvents } from './mirror-events.js';
import type { ReadRepair } from './read-repair.js';
import { newReadIo, type ReadIo, type RegionPiece, type RegionWriteIo } from './mirror-io.js';

export interface ReadPathOptions {
  readonly name: string;
  readonly rh: RegionHash<RegionWriteIo>;
  readonly legSet: LegSet;
  readonly events: MirrorEvents;
  /** Asks the worker for a pass. */
  readonly wake: () => void;
  /** Read repair (--read-repair), when on. */
  readonly readRepair?: ReadRepair;
}

export class ReadPath {
  readonly #name: string;
  readonly #rh: RegionHash<RegionWriteIo>;
  readonly #legs: LegSet;
  readonly #events: MirrorEvents;
  readonly #wake: () => void;
  readonly #readRepair: ReadRepair | undefined;
  /** Reads waiting for the next pass (ms->reads). */
  #queue: ReadIo[] = [];
  /** Leg reads issued and not yet returned. */
  #inFlight = 0;
  #quietWaiters: (() => void)[] = [];

  constructor(options: ReadPathOptions) {
    this.#name = options.name;
    this.#rh = options.rh;
    this.#legs = options.legSet;
    this.#events = options.events;
    this.#wake = options.wake;
    this.#readRepair = options.readRepair;
  }

  /** Leg reads in flight now. */
  get inFlight(): number {
    return this.#inFlight;
  }

  /** Resolves once no leg read is in flight. */
  quiet(): Promise<void> {
    if (this.#inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => this.#quietWaiters.push(resolve));
  }

  /**
   * Whether every leg holds the region: in sync in the log and not NOSYNC in the region hash (after a
   * failed leg flush a region goes NOSYNC while the log still counts it in sync, as in the kernel).
   */
  regionInSync(regionIndex: number): boolean {
    return this.#rh.log.inSync(regionIndex) && this.#rh.getState(regionIndex) !== 'NOSYNC';
  }

  /** mirror_map for a read of one region piece; resolves with exactly the piece's bytes. */
  read(piece: RegionPiece): Promise<Buffer> {
    const { io, done } = newReadIo(piece);
    if (this.regionInSync(io.regionIndex)) {
      const leg = this.#legs.chooseLeg();
      if (leg === undefined) this.#fail(io, new BlockError('EIO', `${this.#name}: no valid leg to read from`));
      else this.#issue(io, leg, { mapped: true });
    } else {
      this.#queue.push(io);
      this.#wake();
    }
    return done;
  }

  /** Takes the queued reads for a pass. */
  takeAll(): ReadIo[] {
    const taken = this.#queue;
    this.#queue = [];
    return taken;
  }

  /** do_reads: in-sync regions from a chosen leg, the others from the default leg while it is valid. */
  run(reads: readonly ReadIo[]): void {
    for (const io of reads) {
      let leg: Leg | undefined = this.#legs.defaultLeg;
      if (this.regionInSync(io.regionIndex)) leg = this.#legs.chooseLeg();
      else if (!leg.valid) leg = undefined;
      if (leg === undefined) {
        this.#events.messageLimited('mirror_end_io', 'error', 'Mirror read failed.');
        this.#fail(io, new BlockError('EIO', `Cannot read region ${io.regionIndex}: no valid in-sync leg`));
      } else {
        this.#issue(io, leg, { mapped: false });
      }
    }
  }

  /**
   * Reads from one leg. `mapped`: the read of an in-sync region issued at submission (mirror_map, its
   * failure handled as mirror_end_io does); otherwise issued by the pass (do_reads, read_callback).
   */
  #issue(io: ReadIo, leg: Leg, options: { readonly mapped: boolean }): void {
    io.readAttempts += 1;
    leg.stats.readsTotal += 1;
    leg.stats.readBytesTotal += io.lengthBytes;
    this.#inFlight += 1;
    detach(
      leg.device.read(leg.offsetBytes + io.offsetBytes, io.lengthBytes).then(
        (data) => {
          this.#ended();
          assert(data.length === io.lengthBytes, 'a read returns its length');
          this.#settle(io);
          io.resolve(data);
        },
        (err: unknown) => {
          rethrowProgrammerError(err);
          const repair = this.#readRepair;
          if (repair === undefined) {
            this.#ended();
            this.#readFailed(io, leg, { err, mapped: options.mapped });
            return;
          }
          detach(
            repair.repairRead(io, leg).then((data) => {
              this.#ended();
              if (data === undefined) {
                this.#readFailed(io, leg, { err, mapped: options.mapped });
                return;
              }
              this.#settle(io);
              io.resolve(data);
            }),
            failFast,
          );
        },
      ),
      failFast,
    );
  }

  /**
   * A leg failed a read: retried through the pass, or EIO. The messages by path
   * (test/scenario/oracle/read-path.out):
   *   mapped (mirror_end_io): "Mirror read failed from X. Trying alternative device.", then the leg
   *     fails; with no retry "All replicated volumes dead, failing I/O".
   *   pass (read_callback): the leg fails, then "Read failure on mirror device X. Trying alternative
   *     device." or "Read failure on mirror device X.  Failing I/O." followed by end_io's
   *     "Mirror read failed." (the two spaces are the kernel's).
   */
  #readFailed(io: ReadIo, leg: Leg, options: { readonly err: unknown; readonly mapped: boolean }): void {
    const name = this.#legs.displayName(leg);
    if (options.mapped) this.#events.message('error', `Mirror read failed from ${name}. Trying alternative device.`);
    this.#legs.failLeg(leg, 'read');
    const retry =
      io.readAttempts < Math.min(readRetriesMax, this.#legs.legs.length) &&
      (this.#legs.defaultLeg.valid || (this.regionInSync(io.regionIndex) && this.#legs.chooseLeg() !== undefined));
    if (retry) {
      if (!options.mapped) this.#events.messageLimited('read_callback', 'warn', `Read failure on mirror device ${name}. Trying alternative device.`);
      this.#queue.push(io);
      this.#wake();
      return;
    }
    if (options.mapped) {
      this.#events.message('error', 'All replicated volumes dead, failing I/O');
    } else {
      this.#events.messageLimited('read_callback', 'error', `Read failure on mirror device ${name}.  Failing I/O.`);
      this.#events.messageLimited('mirror_end_io', 'error', 'Mirror read failed.');
    }
    const cause = options.err;
    this.#fail(io, new BlockError('EIO', `Cannot read region ${io.regionIndex}: every valid leg failed`, { cause }));
  }

  #settle(io: ReadIo): void {
    assert(!io.settled, 'a read completes once');
    io.settled = true;
  }

  #fail(io: ReadIo, err: BlockError): void {
    this.#settle(io);
    io.reject(err);
  }

  #ended(): void {
    assert(this.#inFlight > 0, 'a leg read ended with none in flight');
    this.#inFlight -= 1;
    if (this.#inFlight === 0) for (const resolve of this.#quietWaiters.splice(0)) resolve();
  }
}
