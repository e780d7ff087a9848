/**
 * External tool checks for tests that drive real programs (nbdkit, nbdfuse, qemu-img, ...). A missing
 * tool skips the test with a printed reason locally, and fails it under CI=true, where every tool must be
 * installed (.ci/run installs them).
 */
import { accessSync, constants as fsConstants } from 'node:fs';
import { delimiter, join } from 'node:path';
import type { TestContext } from 'node:test';

/** The full path of an executable on PATH, or undefined. */
export function findTool(name: string): string | undefined {
  for (const dir of (process.env['PATH'] ?? '').split(delimiter)) {
    if (dir === '') continue;
    const path = join(dir, name);
    try {
      accessSync(path, fsConstants.X_OK);
      return path;
    } catch {
      // Not in this PATH entry; try the next.
    }
  }
  return undefined;
}

/**
 * True when every tool is on PATH. Otherwise skips `t` with the reason (and prints it) and returns false;
 * under CI=true it throws instead, failing the test.
 */
export function requireTools(t: Pick<TestContext, 'name' | 'skip'>, tools: readonly string[]): boolean {
  const missing = tools.filter((tool) => findTool(tool) === undefined);
  if (missing.length === 0) return true;
  const reason = `missing tools: ${missing.join(', ')}`;
  if (process.env['CI'] === 'true') throw new Error(`${reason} (required under CI=true)`);
  console.log(`skipping "${t.name}": ${reason}`);
  t.skip(reason);
  return false;
}
