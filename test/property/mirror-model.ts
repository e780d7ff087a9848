/**
 * The model-based harness of the mirror engine (fast-check), used by mirror-model.test.ts. A `Real` is a
 * MappedDevice holding one mirror target over FaultyBlockDevice legs (and, for a disk log, a
 * FaultyBlockDevice log device), next to a plain model of the volume: a byte array plus per-byte sets of
 * allowed values where the outcome is legitimately open (a write that failed, or writes in flight
 * together).
 *
 * Commands (commandsFor): write / write-zeroes (any offset and length, up to the whole volume, so far
 * larger than a region), read, flush, fail a leg (read, write or flush errors), slow a leg (latency, so
 * recovery is still running when later commands come), revive a leg, fail the log device (read, write or
 * flush errors; disk logs), revive it, suspend/resume (plain or noflush), reload the table (noflush
 * suspend, load the same legs with the default leg first, resume: held writes requeue into the new
 * table), resync (a reload with the `sync` log argument: every region out of sync, not waited for), and
 * heal-and-resync (revive everything, reload, wait for sync).
 *
 * Properties checked by the commands:
 *   - every acknowledged write is read back; no read returns data older than the last acknowledged write
 *     (certain bytes must match exactly, open bytes must hold one of their allowed values);
 *   - a read or write fails (EIO) only when a fault has been injected since the table was loaded;
 *   - when recovery completes with every leg healed, all legs are byte-identical and match the model;
 *   - every status health letter is explained by a fault injected since the letters were last reset.
 * The model of "held": a write may stay pending until a suspend when the mirror holds it (handle_errors),
 * when the mapped device holds it (suspended), or when it waits at the overlap gate behind a write still
 * pending (overlap-gate.ts: overlapping writes reach the legs one after the other).
 */
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { FaultyBlockDevice, type FaultConfig } from '../../src/block/faulty-block-device.js';
import { MemoryBlockDevice } from '../../src/block/memory-block-device.js';
import type { BlockDevice } from '../../src/block/block-device.js';
import { targetBuilder } from '../../src/control/build-target.js';
import { BlockError } from '../../src/errors.js';
import { sectorBytes } from '../../src/limits.js';
import { MirrorSet, type ReadPolicy } from '../../src/mirror/mirror-set.js';
import { MappedDevice } from '../../src/target/mapped-device.js';
import { shared, waitFor } from '../helpers/mirror-fixture.js';

/**
 * How often a run reached the states the model exists to reach (printed per configuration with
 * UMIRROR_PROPERTY_COVERAGE=1): counts only, never a verdict.
 */
export const coverage = new Map<string, number>();
function cover(label: string): void {
  coverage.set(label, (coverage.get(label) ?? 0) + 1);
}

export const lengthSectors = 256; // 128 KiB volume
export const volumeBytes = lengthSectors * sectorBytes;

export type FaultKind = 'read' | 'write' | 'flush';
// A failed user flush is a write error to the kernel (D); a failed flush of the log's callback is F.
const lettersOf: Record<FaultKind, string> = { read: 'RS', write: 'DSF', flush: 'FD' };

export interface Config {
  readonly legCount: number;
  readonly features: string;
  readonly log: 'core' | 'disk';
  /** Region size in sectors: 8 (32 regions) up to 64 (4 regions). */
  readonly regionSectors: number;
  readonly readPolicy?: ReadPolicy;
  readonly recoveryParallelMax?: number;
}

export function describeConfig(config: Config): string {
  const extras = [
    `${config.regionSectors}-sector regions`,
    ...(config.readPolicy === undefined ? [] : [`${config.readPolicy} reads`]),
    ...(config.recoveryParallelMax === undefined ? [] : [`recovery ${config.recoveryParallelMax}`]),
  ];
  return `${config.legCount} legs, ${config.log} log, features "${config.features}", ${extras.join(', ')}`;
}

/** The plain model of the volume. */
class VolumeModel {
  readonly certain = new Uint8Array(volumeBytes);
  readonly open = new Map<number, Set<number>>();

  /** Marks [offset, offset+data) as possibly holding either its current values or `data`. */
  widen(offsetBytes: number, data: Uint8Array): void {
    for (let i = 0; i < data.length; i++) {
      const at = offsetBytes + i;
      let set = this.open.get(at);
      if (set === undefined) {
        set = new Set([this.certain[at] ?? 0]);
        this.open.set(at, set);
      }
      set.add(data[i] ?? 0);
    }
  }

