/**
 * LegSet: the legs of one mirror set, the default leg, and the one place a leg fails (dm-raid1's
 * fail_mirror, get_default_mirror/set_default_mirror, choose_mirror, mirror_flush).
 *
 * failLeg(leg, kind) records the error on the leg and, on the first error of its kind:
 *   handle_errors                    -> a 'leg-failed' dm event
 *   the leg is not the default leg   -> nothing more
 *   the default leg is pinned        -> it stays (with handle_errors and no keep_log the kernel's
 *     (set out of sync, or after       "Primary mirror (X) failed while out-of-sync: Reads may fail.")
 *     a failed leg flush)
 *   no valid leg left                -> it stays ("All sides of mirror have failed." with handle_errors)
 *   handle_errors, or a write error  -> the default moves to the first valid leg ('default-leg-changed')
 *   otherwise                        -> it stays (a read error keeps the default leg: RAR, not RAA)
 * Where we differ from the kernel: it switches only with handle_errors; we switch on a write error too,
 * so no read is served from a leg known to have dropped a write. It switches while out of sync under
 * keep_log, and then serves out-of-sync regions from a leg that may not hold them; we never do, keep_log
 * or not. After a failed leg flush (sticky for the table, as its flush_failure) the regions written since
 * are NOSYNC in the region hash while the log counts them in sync: we read them from the default leg only
 * and pin it; the kernel reads them from any leg and switches once the sync count is full again.
 *
 * chooseLeg() is choose_mirror: the default leg when valid, else the nearest valid leg before it; with
 * readPolicy 'balance' and handle_errors, the valid legs in turn. `legFailure` (ms->leg_failure) is set
 * by any failure and cleared with every leg's errors when a resync completes (resetErrors).
 *
 * Called by the worker (read and write completions), Recovery (copy errors) and the dirty log (through
 * MirrorSet.flushLegs, its flushData callback). Whether the default is pinned is asked of the set.
 */
import { assert } from '../assert.js';
import { BlockError } from '../errors.js';
import { settleOperating } from '../fail-fast.js';
import type { Leg, LegErrorKind } from './leg.js';
import type { MirrorEvents } from './mirror-events.js';
import type { MirrorFeatures } from './table.js';

export type ReadPolicy = 'default' | 'balance';

export interface LegSetOptions {
  readonly legs: readonly Leg[];
  /** How status lines and messages name each leg, in table order. */
  readonly displayNames: readonly string[];
  readonly features: MirrorFeatures;
  readonly readPolicy: ReadPolicy;
  readonly events: MirrorEvents;
  /** The set's name, for error messages. */
  readonly name: string;
  /** True while the default leg must not change: the set is out of sync, or a leg flush failed. */
  readonly defaultPinned: () => boolean;
}

export class LegSet {
  readonly legs: readonly Leg[];
  readonly #displayNames: readonly string[];
  readonly #features: MirrorFeatures;
  readonly #readPolicy: ReadPolicy;
  readonly #events: MirrorEvents;
  readonly #name: string;
  readonly #defaultPinned: () => boolean;
  #defaultLeg: Leg;
  #legFailure = false;
  #balanceNext = 0;

  constructor(options: LegSetOptions) {
    assert(options.displayNames.length === options.legs.length, 'one display name per leg');
    options.legs.forEach((leg, index) => assert(leg.index === index, 'legs in table order'));
    const first = options.legs[0];
    assert(first !== undefined, 'a mirror set has legs');
    this.legs = options.legs;
    this.#displayNames = options.displayNames;
    this.#features = options.features;
    this.#readPolicy = options.readPolicy;
    this.#events = options.events;
    this.#name = options.name;
    this.#defaultPinned = options.defaultPinned;
    this.#defaultLeg = first;
  }

  get defaultLeg(): Leg {
    return this.#defaultLeg;
  }

  /** A leg failed since the last completed resync (ms->leg_failure). */
  get legFailure(): boolean {
    return this.#legFailure;
  }

  /** Health letters, one per leg in table order ("AD"). */
  healthLetters(): string {
    return this.legs.map((leg) => leg.health).join('');
  }

  displayName(leg: Leg): string {
    return this.#displayNames[leg.index] ?? leg.tableName;
  }

  get displayNames(): readonly string[] {
    return this.#displayNames;
  }

  /** The first valid leg in table order (get_valid_mirror). */
  validLeg(): Leg | undefined {
    return this.legs.find((leg) => leg.valid);
  }

  /** choose_mirror: the default leg if valid, else the nearest valid leg before it (or balanced). */
  chooseLeg(): Leg | undefined {
    const count = this.legs.length;
    if (this.#readPolicy === 'balance' && this.#features.handleErrors) {
      for (let tries = 0; tries < count; tries++) {
        const leg = this.legs[this.#balanceNext % count];
        this.#balanceNext = (this.#balanceNext + 1) % count;
        if (leg !== undefined && leg.valid) return leg;
      }
      return undefined;
    }
    for (let step = 0; step < count; step++) {
      const leg = this.legs[(this.#defaultLeg.index - step + count) % count];
      if (leg !== undefined && leg.valid) return leg;
    }
    return undefined;
  }

  /** fail_mirror: every leg failure goes through here (see the banner for what follows). */
  failLeg(leg: Leg, kind: LegErrorKind): void {
    assert(this.legs[leg.index] === leg, 'a leg of this set');
    this.#legFailure = true;
    const first = leg.recordError(kind);
    if (!first) return;
    if (this.#features.handleErrors) this.#events.raise({ kind: 'leg-failed', leg: leg.index, errorKind: kind });
    if (leg !== this.#defaultLeg) return;
    if (this.#defaultPinned()) {
      // Better to keep the failing leg than to read regions another leg never received. The kernel
      // switches here under keep_log; we do not.
      if (this.#features.handleErrors && !this.#features.keepLog) {
        this.#events.message('error', `Primary mirror (${this.displayName(leg)}) failed while out-of-sync: Reads may fail.`);
      }
      return;
    }
    const next = this.validLeg();
    if (next === undefined) {
      if (this.#features.handleErrors) this.#events.message('warn', 'All sides of mirror have failed.');
      return;
    }
    // The kernel switches only with handle_errors; we switch on a write error too (never read a leg that
    // dropped a write), but not on other errors (a read error keeps the default leg: RAR, not RAA).
    if (!this.#features.handleErrors && kind !== 'write') return;
    const from = this.#defaultLeg.index;
    this.#defaultLeg = next;
    assert(next.valid && next !== leg, 'the default leg moves to a valid leg');
    this.#events.notify({ kind: 'default-leg-changed', from, to: next.index });
  }

  /** Forgets every leg's errors (reset_ms_flags, when a resync completes). */
  resetErrors(): void {
    for (const leg of this.legs) leg.resetErrors();
    this.#legFailure = false;
  }

  /** Flushes every leg; a leg that fails is failed with kind `flush` (mirror_flush, the log's callback). */
  async flush(): Promise<void> {
    const results = await settleOperating(this.legs.map((leg) => leg.device.flush()));
    let failed = false;
    results.forEach((result, index) => {
      if (result.status === 'rejected') {
        failed = true;
        const leg = this.legs[index];
        assert(leg !== undefined);
        this.failLeg(leg, 'flush');
      }
    });
    if (failed) throw new BlockError('EIO', `${this.#name}: a leg failed to flush`);
  }
}
