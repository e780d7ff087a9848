/**
 * Crash-consistency harness for the disk dirty log (issue 3), used by crash-consistency.test.ts (a few
 * kills, in npm test) and crash-soak.ts (hundreds of kills).
 *
 * One *life*: crash-child.ts runs a MirrorSet with a disk log on three image files (two legs, one log)
 * under a random write load and reports every write it issues (I), every acknowledgement (A) and every
 * data write to a leg (S start / E end). The parent SIGKILLs it at a random moment (sometimes before it
 * is even ready), then checks the files as the crash left them:
 *
 *   1. every region with a leg write in flight (S without E) is dirty in the on-disk log, so a kill
 *      with writes in flight always leaves dirty regions (> 0);
 *   2. every region whose legs differ is dirty in the on-disk log (nothing is lost by trusting it);
 *   3. every dirty region was dirty when the life started or was written to in this life (no region
 *      is resynced that no write or resync could have left different);
 *   4. leg 0 (the default leg, the resync source) holds every acknowledged write (AckModel).
 *
 * Then, in about half the lives (and always after the last), the parent restarts a mirror on the same
 * files and checks: the out-of-sync regions at resume are exactly the log's dirty regions (so the
 * resync count is at most the dirty count and 0 for a clean log); after the resync every leg is
 * byte-identical; every sector read through the mirror is allowed by AckModel; a clean suspend + close
 * leaves every clean bit set. In the other lives the next child resumes on the crashed files itself,
 * so kills also land during a resync.
 *
 * Time order: the parent numbers every report line it reads (the pipe keeps the child's order), so
 * "issued after that write was acknowledged" is a comparison of line numbers.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { FileBlockDevice } from '../../src/block/file-block-device.js';
import { decodeDiskLogHeader, diskLogBitsOffsetBytes, diskLogMagic, diskLogVersion } from '../../src/dirty-log/disk-log-format.js';
import { sectorBytes } from '../../src/limits.js';
import { createMirrorSet } from '../../src/mirror/create-mirror-set.js';
import type { MirrorSet } from '../../src/mirror/mirror-set.js';
import { mulberry32 as prng } from '../../src/block/faulty-block-device.js';
import type { CrashChildOptions } from './crash-child.js';
import { sectorGen } from './crash-stamp.js';
import { waitInSync } from '../helpers/mirror-fixture.js';

const childPath = fileURLToPath(new URL('./crash-child.js', import.meta.url));

export class CrashCheckError extends Error {}

function check(condition: boolean, message: () => string): asserts condition {
  if (!condition) throw new CrashCheckError(message());
}

interface WriteRecord {
  readonly offsetBytes: number;
  readonly lengthBytes: number;
  readonly issueSeq: number;
  /** The line number of its acknowledgement, or of the kill that ended its life unacknowledged. */
  endSeq: number | undefined;
  acked: boolean;
}

/**
 * What each sector may hold. A sector may hold the data of write W (or its initial zeroes, "write 0")
 * unless some acknowledged write covering it was issued after W had ended (acknowledged, or died
 * with its process): the later write must win. Writes in flight together may land in any order, and
 * a write that never got its acknowledgement may or may not have landed, sector by sector (a kill
 * can tear it).
 */
export class AckModel {
  readonly sectorCount: number;
  readonly writes = new Map<number, WriteRecord>();
  /** Per sector: the largest issue line number of an acknowledged write covering it (-1: none). */
  readonly #lastAckedIssue: Float64Array;
  #seq = 0;
  #genNext = 1;

  constructor(sectorCount: number) {
    this.sectorCount = sectorCount;
    this.#lastAckedIssue = new Float64Array(sectorCount).fill(-1);
  }

  get genNext(): number {
    return this.#genNext;
  }

  get ackedCount(): number {
    let n = 0;
    for (const w of this.writes.values()) if (w.acked) n++;
    return n;
  }

  nextSeq(): number {
    return this.#seq++;
  }

  issue(options: { gen: number; offsetBytes: number; lengthBytes: number }): void {
    check(!this.writes.has(options.gen), () => `generation ${options.gen} issued twice`);
    check(options.offsetBytes % sectorBytes === 0 && options.lengthBytes % sectorBytes === 0, () => 'unaligned write');
    this.writes.set(options.gen, {
      offsetBytes: options.offsetBytes,
      lengthBytes: options.lengthBytes,
      issueSeq: this.nextSeq(),
      endSeq: undefined,
      acked: false,
    });
    this.#genNext = Math.max(this.#genNext, options.gen + 1);
  }