  settle(offsetBytes: number, data: Uint8Array): void {
    for (let i = 0; i < data.length; i++) {
      this.certain[offsetBytes + i] = data[i] ?? 0;
      this.open.delete(offsetBytes + i);
    }
  }

  check(offsetBytes: number, got: Uint8Array, what: string): void {
    for (let i = 0; i < got.length; i++) {
      const at = offsetBytes + i;
      const value = got[i] ?? 0;
      const set = this.open.get(at);
      if (set === undefined) {
        if (value !== this.certain[at]) {
          assert.fail(`${what}: byte ${at} is ${value}, expected ${this.certain[at]} (acknowledged)`);
        }
      } else if (!set.has(value)) {
        assert.fail(`${what}: byte ${at} is ${value}, allowed ${[...set].join(',')}`);
      }
    }
  }
}

interface PendingWrite {
  readonly offsetBytes: number;
  readonly data: Uint8Array;
  overlapped: boolean;
  settled: boolean;
  ok: boolean;
}

/** The system under test plus the bookkeeping the properties need. */
export class Real {
  readonly model = new VolumeModel();
  readonly memories: MemoryBlockDevice[];
  readonly legs: FaultyBlockDevice[];
  readonly logMemory = new MemoryBlockDevice({ sizeBytes: 64 * 1024, name: 'log' });
  readonly logDevice = new FaultyBlockDevice(this.logMemory, { name: 'log', closeInner: false });
  readonly device: MappedDevice;
  readonly pending = new Set<PendingWrite>();
  /** Fault kinds active now, per leg, and whether the leg is slowed down. */
  readonly active: Set<FaultKind>[];
  readonly slow: boolean[];
  /** Fault kinds injected since the health letters were last reset, per leg. */
  readonly injected: Set<FaultKind>[];
  /** Fault kinds active now on the log device. */
  readonly logActive = new Set<FaultKind>();
  /**
   * The log device failed since the last full resync: writes may have reached the legs without their
   * dirty mark (the kernel's hazard too), so only a full resync makes the legs identical again.
   */
  logDamaged = false;
  faultsSinceLoad = false;
  order: number[];
  mirror: MirrorSet | undefined;

  constructor(readonly config: Config) {
    this.memories = Array.from({ length: config.legCount }, (_, i) => new MemoryBlockDevice({ sizeBytes: volumeBytes, name: `l${i}` }));
    this.legs = this.memories.map((m, i) => new FaultyBlockDevice(m, { name: `l${i}`, closeInner: false }));
    this.active = this.legs.map(() => new Set());
    this.slow = this.legs.map(() => false);
    this.injected = this.legs.map(() => new Set());
    this.order = this.legs.map((_, i) => i);
    const open = (name: string): Promise<BlockDevice> => {
      if (name === 'log') return Promise.resolve(shared(this.logDevice));
      const leg = this.legs[Number(name.slice(1))];
      return leg === undefined ? Promise.reject(new Error(`no ${name}`)) : Promise.resolve(shared(leg));
    };
    const build = targetBuilder({
      resolver: { open },
      ...(config.readPolicy === undefined ? {} : { readPolicy: config.readPolicy }),
      ...(config.recoveryParallelMax === undefined ? {} : { recoveryParallelMax: config.recoveryParallelMax }),
    });
    this.device = new MappedDevice({
      name: 'm',
      buildTarget: async (line, context) => {
        const target = await build(line, context);
        if (target instanceof MirrorSet) this.#adopt(target);
        return target;
      },
    });
  }

  get regionBytes(): number {
    return this.config.regionSectors * sectorBytes;
  }

  tableText(options: { sync?: boolean } = {}): string {
    const region = this.config.regionSectors;
    const sync = options.sync === true;
    const log = this.config.log === 'core' ? `core ${sync ? 2 : 1} ${region}${sync ? ' sync' : ''}` : `disk ${sync ? 3 : 2} log ${region}${sync ? ' sync' : ''}`;
    const legs = this.order.map((i) => `l${i} 0`).join(' ');
    return `0 ${lengthSectors} mirror ${log} ${this.config.legCount} ${legs} ${this.config.features}`.trim();
  }

