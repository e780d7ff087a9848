/**
 * The process-level policy for a broken invariant, in one place.
 *
 * Operating errors (a leg returns EIO, a socket resets, a log write fails) are handled where they
 * happen: they fail a leg, a request or a log, and the process serves on. Programmer errors
 * (AssertionError, TypeError, RangeError, ReferenceError, SyntaxError) mean the code is wrong: they
 * are never turned into a leg failure, a log failure or an EIO, because the state that produced them
 * cannot be trusted. Every `catch` that handles operating errors calls `rethrowProgrammerError` first.
 *
 * Work started without awaiting it (a worker pass, a recovery copy, a socket reply) goes through
 * `detach`, never a bare `void promise`: its operating errors reach the given handler, and a
 * programmer error reaches `failFast`, which rethrows it outside any promise chain. Node then treats
 * it as an uncaught exception: the process prints the stack and exits with status 1, so no data is
 * served from a broken invariant (STYLE: "An AssertionError stops the process"). Nothing in src/
 * installs an 'uncaughtException' handler that would keep the process alive.
 */
import { AssertionError } from 'node:assert';

/** True for the errors that mean the code is wrong rather than the world. */
export function isProgrammerError(err: unknown): boolean {
  return (
    err instanceof AssertionError ||
    err instanceof TypeError ||
    err instanceof RangeError ||
    err instanceof ReferenceError ||
    err instanceof SyntaxError
  );
}

/** Call first in every catch that handles operating errors: a programmer error passes through. */
export function rethrowProgrammerError(err: unknown): void {
  if (isProgrammerError(err)) throw err;
}

/** Stops the process with `err` as an uncaught exception, outside any promise chain. */
export function failFast(err: unknown): void {
  process.nextTick(() => {
    throw err;
  });
}

/**
 * Runs `promise` without awaiting it. An operating error goes to `onError` (which must not throw);
 * a programmer error, or anything `onError` throws, stops the process through `failFast`.
 */
export function detach(promise: Promise<unknown>, onError: (err: unknown) => void): void {
  promise.catch((err: unknown) => {
    if (isProgrammerError(err)) {
      failFast(err);
      return;
    }
    try {
      onError(err);
    } catch (handlerErr: unknown) {
      failFast(handlerErr);
    }
  });
}

/**
 * Promise.allSettled for operations whose failures are operating errors (one leg op per leg): waits
 * for every promise, then rethrows the first programmer error among the rejections, so a bug in one
 * leg's path is never counted as that leg failing. Otherwise returns the settled results.
 */
export async function settleOperating<T>(promises: readonly Promise<T>[]): Promise<PromiseSettledResult<T>[]> {
  const results = await Promise.allSettled(promises);
  for (const result of results) {
    if (result.status === 'rejected' && isProgrammerError(result.reason)) throw result.reason;
  }
  return results;
}
