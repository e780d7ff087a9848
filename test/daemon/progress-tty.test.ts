/**
 * Progress on a terminal: `status --watch` and `wait --progress` run on a pseudo-terminal (util-linux
 * `script`) redraw their line in place, with a carriage return and ANSI erase, never a new line per
 * update; `info` shows the resync state as mdadm --detail's "Resync Status".
 *
 * The mirror (helpers/failed-leg-mirror.ts) has a failed `error` leg, so it stays out of sync (health AS)
 * for as long as the test looks: every frame shows the same state.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { test } from 'node:test';
import { umirrorBin, until } from '../helpers/daemon-process.js';
import { startFailedLegMirror } from '../helpers/failed-leg-mirror.js';
import { requireTools } from '../helpers/tools.js';

/** A shell word for `script -c`. */
function quoted(word: string): string {
  return `'${word.replace(/'/g, `'\\''`)}'`;
}

/** Runs `umirror ARGS` on a pseudo-terminal; `output()` is what the terminal received. */
function onTerminal(args: readonly string[]): { output: () => string; done: Promise<number | null>; stop: () => void } {
  const command = [process.execPath, umirrorBin, ...args].map(quoted).join(' ');
  const child = spawn('script', ['-qfec', command, '/dev/null'], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let output = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  const done = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
  const stop = (): void => {
    if (child.exitCode === null && child.pid !== undefined) process.kill(-child.pid, 'SIGTERM');
  };
  return { output: () => output, done, stop };
}

const erase = '\r\x1b[J';

test('status --watch on a terminal redraws the status line in place (\\r and ANSI erase, no new lines)', async (t) => {
  if (!requireTools(t, ['script'])) return;
  const daemon = await startFailedLegMirror(t);
  const watch = onTerminal(['status', '--watch', 'm', '--socket', daemon.socketPath]);
  t.after(async () => {
    watch.stop();
    await watch.done;
  });
  await until('three frames', () => watch.output().split(erase).length > 3, 20_000);
  const drawn = watch.output();
  const line = /^0 8192 mirror 2 \S+ bad 0\/8 1 AS 1 core {2}out of sync \(a leg failed\): 0\/8 regions in sync, waiting for a new table$/;
  const frames = drawn.split(erase);
  assert.equal(frames[0], '', 'the first frame starts with the erase');
  for (const frame of frames.slice(1, -1)) assert.match(frame, line);
  assert.ok(!drawn.includes('\n'), `no new line while redrawing: ${JSON.stringify(drawn)}`);
});

test('wait --progress on a terminal draws in place, then ends the line before saying why it stops', async (t) => {
  if (!requireTools(t, ['script'])) return;
  const daemon = await startFailedLegMirror(t);
  const waited = onTerminal(['wait', '--progress', 'm', '--socket', daemon.socketPath]);
  t.after(() => waited.stop());
  assert.equal(await waited.done, 1);
  assert.equal(
    waited.output().replace(/\r\n/g, '\n'),
    `${erase}m: out of sync (a leg failed): 0/8 regions in sync, waiting for a new table\nm: a leg failed (AS): 8 regions stay out of sync until a new table is loaded\n`,
  );
});

test('info shows the resync state as mdadm --detail does ("Resync Status"), and no such line in sync', async (t) => {
  const daemon = await startFailedLegMirror(t);
  const info = await daemon.cli(['info', 'm']);
  assert.match(info.stdout, /^Number of targets: 1\nResync Status: {5}0% in sync, waiting for a new table \(a leg failed: AS\)$/m);
  const bad = await daemon.cli(['info', 'bad']);
  assert.doesNotMatch(bad.stdout, /Resync Status/);
});
