/**
 * MirrorWorker: the per-set worker (the kernel's kmirrord work, do_mirror) and the write path it drives.
 * One pass, in do_mirror's order:
 *   1. take the queues: reads (ReadPath), writes (WriteQueue.takeAll, which admits waiting spans), failures
 *   2. update region states (RegionHash.updateStates: clears, recovered regions, log flushes)
 *   3. recovery (Recovery.run)
 *   4. reads (do_reads)     5. writes (do_writes)     6. failures (do_failures)
 *
 * Writes (do_writes), by region state:
 *   CLEAN, DIRTY   inc pending (CLEAN -> DIRTY marks the log), then to every leg
 *   NOSYNC         inc pending, then to the default leg only (its error goes straight back)
 *   RECOVERING     delayed until the region's recovery ends (the region hash requeues it)
 *   flush          to every leg, not region-counted
 * The log is flushed ONCE for the whole batch, after every mark and before any data write (group
 * commit). If that flush fails and handle_errors is set, the batch's writes go to the failure list and
 * no data goes out ahead of its dirty mark. A write to a NOSYNC region after a leg failure goes to the
 * failure list too (handle_errors without keep_log).
 *
 * Completion (write_callback): all legs ok -> done. A failed trim fails with ENOTSUP, degrades no leg
 * and resyncs its region. Otherwise failLeg(write) each failed leg, then (do_failures) the region goes
 * NOSYNC (a flush: the sticky flush failure) unless the log failed, and the request is
 *   - failed with EIO when no leg is valid, or when keep_log is set and the log has failed;
 *   - held until suspend with handle_errors (and no keep_log): a noflush suspend requeues it into the
 *     next table (RequeueRequest), a plain suspend fails it with EIO, close with ESHUTDOWN;
 *   - failed with EIO when the default leg is among the failed legs (ours: the kernel pretends);
 *   - acknowledged otherwise (the kernel's "pretend"; the data is on every valid leg).
 *
 * Reads have their own path (read-path.ts): the pass takes its queue and runs it in step 4.
 *
 * Scheduling: wake() asks for a pass; the loop runs passes one after another until no wake-up arrived
 * during the last one, on a later tick, so a burst of wake-ups becomes one pass. Never more than one
 * pass of a set at a time, one loop per set (a set whose log lives on another set never waits on
 * itself). idle() resolves when no pass runs and none is wanted (flush_workqueue); quiet() also waits
 * for the leg I/O the worker issued. A pass that throws is a programmer error: it goes to failFast.
 */
import { assert, unreachable } from '../assert.js';
import { BlockError } from '../errors.js';
import { detach, failFast, rethrowProgrammerError, settleOperating } from '../fail-fast.js';
import type { RegionHash } from '../region/region-hash.js';
import { RequeueRequest } from '../target/target.js';
import type { Leg } from './leg.js';
import type { LegSet } from './leg-set.js';
import type { RegionWriteIo, WriteQueueIo } from './mirror-io.js';
import type { MirrorStats } from './mirror-status.js';
import type { ReadPath } from './read-path.js';
import type { Recovery } from './recovery.js';
import type { MirrorFeatures } from './table.js';
import type { WriteQueue } from './write-queue.js';

export interface MirrorWorkerOptions {
  readonly features: MirrorFeatures;
  readonly rh: RegionHash<RegionWriteIo>;
  readonly legSet: LegSet;
  readonly recovery: Recovery;
  readonly reads: ReadPath;
  readonly writes: WriteQueue;
  readonly stats: MirrorStats;
}

export class MirrorWorker {
  readonly #features: MirrorFeatures;
  readonly #rh: RegionHash<RegionWriteIo>;
  readonly #legs: LegSet;
  readonly #recovery: Recovery;
  readonly #reads: ReadPath;
  readonly #writes: WriteQueue;
  readonly #stats: MirrorStats;

  #wanted = false;
  #running = false;
  /** Leg operations issued by this worker and not yet returned. */
  #legIoInFlight = 0;
  #idleWaiters: (() => void)[] = [];
  #quietWaiters: (() => void)[] = [];

  /** The failure list the pass takes (reads and writes have their own queues). */
  #failures: WriteQueueIo[] = [];
  /** Writes held until suspend (handle_errors after a leg failure). */
  #holds: WriteQueueIo[] = [];
  /** ms->log_failure: a log flush or update failed (sticky for the table). */
  #logFailure = false;
  /** ms->suspend: set at presuspend; held writes are released and new failures not held. */
  #suspending = false;
  #noflushSuspending = false;

  constructor(options: MirrorWorkerOptions) {
    this.#features = options.features;
    this.#rh = options.rh;
    this.#legs = options.legSet;
    this.#recovery = options.recovery;
    this.#reads = options.reads;
    this.#writes = options.writes;
    this.#stats = options.stats;
  }

  // ---- Scheduling --------------------------------------------------------------------------------

