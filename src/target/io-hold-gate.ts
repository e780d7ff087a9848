/**
 * IoHoldGate: the I/O admission of a mapped device (dm core's DMF_BLOCK_IO_FOR_SUSPEND and the
 * requeue list). Every I/O enters through submit(); while the gate is open it runs at once against the
 * current context (the live table) and is counted in flight until it settles.
 *
 * Lists it owns, both bounded together by heldIoMax (one more fails with ENOMEM):
 *   queued   I/O submitted while blocked (from the start of a suspend until resume)
 *   parked   I/O a target answered with RequeueRequest during a noflush suspend (DM_ENDIO_REQUEUE under
 *            DMF_NOFLUSH_SUSPENDING); outside a noflush suspend such an I/O fails with EIO instead
 *
 *   open --block()--> blocked --unblock()--> open: parked I/O is issued first, then queued I/O, in
 *                                              arrival order, each against the context current then
 *
 * drain() resolves once nothing is in flight (the suspend's wait). A re-issued request runs whole
 * again (the mapped device splits it against the new table). A programmer error in a request stops the
 * process (failFast); it is never turned into an I/O error.
 *
 * Called by MappedDevice only.
 */
import { assert } from '../assert.js';
import { BlockError } from '../errors.js';
import { failFast, rethrowProgrammerError } from '../fail-fast.js';
import { RequeueRequest } from './target.js';

interface HeldIo {
  readonly issue: () => void;
  readonly fail: (error: Error) => void;
}

export interface IoHoldGateOptions<C> {
  /** The device's name, for messages. */
  readonly name: string;
  /** Queued plus parked I/O held at most; beyond it new I/O fails with ENOMEM. */
  readonly heldIoMax: number;
  /** What an I/O runs against when issued (the live table); undefined fails it with EIO. */
  readonly current: () => C | undefined;
}

export class IoHoldGate<C> {
  readonly #options: IoHoldGateOptions<C>;
  /** New I/O is held rather than issued. */
  #blocked = false;
  #noflushSuspending = false;
  #inFlight = 0;
  readonly #queued: HeldIo[] = [];
  readonly #parked: HeldIo[] = [];
  #drainWaiters: (() => void)[] = [];

  constructor(options: IoHoldGateOptions<C>) {
    assert(Number.isSafeInteger(options.heldIoMax) && options.heldIoMax > 0, 'heldIoMax > 0');
    this.#options = options;
  }

  /** I/O requests currently issued (not held, not parked). */
  get inFlightCount(): number {
    return this.#inFlight;
  }

  /** I/O held back: queued while blocked plus parked by RequeueRequest. */
  get heldCount(): number {
    return this.#queued.length + this.#parked.length;
  }

  /**
   * Runs `run` against the current context now, or holds it while the gate is blocked. The promise
   * settles when the request finally completes, after any number of requeues.
   */
  submit<T>(run: (context: C) => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const io: HeldIo = {
        issue: () => this.#issue({ io, run, resolve, reject }),
        fail: reject,
      };
      if (this.#blocked) this.#hold(this.#queued, io);
      else io.issue();
    });
  }

  /** Holds new I/O from now on; with `noflush`, a requeued I/O is parked rather than failed. */
  block(options: { noflush: boolean }): void {
    this.#blocked = true;
    this.#noflushSuspending = options.noflush;
  }

  /** The noflush window ends (the suspend drained): a later requeue fails with EIO. */
  endNoflush(): void {
    this.#noflushSuspending = false;
  }

  /** Admits I/O again: parked requests first, then queued ones, in arrival order. */
  unblock(): void {
    this.#blocked = false;
    this.#noflushSuspending = false;
    const held = [...this.#parked.splice(0), ...this.#queued.splice(0)];
    for (const io of held) io.issue();
  }

  /** Resolves once no I/O is in flight. */
  drain(): Promise<void> {
    if (this.#inFlight === 0) return Promise.resolve();
    return new Promise<void>((resolve) => this.#drainWaiters.push(resolve));
  }

  /** Fails every held request, each with its own `error()` (the device was removed). */
  failHeld(error: () => Error): void {
    const held = [...this.#parked.splice(0), ...this.#queued.splice(0)];
    for (const io of held) io.fail(error());
  }

  #issue<T>(options: {
    io: HeldIo;
    run: (context: C) => Promise<T>;
    resolve: (value: T) => void;
    reject: (error: Error) => void;
  }): void {
    const name = this.#options.name;
    const context = this.#options.current();
    if (context === undefined) {
      options.reject(new BlockError('EIO', `Cannot do I/O on ${name}: no live table`));
      return;
    }
    this.#inFlight++;
    options
      .run(context)
      .then(options.resolve, (error: unknown) => {
        rethrowProgrammerError(error); // A bug in a target is not an I/O error (goes to failFast below).
        if (error instanceof RequeueRequest) {
          if (this.#noflushSuspending) {
            this.#hold(this.#parked, options.io);
            return;
          }
          options.reject(new BlockError('EIO', `I/O on ${name} failed: requeued outside a noflush suspend`, { cause: error }));
          return;
        }
        options.reject(error instanceof Error ? error : new BlockError('EIO', String(error), { cause: error }));
      })
      .finally(() => {
        this.#inFlight--;
        assert(this.#inFlight >= 0, 'in-flight count never goes negative');
        if (this.#inFlight === 0) {
          const waiters = this.#drainWaiters;
          this.#drainWaiters = [];
          for (const wake of waiters) wake();
        }
      })
      // Only a programmer error (a target's, or a failed assertion above) can land here.
      .catch(failFast);
  }

  #hold(list: HeldIo[], io: HeldIo): void {
    if (this.heldCount >= this.#options.heldIoMax) {
      io.fail(new BlockError('ENOMEM', `Cannot hold I/O on ${this.#options.name}: ${this.#options.heldIoMax} requests already held`));
      return;
    }
    list.push(io);
  }
}
