/**
 * Builds a MirrorSet directly (no table text) over memory legs (memory -> FaultyBlockDevice -> ProbeDevice)
 * and a CoreDirtyLog
 * wrapped in a ProbeLog, all recording into one Journal, for tests that check the order of log and leg
 * operations. The set is resumed unless `resume: false`.
 */
import { FaultyBlockDevice } from '../../src/block/faulty-block-device.js';
import { MemoryBlockDevice } from '../../src/block/memory-block-device.js';
import { Copier } from '../../src/copy/copier.js';
import { CoreDirtyLog } from '../../src/dirty-log/core-dirty-log.js';
import type { LogSyncMode } from '../../src/dirty-log/dirty-log.js';
import { sectorBytes } from '../../src/limits.js';
import { MirrorSet, type ReadPolicy } from '../../src/mirror/mirror-set.js';
import { Journal, ProbeDevice, ProbeLog } from './probe-device.js';
import { unlimitedMessages } from './mirror-fixture.js';

export interface ProbeMirror {
  readonly mirror: MirrorSet;
  readonly journal: Journal;
  readonly log: ProbeLog;
  readonly legs: readonly ProbeDevice[];
  /** Fault injection under each probe (memory -> faulty -> probe). */
  readonly faults: readonly FaultyBlockDevice[];
  readonly memories: readonly MemoryBlockDevice[];
  readonly copier: Copier;
  readonly messages: string[];
  events: number;
}

export interface ProbeMirrorOptions {
  readonly legCount?: number;
  readonly lengthSectors?: number;
  readonly regionSectors?: number;
  readonly syncMode?: LogSyncMode;
  readonly handleErrors?: boolean;
  readonly keepLog?: boolean;
  readonly legOffsetSectors?: readonly number[];
  readonly recoveryParallelMax?: number;
  readonly readPolicy?: ReadPolicy;
  readonly resume?: boolean;
  /** Called before resume (e.g. to set faults or gates). */
  readonly beforeResume?: (probe: ProbeMirror) => void;
}

export async function probeMirror(options: ProbeMirrorOptions = {}): Promise<ProbeMirror> {
  const legCount = options.legCount ?? 2;
  const lengthSectors = options.lengthSectors ?? 1024;
  const regionSectors = options.regionSectors ?? 64;
  const journal = new Journal();
  const offsets = options.legOffsetSectors ?? Array.from({ length: legCount }, () => 0);
  const memories = offsets.map(
    (offset, i) => new MemoryBlockDevice({ sizeBytes: (lengthSectors + offset) * sectorBytes, name: `l${i}` }),
  );
  const faults = memories.map((memory, i) => new FaultyBlockDevice(memory, { name: `l${i}` }));
  const legs = faults.map((faulty, i) => new ProbeDevice(faulty, { name: `l${i}`, journal }));
  const log = new ProbeLog(
    new CoreDirtyLog({
      regionCount: Math.ceil(lengthSectors / regionSectors),
      regionSizeSectors: regionSectors,
      syncMode: options.syncMode ?? 'nosync',
    }),
    journal,
  );
  const copier = new Copier();
  const messages: string[] = [];
  const result: { events: number } = { events: 0 };
  const mirror = new MirrorSet({
    lengthSectors,
    log,
    legs: legs.map((device, i) => ({ device, tableName: `l${i}`, offsetSectors: offsets[i] ?? 0 })),
    features: { handleErrors: options.handleErrors ?? false, keepLog: options.keepLog ?? false },
    copier,
    onMessage: (_level, message) => messages.push(message),
    messageLimiter: unlimitedMessages(),
    raiseEvent: () => {
      result.events += 1;
    },
    ...(options.recoveryParallelMax === undefined ? {} : { recoveryParallelMax: options.recoveryParallelMax }),
    ...(options.readPolicy === undefined ? {} : { readPolicy: options.readPolicy }),
  });
  const probe: ProbeMirror = Object.assign(result, { mirror, journal, log, legs, faults, memories, copier, messages });
  options.beforeResume?.(probe);
  if (options.resume !== false) await mirror.resume();
  return probe;
}
