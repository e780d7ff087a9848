/**
 * Model-based property test of the mirror engine (fast-check). Random command sequences run against a
 * MappedDevice holding one mirror target over FaultyBlockDevice legs, and against a plain model of the
 * volume (a byte array plus per-byte sets of allowed values where the outcome is legitimately open: a
 * write that failed, or writes that were in flight together).
 *
 * Commands: write / write-zeroes (any offset and length, across region boundaries), read, flush, fail a
 * leg (read, write or flush errors), revive a leg, suspend/resume (plain or noflush), reload the table
 * (noflush suspend, load the same legs with the default leg first, resume: held writes are requeued into
 * the new table), and heal-and-resync (revive every leg, reload, wait for sync).
 *
 * Properties:
 *   - every acknowledged write is read back; no read returns data older than the last acknowledged write
 *     (certain bytes must match exactly, open bytes must hold one of their allowed values);
 *   - a read fails (EIO) only when a fault has been injected since the table was loaded;
 *   - when recovery completes with every leg healed, all legs are byte-identical and match the model;
 *   - every status health letter is explained by a fault injected since the letters were last reset.
 * Runs: UMIRROR_PROPERTY_RUNS (default 60 per configuration) x up to 60 commands.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { FaultyBlockDevice } from '../../src/block/faulty-block-device.js';
import { MemoryBlockDevice } from '../../src/block/memory-block-device.js';
import type { BlockDevice } from '../../src/block/block-device.js';
import { targetBuilder } from '../../src/control/build-target.js';
import { BlockError } from '../../src/errors.js';
import { sectorBytes } from '../../src/limits.js';
import { MirrorSet } from '../../src/mirror/mirror-set.js';
import { MappedDevice } from '../../src/target/mapped-device.js';
import { shared, waitFor } from '../helpers/mirror-fixture.js';

const runs = Number(process.env['UMIRROR_PROPERTY_RUNS'] ?? '60');
const lengthSectors = 256; // 128 KiB volume
const regionSectors = 16; // 8 KiB regions -> 16 regions
const volumeBytes = lengthSectors * sectorBytes;
const regionBytes = regionSectors * sectorBytes;

type FaultKind = 'read' | 'write' | 'flush';
// A failed user flush is a write error to the kernel (D); a failed flush of the log's callback is F.
const lettersOf: Record<FaultKind, string> = { read: 'RS', write: 'DSF', flush: 'FD' };

interface Config {
  readonly legCount: number;
  readonly features: string;
  readonly log: 'core' | 'disk';
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
class Real {
  readonly model = new VolumeModel();
  readonly memories: MemoryBlockDevice[];
  readonly legs: FaultyBlockDevice[];
  readonly logDevice = new MemoryBlockDevice({ sizeBytes: 64 * 1024, name: 'log' });
  readonly device: MappedDevice;
  readonly pending = new Set<PendingWrite>();
  /** Fault kinds active now, per leg. */
  readonly active: Set<FaultKind>[];
  /** Fault kinds injected since the health letters were last reset, per leg. */
  readonly injected: Set<FaultKind>[];
  faultsSinceLoad = false;
  order: number[];
  mirror: MirrorSet | undefined;

  constructor(readonly config: Config) {
    this.memories = Array.from({ length: config.legCount }, (_, i) => new MemoryBlockDevice({ sizeBytes: volumeBytes, name: `l${i}` }));
    this.legs = this.memories.map((m, i) => new FaultyBlockDevice(m, { name: `l${i}`, closeInner: false }));
    this.active = this.legs.map(() => new Set());
    this.injected = this.legs.map(() => new Set());
    this.order = this.legs.map((_, i) => i);
    const open = (name: string): Promise<BlockDevice> => {
      if (name === 'log') return Promise.resolve(shared(this.logDevice));
      const leg = this.legs[Number(name.slice(1))];
      return leg === undefined ? Promise.reject(new Error(`no ${name}`)) : Promise.resolve(shared(leg));
    };
    const build = targetBuilder({ resolver: { open } });
    this.device = new MappedDevice({
      name: 'm',
      buildTarget: async (line, context) => {
        const target = await build(line, context);
        if (target instanceof MirrorSet) this.#adopt(target);
        return target;
      },
    });
  }

  tableText(): string {
    const log = this.config.log === 'core' ? `core 1 ${regionSectors}` : `disk 2 log ${regionSectors}`;
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
    if (kinds.length === 0) device.clearFaults();
    else device.setFaults({ errors: [{ ops: kinds }] });
  }

  /** Starts a write and waits until it settles or is held by the mirror. */
  async write(offsetBytes: number, data: Uint8Array, zero: boolean): Promise<void> {
    const write: PendingWrite = { offsetBytes, data, overlapped: false, settled: false, ok: false };
    for (const other of this.pending) {
      if (offsetBytes < other.offsetBytes + other.data.length && other.offsetBytes < offsetBytes + data.length) {
        other.overlapped = true;
        write.overlapped = true;
      }
    }
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
    const letters = this.mirrorSet().healthLetters();
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

  /** Noflush suspend, load the same legs (default leg first), resume: held writes requeue into it. */
  async reload(): Promise<void> {
    const defaultLeg = this.order[this.mirrorSet().defaultLegIndex];
    assert.ok(defaultLeg !== undefined);
    this.order = [defaultLeg, ...this.order.filter((i) => i !== defaultLeg)];
    await this.device.suspend({ noflush: true });
    await this.device.load(this.tableText());
    await this.device.resume();
    this.faultsSinceLoad = this.active.some((set) => set.size > 0);
    this.injected.forEach((set, i) => {
      set.clear();
      for (const kind of this.active[i] ?? []) set.add(kind);
    });
  }

  async healAndResync(): Promise<void> {
    this.active.forEach((set, i) => {
      set.clear();
      this.setFaults(i);
    });
    await this.reload();
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

type Cmd = fc.AsyncCommand<object, Real>;

const writeCmd = (offsetBytes: number, lengthBytes: number, seed: number, zero: boolean): Cmd => ({
  check: () => true,
  run: async (_m, r) => {
    const data = zero ? new Uint8Array(lengthBytes) : Uint8Array.from({ length: lengthBytes }, (_, i) => (seed + i * 31) & 0xff);
    await r.write(offsetBytes, data, zero);
    r.checkHealth();
  },
  toString: () => `${zero ? 'zero' : 'write'}(${lengthBytes}@${offsetBytes})`,
});

const readCmd = (offsetBytes: number, lengthBytes: number): Cmd => ({
  check: () => true,
  run: async (_m, r) => {
    await r.read(offsetBytes, lengthBytes);
    r.checkHealth();
  },
  toString: () => `read(${lengthBytes}@${offsetBytes})`,
});

const flushCmd = (): Cmd => ({
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
    await waitFor(() => settled || r.mirrorSet().heldWrites > heldBefore || r.device.heldCount > 0, 'flush', 5000);
    r.checkHealth();
  },
  toString: () => 'flush()',
});

const failCmd = (leg: number, kind: FaultKind): Cmd => ({
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

const reviveCmd = (leg: number): Cmd => ({
  check: () => true,
  run: (_m, r) => {
    const index = leg % r.config.legCount;
    r.active[index]?.clear();
    r.setFaults(index);
    return Promise.resolve();
  },
  toString: () => `revive(l${leg})`,
});

const suspendCmd = (noflush: boolean): Cmd => ({
  check: () => true,
  run: async (_m, r) => {
    await r.device.suspend({ noflush });
    await r.device.resume();
    r.checkHealth();
  },
  toString: () => `suspendResume(${noflush ? 'noflush' : 'flush'})`,
});

const reloadCmd = (): Cmd => ({
  check: () => true,
  run: async (_m, r) => {
    await r.reload();
    r.checkHealth();
  },
  toString: () => 'reload()',
});

const healCmd = (): Cmd => ({
  check: () => true,
  run: (_m, r) => r.healAndResync(),
  toString: () => 'healAndResync()',
});

const range = fc
  .tuple(fc.integer({ min: 0, max: volumeBytes - 1 }), fc.integer({ min: 1, max: 3 * regionBytes }))
  .map(([offset, length]) => [offset, Math.min(length, volumeBytes - offset)] as const);

const commands = fc.commands(
  [
    fc.tuple(range, fc.integer({ min: 0, max: 255 })).map(([[o, l], seed]) => writeCmd(o, l, seed, false)),
    fc.tuple(range, fc.integer({ min: 0, max: 255 })).map(([[o, l], seed]) => writeCmd(o, l, seed, false)),
    range.map(([o, l]) => writeCmd(o, l, 0, true)),
    range.map(([o, l]) => readCmd(o, l)),
    range.map(([o, l]) => readCmd(o, l)),
    fc.constant(flushCmd()),
    fc.tuple(fc.nat(8), fc.constantFrom<FaultKind>('read', 'write', 'flush')).map(([leg, kind]) => failCmd(leg, kind)),
    fc.nat(8).map((leg) => reviveCmd(leg)),
    fc.boolean().map((noflush) => suspendCmd(noflush)),
    fc.constant(reloadCmd()),
    fc.constant(healCmd()),
  ],
  { maxCommands: 60 },
);

const configs: Config[] = [
  { legCount: 2, features: '1 handle_errors', log: 'core' },
  { legCount: 3, features: '1 handle_errors', log: 'disk' },
  { legCount: 2, features: '', log: 'core' },
  { legCount: 3, features: '2 handle_errors keep_log', log: 'core' },
];

describe('MirrorSet model', () => {
  for (const config of configs) {
    test(`MirrorSet matches the volume model (${config.legCount} legs, ${config.log} log, features "${config.features}")`, async () => {
      await fc.assert(
        fc.asyncProperty(commands, async (cmds) => {
          const real = new Real(config);
          await real.start();
          try {
            await fc.asyncModelRun(() => ({ model: {}, real }), cmds);
            await real.healAndResync();
          } finally {
            await real.close();
          }
        }),
        { numRuns: runs, endOnFailure: true, includeErrorInReport: true },
      );
    });
  }
});