  ack(gen: number): void {
    const w = this.writes.get(gen);
    check(w !== undefined && w.endSeq === undefined, () => `acknowledgement of unknown or ended write ${gen}`);
    w.endSeq = this.nextSeq();
    w.acked = true;
    const first = w.offsetBytes / sectorBytes;
    for (let s = first; s < first + w.lengthBytes / sectorBytes; s++) {
      this.#lastAckedIssue[s] = Math.max(this.#lastAckedIssue[s] ?? -1, w.issueSeq);
    }
  }

  /** The process died: its unacknowledged writes can no longer land. Returns how many there were. */
  endLife(): number {
    const seq = this.nextSeq();
    let unacked = 0;
    for (const w of this.writes.values()) {
      if (w.endSeq !== undefined) continue;
      w.endSeq = seq;
      unacked++;
    }
    return unacked;
  }

  /** Checks device content at `offsetBytes`; returns the first few violations. */
  violations(data: Uint8Array, offsetBytes: number): string[] {
    const out: string[] = [];
    for (let at = 0; at < data.length && out.length < 5; at += sectorBytes) {
      const sector = (offsetBytes + at) / sectorBytes;
      const gen = sectorGen({ data, at, sector });
      const last = this.#lastAckedIssue[sector] ?? -1;
      if (gen === null) {
        out.push(`sector ${sector}: torn or corrupt content`);
      } else if (gen === 0) {
        if (last >= 0) out.push(`sector ${sector}: initial zeroes, but an acknowledged write covers it`);
      } else {
        const w = this.writes.get(gen);
        const first = w === undefined ? 0 : w.offsetBytes / sectorBytes;
        if (w === undefined || sector < first || sector >= first + w.lengthBytes / sectorBytes) {
          out.push(`sector ${sector}: holds write ${gen}, which never covered it`);
        } else if ((w.endSeq ?? Infinity) < last) {
          out.push(`sector ${sector}: holds write ${gen}, superseded by an acknowledged write issued after it ended`);
        }
      }
    }
    return out;
  }
}

export interface CrashCampaignOptions {
  readonly kills: number;
  readonly seed: number;
  /** Default 16384 (8 MiB). */
  readonly lengthSectors?: number;
  /** Default 128 (64 KiB regions: 128 regions). */
  readonly regionSectors?: number;
  readonly concurrency?: number;
  readonly writeSectorsMax?: number;
  /** Lazy clean delays to rotate through, one per life; default [0, 20]. */
  readonly lazyCleanMs?: readonly number[];
  /** Kill this long after the child is ready: [min, max] ms; default [5, 250]. */
  readonly killDelayMs?: readonly [number, number];
  /** Chance that the parent restarts and verifies after a kill (else the next child resumes); default 0.5. */
  readonly restartChance?: number;
  readonly onProgress?: (line: string) => void;
}

export interface CrashCampaignResult {
  kills: number;
  /** Kills that hit a leg data write in flight (each left its regions dirty). */
  killsWithLegWritesInFlight: number;
  /** Kills before the child reported ready (during start-up or resume). */
  killsBeforeReady: number;
  /** Dirty regions in the on-disk log after each kill, and the lazy clean delay of that life. */
  dirtyAtKill: number[];
  lazyCleanMsAtKill: number[];
  /** Regions whose legs differed after each kill (each one dirty in the log). */
  differingAtKill: number[];
  /** Out-of-sync regions when the parent restarted (= the dirty count) and regions it recovered. */
  resyncedAtRestart: number[];
  /** The lazy clean delay of the life each parent restart followed. */
  lazyCleanMsAtRestart: number[];
  parentRestarts: number;
  writesIssued: number;
  writesAcked: number;
  regionCount: number;
}

interface Files {
  readonly dir: string;
  readonly legPaths: readonly string[];
  readonly logPath: string;
}

interface Geometry {
  readonly lengthSectors: number;
  readonly regionSectors: number;
  readonly regionCount: number;
}

