/**
 * Copier: the kcopyd of umirror. Copies one source range to up to `copierTargetsMax` (8) target ranges,
 * split into chunk sub-jobs with a bounded in-flight window and an optional throttle shared by every job
 * of this copier. The mirror's recovery uses it to copy a region from the default leg to the other legs.
 *
 * Errors are accumulated per target and never dropped (seed: "kcopyd should accumulate errors"):
 *
 *   event                      action
 *   -------------------------  ---------------------------------------------------------------------
 *   source read fails          record readError (the first); issue no more chunks (nothing to write);
 *                              chunks already in flight finish; resolve
 *   write to target i fails    record writeErrors[i] (the first); later chunks skip target i; every
 *                              other target keeps receiving every chunk
 *   every target has failed    issue no more chunks; resolve
 *   signal aborted             issue no more chunks; wait for the chunks in flight; reject with the
 *                              signal's reason
 *
 * copy() never rejects for I/O errors; it resolves with them. It rejects only for programmer errors
 * (RangeError/TypeError at the API boundary, AssertionError) and for abort. When its promise settles no
 * I/O of the job is in flight.
 *
 * Ordering: chunks are issued in ascending offset order and at most `inFlightMax` of them are in flight;
 * they may complete in any order. A chunk's writes to its targets run concurrently. No chunk is written
 * before its read completed. The throttle admits chunks in issue order across jobs.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { assert, assertCount } from '../assert.js';
import { BlockError, toBlockError } from '../errors.js';
import { isProgrammerError, rethrowProgrammerError } from '../fail-fast.js';
import { copierChunkBytes, copierInFlightCeiling, copierInFlightMax, copierTargetsMax, copierThrottleSleepMsMax, sectorBytes } from '../limits.js';
import type { BlockDevice } from '../block/block-device.js';

export interface CopyEndpoint {
  readonly device: BlockDevice;
  readonly offsetBytes: number;
}

export interface CopyJob {
  readonly source: CopyEndpoint;
  readonly targets: readonly CopyEndpoint[];
  readonly lengthBytes: number;
  readonly signal?: AbortSignal;
  /** Sub-jobs in flight for this job, asked before each one (at most the copier's inFlightMax). */
  readonly inFlightMax?: () => number;
}

export interface CopyResult {
  /** The source read error that stopped the job, or null. */
  readonly readError: BlockError | null;
  /** One entry per target, in the job's order: the first write error on that target, or null. */
  readonly writeErrors: readonly (BlockError | null)[];
  /**
   * Bytes read from the source and written to at least one target; every target whose writeError is
   * null received all of them, so with no errors this is the job's lengthBytes.
   */
  readonly bytesCopied: number;
}

export interface CopierOptions {
  /** Bytes per sub-job; a positive multiple of 512. Default copierChunkBytes (1 MiB). */
  readonly chunkBytes?: number;
  /** Sub-jobs in flight per job. Default copierInFlightMax (4). */
  readonly inFlightMax?: number;
  readonly throttle?: { readonly bytesPerSecond: number };
}

export class Copier {
  readonly chunkBytes: number;
  readonly inFlightMax: number;
  #bytesPerSecond: number | null;
  /** Virtual clock of the throttle: the time (ms) at which the next chunk may start. */
  #throttleNextMs = 0;
  /** Wakes throttled chunks when the rate changes. */
  #throttleChanged = new AbortController();
  #bytesCopiedTotal = 0;
  #jobsTotal = 0;

  constructor(options: CopierOptions = {}) {
    const chunkBytes = options.chunkBytes ?? copierChunkBytes;
    if (!Number.isSafeInteger(chunkBytes) || chunkBytes <= 0 || chunkBytes % sectorBytes !== 0) {
      throw new RangeError(`chunkBytes must be a positive multiple of ${sectorBytes}, got ${chunkBytes}`);
    }
    const inFlightMax = options.inFlightMax ?? copierInFlightMax;
    if (!Number.isSafeInteger(inFlightMax) || inFlightMax < 1 || inFlightMax > copierInFlightCeiling) {
      throw new RangeError(`inFlightMax must be 1..${copierInFlightCeiling}, got ${inFlightMax}`);
    }
    this.chunkBytes = chunkBytes;
    this.inFlightMax = inFlightMax;
    this.#bytesPerSecond = null;
    if (options.throttle !== undefined) this.setThrottle(options.throttle.bytesPerSecond);
  }

  /** Bytes copied by every job so far (counted as in CopyResult.bytesCopied). */
  get bytesCopiedTotal(): number {
    return this.#bytesCopiedTotal;
  }

  /** Jobs started so far. */
  get jobsTotal(): number {
    return this.#jobsTotal;
  }

  /** The throttle rate in force, or null when unthrottled. */
  get bytesPerSecond(): number | null {
    return this.#bytesPerSecond;
  }

  /** Sets (or with null removes) the throttle; chunks waiting on the old rate re-plan at once. */
  setThrottle(bytesPerSecond: number | null): void {
    if (bytesPerSecond !== null && (!Number.isFinite(bytesPerSecond) || bytesPerSecond <= 0)) {
      throw new RangeError(`bytesPerSecond must be a positive number or null, got ${bytesPerSecond}`);
    }
    this.#bytesPerSecond = bytesPerSecond;
    this.#throttleNextMs = Math.min(this.#throttleNextMs, performance.now());
    const changed = this.#throttleChanged;
    this.#throttleChanged = new AbortController();
    changed.abort();
  }

