/**
 * The mirror's sync state as a real client sees it: `nbdinfo --map=umirror:sync --json` (flag 1 marks
 * out-of-sync extents), and byte comparisons of leg files with cmp(1). Used by the interop tests that
 * drive `umirror serve` to say "in sync" and "the legs are identical" without reaching into the process.
 */
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { run, runOk } from './nbd-tools.js';

export interface MapExtent {
  readonly offset: number;
  readonly length: number;
  readonly type: number;
}

/** The extents of one metadata context, as nbdinfo --map prints them. */
export async function nbdMap(uri: string, context = 'base:allocation'): Promise<MapExtent[]> {
  return JSON.parse(await runOk('nbdinfo', [`--map=${context}`, '--json', uri])) as MapExtent[];
}

/** Bytes the umirror:sync context reports out of sync. */
export async function outOfSyncBytes(uri: string): Promise<number> {
  const extents = await nbdMap(uri, 'umirror:sync');
  return extents.filter((e) => (e.type & 1) !== 0).reduce((sum, e) => sum + e.length, 0);
}

/** Polls the umirror:sync map until nothing is out of sync. */
export async function waitSyncMapClean(uri: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let bytes = await outOfSyncBytes(uri);
  while (bytes > 0) {
    if (Date.now() > deadline) throw new Error(`${bytes} bytes still out of sync after ${timeoutMs} ms`);
    await sleep(200);
    bytes = await outOfSyncBytes(uri);
  }
}

/** Asserts with cmp(1) that the files hold the same bytes (over `lengthBytes` when given). */
export async function assertSameBytes(paths: readonly string[], options: { lengthBytes?: number } = {}): Promise<void> {
  const [first, ...rest] = paths;
  assert.ok(first !== undefined && rest.length > 0, 'two files or more');
  const limit = options.lengthBytes === undefined ? [] : [`--bytes=${options.lengthBytes}`];
  for (const other of rest) {
    const result = await run('cmp', [...limit, first, other]);
    assert.equal(result.code, 0, `cmp ${first} ${other}: ${result.stdout}${result.stderr}`);
  }
}

/** Waits until the mirror is in sync (by its umirror:sync map), then asserts the legs are identical. */
export async function assertLegsIdentical(uri: string, legPaths: readonly string[]): Promise<void> {
  await waitSyncMapClean(uri);
  await assertSameBytes(legPaths);
}
