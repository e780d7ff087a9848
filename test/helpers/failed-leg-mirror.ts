/**
 * A daemon with a mirror `m` that stays out of sync: its second leg is another daemon device, `bad`,
 * built from the `error` target, so every recovery write to it fails, the leg is failed (health AS) and
 * the mirror's regions stay out of sync until a new table is loaded. Every status frame then shows the
 * same state, which is what the progress tests need.
 */
import assert from 'node:assert/strict';
import { truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { startDaemon, until, type Daemon } from './daemon-process.js';

/** The mirror's size in sectors (8 regions of 1024). */
export const failedLegMirrorSectors = 8192;

/** Starts the daemon (disposed after the test) and waits until `m`'s error leg has failed. */
export async function startFailedLegMirror(t: Pick<TestContext, 'after'>): Promise<Daemon> {
  const sectors = failedLegMirrorSectors;
  const daemon = await startDaemon();
  t.after(() => daemon.dispose());
  const leg = join(daemon.dir, 'a.img');
  await writeFile(leg, '');
  await truncate(leg, sectors * 512);
  for (const [name, table] of [
    ['bad', `0 ${sectors} error`],
    ['m', `0 ${sectors} mirror core 1 1024 2 ${leg} 0 bad 0 1 handle_errors`],
  ] as const) {
    const created = await daemon.cli(['create', name, '--table', table]);
    assert.equal(created.code, 0, created.stderr);
  }
  await until('the error leg to fail', async () => / 0\/8 1 AS 1 core/.test((await daemon.cli(['status', 'm'])).stdout));
  return daemon;
}
