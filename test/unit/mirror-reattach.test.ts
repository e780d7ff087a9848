/**
 * MirrorSet with a remote leg that goes away and comes back (issue 11), in process: the leg's device is a
 * memory device behind a switch that fails every request while "lost", and its LegConnection raises the
 * events a ReconnectingNbdBlockDevice raises. Each test states its scenario and what is expected.
 * The real thing (nbdkit in another network namespace) is test/interop/two-hosts.test.ts.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { BlockDevice } from '../../src/block/block-device.js';
import { forwardingDevice } from '../../src/block/forwarding-device.js';
import { MemoryBlockDevice } from '../../src/block/memory-block-device.js';
import { CoreDirtyLog } from '../../src/dirty-log/core-dirty-log.js';
import { DiskDirtyLog } from '../../src/dirty-log/disk-dirty-log.js';
import type { DirtyLog } from '../../src/dirty-log/dirty-log.js';
import { BlockError } from '../../src/errors.js';
import { sectorBytes } from '../../src/limits.js';
import type { LegConnection, LegConnectionEvent } from '../../src/mirror/leg.js';
import { MirrorSet, type MirrorEvent } from '../../src/mirror/mirror-set.js';
import { legsJson } from '../../src/mirror/mirror-status.js';
import { unlimitedMessages } from '../helpers/mirror-fixture.js';

const regionSectors = 128;
const regionBytes = regionSectors * sectorBytes;
const lengthSectors = 16 * regionSectors;
const sizeBytes = lengthSectors * sectorBytes;

/** A remote leg stand-in: a memory device that fails everything while lost, and its connection. */
class RemoteStandIn implements LegConnection {
  readonly memory = new MemoryBlockDevice({ sizeBytes, name: 'nbd://remote/leg1' });
  readonly device: BlockDevice;
  connectionState: 'connected' | 'connecting' | 'detached' = 'connected';
  /** Runs (once) when the next write fails while lost, before its failure is seen. */
  onLostWrite: (() => void) | undefined;
  readonly #listeners = new Set<(event: LegConnectionEvent) => void>();

  constructor() {
    this.device = forwardingDevice(this.memory, {
      around: (op, _bytes, run) => {
        if (this.connectionState === 'connected') return run();
        if (op === 'write') {
          const hook = this.onLostWrite;
          this.onLostWrite = undefined;
          hook?.();
        }
        return Promise.reject(new BlockError('EIO', `Cannot ${op} nbd://remote/leg1: the NBD connection is lost`));
      },
      close: () => this.memory.close(),
    });
  }

