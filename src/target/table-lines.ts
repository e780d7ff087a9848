/**
 * Table text -> table lines, and back: what dmsetup and dm core (dm-table.c) do before any target
 * constructor runs. Pure: no I/O.
 *
 * Input is dmsetup's table text: one target per line, `<start> <length> <type> <params...>`, sectors in
 * decimal. Blank lines and lines whose first non-blank character is `#` are skipped (dmsetup's
 * _parse_file). Params are split as dm_split_args does: on whitespace, and a backslash quotes the next
 * character (so `a\ b` is one argument `a b`).
 *
 * Checks, in dm_table_add_target's order, per line:
 *   1. "zero-length target"               (length 0)
 *   2. "too large device"                 (end beyond what a byte offset can address here)
 *   3. "<type>: unknown target type"      (type not in `knownTypes`)
 *   4. "Gap in table"                     (first line not at 0, or a line not starting where the
 *                                          previous one ended: gaps and overlaps alike, dm's adjoin())
 * Lines dmsetup itself cannot read ("Invalid format on line N of table") and an empty table ("no targets
 * specified", dm-ioctl's populate_table) are rejected too. Every error is a TableError with source
 * 'core'; `kernelError` is the text the kernel logs after "device-mapper: table: 253:0: " (for "Gap in
 * table" the kernel prints it as "<type>: Gap in table (-EINVAL)", like a target's ti->error; see
 * kernelTableLogLines()).
 *
 * Output formatting: formatTableLine() prints a line exactly as dmsetup does, `"%llu %llu %s %s"`, so a
 * target with empty params keeps the trailing space (`0 32768 error `).
 */
import { assert, assertCount } from '../assert.js';
import { TableError } from '../errors.js';
import { tableEndSectorsMax, tableLinesMax } from '../limits.js';

export interface TableLine {
  readonly startSectors: number;
  readonly lengthSectors: number;
  readonly type: string;
  readonly args: readonly string[];
}

/** Target types dm core knows by default (our registry: the targets umirror implements). */
export const knownTargetTypes: readonly string[] = ['mirror', 'linear', 'zero', 'error'];

/**
 * Splits table text into lines and checks them as dm core does.
 * @throws TableError (source 'core') as listed in the banner.
 */
export function parseTableText(text: string, options: { knownTypes?: readonly string[] } = {}): TableLine[] {
  const knownTypes = options.knownTypes ?? knownTargetTypes;
  const lines: TableLine[] = [];
  const rawLines = text.split(/\r?\n/);
  for (let index = 0; index < rawLines.length; index++) {
    const raw = rawLines[index] ?? '';
    const trimmed = raw.trim();
    if (trimmed === '' || trimmed.startsWith('#')) continue;
    const line = parseOneLine({ raw: trimmed, lineNumber: index + 1 });
    checkLine({ line, previous: lines[lines.length - 1], knownTypes });
    lines.push(line);
    if (lines.length > tableLinesMax) {
      throw new TableError({ source: 'core', kernelError: `too many targets (more than ${tableLinesMax})` });
    }
  }
  if (lines.length === 0) throw new TableError({ source: 'core', kernelError: 'no targets specified' });
  assertContiguous(lines);
  return lines;
}

/** dmsetup's output line for one target: `<start> <len> <type> <params>`; empty params keep the space. */
export function formatTableLine(options: {
  startSectors: number;
  lengthSectors: number;
  type: string;
  params: string;
}): string {
  assertCount(options.startSectors, 'startSectors');
  assertCount(options.lengthSectors, 'lengthSectors');
  assert(!options.params.includes('\n'), 'params must be one line');
  return `${options.startSectors} ${options.lengthSectors} ${options.type} ${options.params}`;
}

/** The sum of the lengths of contiguous lines, in sectors (the device size). */
export function tableLengthSectors(lines: readonly TableLine[]): number {
  let total = 0;
  for (const line of lines) total += line.lengthSectors;
  return total;
}

