/**
 * Temp folders and sparse image files for tests:
 *
 *   const dir = await tempDir(t, 'umirror-x-');        // mkdtemp, removed when the test ends
 *   const img = await sparseImage(dir, 'a.img', 4 * MiB);  // an empty file of that size, no blocks used
 */
import { mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';

/** A fresh folder under the system temp dir, removed (with everything in it) after the test. */
export async function tempDir(t: Pick<TestContext, 'after'>, prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** DIR/NAME as an empty (sparse) file of `sizeBytes`; returns its path. */
export async function sparseImage(dir: string, name: string, sizeBytes: number): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, '');
  const handle = await open(path, 'r+');
  await handle.truncate(sizeBytes);
  await handle.close();
  return path;
}