  /** Copies the job's range. @returns every error, per target; @throws only RangeError/TypeError or abort. */
  async copy(job: CopyJob): Promise<CopyResult> {
    checkJob(job);
    this.#jobsTotal += 1;
    const { source, targets, lengthBytes, signal } = job;
    const writeErrors: (BlockError | null)[] = targets.map(() => null);
    // Written by the chunks (closures), so kept in an object TS does not narrow.
    const state: { readError: BlockError | null; fatal: { error: unknown } | null; bytesCopied: number } = {
      readError: null,
      fatal: null,
      bytesCopied: 0,
    };

    const liveTargets = (): number => writeErrors.filter((err) => err === null).length;
    const stopped = (): boolean => state.readError !== null || state.fatal !== null || liveTargets() === 0 || signal?.aborted === true;

    const runChunk = async (offsetBytes: number, chunkLengthBytes: number): Promise<void> => {
      let data: Buffer;
      try {
        data = await source.device.read(source.offsetBytes + offsetBytes, chunkLengthBytes);
      } catch (err) {
        if (isProgrammerError(err)) state.fatal ??= { error: err };
        else state.readError ??= toBlockError(err, `Cannot copy from ${source.device.name}: read failed at ${source.offsetBytes + offsetBytes}`);
        return;
      }
      assert(data.length === chunkLengthBytes);
      // Targets that failed before this chunk started are skipped; the rest all get it.
      const chosen = targets.map((_, i) => writeErrors[i] === null);
      await Promise.all(
        targets.map(async (target, i) => {
          if (chosen[i] !== true) return;
          try {
            await target.device.write(target.offsetBytes + offsetBytes, data);
          } catch (err) {
            if (isProgrammerError(err)) state.fatal ??= { error: err };
            else writeErrors[i] ??= toBlockError(err, `Cannot copy to ${target.device.name}: write failed at ${target.offsetBytes + offsetBytes}`);
          }
        }),
      );
      if (targets.some((_, i) => chosen[i] === true && writeErrors[i] === null)) state.bytesCopied += chunkLengthBytes;
    };

    const running = new Set<Promise<void>>();
    let abortedBy: { reason: unknown } | null = null;
    for (let offsetBytes = 0; offsetBytes < lengthBytes && !stopped(); offsetBytes += this.chunkBytes) {
      const window = (): number => Math.max(1, Math.min(this.inFlightMax, job.inFlightMax?.() ?? this.inFlightMax));
      while (running.size >= window()) await Promise.race(running);
      assert(running.size < this.inFlightMax);
      const chunkLengthBytes = Math.min(this.chunkBytes, lengthBytes - offsetBytes);
      try {
        await this.#admit(chunkLengthBytes, signal);
      } catch (err) {
        abortedBy = { reason: err };
        break;
      }
      if (stopped()) break;
      const chunk: Promise<void> = runChunk(offsetBytes, chunkLengthBytes).finally(() => running.delete(chunk));
      running.add(chunk);
    }
    await Promise.all(running);
    assert(running.size === 0);

    const { readError, fatal, bytesCopied } = state;
    if (fatal !== null) throw fatal.error;
    if (abortedBy !== null) throw abortedBy.reason;
    if (signal?.aborted === true) throw signal.reason;
    if (readError === null && liveTargets() > 0) assert(bytesCopied === lengthBytes, 'a clean job copies everything');
    assert(bytesCopied <= lengthBytes);
    this.#bytesCopiedTotal += bytesCopied;
    return { readError, writeErrors, bytesCopied };
  }

  /**
   * Throttle admission (a virtual-clock token bucket with no burst beyond one chunk): a chunk of n bytes
   * starts at the clock, which then advances by n / rate. Sleeps are bounded and re-planned on setThrottle.
   * @throws the signal's reason when aborted while waiting.
   */
  async #admit(lengthBytes: number, signal: AbortSignal | undefined): Promise<void> {
    for (;;) {
      signal?.throwIfAborted();
      const rate = this.#bytesPerSecond;
      if (rate === null) return;
      const nowMs = performance.now();
      const startMs = Math.max(this.#throttleNextMs, nowMs);
      if (startMs <= nowMs) {
        this.#throttleNextMs = startMs + (lengthBytes / rate) * 1000;
        return;
      }
      const wake = this.#throttleChanged.signal;
      const stop = signal === undefined ? wake : AbortSignal.any([wake, signal]);
      try {
        await sleep(Math.min(startMs - nowMs, copierThrottleSleepMsMax), undefined, { signal: stop });
      } catch (err) {
        rethrowProgrammerError(err);
        // Woken early by a rate change or abort: the loop re-plans, or throws the job's abort reason.
        assert(stop.aborted, 'a throttle sleep ends early only when aborted');
      }
    }
  }
}

function checkJob(job: CopyJob): void {
  const { source, targets, lengthBytes } = job;
  if (!Number.isSafeInteger(lengthBytes) || lengthBytes < 0) {
    throw new RangeError(`lengthBytes must be a non-negative safe integer, got ${lengthBytes}`);
  }
  if (targets.length < 1 || targets.length > copierTargetsMax) {
    throw new RangeError(`a copy needs 1..${copierTargetsMax} targets, got ${targets.length}`);
  }
  for (const endpoint of [source, ...targets]) {
    if (!Number.isSafeInteger(endpoint.offsetBytes) || endpoint.offsetBytes < 0) {
      throw new RangeError(`${endpoint.device.name}: offsetBytes must be a non-negative safe integer, got ${endpoint.offsetBytes}`);
    }
    if (endpoint.offsetBytes + lengthBytes > endpoint.device.sizeBytes) {
      throw new RangeError(
        `${endpoint.device.name}: ${lengthBytes} bytes at ${endpoint.offsetBytes} pass the end (${endpoint.device.sizeBytes} bytes)`,
      );
    }
  }
  assertCount(lengthBytes, 'lengthBytes');
}
