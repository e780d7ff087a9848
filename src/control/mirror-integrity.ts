/**
 * The daemon's side of scrub, read repair and the resync's pace (src/mirror/scrub.ts, read-repair.ts,
 * resync-rate.ts): the `scrub` verb over every mirror segment of a device's live table, and what
 * `status --json`, `info` and the metrics report about them. Pure over the mirror sets it is given; the
 * registry finds the device and logs.
 *
 * A device with several mirror segments is scrubbed segment after segment; region numbers are the
 * segment's own (the JSON says which segment). The verb is refused with EINVAL for a device without a
 * mirror segment and EBUSY while a segment is suspended or already scrubbing.
 */
import { BlockError, ControlError } from '../errors.js';
import { rethrowProgrammerError } from '../fail-fast.js';
import { MirrorSet, type ResyncRateStatus, type ScrubProgress, type ScrubResult } from '../mirror/mirror-set.js';
import type { Segment } from '../target/mapped-device.js';

/** One segment's scrub, as the verb answers it. */
export interface SegmentScrubResult extends ScrubResult {
  /** The segment's start sector. */
  readonly start: number;
}

export interface DeviceScrubResult {
  readonly name: string;
  readonly state: 'complete' | 'aborted';
  readonly repair: boolean;
  readonly regionCount: number;
  readonly mismatchedRegions: number;
  readonly repairedRegions: number;
  readonly segments: readonly SegmentScrubResult[];
}

/** A finished scrub as status and info show it (the regions listed as in the result). */
export type ScrubSummary = Omit<ScrubResult, 'startedAtMs' | 'finishedAtMs'> & { readonly startedAt: string; readonly finishedAt: string };

/** What `status --json` adds to each mirror segment. */
export interface MirrorIntegrityJson {
  readonly readRepair: boolean;
  readonly correctedReadErrors: number;
  readonly resync: ResyncRateStatus;
  readonly scrub: { readonly running: ScrubProgress | null; readonly last: ScrubSummary | null };
}

function mirrorsOf(segments: readonly Segment[]): { start: number; mirror: MirrorSet }[] {
  return segments.flatMap((segment) => (segment.target instanceof MirrorSet ? [{ start: segment.line.startSectors, mirror: segment.target }] : []));
}

/**
 * Scrubs every mirror segment in turn. `signal` aborts it (the control connection closed).
 * @throws ControlError EINVAL (no mirror segment), EBUSY (suspended, or a scrub already runs).
 */
export async function scrubSegments(options: {
  name: string;
  segments: readonly Segment[];
  repair: boolean;
  bytesPerSecond?: number;
  signal?: AbortSignal;
}): Promise<DeviceScrubResult> {
  const mirrors = mirrorsOf(options.segments);
  if (mirrors.length === 0) throw new ControlError('EINVAL', `Cannot scrub ${options.name}: its table has no mirror segment`);
  const busy = mirrors.find(({ mirror }) => mirror.scrubRunning || mirror.suspended);
  if (busy !== undefined) {
    const why = busy.mirror.suspended ? 'it is suspended' : 'a scrub is already running';
    throw new ControlError('EBUSY', `Cannot scrub ${options.name}: ${why}`);
  }
  const results: SegmentScrubResult[] = [];
  for (const { start, mirror } of mirrors) {
    if (options.signal?.aborted === true) break;
    try {
      const result = await mirror.scrub({
        repair: options.repair,
        ...(options.bytesPerSecond === undefined ? {} : { bytesPerSecond: options.bytesPerSecond }),
        ...(options.signal === undefined ? {} : { signal: options.signal }),
      });
      results.push({ start, ...result });
      if (result.state === 'aborted') break;
    } catch (err) {
      rethrowProgrammerError(err);
      // Suspended or scrubbing since the check above (a table swap, a second verb).
      if (!(err instanceof BlockError) || err.code !== 'EBUSY') throw err;
      throw new ControlError('EBUSY', `Cannot scrub ${options.name}: ${err.message}`, { cause: err });
    }
  }
  const complete = results.length === mirrors.length && results.every((r) => r.state === 'complete');
  return {
    name: options.name,
    state: complete ? 'complete' : 'aborted',
    repair: options.repair,
    regionCount: mirrors.reduce((sum, { mirror }) => sum + mirror.regionCount, 0),
    mismatchedRegions: results.reduce((sum, r) => sum + r.mismatchedRegions, 0),
    repairedRegions: results.reduce((sum, r) => sum + r.repairedRegions, 0),
    segments: results,
  };
}

export function scrubSummary(result: ScrubResult): ScrubSummary {
  const { startedAtMs, finishedAtMs, ...rest } = result;
  return { ...rest, startedAt: new Date(startedAtMs).toISOString(), finishedAt: new Date(finishedAtMs).toISOString() };
}

export function mirrorIntegrityJson(mirror: MirrorSet): MirrorIntegrityJson {
  const last = mirror.lastScrub;
  return {
    readRepair: mirror.readRepair,
    correctedReadErrors: mirror.stats.correctedReadErrorsTotal,
    resync: mirror.resyncRate,
    scrub: { running: mirror.scrubProgress ?? null, last: last === undefined ? null : scrubSummary(last) },
  };
}

/** `info`'s "Last scrub" words for a device: when, and what it found; undefined before any scrub. */
export function lastScrubText(segments: readonly Segment[]): string | undefined {
  const lasts = mirrorsOf(segments).flatMap(({ mirror }) => (mirror.lastScrub === undefined ? [] : [mirror.lastScrub]));
  if (lasts.length === 0) return undefined;
  const mismatched = lasts.reduce((sum, r) => sum + r.mismatchedRegions, 0);
  const regions = lasts.reduce((sum, r) => sum + r.regionCount, 0);
  const repaired = lasts.reduce((sum, r) => sum + r.repairedRegions, 0);
  const finished = new Date(Math.max(...lasts.map((r) => r.finishedAtMs))).toISOString();
  const aborted = lasts.some((r) => r.state === 'aborted') ? ', aborted' : '';
  const repairedText = lasts.some((r) => r.repair) ? `, ${repaired} repaired` : '';
  return `${finished}: ${mismatched} of ${regions} regions differ${repairedText}${aborted}`;
}
