/**
 * One named test per invariant from the kernel's dm-raid1 history (../shared/seed): each fix in that
 * history is a bug the kernel once had; each test here fails if umirror has it.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { BlockDevice } from '../../src/block/block-device.js';
import { MemoryBlockDevice } from '../../src/block/memory-block-device.js';
import { targetBuilder } from '../../src/control/build-target.js';
import { Copier } from '../../src/copy/copier.js';
import { CoreDirtyLog } from '../../src/dirty-log/core-dirty-log.js';
import { TableError } from '../../src/errors.js';
import { sectorBytes } from '../../src/limits.js';
import { createMirrorSet } from '../../src/mirror/create-mirror-set.js';
import type { MirrorSet } from '../../src/mirror/mirror-set.js';
import { RegionHash } from '../../src/region/region-hash.js';
import { MappedDevice } from '../../src/target/mapped-device.js';
import { pattern } from '../conformance/block-device.suite.js';
import { mirrorFixture, shared, waitFor, waitInSync } from '../helpers/mirror-fixture.js';
import { ProbeDevice, type JournalEntry } from '../helpers/probe-device.js';
import { probeMirror } from '../helpers/probe-mirror.js';

/** Memory devices by table name, each handed out as a ProbeDevice (whose close leaves the memory alone). */
function deviceSet(sizes: Record<string, number>): { probes: Map<string, ProbeDevice>; open: (name: string) => Promise<BlockDevice> } {
  const probes = new Map<string, ProbeDevice>();
  for (const [name, sizeBytes] of Object.entries(sizes)) {
    probes.set(name, new ProbeDevice(new MemoryBlockDevice({ sizeBytes, name }), { name }));
  }
  const open = (name: string): Promise<BlockDevice> => {
    const probe = probes.get(name);
    return probe === undefined ? Promise.reject(new Error(`no device ${name}`)) : Promise.resolve(probe);
  };
  return { probes, open };
}

function get<T>(map: Map<string, T>, name: string): T {
  const value = map.get(name);
  assert.ok(value !== undefined, `no ${name}`);
  return value;
}

/** Bit `regionIndex` of a disk log's clean bitset (byte 1024 + i/8, LSB first). */
async function diskLogCleanBit(device: BlockDevice, regionIndex: number): Promise<boolean> {
  const byte = (await device.read(1024 + Math.floor(regionIndex / 8), 1))[0] ?? 0;
  return (byte & (1 << regionIndex % 8)) !== 0;
}

function settled<T>(promise: Promise<T>): Promise<{ ok: true; value: T } | { ok: false; error: unknown }> {
  return promise.then(
    (value) => ({ ok: true as const, value }),
    (error: unknown) => ({ ok: false as const, error }),
  );
}

function errnoOf(result: { ok: boolean; error?: unknown }): string | undefined {
  if (result.ok) return undefined;
  const error = result.error;
  return typeof error === 'object' && error !== null && 'code' in error ? String(error.code) : String(error);
}

