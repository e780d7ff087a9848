/**
 * Crash soak: the crash-consistency campaign (crash-harness.ts) with many kills.
 * Usage: npm run test:soak   (node build/test/crash/crash-soak.js --kills 200 [--seed N] [--quiet])
 * Exits 1 on the first violation, printing it. Never part of npm test.
 */
import { CrashCheckError, runCrashCampaign } from './crash-harness.js';

function argValue(name: string, fallback: number): number {
  const at = process.argv.indexOf(name);
  const text = at >= 0 ? process.argv[at + 1] : undefined;
  if (text === undefined) return fallback;
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`${name} needs a non-negative integer`);
  return value;
}

const kills = argValue('--kills', 200);
const seed = argValue('--seed', Date.now() % 2 ** 31);
const quiet = process.argv.includes('--quiet');
const started = performance.now();
console.log(`crash soak: ${kills} kills, seed ${seed}`);
try {
  const r = await runCrashCampaign({
    kills,
    seed,
    lazyCleanMs: [0, 20, 100],
    killDelayMs: [1, 600],
    ...(quiet ? {} : { onProgress: (line: string) => console.log(line) }),
  });
  const sum = (xs: readonly number[]): number => xs.reduce((a, b) => a + b, 0);
  const max = (xs: readonly number[]): number => xs.reduce((a, b) => Math.max(a, b), 0);
  console.log(
    [
      `kills: ${r.kills} (${r.killsBeforeReady} before ready, ${r.killsWithLegWritesInFlight} with leg writes in flight)`,
      `dirty regions at kill: mean ${(sum(r.dirtyAtKill) / r.kills).toFixed(2)}, max ${max(r.dirtyAtKill)} of ${r.regionCount}`,
      ...[...new Set(r.lazyCleanMsAtKill)].map((ms) => {
        const dirty = r.dirtyAtKill.filter((_, i) => r.lazyCleanMsAtKill[i] === ms);
        return `  lazy clean ${ms} ms: ${dirty.length} kills, dirty mean ${(sum(dirty) / Math.max(1, dirty.length)).toFixed(2)}, max ${max(dirty)}`;
      }),
      `regions with differing legs at kill: ${sum(r.differingAtKill)} in all (each dirty in the log)`,
      `parent restarts: ${r.parentRestarts}, regions resynced: mean ${(sum(r.resyncedAtRestart) / Math.max(1, r.parentRestarts)).toFixed(2)}, max ${max(r.resyncedAtRestart)}`,
      `writes: ${r.writesAcked} acknowledged of ${r.writesIssued} issued`,
      `time: ${((performance.now() - started) / 1000).toFixed(1)} s`,
      'crash soak: OK',
    ].join('\n'),
  );
} catch (err) {
  console.error(`crash soak FAILED (seed ${seed}): ${err instanceof CrashCheckError ? err.message : String(err)}`);
  if (!(err instanceof CrashCheckError)) console.error(err);
  process.exitCode = 1;
}