function regionsOf(options: { offsetBytes: number; lengthBytes: number; regionSectors: number }): number[] {
  const regionBytes = options.regionSectors * sectorBytes;
  const first = Math.floor(options.offsetBytes / regionBytes);
  const last = Math.floor((options.offsetBytes + Math.max(options.lengthBytes, 1) - 1) / regionBytes);
  return Array.from({ length: last - first + 1 }, (_, i) => first + i);
}

async function makeFiles(geometry: Geometry): Promise<Files> {
  const dir = await mkdtemp(join(tmpdir(), 'umirror-crash-'));
  const legPaths = [join(dir, 'leg0.img'), join(dir, 'leg1.img')];
  const logPath = join(dir, 'log.img');
  for (const path of legPaths) {
    await writeFile(path, '');
    await truncate(path, geometry.lengthSectors * sectorBytes);
  }
  await writeFile(logPath, Buffer.alloc(64 * 1024));
  return { dir, legPaths, logPath };
}

async function openMirror(files: Files, geometry: Geometry, sync: 'default' | 'nosync'): Promise<MirrorSet> {
  const legWords = files.legPaths.flatMap((path) => [path, '0']);
  const logWords = sync === 'nosync' ? ['3', files.logPath, String(geometry.regionSectors), 'nosync'] : ['2', files.logPath, String(geometry.regionSectors)];
  const mirror = await createMirrorSet({
    args: ['disk', ...logWords, String(files.legPaths.length), ...legWords],
    lengthSectors: geometry.lengthSectors,
    openDevice: (path) => FileBlockDevice.open(path),
  });
  await mirror.resume();
  return mirror;
}

/** The regions the on-disk log holds dirty (clean bit 0). */
export async function dirtyRegionsOnDisk(logPath: string, regionCount: number): Promise<Set<number>> {
  const bytes = await readFile(logPath);
  const header = decodeDiskLogHeader(bytes);
  check(header.magic === diskLogMagic && header.version === diskLogVersion, () => 'log header lost');
  check(header.nrRegions === regionCount, () => `log header says ${header.nrRegions} regions, not ${regionCount}`);
  const dirty = new Set<number>();
  for (let r = 0; r < regionCount; r++) {
    const byte = bytes[diskLogBitsOffsetBytes + (r >>> 3)] ?? 0;
    if ((byte & (1 << (r & 7))) === 0) dirty.add(r);
  }
  return dirty;
}

async function differingRegions(files: Files, geometry: Geometry): Promise<{ differing: Set<number>; leg0: Buffer }> {
  const [leg0, leg1] = await Promise.all(files.legPaths.map((path) => readFile(path)));
  check(leg0 !== undefined && leg1 !== undefined, () => 'two legs');
  const size = geometry.lengthSectors * sectorBytes;
  const a = Buffer.concat([leg0, Buffer.alloc(Math.max(0, size - leg0.length))]).subarray(0, size);
  const b = Buffer.concat([leg1, Buffer.alloc(Math.max(0, size - leg1.length))]).subarray(0, size);
  const regionBytes = geometry.regionSectors * sectorBytes;
  const differing = new Set<number>();
  for (let r = 0; r < geometry.regionCount; r++) {
    const from = r * regionBytes;
    const to = Math.min(size, from + regionBytes);
    if (!a.subarray(from, to).equals(b.subarray(from, to))) differing.add(r);
  }
  return { differing, leg0: a };
}

interface LifeOutcome {
  readonly ready: boolean;
  /** Regions with a leg data write started and not ended when the child died. */
  readonly inFlightRegions: Set<number>;
  /** Regions written to in this life (writes issued to the mirror). */
  readonly touchedRegions: Set<number>;
  readonly cleanExit: boolean;
}