  /** A pass runs or is wanted, or leg I/O the worker issued is in flight. */
  get busy(): boolean {
    return this.#running || this.#wanted || this.#legIoInFlight > 0;
  }

  get heldWrites(): number {
    return this.#holds.length;
  }

  wake(): void {
    this.#wanted = true;
    if (this.#running) return;
    this.#running = true;
    // Run on a later tick so that a burst of wake-ups (many completions) becomes one pass.
    setImmediate(() => {
      // A pass settles every operating error itself: whatever escapes it is a broken invariant.
      detach(this.#loop(), failFast);
    });
  }

  /** Resolves when the loop is idle (after any pass in progress and any pass it asked for). */
  idle(): Promise<void> {
    if (!this.#running && !this.#wanted) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  /** Resolves when the loop is idle and no leg operation it issued is in flight. */
  async quiet(): Promise<void> {
    for (;;) {
      await this.idle();
      if (this.#legIoInFlight === 0) return;
      await new Promise<void>((resolve) => this.#quietWaiters.push(resolve));
    }
  }

  async #loop(): Promise<void> {
    assert(this.#running, 'loop started without the running flag');
    try {
      while (this.#wanted) {
        this.#wanted = false;
        await this.#pass();
      }
    } finally {
      this.#running = false;
    }
    for (const resolve of this.#idleWaiters.splice(0)) resolve();
  }

  // ---- Suspend -----------------------------------------------------------------------------------

  /** presuspend: held writes are released now (requeue or EIO), later failures are not held. */
  beginSuspend(options: { readonly noflush: boolean }): void {
    this.#suspending = true;
    this.#noflushSuspending = options.noflush;
    for (const io of this.#holds.splice(0)) this.#hold(io);
    assert(this.#holds.length === 0, 'a suspending set holds no write');
  }

  endSuspend(): void {
    this.#suspending = false;
    this.#noflushSuspending = false;
  }

  /** Fails the held writes with ESHUTDOWN (the set closes). */
  closeHolds(): void {
    for (const io of this.#holds.splice(0)) this.#fail(io, new BlockError('ESHUTDOWN', 'mirror set closed'));
  }

  // ---- The pass (do_mirror) ----------------------------------------------------------------------

  async #pass(): Promise<void> {
    const reads = this.#reads.takeAll();
    // Takes the whole queue, then admits waiting spans (write-queue.ts: why this cannot deadlock).
    const writes = this.#writes.takeAll();
    const failures = this.#failures.splice(0);
    try {
      await this.#rh.updateStates({ errorsHandled: this.#features.handleErrors });
    } catch (err) {
      rethrowProgrammerError(err);
      // The log recorded its own failure (health D or F) and raised its event.
      this.#noteLogFailure();
    }
    this.#recovery.run({ suspending: this.#suspending });
    this.#reads.run(reads);
    await this.#doWrites(writes);
    this.#doFailures(failures);
  }

  async #doWrites(writes: readonly WriteQueueIo[]): Promise<void> {
    if (writes.length === 0) return;
    const sync: WriteQueueIo[] = [];
    const nosync: RegionWriteIo[] = [];
    for (const io of writes) {
      if (io.kind === 'flush') {
        sync.push(io);
        continue;
      }
      const state = this.#rh.getState(io.regionIndex);
      switch (state) {
        case 'CLEAN':
        case 'DIRTY':
          sync.push(io);
          break;
        case 'NOSYNC':
          nosync.push(io);
          break;
        case 'RECOVERING':
          this.#rh.delay(io.regionIndex, io);
          continue;
        default:
          unreachable(state);
      }
      this.#rh.inc(io.regionIndex);
      io.counted = true;
    }
    // Group commit: one log flush for the whole batch, before any data write of the batch.
    try {
      await this.#rh.flush();
    } catch (err) {
      rethrowProgrammerError(err);
      this.#noteLogFailure();
    }
    if (this.#logFailure && this.#features.handleErrors) {
      this.#failures.push(...sync);
      if (sync.length > 0) this.wake();
    } else {
      for (const io of sync) this.#issueWrite(io);
    }
    for (const io of nosync) {
      if (this.#legs.legFailure && this.#features.handleErrors && !this.#features.keepLog) {
        this.#failures.push(io);
        this.wake();
      } else {
        this.#issueNosyncWrite(io);
      }
    }
  }

  #doFailures(failures: readonly WriteQueueIo[]): void {
    for (const io of failures) {
      if (!this.#logFailure) {
        this.#recovery.markOutOfSync();
        if (io.kind === 'flush') this.#rh.markFlushFailure();
        else if (io.counted) this.#rh.markNosync(io.regionIndex);
      }
      const what = io.kind === 'flush' ? 'Cannot flush' : `Cannot write region ${io.regionIndex}`;
      if (this.#legs.validLeg() === undefined || (this.#features.keepLog && this.#logFailure)) {
        this.#fail(io, new BlockError('EIO', `${what}: no valid leg`));
      } else if (this.#features.handleErrors && !this.#features.keepLog) {
        this.#hold(io);
      } else if (io.failedLegs.includes(this.#legs.defaultLeg)) {
        // Ours: the kernel would pretend success, but the default leg (the source of every later read and
        // resync of this region) does not hold the data. EIO, not a write that is lost later.
        this.#fail(io, new BlockError('EIO', `${what}: the default leg failed`));
      } else {
        this.#succeed(io);
      }
    }
  }

  #hold(io: WriteQueueIo): void {
    if (this.#suspending) {
      if (this.#noflushSuspending) this.#fail(io, new RequeueRequest());
      else {
        const what = io.kind === 'flush' ? 'Flush' : `Write to region ${io.regionIndex}`;
        this.#fail(io, new BlockError('EIO', `${what} failed: held write released by suspend`));
      }
      return;
    }
    this.#holds.push(io);
  }

  // ---- Writes to the legs ------------------------------------------------------------------------

  /** do_write: to every leg; write_callback decides on the outcome. */
  #issueWrite(io: WriteQueueIo): void {
    const legs = this.#legs.legs;
    this.#legIoStarted();
    detach(
      settleOperating(legs.map((leg) => this.#legOp(io, leg))).then((results) => {
        this.#legIoEnded();
        const failed = legs.filter((_, index) => results[index]?.status === 'rejected');
        this.#writeDone(io, failed);
      }),
      failFast,
    );
  }

  /** write_callback. */
  #writeDone(io: WriteQueueIo, failed: readonly Leg[]): void {
    if (failed.length === 0) {
      this.#succeed(io);
      return;
    }
    if (io.kind === 'trim') {
      // A failed discard fails the request but degrades no leg (write_callback). Unlike the kernel we
      // resync the region, since the legs that did discard may now differ from those that did not.
      if (!this.#logFailure) {
        this.#recovery.markOutOfSync();
        this.#rh.markNosync(io.regionIndex);
      }
      this.#fail(io, new BlockError('ENOTSUP', `Trim of region ${io.regionIndex} failed on a leg`));
      return;
    }
    io.failedLegs.push(...failed);
    for (const leg of failed) this.#legs.failLeg(leg, 'write');
    this.#failures.push(io);
    this.wake();
  }

  /** A write to a NOSYNC region goes to the default leg only; its error goes straight back (end_io). */
  #issueNosyncWrite(io: RegionWriteIo): void {
    this.#legIoStarted();
    detach(
      this.#legOp(io, this.#legs.defaultLeg).then(
        () => {
          this.#legIoEnded();
          this.#succeed(io);
        },
        (err: unknown) => {
          this.#legIoEnded();
          rethrowProgrammerError(err);
          this.#fail(io, err);
        },
      ),
      failFast,
    );
  }

  #legOp(io: WriteQueueIo, leg: Leg): Promise<void> {
    if (io.kind === 'flush') {
      leg.stats.flushesTotal += 1;
      return leg.device.flush();
    }
    const at = leg.offsetBytes + io.offsetBytes;
    leg.stats.writesTotal += 1;
    leg.stats.writeBytesTotal += io.lengthBytes;
    switch (io.kind) {
      case 'write':
        return leg.device.write(at, io.data, { fua: io.fua });
      case 'zero':
        return leg.device.writeZeroes(at, io.lengthBytes, { fua: io.fua, noHole: io.noHole });
      case 'trim':
        return leg.device.trim(at, io.lengthBytes, { fua: io.fua });
      default:
        return unreachable(io);
    }
  }

  // ---- Completion (mirror_end_io) ----------------------------------------------------------------

  /** Marks a request complete, once, and gives back its region pending count. */
  #settle(io: WriteQueueIo): void {
    assert(!io.settled, 'a request completes once');
    io.settled = true;
    if (io.kind !== 'flush' && io.counted) {
      io.counted = false;
      this.#rh.dec(io.regionIndex);
    }
  }

  #succeed(io: WriteQueueIo): void {
    this.#settle(io);
    io.resolve();
  }

  #fail(io: WriteQueueIo, err: unknown): void {
    this.#settle(io);
    io.reject(err);
  }

  /** A log update or flush failed: later writes see ms->log_failure (sticky for the table). */
  #noteLogFailure(): void {
    this.#stats.logFlushFailuresTotal += 1;
    this.#logFailure = true;
  }

  #legIoStarted(): void {
    this.#legIoInFlight += 1;
  }

  #legIoEnded(): void {
    assert(this.#legIoInFlight > 0, 'leg I/O ended with none in flight');
    this.#legIoInFlight -= 1;
    if (this.#legIoInFlight === 0) for (const resolve of this.#quietWaiters.splice(0)) resolve();
  }
}
