/**
 * `umirror scrub NAME [--repair] [--rate MiB/s] [--json]`: asks the daemon to compare NAME's legs
 * (src/mirror/scrub.ts), shows a progress line on stderr while it runs (mdstat's "check = 27.1% ..." with
 * speed and finish time once measured; redrawn in place on a terminal, a line per change elsewhere),
 * then prints the summary on stdout:
 *
 *   scrub vol: 3 of 2048 regions differ (regions 17, 18, 1033)
 *     region 17: l1 outvoted
 *     ...
 *
 * (`, 3 repaired` with --repair; at most summaryRegionsMax regions are named, --json lists them all as
 * the daemon returned them). The progress comes from `status --json` on the same connection, polled
 * every progressWatchIntervalMs. Ctrl-C closes the connection, which stops the scrub after its region in
 * hand. Exit status: 0 when the scrub went through and the legs now agree (nothing differed, or every
 * difference was repaired), 1 otherwise (differences left, aborted, or an error).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { ControlClient } from '../control/control-client.js';
import type { DeviceScrubResult } from '../control/mirror-integrity.js';
import type { TableView } from '../control/device-registry.js';
import { ControlError } from '../errors.js';
import { detach } from '../fail-fast.js';
import { progressWatchIntervalMs } from '../limits.js';
import type { ScrubProgress, ScrubRegionReport } from '../mirror/mirror-set.js';
import { LiveLines, ProgressRate, mdstatLine } from './progress.js';

/** Regions the summary names (and details) at most; --json has them all. */
const summaryRegionsMax = 32;

export async function scrubVerb(options: {
  client: ControlClient;
  name: string;
  repair: boolean;
  rateMiBPerSecond?: number;
  json: boolean;
}): Promise<number> {
  const { client, name } = options;
  const outcome: { result?: unknown; error?: unknown; done: boolean } = { done: false };
  let wake: () => void = () => undefined;
  const finished = new Promise<void>((resolve) => {
    wake = resolve;
  });
  const request = client.request({
    verb: 'scrub',
    name,
    repair: options.repair,
    ...(options.rateMiBPerSecond === undefined ? {} : { rateMiBPerSecond: options.rateMiBPerSecond }),
  });
  detach(
    request.then(
      (result) => {
        outcome.result = result;
      },
      (err: unknown) => {
        outcome.error = err;
      },
    ).finally(() => {
      outcome.done = true;
      wake();
    }),
    () => undefined,
  );
  const live = new LiveLines(process.stderr);
  const rate = new ProgressRate();
  let last = '';
  const action = options.repair ? 'repair' : 'check';
  while (!outcome.done) {
    await Promise.race([finished, sleep(progressWatchIntervalMs)]);
    if (outcome.done) break;
    const progress = runningProgress(await client.request({ verb: 'status', name, inactive: false }));
    if (progress === undefined) continue;
    rate.sample({ atMs: performance.now(), doneBytes: progress.doneBytes });
    const speed = rate.bytesPerSecond();
    const line = `scrub ${name}: ${mdstatLine({
      action,
      done: progress.doneRegions,
      total: progress.regionCount,
      remainingBytes: progress.sizeBytes - progress.doneBytes,
      bytesPerSecond: speed,
    })}, ${progress.mismatchedRegions} differ`;
    if (line !== last || live.tty) live.show([line]);
    last = line;
  }
  live.end();
  if (outcome.error !== undefined) throw outcome.error;
  const result = asScrubResult(outcome.result);
  if (options.json) console.log(JSON.stringify(result));
  else for (const line of scrubSummaryLines(result)) console.log(line);
  const agree = result.mismatchedRegions === 0 || (result.repair && result.repairedRegions === result.mismatchedRegions);
  return result.state === 'complete' && agree ? 0 : 1;
}

/** The progress of the scrub running on a device, from its status view (the first running segment). */
function runningProgress(view: unknown): ScrubProgress | undefined {
  const mirrors = (view as Partial<TableView> | undefined)?.mirrors ?? [];
  for (const mirror of mirrors) {
    const running = mirror.scrub?.running;
    if (running !== null && running !== undefined) return running;
  }
  return undefined;
}

/** The summary: one line per mirror segment, then one line per differing region named. */
export function scrubSummaryLines(result: DeviceScrubResult): string[] {
  const lines: string[] = [];
  const several = result.segments.length > 1;
  for (const segment of result.segments) {
    const where = several ? ` (segment at sector ${segment.start})` : '';
    const named = segment.regions.slice(0, summaryRegionsMax);
    const more = segment.mismatchedRegions - named.length;
    const list = named.length === 0 ? '' : ` (region${named.length === 1 && more === 0 ? '' : 's'} ${named.map((r) => r.region).join(', ')}${more > 0 ? `, and ${more} more` : ''})`;
    const repaired = segment.repair ? `, ${segment.repairedRegions} repaired` : '';
    const aborted = segment.state === 'aborted' ? `; aborted after ${segment.scrubbedRegions + segment.skippedRegions} regions` : '';
    const skipped = segment.skippedRegions > 0 && segment.state === 'complete' ? `; ${segment.skippedRegions} not compared (out of sync or one valid leg)` : '';
    lines.push(`scrub ${result.name}${where}: ${segment.mismatchedRegions} of ${segment.regionCount} regions differ${list}${repaired}${aborted}${skipped}`);
    for (const region of named) lines.push(`  ${regionLine(region)}`);
  }
  if (result.segments.length === 0) lines.push(`scrub ${result.name}: aborted before any region`);
  return lines;
}

function regionLine(report: ScrubRegionReport): string {
  const legs = report.outvoted.map((leg) => leg.name).join(', ');
  switch (report.verdict) {
    case 'differs':
      return `region ${report.region}: ${legs} outvoted`;
    case 'repaired':
      return `region ${report.region}: ${legs} outvoted, repaired`;
    case 'failed':
      return `region ${report.region}: ${legs} outvoted, repair failed`;
    case 'unresolved':
      return `region ${report.region}: no majority${legs === '' ? '' : ` (${legs} outvoted elsewhere in the region)`}, not repaired`;
  }
}

/** Decode boundary: the daemon's scrub result. */
function asScrubResult(value: unknown): DeviceScrubResult {
  const record = value as Partial<DeviceScrubResult> | undefined;
  if (typeof record !== 'object' || record === null || typeof record.name !== 'string' || !Array.isArray(record.segments)) {
    throw new ControlError('EIO', 'The daemon sent a malformed scrub result');
  }
  return record as DeviceScrubResult;
}
