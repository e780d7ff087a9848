/**
 * CleanScheduler: decides when the disk log's clears become clean bits on disk. It owns
 *   pending cleans    regions cleared in memory, with the time of the clear (in clear order, so the
 *                     first is the oldest); none of their bits is set in the buffer yet
 *   applying cleans   the regions the running clean step took, while its leg flush runs
 *   the running step  at most one clean step at a time
 *   the lazy timer    unref'd; flushes lazy cleans that come due while no one calls flush()
 *   the clock         `now` (monotonic ms; tests pass a fake one)
 *
 * A clean step: takes the due pending cleans (all of them with allCleans), calls flushData() FIRST
 * (the legs' caches then hold the regions' writes), then setClean() for the regions still applying (a
 * region marked again meanwhile was forgotten: it stays dirty), and writeCleans(). If flushData()
 * fails, every pending clean is dropped and flushDataFailed() runs instead (the log then holds every
 * region dirty for good, flush_failed). Cleans queued while flushData() runs wait for the next step.
 *
 *   clear ──> pending ──(due, step starts)──> applying ──(flushData ok)──> setClean, writeCleans
 *                ^                               │
 *                └───── forget() on a new mark ──┴──> (dropped: the region stays dirty)
 *
 * Due: a clean is due lazyCleanMs after its clear (at once with 0). A background step (the mirror's
 * worker flushes with cleans: 'background') starts only when a clean is due, and with lazyCleanMs > 0
 * at most one per lazyCleanMs: each forces the legs' dirty data out. When a background step ends it
 * chains the next one if more came due meanwhile, else arms the timer for the next pending clean. A
 * background step nobody awaits reports its failure as a warning (the log's health and event already
 * record it, and the next mark flush retries its blocks and throws); a bug stops the process.
 *
 * Called by DiskDirtyLog only, which wires flushData, setClean, flushDataFailed, writeCleans (the
 * writer's queue) and flushDue (its own waiting flush) in.
 */
import { assert } from '../assert.js';
import { detach, rethrowProgrammerError } from '../fail-fast.js';
import { diskLogCleanRoundsMax, lazyCleanMsMax } from '../limits.js';

export interface CleanSchedulerOptions {
  /** Hold a clean until the region was idle this long; 0 cleans at the next flush. */
  readonly lazyCleanMs: number;
  /** Arm the timer for lazy cleans (meaningless with lazyCleanMs 0). */
  readonly timer: boolean;
  /** Monotonic clock in ms. */
  readonly now: () => number;
  /** Flushes the data legs before clean bits are set (flush_callback_fn). */
  readonly flushData: () => Promise<void>;
  /** After a successful flushData(): sets the bits of `regions` in the buffer. */
  readonly setClean: (regions: ReadonlySet<number>) => void;
  /** After a failed flushData(): every region dirty for good (flush_failed). */
  readonly flushDataFailed: () => void;
  /** The write half of the step, in the log device's queue. */
  readonly writeCleans: (options: { background: boolean }) => Promise<void>;
  /** A waiting flush of the log (the timer's work). */
  readonly flushDue: () => Promise<void>;
  readonly warn: (line: string) => void;
}

/** Which pending cleans a step or a flush takes: the due ones, or all of them (suspend). */
interface Take {
  readonly allCleans: boolean;
}

