/**
 * Assertions for invariants (TigerStyle). A failed assertion is a programmer error: it throws
 * AssertionError, which nothing catches, so the process stops rather than serve data from a broken
 * invariant. Use `assert` for pre/postconditions and `unreachable` to close every switch.
 */
import { AssertionError } from 'node:assert';

export function assert(condition: boolean, message?: string): asserts condition {
  if (!condition) {
    throw new AssertionError({ message: message ?? 'assertion failed', actual: condition, expected: true, operator: '==' });
  }
}

export function unreachable(value: never, message?: string): never {
  throw new AssertionError({ message: message ?? `unreachable: ${String(value)}` });
}

/** Asserts a value is a non-negative safe integer (offsets, lengths, counts). */
export function assertCount(value: number, name: string): void {
  assert(Number.isSafeInteger(value), `${name} must be a safe integer, got ${value}`);
  assert(value >= 0, `${name} must be >= 0, got ${value}`);
}

export function isPowerOfTwo(value: number): boolean {
  return Number.isSafeInteger(value) && value > 0 && Number.isInteger(Math.log2(value));
}
