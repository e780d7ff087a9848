/**
 * Seeded randomness for fuzz tests: the seed comes from UMIRROR_FUZZ_SEED or the clock, and the test
 * prints it, so a failing run replays exactly. The generator is the mulberry32 that FaultyBlockDevice
 * uses for its random faults (src/block/faulty-block-device.ts), so there is one copy of it.
 */
import assert from 'node:assert/strict';
import { mulberry32 } from '../../src/block/faulty-block-device.js';

/** The run's seed: UMIRROR_FUZZ_SEED when set, else one from the clock (print it with t.diagnostic). */
export function fuzzSeed(): number {
  return Number(process.env['UMIRROR_FUZZ_SEED'] ?? String(Date.now() % 2 ** 31));
}

/** Uniform draws from one seed. */
export class SeededRandom {
  readonly #next: () => number;

  constructor(seed: number) {
    this.#next = mulberry32(seed);
  }

  /** Uniform in [0, 1). */
  next(): number {
    return this.#next();
  }

  /** An integer in [0, maxExclusive). */
  int(maxExclusive: number): number {
    return Math.floor(this.#next() * maxExclusive);
  }

  /** True with probability p. */
  chance(p: number): boolean {
    return this.#next() < p;
  }

  pick<T>(items: readonly T[]): T {
    const item = items[this.int(items.length)];
    assert.ok(item !== undefined, 'pick from a non-empty list');
    return item;
  }

  /** `length` random bytes. */
  bytes(length: number): Buffer {
    const out = Buffer.allocUnsafe(length);
    for (let i = 0; i < length; i += 1) out[i] = this.int(256);
    return out;
  }
}