describe('seed regressions (dm-raid1 history)', () => {
  test('RegionHash: interrupted initial sync must not mark NOSYNC regions clean', async () => {
    // Disk log, initial sync stuck at region 0; write to region 10 (NOSYNC); suspend before recovery
    // reaches it. Expected: log says region 10 not in sync, its on-disk clean bit stays 0, and the next
    // activation resyncs it.
    const { probes, open } = deviceSet({ l0: 2048 * sectorBytes, l1: 2048 * sectorBytes, log: 1024 * 1024 });
    const args = 'disk 2 log 128 2 l0 0 l1 0 1 handle_errors'.split(' ');
    const l0 = get(probes, 'l0');
    const log = get(probes, 'log');
    const first = await createMirrorSet({ args, lengthSectors: 2048, openDevice: open, recoveryParallelMax: 1 });
    l0.hold({ ops: ['read'], range: { offsetBytes: 0, lengthBytes: 128 * sectorBytes } });
    await first.resume();
    await waitFor(() => l0.waiting === 1, 'recovery of region 0 to start');
    const data = pattern(4096, 10);
    await first.write(10 * 128 * sectorBytes, data);
    assert.equal(first.regionInSync(10), false);
    const suspending = first.suspend();
    setImmediate(() => l0.release());
    await suspending;
    assert.equal(first.regionInSync(0), true, 'region 0 finished its recovery');
    assert.equal(first.regionInSync(10), false, 'region 10 is still out of sync');
    assert.equal(await diskLogCleanBit(log, 0), true);
    assert.equal(await diskLogCleanBit(log, 10), false, 'the NOSYNC region was not written clean to disk');
    await first.destroy();

    const second = await createMirrorSet({ args, lengthSectors: 2048, openDevice: open, recoveryParallelMax: 1 });
    l0.hold({ ops: ['read'] });
    await second.resume();
    assert.equal(second.syncCount(), 1, 'only region 0 is trusted after reactivation');
    assert.equal(second.regionInSync(10), false);
    l0.release();
    await waitInSync(second);
    const l1 = get(probes, 'l1');
    assert.deepEqual(await l1.read(10 * 128 * sectorBytes, data.length), data, 'region 10 was resynced');
    await second.destroy();
  });

  test('RegionHash: a region on the clean list that gets a new write is not cleared', async () => {
    // rh_dec puts the region on the clean list, rh_inc comes before the worker's update_states.
    // Expected: update_states does not clear it; the log keeps it dirty until the new write completes.
    const log = new CoreDirtyLog({ regionCount: 4, regionSizeSectors: 128, syncMode: 'nosync' });
    const rh = new RegionHash<never>({
      log,
      regionCount: 4,
      recoveryParallelMax: 1,
      callbacks: { dispatchDelayed: () => undefined, wakeup: () => undefined, recoveryIdle: () => undefined },
    });
    rh.inc(2);
    rh.dec(2);
    assert.equal(rh.peek(2)?.list, 'clean');
    rh.inc(2);
    await rh.updateStates({ errorsHandled: true });
    assert.equal(log.isClean(2), false, 'the region with a new write stays dirty');
    assert.equal(rh.getState(2), 'DIRTY');
    rh.dec(2);
    await rh.updateStates({ errorsHandled: true });
    assert.equal(log.isClean(2), true);
  });

  test('MirrorSet: the log is flushed before data goes out, once per batch', async () => {
    // 16 concurrent writes to 16 clean regions. Expected: every leg write starts after a completed log
    // flush that followed its region's mark; exactly one flush covers all 16 marks (group commit).
    const p = await probeMirror({ lengthSectors: 1024, regionSectors: 64 });
    await waitInSync(p.mirror);
    p.log.flushDelayMs = 5;
    const start = p.journal.entries.length;
    const regionBytes = 64 * sectorBytes;
    await Promise.all(Array.from({ length: 16 }, (_, r) => p.mirror.write(r * regionBytes + 512, pattern(1024, r))));
    const entries = p.journal.entries.slice(start);
    const marked = new Set<number>();
    const covering: Set<number>[] = [];
    let inFlushCover: Set<number> | undefined;
    const durable = new Set<number>();
    let legWrites = 0;
    for (const e of entries) {
      if (e.what === 'mark' && e.regionIndex !== undefined) marked.add(e.regionIndex);
      else if (e.what === 'flush-start') {
        inFlushCover = new Set(marked);
        if (marked.size > 0) covering.push(inFlushCover);
        marked.clear();
      } else if (e.what === 'flush-end') {
        for (const r of inFlushCover ?? []) durable.add(r);
        inFlushCover = undefined;
      } else if (e.what === 'start' && e.op === 'write') {
        legWrites += 1;
        const r = Math.floor((e.offsetBytes ?? -1) / regionBytes);
        assert.ok(durable.has(r), `leg write to region ${r} went out before its mark was flushed (${e.who})`);
      }
    }
    assert.equal(legWrites, 32, 'each write went to both legs');
    assert.equal(covering.length, 1, 'one log flush for the whole batch');
    assert.equal(covering[0]?.size, 16);
    await p.mirror.destroy();
  });

  for (const variant of ['handle_errors', 'handle_errors keep_log', 'none'] as const) {
    test(`MirrorSet: a failed log flush fails the writes (${variant})`, async () => {
      // The log flush fails. Expected: with handle_errors the write is held (released with EIO by a
      // suspend), with keep_log it fails with EIO at once; either way no data reaches a leg. Without
      // handle_errors the kernel issues the write anyway.
      const p = await probeMirror({
        handleErrors: variant !== 'none',
        keepLog: variant === 'handle_errors keep_log',
      });
      await waitInSync(p.mirror);
      p.log.failFlush = true;
      const before = p.journal.entries.length;
      const offsetBytes = 3 * 64 * sectorBytes;
      const result = settled(p.mirror.write(offsetBytes, pattern(4096, 1)));
      const legWrites = (): JournalEntry[] => p.journal.entries.slice(before).filter((e) => e.what === 'start' && e.op === 'write');
      if (variant === 'handle_errors') {
        await waitFor(() => p.mirror.heldWrites === 1, 'the write to be held');
        assert.equal(legWrites().length, 0);
        await p.mirror.suspend();
        assert.equal(errnoOf(await result), 'EIO');
      } else if (variant === 'handle_errors keep_log') {
        assert.equal(errnoOf(await result), 'EIO');
      } else {
        assert.equal((await result).ok, true);
      }
      const expectWritten = variant === 'none';
      assert.equal(legWrites().length, expectWritten ? 2 : 0);
      for (const memory of p.memories) {
        const onLeg = await memory.read(offsetBytes, 4096);
        assert.deepEqual(onLeg, expectWritten ? pattern(4096, 1) : Buffer.alloc(4096));
      }
      assert.ok(p.mirror.stats.logFlushFailuresTotal >= 1);
      await p.mirror.destroy();
    });
  }

  for (const handleErrors of [true, false]) {
    test(`MirrorSet: failed recovery leaves the region out of sync (handle_errors=${String(handleErrors)})`, async () => {
      // Leg l1 fails every write from creation. Expected with handle_errors: every recovery fails,
      // 0/16 in sync, health AS, one event. Without it: errors ignored, 16/16 AA (the kernel's H).
      const p = await probeMirror({
        syncMode: 'default',
        handleErrors,
        beforeResume: (probe) => probe.faults[1]?.setFaults({ errors: [{ ops: ['write'] }] }),
      });
      const regionCount = p.mirror.regionCount;
      const attempts = (): number => p.messages.filter((m) => m === 'Write error during recovery (error = 0x1)').length;
      await waitFor(() => attempts() === regionCount && p.mirror.recoveryInFlight === 0, 'every region to be tried');
      await p.mirror.suspend();
      if (handleErrors) {
        assert.equal(p.mirror.syncCount(), 0);
        assert.equal(p.mirror.healthLetters(), 'AS');
        assert.equal(p.events, 1, 'one event for the first sync error');
        for (let r = 0; r < regionCount; r++) assert.equal(p.mirror.regionInSync(r), false);
      } else {
        assert.equal(p.mirror.syncCount(), regionCount);
        assert.equal(p.mirror.healthLetters(), 'AA');
        assert.equal(p.events, 1, 'only sync complete raises an event');
      }
      await p.mirror.destroy();
    });
  }

  test('MirrorSet: a failed source read during recovery keeps the region out of sync even without handle_errors', async () => {
    // Primary l0 fails reads from creation, no handle_errors. Expected: nothing copied, nothing in sync
    // (our documented difference: the kernel would call the region in sync).
    const p = await probeMirror({
      syncMode: 'default',
      beforeResume: (probe) => probe.faults[0]?.setFaults({ errors: [{ ops: ['read'] }] }),
    });
    const regionCount = p.mirror.regionCount;
    const attempts = (): number => p.messages.filter((m) => m === 'Unable to read primary mirror during recovery').length;
    await waitFor(() => attempts() === regionCount && p.mirror.recoveryInFlight === 0, 'every region to be tried');
    assert.equal(p.mirror.syncCount(), 0);
    assert.equal(p.mirror.healthLetters(), 'SA');
    await p.mirror.destroy();
  });

  test('MirrorSet: the default leg does not change while out of sync', async () => {
    // Resync stuck at the last region; a write to an in-sync region fails on the default leg l0.
    // Expected: l0 shows D but stays the default leg (recovery keeps copying from it); once in sync a
    // failure of the default leg does move it (contrast).
    const p = await probeMirror({
      syncMode: 'default',
      handleErrors: true,
      recoveryParallelMax: 1,
      beforeResume: (probe) => probe.legs[0]?.hold({ ops: ['read'], range: { offsetBytes: 15 * 64 * sectorBytes, lengthBytes: 1 } }),
    });
    const l0 = p.legs[0];
    assert.ok(l0 !== undefined);
    await waitFor(() => l0.waiting === 1, 'recovery of the last region to start');
    assert.equal(p.mirror.syncCount(), 15);
    p.faults[0]?.setFaults({ errors: [{ ops: ['write'] }] });
    const result = settled(p.mirror.write(0, pattern(512, 2)));
    await waitFor(() => p.mirror.heldWrites === 1, 'the failed write to be held');
    assert.equal(p.mirror.healthLetters(), 'DA');
    assert.equal(p.mirror.defaultLegIndex, 0, 'the default leg stays while out of sync');
    assert.ok(p.messages.includes('Primary mirror (l0) failed while out-of-sync: Reads may fail.'));
    l0.release();
    await waitFor(() => p.mirror.recoveryInFlight === 0 && p.mirror.syncCount() === 15, 'the last region to be recovered');
    assert.equal(p.mirror.regionInSync(15), true, 'recovery still copied from l0');
    assert.equal(p.mirror.defaultLegIndex, 0);
    await p.mirror.suspend();
    assert.equal(errnoOf(await result), 'EIO');
    await p.mirror.destroy();

    const q = await probeMirror({ handleErrors: true });
    await waitInSync(q.mirror);
    q.faults[0]?.setFaults({ errors: [{ ops: ['write'] }] });
    const held = settled(q.mirror.write(0, pattern(512, 3)));
    await waitFor(() => q.mirror.heldWrites === 1, 'the failed write to be held');
    assert.equal(q.mirror.defaultLegIndex, 1, 'in sync, the default moves off the failed leg');
    await q.mirror.suspend();
    assert.equal(errnoOf(await held), 'EIO');
    await q.mirror.destroy();
  });

  test('MirrorSet: no I/O spans a region (split_io)', async () => {
    // 3 legs, 4 KiB regions, resync plus unaligned writes, zeroes, trims and reads across many regions.
    // Expected: every request a leg sees lies inside one region; data reads back.
    const regionSectors = 8;
    const regionBytes = regionSectors * sectorBytes;
    const p = await probeMirror({ legCount: 3, lengthSectors: 512, regionSectors, syncMode: 'default' });
    const model = Buffer.alloc(p.mirror.sizeBytes);
    for (let i = 0; i < 20; i++) {
      const offsetBytes = (i * 7919) % (p.mirror.sizeBytes - 20_000);
      const data = pattern(3 * regionBytes + 333 + i, i);
      await p.mirror.write(offsetBytes, data);
      data.copy(model, offsetBytes);
    }
    await p.mirror.writeZeroes(regionBytes - 100, 2 * regionBytes);
    model.fill(0, regionBytes - 100, 3 * regionBytes - 100);
    await waitInSync(p.mirror);
    assert.deepEqual(await p.mirror.read(0, p.mirror.sizeBytes), model);
    let checked = 0;
    for (const e of p.journal.entries) {
      if (e.what !== 'start' || e.op === 'flush') continue;
      const first = Math.floor((e.offsetBytes ?? 0) / regionBytes);
      const last = Math.floor(((e.offsetBytes ?? 0) + (e.lengthBytes ?? 1) - 1) / regionBytes);
      assert.equal(first, last, `${e.who} ${e.op ?? ''} ${e.offsetBytes ?? 0}+${e.lengthBytes ?? 0} spans regions`);
      checked += 1;
    }
    assert.ok(checked > 100, `checked ${checked} leg requests`);
    await p.mirror.trim(0, 5 * regionBytes);
    for (const e of p.journal.entries.filter((x) => x.op === 'trim')) {
      assert.equal(Math.floor((e.offsetBytes ?? 0) / regionBytes), Math.floor(((e.offsetBytes ?? 0) + (e.lengthBytes ?? 1) - 1) / regionBytes));
    }
    await p.mirror.destroy();
  });

  test('MappedDevice + MirrorSet: target offsets (start > 0) are subtracted exactly once', async () => {
    // Table "0 1024 linear lin 0" + "1024 2048 mirror ... l0 100 l1 300". Expected: data written at
    // device sector 1024 + x lands at leg sector 100 + x (l0) and 300 + x (l1), and nowhere else.
    const { probes, open } = deviceSet({
      lin: 1024 * sectorBytes,
      l0: (2048 + 100) * sectorBytes,
      l1: (2048 + 300) * sectorBytes,
    });
    const md = new MappedDevice({ name: 'm', buildTarget: targetBuilder({ resolver: { open } }) });
    await md.load('0 1024 linear lin 0\n1024 2048 mirror core 2 128 nosync 2 l0 100 l1 300');
    await md.resume();
    const expectedLeg = Buffer.alloc(2048 * sectorBytes);
    const expectedLin = Buffer.alloc(1024 * sectorBytes);
    const writes = [
      { at: 1024 * sectorBytes + 5000, data: pattern(70_000, 1) },
      { at: 1000 * sectorBytes, data: pattern(48 * sectorBytes, 2) }, // straddles linear and mirror
      { at: 3072 * sectorBytes - 700, data: pattern(700, 3) }, // the very end
    ];
    for (const { at, data } of writes) {
      await md.write(at, data);
      for (let i = 0; i < data.length; i++) {
        const byte = data[i] ?? 0;
        const position = at + i;
        if (position < 1024 * sectorBytes) expectedLin[position] = byte;
        else expectedLeg[position - 1024 * sectorBytes] = byte;
      }
    }
    assert.deepEqual(await get(probes, 'lin').read(0, expectedLin.length), expectedLin);
    for (const [name, offsetSectors] of [['l0', 100], ['l1', 300]] as const) {
      const leg = get(probes, name);
      assert.deepEqual(await leg.read(0, offsetSectors * sectorBytes), Buffer.alloc(offsetSectors * sectorBytes), `${name} before the offset`);
      assert.deepEqual(await leg.read(offsetSectors * sectorBytes, expectedLeg.length), expectedLeg, `${name} data`);
    }
    assert.deepEqual(await md.read(1024 * sectorBytes, expectedLeg.length), expectedLeg, 'reads through the table');
    assert.deepEqual(await md.read(0, expectedLin.length), expectedLin);
    await md.close();
  });

  test('MirrorSet: recovery I/O is drained before suspend completes', async () => {
    // Slow legs (20 ms per write) under a full resync; suspend in the middle. Expected: when suspend
    // resolves no leg request is in flight, and no copier I/O starts afterwards.
    const p = await probeMirror({
      syncMode: 'default',
      recoveryParallelMax: 4,
      beforeResume: (probe) => {
        for (const f of probe.faults) f.setFaults({ latencyMs: { write: 20, read: 5 } });
      },
    });
    await waitFor(() => p.mirror.recoveryInFlight > 0 && (p.legs[1]?.inFlight ?? 0) > 0, 'recovery I/O in flight');
    await p.mirror.suspend();
    const inFlight = (): number => p.legs.reduce((sum, leg) => sum + leg.inFlight, 0);
    assert.equal(inFlight(), 0, 'no leg I/O in flight after suspend');
    assert.equal(p.mirror.recoveryInFlight, 0);
    const count = p.journal.entries.length;
    await p.mirror.idle();
    assert.equal(inFlight(), 0);
    assert.equal(p.journal.entries.length, count, 'nothing started after suspend');
    assert.ok(p.mirror.syncCount() < p.mirror.regionCount, 'the suspend interrupted the resync');
    await p.mirror.resume();
    await waitInSync(p.mirror);
    await p.mirror.destroy();
  });

  test('MirrorSet: clean-region clears are flushed at suspend so a clean deactivation needs no resync', async () => {
    // Disk log: resync, write to several regions, suspend at once, reactivate on the same log.
    // Expected: every clean bit set on disk; the new set is 16/16 at resume and copies nothing.
    const { probes, open } = deviceSet({ l0: 2048 * sectorBytes, l1: 2048 * sectorBytes, log: 1024 * 1024 });
    const args = 'disk 2 log 128 2 l0 0 l1 0'.split(' ');
    const first = await createMirrorSet({ args, lengthSectors: 2048, openDevice: open });
    await first.resume();
    await waitInSync(first);
    await Promise.all([0, 3, 7, 15].map((r) => first.write(r * 128 * sectorBytes + 17, pattern(9000, r))));
    await first.suspend();
    const log = get(probes, 'log');
    for (let r = 0; r < 16; r++) assert.equal(await diskLogCleanBit(log, r), true, `region ${r} clean on disk`);
    await first.destroy();

    const copier = new Copier();
    const second = await createMirrorSet({ args, lengthSectors: 2048, openDevice: open, copier });
    await second.resume();
    assert.equal(second.syncCount(), second.regionCount, 'in sync immediately after resume');
    await waitInSync(second);
    assert.equal(copier.jobsTotal, 0, 'no recovery copy happened');
    await second.destroy();
  });

  test('Copier via MirrorSet: the copier reports every target\'s error', async () => {
    // 3 legs; l1 and l2 fail every write from creation; handle_errors. Expected: both marked S (ASS),
    // the recovery error names both targets (0x3), nothing in sync.
    const p = await probeMirror({
      legCount: 3,
      syncMode: 'default',
      handleErrors: true,
      beforeResume: (probe) => {
        probe.faults[1]?.setFaults({ errors: [{ ops: ['write'] }] });
        probe.faults[2]?.setFaults({ errors: [{ ops: ['write'] }] });
      },
    });
    await waitFor(() => p.messages.includes('Write error during recovery (error = 0x3)'), 'the recovery error');
    await waitFor(() => p.mirror.recoveryInFlight === 0 && p.messages.filter((m) => m.startsWith('Write error during recovery')).length === p.mirror.regionCount, 'every region tried');
    assert.equal(p.mirror.healthLetters(), 'ASS');
    assert.equal(p.mirror.syncCount(), 0);
    assert.ok(p.messages.every((m) => m !== 'Write error during recovery (error = 0x1)' && m !== 'Write error during recovery (error = 0x2)'), 'no error was dropped');
    await p.mirror.destroy();
  });

  test('MirrorWorker: one worker per mirror set (a log that lives on another mirror set must not deadlock)', async () => {
    // Mirror B's disk log lives on mirror A. Expected: concurrent writes to B complete and land.
    const a = await mirrorFixture({ lengthSectors: 256, regionSectors: 8, log: 'core 2 8 nosync' });
    await waitInSync(a.mirror);
    const { probes, open } = deviceSet({ b0: 2048 * sectorBytes, b1: 2048 * sectorBytes });
    const b = await createMirrorSet({
      args: 'disk 2 log 64 2 b0 0 b1 0 1 handle_errors'.split(' '),
      lengthSectors: 2048,
      openDevice: (name) => (name === 'log' ? Promise.resolve(shared(a.mirror)) : open(name)),
    });
    await b.resume();
    await waitInSync(b);
    const writes = Promise.all(Array.from({ length: 32 }, (_, i) => b.write(i * 32 * sectorBytes, pattern(2048, i))));
    const timeout = new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), 5000).unref());
    assert.notEqual(await Promise.race([writes.then(() => 'done' as const), timeout]), 'timeout', 'writes to B completed');
    for (const name of ['b0', 'b1']) {
      assert.deepEqual(await get(probes, name).read(31 * 32 * sectorBytes, 2048), pattern(2048, 31));
    }
    await b.suspend();
    // B's log header is on A, and so on A's legs.
    const header = await a.memories[1]?.read(0, 4);
    assert.deepEqual(header, Buffer.from([0x72, 0x52, 0x69, 0x4d]), 'B\'s log magic reached both of A\'s legs');
    await b.destroy();
    await a.mirror.destroy();
  });

  test('createMirrorSet: region size must be a power of two', async () => {
    // Table with region size 1000. Expected: the kernel's "Error creating mirror dirty log" and the
    // dm-log line "invalid region size 1000"; no device left open.
    const { open } = deviceSet({ l0: 32768 * sectorBytes, l1: 32768 * sectorBytes });
    await assert.rejects(
      createMirrorSet({ args: 'core 1 1000 2 l0 0 l1 0'.split(' '), lengthSectors: 32768, openDevice: open }),
      (err: unknown) => {
        assert.ok(err instanceof TableError);
        assert.equal(err.kernelError, 'Error creating mirror dirty log');
        assert.deepEqual(err.logLines, ['invalid region size 1000']);
        assert.equal(err.code, 'EINVAL');
        return true;
      },
    );
    const ok = await createMirrorSet({ args: 'core 1 1024 2 l0 0 l1 0'.split(' '), lengthSectors: 32768, openDevice: open });
    await ok.destroy();
  });

  test('MirrorSet: status and table lines have no trailing space', async () => {
    // Every feature combination and both log types. Expected: no line ends with a space; the status
    // keeps the placeholder "1" before the health word (the seed's status line fix).
    const cases = ['', ' 1 handle_errors', ' 2 handle_errors keep_log'];
    for (const features of cases) {
      const f = await mirrorFixture({ log: 'disk 2 log 128', ...(features === '' ? {} : { features: features.trim() }) });
      const m: MirrorSet = f.mirror;
      for (const line of [m.statusInfo(), m.statusTable(), m.statusMeasure()]) {
        assert.ok(!line.endsWith(' '), `"${line}" ends with a space`);
        assert.ok(!line.includes('  '), `"${line}" has a double space`);
      }
      assert.match(m.statusInfo(), /^2 l0 l1 \d+\/16 1 AA 3 disk log A$/);
      await m.destroy();
    }
  });

  test('MirrorSet: read balancing never reads an out-of-sync region from a non-default leg', async () => {
    // readPolicy balance + handle_errors, l1 fails every recovery write, so no region is in sync.
    // Expected: every read goes to the default leg l0 (the seed: failed recovery must not mislead
    // read balancing).
    const p = await probeMirror({
      syncMode: 'default',
      handleErrors: true,
      readPolicy: 'balance',
      beforeResume: (probe) => probe.faults[1]?.setFaults({ errors: [{ ops: ['write'] }] }),
    });
    await waitFor(() => p.mirror.recoveryInFlight === 0 && p.messages.filter((m) => m.startsWith('Write error during recovery')).length === p.mirror.regionCount, 'every region tried');
    const before = p.legs[1]?.started('read').length ?? -1;
    for (let i = 0; i < 32; i++) await p.mirror.read((i % 16) * 64 * sectorBytes, 512);
    assert.equal(p.legs[1]?.started('read').length, before, 'no read went to l1');
    await p.mirror.destroy();
  });
});