  #adopt(mirror: MirrorSet): void {
    mirror.onEvent((event) => {
      if (event.kind !== 'sync-complete' || this.mirror !== mirror) return;
      // Sync complete resets every leg's letters: only faults still active can explain letters now.
      this.injected.forEach((set, i) => {
        set.clear();
        for (const kind of this.active[i] ?? []) set.add(kind);
      });
    });
    this.mirror = mirror;
  }

  async start(): Promise<void> {
    await this.device.load(this.tableText());
    await this.device.resume();
  }

  get handleErrors(): boolean {
    return this.config.features.includes('handle_errors');
  }

  mirrorSet(): MirrorSet {
    assert.ok(this.mirror !== undefined);
    return this.mirror;
  }

  setFaults(leg: number): void {
    const kinds = [...(this.active[leg] ?? [])];
    const device = this.legs[leg];
    assert.ok(device !== undefined);
    device.setFaults(faultConfig(kinds, this.slow[leg] === true));
  }

  setLogFaults(): void {
    this.logDevice.setFaults(faultConfig([...this.logActive], false));
  }

  /** Starts a write and waits until it settles or is held (see the banner). */
  async write(offsetBytes: number, data: Uint8Array, zero: boolean): Promise<void> {
    if (data.length > 4 * this.regionBytes) cover('write over more than 4 regions');
    const write: PendingWrite = { offsetBytes, data, overlapped: false, settled: false, ok: false };
    for (const other of this.pending) {
      if (offsetBytes < other.offsetBytes + other.data.length && other.offsetBytes < offsetBytes + data.length) {
        other.overlapped = true;
        write.overlapped = true;
      }
    }
    // It overlaps a write still pending: it waits at the overlap gate until that one completes, which
    // for a held write is at the next suspend.
    const gated = write.overlapped;
    if (gated) cover('write behind a pending overlapping write');
    this.model.widen(offsetBytes, data);
    this.pending.add(write);
    const promise = zero ? this.device.writeZeroes(offsetBytes, data.length) : this.device.write(offsetBytes, data);
    const heldBefore = this.mirrorSet().heldWrites;
    promise.then(
      () => this.#settle(write, true),
      (err: unknown) => {
        assert.ok(err instanceof BlockError, `write failed with ${String(err)}`);
        assert.ok(this.faultsSinceLoad, `write failed with no fault injected: ${err.message}`);
        this.#settle(write, false);
      },
    );
    // Held writes (handle_errors) stay pending until a suspend releases or requeues them. So does a write
    // to a region whose recovery waits for held writes to drain (the kernel's mirror_presuspend: "start
    // recovery waiting for bios in the hold list"): it is delayed behind that recovery until a suspend.
    const mirror = this.mirrorSet();
    await waitFor(
      () =>
        write.settled ||
        gated ||
        mirror.heldWrites > heldBefore ||
        this.device.heldCount > 0 ||
        (mirror.heldWrites > 0 && mirror.recoveryInFlight > 0),
      'write to settle or be held',
      5000,
    );
  }

  #settle(write: PendingWrite, ok: boolean): void {
    write.settled = true;
    write.ok = ok;
    this.pending.delete(write);
    if (ok && !write.overlapped) this.model.settle(write.offsetBytes, write.data);
  }

  async read(offsetBytes: number, lengthBytes: number): Promise<void> {
    try {
      const data = await this.device.read(offsetBytes, lengthBytes);
      this.model.check(offsetBytes, data, `read ${lengthBytes}@${offsetBytes}`);
    } catch (err) {
      if (err instanceof assert.AssertionError) throw err;
      assert.ok(err instanceof BlockError && err.code === 'EIO', `read failed with ${String(err)}`);
      assert.ok(this.faultsSinceLoad, `read failed with no fault injected: ${err.message}`);
    }
  }

  checkHealth(): void {
    const mirror = this.mirrorSet();
    if (mirror.log.health !== 'A') cover(`log health ${mirror.log.health}`);
    const letters = mirror.healthLetters();
    for (const letter of new Set(letters)) if (letter !== 'A') cover(`leg health ${letter}`);
    this.order.forEach((legIndex, position) => {
      const letter = letters[position] ?? '?';
      if (letter === 'A') return;
      const allowed = [...(this.injected[legIndex] ?? [])].map((kind) => lettersOf[kind]).join('');
      assert.ok(allowed.includes(letter), `leg l${legIndex} shows ${letter} but only ${allowed || 'nothing'} was injected`);
    });
  }

  async settleAll(): Promise<void> {
    await waitFor(() => this.pending.size === 0, 'pending writes to settle', 5000);
  }

  /**
   * Noflush suspend, load the same legs (default leg first), resume: held writes requeue into it. With
   * `sync`, the new table's log starts with every region out of sync (a full resync).
   */
  async reload(options: { sync?: boolean } = {}): Promise<void> {
    const defaultLeg = this.order[this.mirrorSet().defaultLegIndex];
    assert.ok(defaultLeg !== undefined);
    this.order = [defaultLeg, ...this.order.filter((i) => i !== defaultLeg)];
    const mirror = this.mirrorSet();
    if (mirror.syncCount() < mirror.regionCount) cover(`reload of a ${this.config.log}-log set with out-of-sync regions`);
    if (this.logActive.size > 0) cover('reload with a failing log device');
    await this.device.suspend({ noflush: true });
    await this.device.load(this.tableText(options));
    await this.device.resume();
    this.faultsSinceLoad = this.active.some((set) => set.size > 0) || this.logActive.size > 0;
    if (options.sync === true && this.logActive.size === 0) this.logDamaged = false;
    this.injected.forEach((set, i) => {
      set.clear();
      for (const kind of this.active[i] ?? []) set.add(kind);
    });
  }

  async healAndResync(): Promise<void> {
    this.active.forEach((set, i) => {
      set.clear();
      this.slow[i] = false;
      this.setFaults(i);
    });
    this.logActive.clear();
    this.setLogFaults();
    await this.reload({ sync: this.logDamaged });
    await this.settleAll();
    const mirror = this.mirrorSet();
    await waitFor(() => mirror.inSync && mirror.syncCount() === mirror.regionCount, `sync (${mirror.statusInfo()})`, 10_000);
    const first = await this.memories[0]?.read(0, volumeBytes);
    assert.ok(first !== undefined);
    for (const memory of this.memories) {
      const data = await memory.read(0, volumeBytes);
      assert.ok(data.equals(first), `leg ${memory.name} differs from l0 after recovery`);
    }
    this.model.check(0, first, 'legs after recovery');
    // Every byte is now what the legs hold: open outcomes are decided.
    this.model.settle(0, first);
    assert.equal(mirror.healthLetters(), 'A'.repeat(this.config.legCount));
  }

  async close(): Promise<void> {
    if (this.device.suspended) await this.device.resume();
    await this.device.suspend();
    await this.settleAll();
    await this.device.remove();
  }
}