  onEvent(listener: (event: LegConnectionEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  lose(): void {
    this.connectionState = 'detached';
    this.#emit({ type: 'detached', reason: new BlockError('EIO', 'connection reset by peer') });
  }

  back(): void {
    this.connectionState = 'connected';
    this.#emit({ type: 'attached' });
  }

  refuse(): void {
    this.#emit({ type: 'reattach-refused', reason: new BlockError('EIO', "Cannot re-attach nbd://remote/leg1: the export's size changed from 1048576 to 2097152 bytes; the leg stays detached") });
  }

  #emit(event: LegConnectionEvent): void {
    for (const listener of this.#listeners) listener(event);
  }
}

interface Rig {
  readonly mirror: MirrorSet;
  readonly local: MemoryBlockDevice;
  readonly remote: RemoteStandIn;
  readonly events: MirrorEvent[];
  readonly messages: string[];
}

async function rig(options: { handleErrors?: boolean; log?: (legNames: readonly string[]) => DirtyLog } = {}): Promise<Rig> {
  const local = new MemoryBlockDevice({ sizeBytes, name: 'l0' });
  const remote = new RemoteStandIn();
  const legNames = ['l0', 'nbd://remote/leg1'];
  const log =
    options.log?.(legNames) ?? new CoreDirtyLog({ regionCount: lengthSectors / regionSectors, regionSizeSectors: regionSectors, syncMode: 'nosync' });
  const messages: string[] = [];
  const mirror = new MirrorSet({
    lengthSectors,
    log,
    legs: [
      { device: local, tableName: 'l0', offsetSectors: 0 },
      { device: remote.device, tableName: 'nbd://remote/leg1', offsetSectors: 0, connection: remote },
    ],
    features: { handleErrors: options.handleErrors === true, keepLog: false },
    onMessage: (_level, message) => messages.push(message),
    messageLimiter: unlimitedMessages(),
  });
  const events: MirrorEvent[] = [];
  mirror.onEvent((event) => events.push(event));
  await mirror.resume();
  await mirror.idle();
  return { mirror, local, remote, events, messages };
}

async function sameLegs(r: Rig): Promise<void> {
  const [a, b] = [await r.local.read(0, sizeBytes), await r.remote.memory.read(0, sizeBytes)];
  assert.ok(a.equals(b), 'the legs hold the same bytes');
}

describe('MirrorSet takes a remote leg back (issue 11)', () => {
  test('a leg lost during writes returns when its connection is back; only the regions it missed are resynced', async () => {
    // Scenario: core log, no handle_errors, in sync. Write region 0; the remote is lost; write regions
    // 3 and 7 and flush (acknowledged: the default leg holds them). The remote comes back.
    // Expected: AD while away, 'leg-detached' then 'leg-attached'; then exactly 2 regions resynced onto
    // it, AA, 'leg-recovered', byte-identical legs.
    const r = await rig();
    await r.mirror.write(0, Buffer.alloc(4096, 0x11));
    r.remote.lose();
    await r.mirror.write(3 * regionBytes, Buffer.alloc(8192, 0x22));
    await r.mirror.write(7 * regionBytes + 512, Buffer.alloc(512, 0x33));
    await r.mirror.flush();
    await r.mirror.idle();
    assert.equal(r.mirror.healthLetters(), 'AD');
    assert.equal(r.mirror.syncCount(), 14);
    assert.deepEqual(legsJson(r.mirror.snapshot()).map((leg) => [leg.connection, leg.returning]), [['local', false], ['detached', false]]);
    r.remote.back();
    await r.mirror.idle();
    assert.equal(r.mirror.healthLetters(), 'AA');
    assert.equal(r.mirror.syncCount(), 16);
    assert.equal(r.mirror.legs[1]?.stats.resyncBytesTotal, 2 * regionBytes, 'regions 3 and 7 only');
    assert.equal(r.mirror.legs[0]?.stats.resyncBytesTotal, 0, 'nothing onto the source');
    await sameLegs(r);
    // No 'leg-failed' without handle_errors (as the kernel raises none).
    assert.deepEqual(
      r.events.map((event) => event.kind).filter((kind) => kind.startsWith('leg-')),
      ['leg-detached', 'leg-attached', 'leg-recovered'],
    );
    assert.ok(r.messages.some((line) => /nbd:\/\/remote\/leg1 is back: resyncing the regions it missed from l0/.test(line)), r.messages.join('\n'));
    assert.ok(r.messages.some((line) => /nbd:\/\/remote\/leg1 is in sync again \(131072 bytes resynced onto it\)/.test(line)), r.messages.join('\n'));
    await r.mirror.destroy();
  });

  test('with handle_errors the writes held while the leg is away complete once it is back', async () => {
    // Scenario: handle_errors; the remote is lost; a write to region 5 is held (not acknowledged). The
    // remote comes back. Expected: the write completes, region 5 alone is resynced, AA, same bytes.
    const r = await rig({ handleErrors: true });
    r.remote.lose();
    let done = false;
    const write = r.mirror.write(5 * regionBytes, Buffer.alloc(4096, 0x55)).then(() => (done = true));
    await r.mirror.idle();
    assert.equal(r.mirror.heldWrites, 1);
    assert.equal(done, false, 'held, not acknowledged');
    r.remote.back();
    await write;
    await r.mirror.idle();
    assert.equal(r.mirror.heldWrites, 0);
    assert.equal(r.mirror.healthLetters(), 'AA');
    assert.equal(r.mirror.legs[1]?.stats.resyncBytesTotal, regionBytes);
    assert.deepEqual([...(await r.remote.memory.read(5 * regionBytes, 4096))].every((byte) => byte === 0x55), true);
    await sameLegs(r);
    await r.mirror.destroy();
  });

  test('a write that failed while the leg was away but is processed after it came back is still resynced onto it', async () => {
    // Scenario: the remote is lost and has failed (a write to region 12). The next write (region 9) fails
    // on it too, and the connection comes back between that failure and the pass that handles it (the
    // resync search has then passed region 9, on its way to 12, before 9 drops out of sync). Expected:
    // region 9 reaches the returning leg anyway (the search goes back), AA, same bytes. Fails without
    // the rewind.
    const r = await rig();
    r.remote.lose();
    await r.mirror.write(12 * regionBytes, Buffer.alloc(4096, 0x22));
    assert.equal(r.mirror.healthLetters(), 'AD');
    r.remote.onLostWrite = () => queueMicrotask(() => r.remote.back());
    await r.mirror.write(9 * regionBytes, Buffer.alloc(4096, 0x99));
    await r.mirror.idle();
    assert.equal(r.mirror.healthLetters(), 'AA', r.mirror.statusInfo());
    assert.equal(r.mirror.syncCount(), 16);
    await sameLegs(r);
    await r.mirror.destroy();
  });

  test('a leg back with another size stays failed, with a kernel-style line and an event', async () => {
    // Scenario: the remote is lost, a write fails on it, then the server returns with another size (the
    // device refuses it). Expected: the refusal line, 'leg-reattach-refused', AD, no resync.
    const r = await rig();
    r.remote.lose();
    await r.mirror.write(0, Buffer.alloc(4096, 1));
    r.remote.refuse();
    await r.mirror.idle();
    assert.equal(r.mirror.healthLetters(), 'AD');
    assert.ok(r.events.some((event) => event.kind === 'leg-reattach-refused' && event.leg === 1));
    assert.ok(r.messages.includes("Cannot re-attach nbd://remote/leg1: the export's size changed from 1048576 to 2097152 bytes; the leg stays detached"));
    assert.equal(r.mirror.legs[1]?.stats.resyncBytesTotal, 0);
    await r.mirror.destroy();
  });

  test('a leg lost and back with no I/O meanwhile missed nothing and stays A', async () => {
    const r = await rig();
    r.remote.lose();
    r.remote.back();
    await r.mirror.idle();
    assert.equal(r.mirror.healthLetters(), 'AA');
    assert.ok(r.messages.includes('nbd://remote/leg1 is back; it missed no write'));
    await r.mirror.destroy();
  });

  test('with a disk log the leg is stale while away and current again after its resync', async () => {
    // Scenario: disk log that keeps the generation record; the remote is lost and a write is
    // acknowledged without it. Expected: the record says leg 1 stale once the write is acknowledged;
    // after the return and resync it is current again; status JSON says so.
    const logDevice = new MemoryBlockDevice({ sizeBytes: 1 << 20, name: 'log' });
    const r = await rig({
      log: (legNames) =>
        new DiskDirtyLog({
          device: logDevice,
          displayName: 'log',
          regionCount: lengthSectors / regionSectors,
          regionSizeSectors: regionSectors,
          syncMode: 'nosync',
          flushData: () => Promise.resolve(),
          raiseEvent: () => undefined,
          legNames,
        }),
    });
    r.remote.lose();
    await r.mirror.write(4 * regionBytes, Buffer.alloc(4096, 4));
    assert.deepEqual(r.mirror.log.legGenerations?.legs.map((leg) => leg.stale), [false, true]);
    assert.deepEqual(legsJson(r.mirror.snapshot()).map((leg) => leg.stale), [false, true]);
    r.remote.back();
    await r.mirror.idle();
    assert.equal(r.mirror.healthLetters(), 'AA');
    assert.deepEqual(r.mirror.log.legGenerations?.legs.map((leg) => leg.stale), [false, false]);
    await sameLegs(r);
    await r.mirror.destroy();
  });
});
