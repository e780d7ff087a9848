/**
 * Progress display for long jobs (resync today, scrub later), used by `status --watch`, `wait --progress`
 * and serve's live status line. Three parts:
 *
 *   ProgressRate   samples of (time, bytes done) over a sliding window -> speed and time to finish
 *   mdstatLine()   the words /proc/mdstat prints: "resync = 27.1% (556/2048) finish=0.4min speed=231MiB/s"
 *   LiveLines      where the lines go: on a terminal the previous block is redrawn in place (carriage
 *                  return, cursor up, erase to the end of the screen: no new lines); anywhere else each
 *                  block is printed as new lines, so a log file gets one line per interval
 *
 * The rate is measured, not configured: the first reading has no speed (mdstat prints none either until
 * it has two marks), and a reading that went backwards (a table reload restarted the resync) starts the
 * window again. The window is bounded in time and in samples.
 */
import { assert } from '../assert.js';

/** How far back the speed looks (mdstat averages over its last marks, about this long). */
export const progressWindowMs = 10_000;
/** Samples kept at most in the window (a 500 ms poll fills 20 of them). */
const progressSamplesMax = 64;

export class ProgressRate {
  readonly #samples: { atMs: number; doneBytes: number }[] = [];

  /** Records that `doneBytes` were done at `atMs` (a monotonic clock). */
  sample(options: { atMs: number; doneBytes: number }): void {
    const { atMs, doneBytes } = options;
    assert(Number.isFinite(atMs) && Number.isFinite(doneBytes) && doneBytes >= 0, 'a finite sample');
    const last = this.#samples.at(-1);
    if (last !== undefined && (doneBytes < last.doneBytes || atMs < last.atMs)) this.#samples.length = 0;
    this.#samples.push({ atMs, doneBytes });
    while (this.#samples.length > progressSamplesMax || this.#windowMs() > progressWindowMs) this.#samples.shift();
    assert(this.#samples.length >= 1 && this.#samples.length <= progressSamplesMax);
  }

  /** Bytes per second over the window, or undefined before two samples some time apart. */
  bytesPerSecond(): number | undefined {
    const first = this.#samples[0];
    const last = this.#samples.at(-1);
    if (first === undefined || last === undefined || last.atMs <= first.atMs) return undefined;
    return ((last.doneBytes - first.doneBytes) * 1000) / (last.atMs - first.atMs);
  }

  #windowMs(): number {
    const first = this.#samples[0];
    const last = this.#samples.at(-1);
    return first === undefined || last === undefined ? 0 : last.atMs - first.atMs;
  }
}

/** `231MiB/s`, `1.5GiB/s`, `12KiB/s`, `0B/s`: binary units, one decimal below 10. */
export function formatSpeed(bytesPerSecond: number): string {
  assert(Number.isFinite(bytesPerSecond) && bytesPerSecond >= 0, 'a speed is finite and not negative');
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'] as const;
  let value = bytesPerSecond;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value < 10 && unit > 0 ? value.toFixed(1) : Math.round(value).toFixed(0)}${units[unit] ?? 'B'}/s`;
}

/** mdstat's bar: `[====>................]`, 20 cells. */
export function mdstatBar(done: number, total: number): string {
  const width = 20;
  const fraction = total === 0 ? 1 : Math.min(1, done / total);
  const filled = Math.floor(fraction * width);
  if (filled >= width) return `[${'='.repeat(width)}]`;
  return `[${'='.repeat(filled)}>${'.'.repeat(width - filled - 1)}]`;
}

/**
 * What mdstat prints for a job in progress: `resync = 27.1% (556/2048) finish=0.4min speed=231MiB/s`.
 * `done`/`total` are in the job's own units (regions); finish and speed need a measured rate and are
 * left out without one. A rate of 0 gives no finish time (it would be infinite).
 */
export function mdstatLine(options: { action: string; done: number; total: number; remainingBytes: number; bytesPerSecond?: number | undefined }): string {
  const { action, done, total, remainingBytes, bytesPerSecond } = options;
  assert(done >= 0 && done <= total, 'done within total');
  // Truncated, not rounded, as mdstat does: 99.96% is not shown as 100.0% while work remains.
  const percent = total === 0 ? 100 : Math.floor((done * 1000) / total) / 10;
  let line = `${action} = ${percent.toFixed(1)}% (${done}/${total})`;
  if (bytesPerSecond !== undefined) {
    if (bytesPerSecond > 0) line += ` finish=${(remainingBytes / bytesPerSecond / 60).toFixed(1)}min`;
    line += ` speed=${formatSpeed(bytesPerSecond)}`;
  }
  return line;
}

/** The output a LiveLines writes to: a stream, and whether it is a terminal (and how wide). */
export interface LiveOutput {
  write(text: string): unknown;
  readonly isTTY?: boolean | undefined;
  readonly columns?: number | undefined;
}

export class LiveLines {
  readonly #out: LiveOutput;
  readonly #tty: boolean;
  /** Lines of the block on screen (terminal only); 0 when nothing is drawn. */
  #drawn = 0;

  constructor(out: LiveOutput, options: { tty?: boolean } = {}) {
    this.#out = out;
    this.#tty = options.tty ?? out.isTTY === true;
  }

  get tty(): boolean {
    return this.#tty;
  }

  /**
   * Shows `lines`. On a terminal the block drawn before is replaced in place and the cursor stays at the
   * end of the last line (no new line); lines wider than the terminal are cut, so the block's height is
   * known. Elsewhere the lines are printed, each ending with a new line.
   */
  show(lines: readonly string[]): void {
    if (!this.#tty) {
      if (lines.length > 0) this.#out.write(`${lines.join('\n')}\n`);
      return;
    }
    const columns = this.#out.columns ?? 0;
    const fitted = columns > 1 ? lines.map((line) => (line.length >= columns ? line.slice(0, columns - 1) : line)) : lines;
    // Back to the start of the block (carriage return, cursor up), then erase to the end of the screen.
    const up = this.#drawn > 1 ? `\x1b[${this.#drawn - 1}A` : '';
    this.#out.write(`\r${up}\x1b[J${fitted.join('\n')}`);
    this.#drawn = fitted.length;
  }

  /** Leaves the block on screen and moves to a new line below it (terminal only; idempotent). */
  end(): void {
    if (this.#tty && this.#drawn > 0) this.#out.write('\n');
    this.#drawn = 0;
  }
}