function faultConfig(kinds: readonly FaultKind[], slow: boolean): FaultConfig {
  return {
    ...(kinds.length === 0 ? {} : { errors: [{ ops: kinds }] }),
    ...(slow ? { latencyMs: { read: 1, write: 1, flush: 1 } } : {}),
  };
}

export type Cmd = fc.AsyncCommand<object, Real>;

export const writeCmd = (offsetBytes: number, lengthBytes: number, seed: number, zero: boolean): Cmd => ({
  check: () => true,
  run: async (_m, r) => {
    const data = zero ? new Uint8Array(lengthBytes) : Uint8Array.from({ length: lengthBytes }, (_, i) => (seed + i * 31) & 0xff);
    await r.write(offsetBytes, data, zero);
    r.checkHealth();
  },
  toString: () => `${zero ? 'zero' : 'write'}(${lengthBytes}@${offsetBytes})`,
});

export const readCmd = (offsetBytes: number, lengthBytes: number): Cmd => ({
  check: () => true,
  run: async (_m, r) => {
    await r.read(offsetBytes, lengthBytes);
    r.checkHealth();
  },
  toString: () => `read(${lengthBytes}@${offsetBytes})`,
});

export const flushCmd = (): Cmd => ({
  check: () => true,
  run: async (_m, r) => {
    const heldBefore = r.mirrorSet().heldWrites;
    let settled = false;
    r.device.flush().then(
      () => (settled = true),
      (err: unknown) => {
        assert.ok(err instanceof BlockError && r.faultsSinceLoad, `flush failed: ${String(err)}`);
        settled = true;
      },
    );
    if (r.active.some((set) => set.has('flush'))) cover('client flush with a leg failing flushes');
    await waitFor(() => settled || r.mirrorSet().heldWrites > heldBefore || r.device.heldCount > 0, 'flush', 5000);
    r.checkHealth();
  },
  toString: () => 'flush()',
});

export const failCmd = (leg: number, kind: FaultKind): Cmd => ({
  check: () => true,
  run: (_m, r) => {
    const index = leg % r.config.legCount;
    r.active[index]?.add(kind);
    r.injected[index]?.add(kind);
    r.faultsSinceLoad = true;
    r.setFaults(index);
    return Promise.resolve();
  },
  toString: () => `fail(l${leg}, ${kind})`,
});

