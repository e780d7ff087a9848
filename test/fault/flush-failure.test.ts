/**
 * A failed flush of the legs (a client flush that one leg fails) is sticky, as the kernel's
 * rh->flush_failure: it lasts as long as the table. Every region whose writes drain afterwards goes
 * NOSYNC with its dirty bit kept in the log; the log's sync count does not drop (dm_rh_dec leaves the log
 * alone: the kernel keeps 16/16); later writes to such a region go to the default leg only, and the next
 * table resyncs it from the dirty bit. Past the kernel: such a region is read from the default leg only
 * and the default leg no longer moves, so no read returns data only the default leg received.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { BlockDevice } from '../../src/block/block-device.js';
import { FaultyBlockDevice } from '../../src/block/faulty-block-device.js';
import { MemoryBlockDevice } from '../../src/block/memory-block-device.js';
import { sectorBytes } from '../../src/limits.js';
import { createMirrorSet } from '../../src/mirror/create-mirror-set.js';
import type { MirrorSet } from '../../src/mirror/mirror-set.js';
import { pattern } from '../conformance/block-device.suite.js';
import { shared, waitFor, waitInSync } from '../helpers/mirror-fixture.js';
import { ProbeDevice } from '../helpers/probe-device.js';

const lengthSectors = 2048; // 16 regions of 64 KiB
const regionSectors = 128;
const regionBytes = regionSectors * sectorBytes;

/** Legs memory -> faulty -> probe (faults and gates), a memory log device, tables built over them. */
class Rig {
  readonly memories = [0, 1].map((i) => new MemoryBlockDevice({ sizeBytes: lengthSectors * sectorBytes, name: `l${i}` }));
  readonly faults = this.memories.map((m, i) => new FaultyBlockDevice(m, { name: `l${i}`, closeInner: false }));
  readonly probes = this.faults.map((f, i) => new ProbeDevice(f, { name: `l${i}` }));
  readonly logDevice = new MemoryBlockDevice({ sizeBytes: 64 * 1024, name: 'log' });

  async table(options: { log: string; features?: string; balance?: boolean }): Promise<MirrorSet> {
    const open = (name: string): Promise<BlockDevice> => {
      if (name === 'log') return Promise.resolve(shared(this.logDevice));
      const probe = this.probes[Number(name.slice(1))];
      return probe === undefined ? Promise.reject(new Error(`no ${name}`)) : Promise.resolve(probe);
    };
    const words = `${options.log} 2 l0 0 l1 0 ${options.features ?? ''}`.trim().split(/\s+/);
    const mirror = await createMirrorSet({
      args: words,
      lengthSectors,
      openDevice: open,
      ...(options.balance === true ? { readPolicy: 'balance' as const } : {}),
    });
    await mirror.resume();
    await waitInSync(mirror);
    return mirror;
  }

  probe(index: number): ProbeDevice {
    const probe = this.probes[index];
    assert.ok(probe !== undefined);
    return probe;
  }

  faulty(index: number): FaultyBlockDevice {
    const faulty = this.faults[index];
    assert.ok(faulty !== undefined);
    return faulty;
  }

  /** Bit `regionIndex` of the disk log's clean bitset (1 = clean). */
  async cleanBit(regionIndex: number): Promise<boolean> {
    const byte = (await this.logDevice.read(1024 + Math.floor(regionIndex / 8), 1))[0] ?? 0;
    return (byte & (1 << regionIndex % 8)) !== 0;
  }

  /**
   * A write to `regionIndex` held on l1 while a client flush fails on l1, then a pass that completes the
   * sync again (a write to `passRegion`), then the held write completes. Resolves once it has, with the
   * failed flush (held until suspend with handle_errors, else already settled).
   */
  async writeAcrossFailedFlush(
    mirror: MirrorSet,
    options: { regionIndex: number; passRegion: number },
  ): Promise<{ flushed: Promise<unknown> }> {
    const at = options.regionIndex * regionBytes;
    this.probe(1).hold({ ops: ['write'], range: { offsetBytes: at, lengthBytes: regionBytes } });
    const inFlight = mirror.write(at, pattern(4096, 1));
    await waitFor(() => this.probe(1).waiting === 1, 'the write held on l1');
    this.faulty(1).setFaults({ errors: [{ ops: ['flush'] }] });
    const eventsBefore = mirror.eventCount;
    const flushed = mirror.flush().catch(() => undefined);
    await waitFor(() => mirror.healthLetters() === 'AD', 'l1 failing the flush');
    this.faulty(1).clearFaults();
    // The next pass finds every region in sync in the log again: sync complete (event, letters reset).
    await mirror.write(options.passRegion * regionBytes, pattern(4096, 2));
    await waitFor(() => mirror.eventCount > eventsBefore && mirror.healthLetters() === 'AA', 'the sync-complete pass');
    this.probe(1).release();
    await inFlight;
    return { flushed };
  }
}