/**
 * The kernel log lines for a rejected table, as the oracle records them (without the "kmsg: " prefix):
 * log lines, the table line, then the ioctl line. `deviceNumber` is the dm device's "253:0".
 */
export function kernelTableLogLines(error: TableError, options: { deviceNumber: string; targetType: string }): string[] {
  const errno = error.code === 'ENODEV' ? '-ENODEV' : error.code === 'ENXIO' ? '-ENXIO' : '-EINVAL';
  const prefix = `device-mapper: table: ${options.deviceNumber}: `;
  const out = error.logLines.map((line) => `device-mapper: dirty region log: ${line}`);
  if (error.source === 'core' && error.kernelError.includes(' too small for target: ')) {
    out.push(prefix + error.kernelError);
    out.push('device-mapper: core: Cannot calculate initial queue limits');
    out.push('device-mapper: ioctl: unable to set up device queue for new table.');
    return out;
  }
  if (error.source === 'core' && error.kernelError !== 'Gap in table') {
    out.push(prefix + error.kernelError);
  } else {
    out.push(`${prefix}${error.targetType ?? options.targetType}: ${error.kernelError} (${errno})`);
  }
  out.push('device-mapper: ioctl: error adding target to table');
  return out;
}

/** dm_split_args: whitespace separates, a backslash quotes the next character. */
export function splitArgs(params: string): string[] {
  const args: string[] = [];
  let current = '';
  let inToken = false;
  for (let i = 0; i < params.length; i++) {
    const ch = params[i] ?? '';
    if (ch === '\\' && i + 1 < params.length) {
      current += params[i + 1] ?? '';
      inToken = true;
      i++;
      continue;
    }
    if (/\s/.test(ch)) {
      if (inToken) args.push(current);
      current = '';
      inToken = false;
      continue;
    }
    current += ch;
    inToken = true;
  }
  if (inToken) args.push(current);
  return args;
}

function parseOneLine(options: { raw: string; lineNumber: number }): TableLine {
  const match = /^(\S+)\s+(\S+)\s+(\S+)(?:\s+(.*))?$/.exec(options.raw);
  const invalid = (): TableError =>
    new TableError({ source: 'core', kernelError: `Invalid format on line ${options.lineNumber} of table` });
  if (match === null) throw invalid();
  const [, startText = '', lengthText = '', type = '', params = ''] = match;
  if (!/^[0-9]+$/.test(startText) || !/^[0-9]+$/.test(lengthText)) throw invalid();
  const startSectors = Number(startText);
  const lengthSectors = Number(lengthText);
  if (!Number.isSafeInteger(startSectors) || !Number.isSafeInteger(lengthSectors)) {
    throw new TableError({ source: 'core', kernelError: 'too large device' });
  }
  return { startSectors, lengthSectors, type, args: splitArgs(params) };
}

function checkLine(options: { line: TableLine; previous: TableLine | undefined; knownTypes: readonly string[] }): void {
  const { line, previous } = options;
  if (line.lengthSectors === 0) throw new TableError({ source: 'core', kernelError: 'zero-length target' });
  if (line.startSectors + line.lengthSectors > tableEndSectorsMax) {
    throw new TableError({ source: 'core', kernelError: 'too large device' });
  }
  if (!options.knownTypes.includes(line.type)) {
    throw new TableError({ source: 'core', kernelError: `${line.type}: unknown target type` });
  }
  const expectedStart = previous === undefined ? 0 : previous.startSectors + previous.lengthSectors;
  if (line.startSectors !== expectedStart) throw new TableError({ source: 'core', kernelError: 'Gap in table' });
}

function assertContiguous(lines: readonly TableLine[]): void {
  let next = 0;
  for (const line of lines) {
    assert(line.startSectors === next, 'table lines must adjoin');
    assert(line.lengthSectors > 0, 'table lines must not be empty');
    next += line.lengthSectors;
  }
}