export class CleanScheduler {
  readonly #options: CleanSchedulerOptions;
  readonly #lazyCleanMs: number;
  readonly #now: () => number;
  readonly #pending = new Map<number, number>();
  readonly #applying = new Set<number>();
  /** When the last clean step started (the clock of `now`). */
  #startedMs = -Infinity;
  #running: Promise<void> | undefined;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(options: CleanSchedulerOptions) {
    assert(Number.isFinite(options.lazyCleanMs) && options.lazyCleanMs >= 0, 'lazyCleanMs must be >= 0');
    assert(options.lazyCleanMs <= lazyCleanMsMax, 'lazyCleanMs <= lazyCleanMsMax (a Node timer holds at most 2^31 - 1 ms)');
    this.#options = options;
    this.#lazyCleanMs = options.lazyCleanMs;
    this.#now = options.now;
  }

  /** Regions cleared in memory whose clean bit is not set yet (pending or applying). */
  get count(): number {
    return this.#pending.size + this.#applying.size;
  }

  /** True while the region's clean is pending or being applied (isClean() counts it clean). */
  has(regionIndex: number): boolean {
    return this.#pending.has(regionIndex) || this.#applying.has(regionIndex);
  }

  /** Queues the region's clean, timed now. */
  add(regionIndex: number): void {
    assert(!this.has(regionIndex), 'a clean is queued once');
    this.#pending.set(regionIndex, this.#now());
    this.#armTimer();
  }

  /** A new mark: the region's clean, pending or applying, is dropped (it stays dirty). */
  forget(regionIndex: number): void {
    this.#pending.delete(regionIndex);
    this.#applying.delete(regionIndex);
    assert(!this.has(regionIndex));
  }

  /** Resume: forgets every clean and the timer (the log reloads its bits from disk). */
  reset(): void {
    this.#disarmTimer();
    this.#pending.clear();
    this.#applying.clear();
  }

  /** The due pending cleans (all of them with allCleans), in clear order. */
  due(options: Take): Set<number> {
    const due = new Set<number>();
    const now = this.#now();
    for (const [regionIndex, clearedAt] of this.#pending) {
      if (!options.allCleans && now - clearedAt < this.#lazyCleanMs) break; // The map is in time order.
      due.add(regionIndex);
    }
    return due;
  }

  /** flush({cleans: 'background'}): starts a background step beside the marks, if one is due. */
  kickBackground(): void {
    if (this.#running === undefined && this.#backgroundDue()) this.#kickChained();
  }

  /**
   * Waits until none of `wanted` is pending any more: each was written clean by a clean step whose leg
   * flush started after the clear, or was marked again (it stays dirty). Bounded: the running step,
   * then at most one step of our own takes every wanted region still pending.
   * @throws BlockError when a step it awaits fails.
   */
  async settle(options: Take & { wanted: ReadonlySet<number> }): Promise<void> {
    const stillPending = (): boolean => [...options.wanted].some((regionIndex) => this.#pending.has(regionIndex));
    for (let round = 0; round < diskLogCleanRoundsMax; round++) {
      const running = this.#running;
      if (running !== undefined) {
        await running;
        continue;
      }
      if (!stillPending()) return;
      await this.#kick({ allCleans: options.allCleans, chain: false });
    }
    // Only reached while new clean steps keep starting: a wanted region left pending stays dirty on disk
    // (the safe side) and the next flush takes it.
    if (stillPending()) this.#options.warn('cleans left pending');
  }

  /** Resolves when no clean step runs (its failure is the caller's who awaited it, not ours). */
  async idle(): Promise<void> {
    for (let round = 0; round < diskLogCleanRoundsMax && this.#running !== undefined; round++) {
      await this.#running.catch(rethrowProgrammerError);
    }
  }

  /** Stops the timer and chaining, then waits for a running step. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#disarmTimer();
    await this.idle();
  }

  /** A background step may start: due cleans, and with lazy cleaning at most one step per lazyCleanMs. */
  #backgroundDue(): boolean {
    if (this.#now() - this.#startedMs < this.#lazyCleanMs) return false;
    const first = this.#pending.values().next();
    if (first.done === true) return false;
    return this.#now() - first.value >= this.#lazyCleanMs;
  }

  /**
   * Starts a clean step (one at a time). A chained step (a background kick) starts the next one if due
   * cleans arrived meanwhile; otherwise the timer is armed for what is still pending.
   */
  #kick(options: Take & { chain: boolean }): Promise<void> {
    assert(this.#running === undefined, 'one clean step at a time');
    this.#disarmTimer();
    this.#startedMs = this.#now();
    const step = this.#step(options).finally(() => {
      assert(this.#running === step);
      this.#running = undefined;
      if (this.#closed) return;
      if (options.chain && this.#backgroundDue()) {
        this.#kickChained();
      } else if (this.#pending.size > 0) {
        this.#armTimer();
      }
    });
    this.#running = step;
    return step;
  }

  /** Starts a chained background step that nobody awaits (see the banner for its failures). */
  #kickChained(): void {
    detach(this.#kick({ allCleans: false, chain: true }), (err: unknown) => {
      this.#options.warn(`background clean failed: ${err instanceof Error ? err.message : String(err)}`);
    });
  }

  /** The clean step (see the banner). */
  async #step(options: Take & { chain: boolean }): Promise<void> {
    assert(this.#applying.size === 0, 'no clean step left regions behind');
    for (const regionIndex of this.due(options)) {
      this.#pending.delete(regionIndex);
      this.#applying.add(regionIndex);
    }
    if (this.#applying.size === 0) return;
    try {
      await this.#options.flushData();
      this.#options.setClean(this.#applying);
    } catch (err) {
      rethrowProgrammerError(err); // A bug in a leg's flush is not a failed flush.
      // The mirror records the leg failure itself; the log only loses its clean bits.
      this.#pending.clear();
      this.#options.flushDataFailed();
    }
    this.#applying.clear();
    await this.#options.writeCleans({ background: options.chain });
  }

  #armTimer(): void {
    if (this.#timer !== undefined || this.#closed || this.#lazyCleanMs === 0 || !this.#options.timer) return;
    const first = this.#pending.values().next();
    if (first.done === true) return;
    const dueMs = Math.max(first.value, this.#startedMs) + this.#lazyCleanMs;
    const waitMs = Math.max(0, dueMs - this.#now()) + 1;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      // A timer may fire a moment before its clean is due (timer and clock granularity): re-arm for
      // whatever is still pending, or that clean would wait for the next flush by the mirror.
      detach(this.#options.flushDue().then(() => this.#armTimer()), (err: unknown) => {
        // Already recorded in health and raised as an event; the next flush by the mirror retries.
        this.#options.warn(`lazy clean flush failed: ${err instanceof Error ? err.message : String(err)}`);
      });
    }, waitMs);
    this.#timer.unref();
  }

  #disarmTimer(): void {
    if (this.#timer === undefined) return;
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}