export const slowCmd = (leg: number): Cmd => ({
  check: () => true,
  run: (_m, r) => {
    const index = leg % r.config.legCount;
    r.slow[index] = true;
    r.setFaults(index);
    return Promise.resolve();
  },
  toString: () => `slow(l${leg})`,
});

export const reviveCmd = (leg: number): Cmd => ({
  check: () => true,
  run: (_m, r) => {
    const index = leg % r.config.legCount;
    r.active[index]?.clear();
    r.slow[index] = false;
    r.setFaults(index);
    return Promise.resolve();
  },
  toString: () => `revive(l${leg})`,
});

export const failLogCmd = (kind: FaultKind): Cmd => ({
  check: () => true,
  run: (_m, r) => {
    if (r.config.log !== 'disk') return Promise.resolve();
    r.logActive.add(kind);
    r.logDamaged = true;
    r.faultsSinceLoad = true;
    r.setLogFaults();
    return Promise.resolve();
  },
  toString: () => `failLog(${kind})`,
});

export const reviveLogCmd = (): Cmd => ({
  check: () => true,
  run: (_m, r) => {
    r.logActive.clear();
    r.setLogFaults();
    return Promise.resolve();
  },
  toString: () => 'reviveLog()',
});

export const suspendCmd = (noflush: boolean): Cmd => ({
  check: () => true,
  run: async (_m, r) => {
    const mirror = r.mirrorSet();
    if (mirror.syncCount() < mirror.regionCount) cover(`suspend of a ${r.config.log}-log set with out-of-sync regions`);
    if (mirror.recoveryInFlight > 0) cover('suspend with recovery in flight');
    if (r.logActive.size > 0) cover('suspend with a failing log device');
    await r.device.suspend({ noflush });
    await r.device.resume();
    r.checkHealth();
  },
  toString: () => `suspendResume(${noflush ? 'noflush' : 'flush'})`,
});

export const reloadCmd = (): Cmd => ({
  check: () => true,
  run: async (_m, r) => {
    await r.reload();
    r.checkHealth();
  },
  toString: () => 'reload()',
});

export const resyncCmd = (): Cmd => ({
  check: () => true,
  run: async (_m, r) => {
    await r.reload({ sync: true });
    r.checkHealth();
  },
  toString: () => 'resync()',
});

export const healCmd = (): Cmd => ({
  check: () => true,
  run: (_m, r) => r.healAndResync(),
  toString: () => 'healAndResync()',
});

/** The command arbitrary for one configuration (ranges scale with its region size). */
export function commandsFor(config: Config): fc.Arbitrary<Iterable<Cmd>> {
  const regionBytes = config.regionSectors * sectorBytes;
  const range = (maxLength: number): fc.Arbitrary<readonly [number, number]> =>
    fc
      .tuple(fc.integer({ min: 0, max: volumeBytes - 1 }), fc.integer({ min: 1, max: maxLength }))
      .map(([offset, length]) => [offset, Math.min(length, volumeBytes - offset)] as const);
  const small = range(3 * regionBytes);
  const large = range(volumeBytes);
  const leg = fc.nat(8);
  const kind = fc.constantFrom<FaultKind>('read', 'write', 'flush');
  return fc.commands(
    [
      fc.tuple(small, fc.integer({ min: 0, max: 255 })).map(([[o, l], seed]) => writeCmd(o, l, seed, false)),
      fc.tuple(small, fc.integer({ min: 0, max: 255 })).map(([[o, l], seed]) => writeCmd(o, l, seed, false)),
      fc.tuple(large, fc.integer({ min: 0, max: 255 })).map(([[o, l], seed]) => writeCmd(o, l, seed, false)),
      small.map(([o, l]) => writeCmd(o, l, 0, true)),
      small.map(([o, l]) => readCmd(o, l)),
      large.map(([o, l]) => readCmd(o, l)),
      fc.constant(flushCmd()),
      fc.constant(flushCmd()),
      fc.tuple(leg, kind).map(([l, k]) => failCmd(l, k)),
      leg.map((l) => failCmd(l, 'flush')),
      leg.map((l) => slowCmd(l)),
      leg.map((l) => reviveCmd(l)),
      ...(config.log === 'disk' ? [kind.map((k) => failLogCmd(k)), fc.constant(reviveLogCmd())] : []),
      fc.boolean().map((noflush) => suspendCmd(noflush)),
      fc.constant(reloadCmd()),
      fc.constant(resyncCmd()),
      fc.constant(healCmd()),
    ],
    { maxCommands: 60 },
  );
}