/** Runs one child life; ends it with SIGKILL (`kill`) or SIGTERM (`clean`) after `delayMs`. */
async function runLife(options: {
  files: Files;
  geometry: Geometry;
  model: AckModel;
  seed: number;
  end: 'kill' | 'kill-early' | 'clean';
  delayMs: number;
  lazyCleanMs: number;
  concurrency: number;
  writeSectorsMax: number;
}): Promise<LifeOutcome> {
  const { model, geometry } = options;
  const childOptions: CrashChildOptions = {
    legPaths: options.files.legPaths,
    logPath: options.files.logPath,
    lengthSectors: geometry.lengthSectors,
    regionSectors: geometry.regionSectors,
    genStart: model.genNext,
    seed: options.seed,
    concurrency: options.concurrency,
    writeSectorsMax: options.writeSectorsMax,
    lazyCleanMs: options.lazyCleanMs,
  };
  const child = spawn(process.execPath, [childPath, JSON.stringify(childOptions)], { stdio: ['ignore', 'pipe', 'pipe'] });
  const inFlight = new Map<string, number>();
  const touchedRegions = new Set<number>();
  let ready = false;
  let cleanDone = false;
  let stderr = '';
  let partial = '';
  let onReady: () => void = () => undefined;
  const readySeen = new Promise<void>((resolve) => {
    onReady = resolve;
  });
  const handle = (line: string): void => {
    const [kind, a = '', b = '', c = ''] = line.split(' ');
    switch (kind) {
      case 'R':
        check(Number(a) === geometry.regionCount, () => `child has ${a} regions`);
        ready = true;
        onReady();
        break;
      case 'I':
        model.issue({ gen: Number(a), offsetBytes: Number(b), lengthBytes: Number(c) });
        // Its regions may be marked dirty (and the mark flushed) before any leg write starts.
        for (const r of regionsOf({ offsetBytes: Number(b), lengthBytes: Number(c), regionSectors: geometry.regionSectors })) {
          touchedRegions.add(r);
        }
        break;
      case 'A':
        model.ack(Number(a));
        break;
      case 'S': {
        const key = `${a} ${b} ${c}`;
        inFlight.set(key, (inFlight.get(key) ?? 0) + 1);
        break;
      }
      case 'E': {
        const key = `${a} ${b} ${c}`;
        const n = inFlight.get(key) ?? 0;
        check(n > 0, () => `leg write ended that never started: ${line}`);
        if (n === 1) inFlight.delete(key);
        else inFlight.set(key, n - 1);
        break;
      }
      case 'C':
        cleanDone = true;
        break;
      default:
        throw new CrashCheckError(`unexpected child line: ${line}`);
    }
  };
  const drained = new Promise<void>((resolve, reject) => {
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      try {
        const lines = (partial + chunk).split('\n');
        partial = lines.pop() ?? '';
        for (const line of lines) if (line !== '') handle(line);
      } catch (err) {
        child.kill('SIGKILL');
        reject(err);
      }
    });
    child.stdout.on('end', () => resolve());
  });
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk: string) => {
    stderr += chunk;
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.on('exit', (code, signal) => resolve({ code, signal }));
  });
  if (options.end === 'kill-early') {
    await Promise.race([sleep(options.delayMs), exited]);
    child.kill('SIGKILL');
  } else {
    await Promise.race([readySeen, exited]);
    check(ready, () => `child died before it was ready: ${stderr}`);
    await Promise.race([sleep(options.delayMs), exited]);
    child.kill(options.end === 'clean' ? 'SIGTERM' : 'SIGKILL');
  }
  const [status] = await Promise.all([exited, drained]);
  if (options.end === 'clean') {
    check(status.code === 0 && cleanDone, () => `clean shutdown failed (exit ${String(status.code)}): ${stderr}`);
  } else {
    check(status.signal === 'SIGKILL', () => `child ended by itself (exit ${String(status.code)}): ${stderr}`);
  }
  const inFlightRegions = new Set<number>();
  for (const key of inFlight.keys()) {
    const [, offset = '0', length = '0'] = key.split(' ');
    for (const r of regionsOf({ offsetBytes: Number(offset), lengthBytes: Number(length), regionSectors: geometry.regionSectors })) {
      inFlightRegions.add(r);
    }
  }
  model.endLife();
  return { ready, inFlightRegions, touchedRegions, cleanExit: status.code === 0 };
}

function setText(set: Iterable<number>): string {
  return `[${[...set].sort((a, b) => a - b).join(',')}]`;
}

