/**
 * Crash soak: the crash-consistency campaign (crash-harness.ts) with many kills.
 * Usage: npm run test:soak   (node build/test/crash/crash-soak.js --kills 200 [--seed N] [--quiet]
 *          [--lazy-clean MS[,MS...]] [--kill-delay MIN,MAX] [--restart-chance P] [--regions N])
 *
 *   --lazy-clean     the disk log's lazy clean delays, one per life in turn (default 0,20,100)
 *   --kill-delay     kill this many ms after the child is ready, uniformly in [MIN, MAX] (default 1,600)
 *   --restart-chance the chance (0..1) that the parent restarts and verifies after a kill (default 0.5;
 *                    1 makes every kill a restart, so "resynced per restart" is the cost of one crash)
 *   --regions        64 KiB regions of the mirror (default 128: an 8 MiB mirror)
 *
 * The crash-resync cost of lazy clean (README, "The disk log and crash safety"): run it once per delay,
 *   node build/test/crash/crash-soak.js --kills 40 --lazy-clean 0 --kill-delay 1500,3000 --restart-chance 1
 *   node build/test/crash/crash-soak.js --kills 40 --lazy-clean 1000 --kill-delay 1500,3000 --restart-chance 1
 * and compare the "regions resynced per restart" lines.
 * Exits 1 on the first violation, printing it. Never part of npm test.
 */
import { CrashCheckError, runCrashCampaign } from './crash-harness.js';

function argText(name: string): string | undefined {
  const at = process.argv.indexOf(name);
  return at >= 0 ? process.argv[at + 1] : undefined;
}

function integersOf(name: string, text: string): number[] {
  return text.split(',').map((part) => {
    const value = /^[0-9]+$/.test(part) ? Number(part) : Number.NaN;
    if (!Number.isSafeInteger(value)) throw new RangeError(`${name} needs non-negative integers separated by commas, got "${text}"`);
    return value;
  });
}

function argValue(name: string, fallback: number): number {
  const text = argText(name);
  if (text === undefined) return fallback;
  const [value, ...rest] = integersOf(name, text);
  if (value === undefined || rest.length > 0) throw new RangeError(`${name} needs one non-negative integer`);
  return value;
}

const kills = argValue('--kills', 200);
const seed = argValue('--seed', Date.now() % 2 ** 31);
const quiet = process.argv.includes('--quiet');
const lazyCleanMs = integersOf('--lazy-clean', argText('--lazy-clean') ?? '0,20,100');
const [delayMin, delayMax, ...extra] = integersOf('--kill-delay', argText('--kill-delay') ?? '1,600');
if (delayMin === undefined || delayMax === undefined || extra.length > 0 || delayMin >= delayMax) throw new RangeError('--kill-delay needs MIN,MAX with MIN < MAX');
const restartChance = Number(argText('--restart-chance') ?? '0.5');
if (!(restartChance >= 0 && restartChance <= 1)) throw new RangeError('--restart-chance needs a number from 0 to 1');
const regions = argValue('--regions', 128);
if (regions < 1) throw new RangeError('--regions needs at least 1');
const regionSectors = 128;
const started = performance.now();
console.log(`crash soak: ${kills} kills, seed ${seed}, lazy clean ${lazyCleanMs.join(',')} ms, kill ${delayMin}..${delayMax} ms after ready, restart chance ${restartChance}, ${regions} regions of 64 KiB`);
try {
  const r = await runCrashCampaign({
    kills,
    seed,
    lazyCleanMs,
    killDelayMs: [delayMin, delayMax],
    restartChance,
    lengthSectors: regions * regionSectors,
    regionSectors,
    ...(quiet ? {} : { onProgress: (line: string) => console.log(line) }),
  });
  const sum = (xs: readonly number[]): number => xs.reduce((a, b) => a + b, 0);
  const max = (xs: readonly number[]): number => xs.reduce((a, b) => Math.max(a, b), 0);
  const mean = (xs: readonly number[]): string => (sum(xs) / Math.max(1, xs.length)).toFixed(2);
  console.log(
    [
      `kills: ${r.kills} (${r.killsBeforeReady} before ready, ${r.killsWithLegWritesInFlight} with leg writes in flight)`,
      `dirty regions at kill: mean ${mean(r.dirtyAtKill)}, max ${max(r.dirtyAtKill)} of ${r.regionCount}`,
      ...[...new Set(r.lazyCleanMsAtKill)].map((ms) => {
        const dirty = r.dirtyAtKill.filter((_, i) => r.lazyCleanMsAtKill[i] === ms);
        const resynced = r.resyncedAtRestart.filter((_, i) => r.lazyCleanMsAtRestart[i] === ms);
        return (
          `  lazy clean ${ms} ms: ${dirty.length} kills, dirty mean ${mean(dirty)}, max ${max(dirty)}; ` +
          `regions resynced per restart: mean ${mean(resynced)}, max ${max(resynced)} of ${r.regionCount} (${resynced.length} restarts)`
        );
      }),
      `regions with differing legs at kill: ${sum(r.differingAtKill)} in all (each dirty in the log)`,
      `parent restarts: ${r.parentRestarts}, regions resynced: mean ${mean(r.resyncedAtRestart)}, max ${max(r.resyncedAtRestart)}`,
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