describe('MirrorSet after a failed leg flush', () => {
  test('MirrorSet keeps a failed leg flush: a write in flight across it ends NOSYNC, dirty on disk, 16/16 as the kernel', async () => {
    // Disk log, no handle_errors; region 3 written while l1 fails a client flush. Expected (dm_rh_dec with
    // flush_failure): region 3 NOSYNC, its clean bit stays 0 through suspend, the sync count stays 16/16;
    // a later write to it reaches l0 only; the next table resyncs it onto l1.
    const rig = new Rig();
    const mirror = await rig.table({ log: `disk 2 log ${regionSectors}` });
    await (await rig.writeAcrossFailedFlush(mirror, { regionIndex: 3, passRegion: 5 })).flushed;
    assert.equal(mirror.regionInSync(3), false, 'region 3 is NOSYNC');
    assert.equal(mirror.regionInSync(5), false, 'region 5, written after the failure, is NOSYNC too');
    assert.equal(mirror.statusInfo(), '2 l0 l1 16/16 1 AA 3 disk log A', 'the sync count does not drop (kernel: 16/16)');
    const later = pattern(8192, 9);
    const l1WritesBefore = rig.probe(1).started('write').length;
    await mirror.write(3 * regionBytes + 8192, later);
    assert.equal(rig.probe(1).started('write').length, l1WritesBefore, 'a write to a NOSYNC region goes to the default leg only');
    assert.ok((await mirror.read(3 * regionBytes + 8192, 8192)).equals(later));
    await mirror.suspend();
    assert.equal(await rig.cleanBit(3), false, 'region 3 stays dirty in the log');
    assert.equal(await rig.cleanBit(5), false, 'region 5 stays dirty in the log');
    assert.equal(await rig.cleanBit(4), true, 'an untouched region is clean');
    await mirror.destroy();
    // The next table reads the dirty bits and resyncs regions 3 and 5 from the default leg.
    const next = await rig.table({ log: `disk 2 log ${regionSectors}` });
    assert.equal(next.statusInfo(), '2 l0 l1 16/16 1 AA 3 disk log A');
    const l0 = await rig.memories[0]?.read(0, lengthSectors * sectorBytes);
    const l1 = await rig.memories[1]?.read(0, lengthSectors * sectorBytes);
    assert.ok(l0 !== undefined && l1 !== undefined && l0.equals(l1), 'the legs are identical after the resync');
    await next.destroy();
  });

  test('MirrorSet reads a NOSYNC region of a failed leg flush from the default leg only, and keeps the default leg', async () => {
    // Core log, handle_errors, balanced reads. After the failed flush, region 3 is written on l0 only.
    // Expected: every read of region 3 returns the new data (never l1's stale copy), and when l0 later
    // fails a write the default leg stays l0 (moving it to l1 would serve l1's stale copy) and region 3
    // fails to read, as any out-of-sync region whose default leg failed.
    const rig = new Rig();
    const mirror = await rig.table({ log: `core 2 ${regionSectors} nosync`, features: '1 handle_errors', balance: true });
    const { flushed } = await rig.writeAcrossFailedFlush(mirror, { regionIndex: 3, passRegion: 5 });
    const fresh = pattern(regionBytes, 4);
    await mirror.write(3 * regionBytes, fresh);
    for (let i = 0; i < 4; i++) assert.ok((await mirror.read(3 * regionBytes, regionBytes)).equals(fresh), `read ${i} of region 3`);
    rig.faulty(0).setFaults({ errors: [{ ops: ['write'] }] });
    const held = mirror.write(9 * regionBytes, pattern(4096, 5)).catch(() => undefined);
    await waitFor(() => mirror.healthLetters() === 'DA', 'l0 failing a write');
    assert.equal(mirror.defaultLegIndex, 0, 'the default leg does not move after a failed leg flush');
    // Out of sync and the default leg failed: EIO, as the kernel's out-of-sync read (never l1's stale copy).
    await assert.rejects(mirror.read(3 * regionBytes, regionBytes), { code: 'EIO' });
    assert.ok((await mirror.read(4 * regionBytes, regionBytes)).equals(Buffer.alloc(regionBytes)), 'an in-sync region reads from l1');
    await mirror.suspend();
    await Promise.all([held, flushed]);
    await mirror.destroy();
  });
});
