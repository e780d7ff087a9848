/**
 * What `serve` says when it stops: the state the device was left in, read from its mirror segments after
 * the suspend (the last log flush) and before the remove. It says "the log is clean" only when that is
 * true: a disk log, healthy, every region clean and in sync, every leg alive, and no write held (a held
 * write fails with EIO at the suspend, so its region stays dirty). Otherwise it says how many regions the
 * next start resyncs and why.
 *
 *   disk log, all clean            -> device suspended cleanly; the log is clean
 *   disk log, N regions dirty      -> device suspended; the next start resyncs N of M regions (a leg failed: AD)
 *   disk log device failed (D, F)  -> device suspended; the log device failed (D): the next start may resync every region
 *   core log                       -> device suspended; a core log is not kept: the next start resyncs M of M
 *                                     regions unless its table says nosync
 *   no mirror segment              -> device suspended; no dirty log
 */
import { MirrorSet } from '../mirror/mirror-set.js';
import type { Segment } from '../target/mapped-device.js';

/** One mirror segment at stop: counted after the suspend, `heldWrites` just before it. */
export interface MirrorStopState {
  readonly logType: string;
  readonly logHealth: string;
  readonly regionCount: number;
  readonly syncRegions: number;
  /** Regions whose clean bit is not set: the next start (default sync) resyncs exactly these. */
  readonly dirtyRegions: number;
  readonly health: string;
  readonly heldWrites: number;
}

/** Reads the stop state of every mirror segment (call after the suspend, before the remove). */
export function mirrorStopStates(segments: readonly Segment[], heldWrites: ReadonlyMap<MirrorSet, number>): MirrorStopState[] {
  return segments
    .map((segment) => segment.target)
    .filter((target): target is MirrorSet => target instanceof MirrorSet)
    .map((mirror) => {
      let dirtyRegions = 0;
      for (let region = 0; region < mirror.regionCount; region++) if (!mirror.log.isClean(region)) dirtyRegions++;
      return {
        logType: mirror.log.type,
        logHealth: mirror.log.health,
        regionCount: mirror.regionCount,
        syncRegions: mirror.syncCount(),
        dirtyRegions,
        health: mirror.healthLetters(),
        heldWrites: heldWrites.get(mirror) ?? 0,
      };
    });
}

/** Writes held per mirror segment now (call just before the suspend, which fails them). */
export function heldWritesBySegment(segments: readonly Segment[]): Map<MirrorSet, number> {
  const held = new Map<MirrorSet, number>();
  for (const segment of segments) if (segment.target instanceof MirrorSet) held.set(segment.target, segment.target.heldWrites);
  return held;
}

/** The stop line (see the banner). */
export function stopSummary(mirrors: readonly MirrorStopState[]): string {
  if (mirrors.length === 0) return 'device suspended; no dirty log';
  const total = mirrors.reduce((sum, m) => sum + m.regionCount, 0);
  const core = mirrors.filter((m) => m.logType !== 'disk');
  if (core.length > 0) {
    const coreRegions = core.reduce((sum, m) => sum + m.regionCount, 0);
    return `device suspended; a core log is not kept: the next start resyncs ${coreRegions} of ${total} regions unless its table says nosync`;
  }
  const failedLogs = mirrors.filter((m) => m.logHealth !== 'A');
  if (failedLogs.length > 0) {
    return `device suspended; the log device failed (${failedLogs.map((m) => m.logHealth).join(', ')}): the next start may resync every region`;
  }
  const dirty = mirrors.reduce((sum, m) => sum + m.dirtyRegions, 0);
  const outOfSync = mirrors.reduce((sum, m) => sum + (m.regionCount - m.syncRegions), 0);
  const held = mirrors.reduce((sum, m) => sum + m.heldWrites, 0);
  const failedLegs = mirrors.filter((m) => !/^A+$/.test(m.health)).map((m) => m.health);
  if (dirty === 0 && outOfSync === 0 && held === 0 && failedLegs.length === 0) return 'device suspended cleanly; the log is clean';
  const reasons = [
    ...(failedLegs.length > 0 ? [`a leg failed: ${failedLegs.join(', ')}`] : []),
    ...(outOfSync > 0 ? [`${outOfSync} out of sync`] : []),
    ...(held > 0 ? [`${held} held ${held === 1 ? 'write' : 'writes'} failed`] : []),
  ];
  return `device suspended; the next start resyncs ${dirty} of ${total} regions${reasons.length > 0 ? ` (${reasons.join('; ')})` : ''}`;
}