/** Checks 1-4 of the banner on the files a crash left. Returns the dirty and differing regions. */
async function checkCrashedFiles(options: {
  files: Files;
  geometry: Geometry;
  model: AckModel;
  life: LifeOutcome;
  dirtyAtLifeStart: ReadonlySet<number>;
}): Promise<{ dirty: Set<number>; differing: Set<number> }> {
  const { files, geometry, life } = options;
  const dirty = await dirtyRegionsOnDisk(files.logPath, geometry.regionCount);
  for (const r of life.inFlightRegions) {
    check(dirty.has(r), () => `region ${r} had a leg write in flight but is clean in the log; dirty ${setText(dirty)}`);
  }
  const { differing, leg0 } = await differingRegions(files, geometry);
  for (const r of differing) {
    check(dirty.has(r), () => `legs differ in region ${r}, which the log holds clean; dirty ${setText(dirty)}`);
  }
  for (const r of dirty) {
    check(
      options.dirtyAtLifeStart.has(r) || life.touchedRegions.has(r),
      () => `region ${r} is dirty although no write touched it in this life`,
    );
  }
  const bad = options.model.violations(leg0, 0);
  check(bad.length === 0, () => `leg 0 lost acknowledged data: ${bad.join('; ')}`);
  return { dirty, differing };
}

/**
 * Restarts a mirror on the files, checks that exactly `dirty` is out of sync, resyncs, reads every
 * sector through the mirror, shuts down cleanly and checks legs identical and log clean.
 * Returns the regions the restart recovered.
 */
async function restartAndVerify(options: { files: Files; geometry: Geometry; model: AckModel; dirty: ReadonlySet<number> }): Promise<number> {
  const { files, geometry, model, dirty } = options;
  const mirror = await openMirror(files, geometry, 'default');
  let recovered: number;
  try {
    check(
      mirror.syncCount() === geometry.regionCount - dirty.size,
      () => `restart: ${mirror.syncCount()}/${geometry.regionCount} in sync, log had ${dirty.size} dirty`,
    );
    for (let r = 0; r < geometry.regionCount; r++) {
      // Resume returns before the first worker pass: nothing is recovered yet.
      check(mirror.regionInSync(r) === !dirty.has(r), () => `restart: region ${r} in sync ${String(mirror.regionInSync(r))}, dirty ${String(dirty.has(r))}`);
    }
    await waitInSync(mirror, 60_000);
    recovered = mirror.stats.recoveredRegionsTotal;
    check(recovered === dirty.size, () => `restart recovered ${recovered} regions, log had ${dirty.size} dirty`);
    const chunkBytes = 1024 * 1024;
    for (let at = 0; at < mirror.sizeBytes; at += chunkBytes) {
      const data = await mirror.read(at, Math.min(chunkBytes, mirror.sizeBytes - at));
      const bad = model.violations(data, at);
      check(bad.length === 0, () => `after restart: ${bad.join('; ')}`);
    }
  } finally {
    await mirror.destroy();
  }
  await checkCleanFiles({ files, geometry });
  return recovered;
}

/** After a clean shutdown: every clean bit set and the legs byte-identical. */
async function checkCleanFiles(options: { files: Files; geometry: Geometry }): Promise<void> {
  const dirty = await dirtyRegionsOnDisk(options.files.logPath, options.geometry.regionCount);
  check(dirty.size === 0, () => `clean shutdown left dirty regions ${setText(dirty)}`);
  const { differing } = await differingRegions(options.files, options.geometry);
  check(differing.size === 0, () => `legs differ after a clean shutdown in ${setText(differing)}`);
}

function geometryOf(options: { lengthSectors?: number; regionSectors?: number }): Geometry {
  const lengthSectors = options.lengthSectors ?? 16384;
  const regionSectors = options.regionSectors ?? 128;
  return { lengthSectors, regionSectors, regionCount: Math.ceil(lengthSectors / regionSectors) };
}

/** Fresh legs (zeroes) and a log initialised clean with `nosync`, then closed cleanly. */
async function freshSet(geometry: Geometry): Promise<Files> {
  const files = await makeFiles(geometry);
  const mirror = await openMirror(files, geometry, 'nosync');
  await mirror.destroy();
  await checkCleanFiles({ files, geometry });
  return files;
}

