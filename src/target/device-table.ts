/**
 * DeviceTable: one table of a mapped device (dm's dm_table) and the operations on it that need no
 * device state: building it from parsed lines, destroying it, splitting an I/O at segment boundaries
 * and formatting its lines.
 *
 * Building (dm_table_add_target, then the area checks): every line's target is constructed in order.
 * A constructor's TableError is labelled with the line's type and thrown at once; a "too small for
 * target" area error is kept and thrown only after every other line was constructed, as dm core checks
 * areas once the whole table is built. On any error the targets built so far are destroyed (a failure
 * there is reported as a process warning: the table error is what the caller must see).
 *
 * Routing: splitRange() cuts [offset, offset + length) at segment boundaries and makes each piece's
 * offset segment-relative, exactly once; settlePieces() waits for every piece, and a RequeueRequest
 * of any piece wins over other errors (dm requeues the whole bio), else the first error fails the I/O.
 *
 * Called by MappedDevice only. `live` is the only mutable field: MappedDevice sets it when it swaps
 * tables, and a target's events count only while its table is live.
 */
import { assert } from '../assert.js';
import { TableError } from '../errors.js';
import { rethrowProgrammerError, settleOperating } from '../fail-fast.js';
import { sectorBytes } from '../limits.js';
import { isDeviceAreaError } from './device-area.js';
import { formatTableLine, tableLengthSectors, type TableLine } from './table-lines.js';
import { RequeueRequest, type Target, type TargetContext } from './target.js';

/** One segment of a table, as callers may inspect it (e.g. to reach the mirror target). */
export interface Segment {
  readonly line: TableLine;
  readonly target: Target;
  readonly startBytes: number;
  readonly endBytes: number;
}

export interface DeviceTable {
  readonly segments: readonly Segment[];
  readonly lengthSectors: number;
  live: boolean;
}

/** A piece of an I/O that falls in one segment. */
export interface Piece {
  readonly segment: Segment;
  readonly targetOffsetBytes: number;
  readonly sourceOffsetBytes: number;
  readonly lengthBytes: number;
}

/**
 * Builds a table (see the banner); `raiseEvent(table)` is what the table's targets call through their
 * context (the device decides whether the table is live).
 * @throws TableError from a target's constructor, or the first area error.
 */
export async function buildTable(options: {
  deviceName: string;
  lines: readonly TableLine[];
  buildTarget: (line: TableLine, context: TargetContext) => Promise<Target>;
  raiseEvent: (table: DeviceTable) => void;
}): Promise<DeviceTable> {
  const segments: Segment[] = [];
  const table: DeviceTable = { segments, lengthSectors: tableLengthSectors(options.lines), live: false };
  const context: TargetContext = { deviceName: options.deviceName, raiseEvent: () => options.raiseEvent(table) };
  // dm core checks every target's device areas only after all constructors ran, so a later line's
  // argument error wins over an earlier line's "too small for target": keep the first such error.
  let areaError: TableError | undefined;
  try {
    for (const line of options.lines) {
      let target: Target;
      try {
        target = await options.buildTarget(line, context);
      } catch (error) {
        if (!isDeviceAreaError(error)) throw withTargetType(error, line.type);
        areaError ??= error;
        continue;
      }
      segments.push({
        line,
        target,
        startBytes: line.startSectors * sectorBytes,
        endBytes: (line.startSectors + line.lengthSectors) * sectorBytes,
      });
      assert(target.lengthSectors === line.lengthSectors, `${line.type} target length matches its line`);
      assert(target.sizeBytes === line.lengthSectors * sectorBytes, `${line.type} target size matches its line`);
    }
    if (areaError !== undefined) throw areaError;
  } catch (error) {
    try {
      await destroyTable(table);
    } catch (destroyError) {
      rethrowProgrammerError(destroyError);
      // The table error is what the caller must see; the cleanup failure is reported, not lost.
      process.emitWarning(`${options.deviceName}: destroying a partly built table failed: ${String(destroyError)}`);
    }
    throw error;
  }
  return table;
}

/** Destroys every target of a table in reverse order; all are destroyed even if one fails. */
export async function destroyTable(table: DeviceTable): Promise<void> {
  let firstError: unknown;
  for (const segment of [...table.segments].reverse()) {
    try {
      await segment.target.destroy();
    } catch (error) {
      rethrowProgrammerError(error);
      firstError ??= error;
    }
  }
  if (firstError !== undefined) throw firstError;
}

/** Splits [offset, offset+length) at segment boundaries; offsets become segment-relative here only. */
export function splitRange(table: DeviceTable, offsetBytes: number, lengthBytes: number): Piece[] {
  const segments = table.segments;
  let low = 0;
  let high = segments.length - 1;
  while (low < high) {
    const mid = (low + high) >> 1;
    const segment = segments[mid];
    assert(segment !== undefined, 'segment index in range');
    if (segment.endBytes <= offsetBytes) low = mid + 1;
    else high = mid;
  }
  const pieces: Piece[] = [];
  let done = 0;
  for (let index = low; done < lengthBytes; index++) {
    const segment = segments[index];
    assert(segment !== undefined, `range ${offsetBytes}+${lengthBytes} lies inside the table`);
    const position = offsetBytes + done;
    assert(position >= segment.startBytes && position < segment.endBytes, 'piece starts inside its segment');
    const pieceBytes = Math.min(lengthBytes - done, segment.endBytes - position);
    pieces.push({
      segment,
      targetOffsetBytes: position - segment.startBytes,
      sourceOffsetBytes: done,
      lengthBytes: pieceBytes,
    });
    done += pieceBytes;
  }
  assert(done === lengthBytes, 'pieces cover the range exactly');
  return pieces;
}

/** Waits for every piece; a RequeueRequest wins over other errors (dm requeues the whole bio). */
export async function settlePieces<T>(promises: readonly Promise<T>[]): Promise<T[]> {
  const results = await settleOperating(promises);
  const failures = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as unknown] : []));
  const requeue = failures.find((reason) => reason instanceof RequeueRequest);
  if (requeue !== undefined) throw requeue;
  if (failures.length > 0) throw failures[0];
  return results.map((r) => {
    assert(r.status === 'fulfilled', 'no failures left');
    return r.value;
  });
}

/** The table's lines as dmsetup prints them, `params` per target; "\n" when there are none. */
export function formatSegments(segments: readonly Segment[], params: (target: Target) => string): string {
  if (segments.length === 0) return '\n';
  return (
    segments
      .map((segment) =>
        formatTableLine({
          startSectors: segment.line.startSectors,
          lengthSectors: segment.line.lengthSectors,
          type: segment.target.type,
          params: params(segment.target),
        }),
      )
      .join('\n') + '\n'
  );
}

/** A constructor's TableError, labelled with the type of the line that failed (as the kernel's log line). */
function withTargetType(error: unknown, targetType: string): unknown {
  if (!(error instanceof TableError) || error.targetType !== undefined || error.source === 'core') return error;
  return new TableError({
    code: error.code,
    kernelError: error.kernelError,
    logLines: error.logLines,
    source: error.source,
    targetType,
    cause: error.cause,
  });
}