/** Runs `kills` crash lives on one set of files; throws CrashCheckError on the first violation. */
export async function runCrashCampaign(options: CrashCampaignOptions): Promise<CrashCampaignResult> {
  const geometry = geometryOf(options);
  const random = prng(options.seed);
  const model = new AckModel(geometry.lengthSectors);
  const lazy = options.lazyCleanMs ?? [0, 20];
  const [delayMin, delayMax] = options.killDelayMs ?? [5, 250];
  const restartChance = options.restartChance ?? 0.5;
  const result: CrashCampaignResult = {
    kills: 0,
    killsWithLegWritesInFlight: 0,
    killsBeforeReady: 0,
    dirtyAtKill: [],
    lazyCleanMsAtKill: [],
    differingAtKill: [],
    resyncedAtRestart: [],
    lazyCleanMsAtRestart: [],
    parentRestarts: 0,
    writesIssued: 0,
    writesAcked: 0,
    regionCount: geometry.regionCount,
  };
  const files = await freshSet(geometry);
  try {
    let dirtyAtLifeStart = new Set<number>();
    for (let kill = 0; kill < options.kills; kill++) {
      const early = random() < 0.15;
      const lazyCleanMs = lazy[kill % lazy.length] ?? 0;
      const life = await runLife({
        files,
        geometry,
        model,
        seed: Math.floor(random() * 2 ** 31),
        end: early ? 'kill-early' : 'kill',
        delayMs: early ? Math.floor(random() * 400) : delayMin + Math.floor(random() * (delayMax - delayMin)),
        lazyCleanMs,
        concurrency: options.concurrency ?? 8,
        writeSectorsMax: options.writeSectorsMax ?? 64,
      });
      const { dirty, differing } = await checkCrashedFiles({ files, geometry, model, life, dirtyAtLifeStart });
      result.kills++;
      if (!life.ready) result.killsBeforeReady++;
      if (life.inFlightRegions.size > 0) {
        result.killsWithLegWritesInFlight++;
        check(dirty.size > 0, () => 'a kill with leg writes in flight left no dirty region');
      }
      result.dirtyAtKill.push(dirty.size);
      result.lazyCleanMsAtKill.push(lazyCleanMs);
      result.differingAtKill.push(differing.size);
      const last = kill === options.kills - 1;
      if (last || random() < restartChance) {
        result.resyncedAtRestart.push(await restartAndVerify({ files, geometry, model, dirty }));
        result.lazyCleanMsAtRestart.push(lazyCleanMs);
        result.parentRestarts++;
        dirtyAtLifeStart = new Set();
      } else {
        dirtyAtLifeStart = dirty;
      }
      options.onProgress?.(
        `kill ${kill + 1}/${options.kills}: ${life.ready ? '' : '(before ready) '}dirty ${dirty.size}, legs differ ${differing.size}, ` +
          `leg writes in flight in ${life.inFlightRegions.size} regions, writes acked ${model.ackedCount}/${model.writes.size}`,
      );
    }
    result.writesIssued = model.writes.size;
    result.writesAcked = model.ackedCount;
    return result;
  } finally {
    await rm(files.dir, { recursive: true, force: true });
  }
}

/**
 * A clean shutdown (SIGTERM: stop the load, suspend, close) under load, then a restart: the log is all
 * clean, the legs identical, nothing out of sync at resume and nothing recovered. Returns the writes
 * acknowledged before the shutdown.
 */
export async function runCleanShutdown(options: { seed: number; runMs: number; lazyCleanMs: number }): Promise<number> {
  const geometry = geometryOf({});
  const model = new AckModel(geometry.lengthSectors);
  const files = await freshSet(geometry);
  try {
    const life = await runLife({
      files,
      geometry,
      model,
      seed: options.seed,
      end: 'clean',
      delayMs: options.runMs,
      lazyCleanMs: options.lazyCleanMs,
      concurrency: 8,
      writeSectorsMax: 64,
    });
    check(life.cleanExit && life.inFlightRegions.size === 0, () => 'clean shutdown with leg writes in flight');
    await checkCleanFiles({ files, geometry });
    const mirror = await openMirror(files, geometry, 'default');
    try {
      check(mirror.syncCount() === geometry.regionCount, () => `restart after a clean shutdown: ${mirror.statusInfo()}`);
      await sleep(20);
      check(mirror.stats.recoveredRegionsTotal === 0, () => 'a restart after a clean shutdown recovered regions');
      const data = await mirror.read(0, mirror.sizeBytes);
      const bad = model.violations(data, 0);
      check(bad.length === 0, () => `after a clean shutdown: ${bad.join('; ')}`);
    } finally {
      await mirror.destroy();
    }
    return model.ackedCount;
  } finally {
    await rm(files.dir, { recursive: true, force: true });
  }
}
