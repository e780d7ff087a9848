/**
 * ReconnectingNbdBlockDevice against umirror's own NbdServer on a Unix socket, with time driven by hand
 * (a manual timer; only time is faked): the conformance suite, then one scenario per test — a lost
 * connection fails the I/O in flight and later I/O at once with EIO and raises 'detached'; attempts back
 * off 0.5 s, 1 s, 2 s ... up to the maximum while the server is away; a server back with the same size is
 * re-attached ('attached') and serves the same bytes; one back with another size, or read-only, is
 * refused ('reattach-refused') and no attempt follows until reconnect(); a request past requestTimeoutMs
 * drops the connection and reconnects; close() cancels what is pending. nbdkit scenarios (kill -9, the
 * delay filter) are in test/interop/nbd-client-reconnect.test.ts.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { BlockDevice, ReadOptions } from '../../src/block/block-device.js';
import { MemoryBlockDevice } from '../../src/block/memory-block-device.js';
import {
  type NbdConnectionEvent,
  ReconnectingNbdBlockDevice,
  type ReconnectingNbdBlockDeviceOptions,
  type ScheduleTimer,
} from '../../src/block/reconnecting-block-device.js';
import { nbdClientReconnectDelayMsMax, nbdClientReconnectDelayMsMin } from '../../src/limits.js';
import { NbdServer } from '../../src/nbd/server.js';
import { blockDeviceSuite, pattern, rejectsWithCode } from '../conformance/block-device.suite.js';

const KiB = 1024;
const cleanups: (() => Promise<void>)[] = [];
after(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** Timers that fire only when the test says so. */
class ManualTimer {
  readonly #entries: { callback: () => void; delayMs: number; cancelled: boolean }[] = [];
  readonly schedule: ScheduleTimer = (callback, delayMs) => {
    const entry = { callback, delayMs, cancelled: false };
    this.#entries.push(entry);
    return () => {
      entry.cancelled = true;
    };
  };

  /** Delays of the timers not yet fired or cancelled. */
  get pendingDelaysMs(): number[] {
    return this.#entries.filter((entry) => !entry.cancelled).map((entry) => entry.delayMs);
  }

  /** Fires the one pending timer; returns its delay. */
  fire(): number {
    const pending = this.#entries.filter((entry) => !entry.cancelled);
    assert.equal(pending.length, 1, 'exactly one timer is pending');
    const entry = pending[0];
    assert.ok(entry !== undefined);
    entry.cancelled = true;
    entry.callback();
    return entry.delayMs;
  }
}

/** A socket path in a temp dir, and a way to (re)start umirror's NbdServer on it. */
class Remote {
  server: NbdServer | undefined;
  constructor(readonly socketPath: string) {}

  static async create(): Promise<Remote> {
    const dir = await mkdtemp(join(tmpdir(), 'umirror-reconn-'));
    const remote = new Remote(join(dir, 'nbd.sock'));
    cleanups.push(async () => {
      await remote.stop();
      await rm(dir, { recursive: true, force: true });
    });
    return remote;
  }

  get uri(): string {
    return `nbd+unix:///leg?socket=${this.socketPath}`;
  }

  async start(device: BlockDevice, options: { readOnly?: boolean } = {}): Promise<void> {
    assert.equal(this.server, undefined, 'one server at a time');
    const server = new NbdServer({ exports: [{ name: 'leg', device, ...(options.readOnly === true && { readOnly: true }) }] });
    await server.listen({ path: this.socketPath });
    this.server = server;
  }

  /** Drops every connection at once, as a crashed server would. */
  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    await server?.close({ graceful: false });
  }
}

/** A memory device whose reads wait while `stalled` is set (to hold requests in flight). */
class StallingDevice extends MemoryBlockDevice {
  stalled = false;
  waiting = 0;
  protected override async doRead(offsetBytes: number, lengthBytes: number, options: ReadOptions): Promise<Buffer> {
    this.waiting += 1;
    while (this.stalled) await sleep(5);
    this.waiting -= 1;
    return super.doRead(offsetBytes, lengthBytes, options);
  }
}

async function openReconnecting(uri: string, options: ReconnectingNbdBlockDeviceOptions = {}): Promise<{ device: ReconnectingNbdBlockDevice; events: NbdConnectionEvent[] }> {
  const device = await ReconnectingNbdBlockDevice.open(uri, { random: () => 0.5, ...options });
  const events: NbdConnectionEvent[] = [];
  device.onEvent((event) => events.push(event));
  cleanups.push(() => device.close());
  return { device, events };
}

async function until(what: string, condition: () => boolean): Promise<void> {
  for (let i = 0; i < 1000; i++) {
    if (condition()) return;
    await sleep(10);
  }
  assert.fail(`timed out waiting for ${what}`);
}

blockDeviceSuite({
  name: 'ReconnectingNbdBlockDevice (umirror NbdServer)',
  create: async (sizeBytes) => {
    const remote = await Remote.create();
    await remote.start(new MemoryBlockDevice({ sizeBytes }));
    return ReconnectingNbdBlockDevice.open(remote.uri);
  },
});

describe('ReconnectingNbdBlockDevice', () => {
  test('ReconnectingNbdBlockDevice fails I/O in flight and later I/O with EIO on a lost connection, then re-attaches to the same export', async () => {
    const remote = await Remote.create();
    const backing = new StallingDevice({ sizeBytes: 1024 * KiB });
    await remote.start(backing);
    const timer = new ManualTimer();
    const { device, events } = await openReconnecting(remote.uri, { scheduleTimer: timer.schedule });
    const data = pattern(64 * KiB, 3);
    await device.write(4096, data);
    assert.equal(device.connectionState, 'connected');

    backing.stalled = true;
    const inFlight = rejectsWithCode(device.read(4096, 4096), 'EIO');
    await until('the read to reach the server', () => backing.waiting === 1);
    await remote.stop();
    await inFlight;
    assert.equal(device.connectionState, 'detached');
    assert.equal(events.length, 1);
    const [lost] = events;
    assert.ok(lost?.type === 'detached');
    assert.equal(lost.reason.code, 'EIO');
    assert.equal(device.detachCount, 1);
    // Fails fast: nothing waits for a server that may not return.
    await rejectsWithCode(device.write(0, Buffer.from('x')), 'EIO');
    await rejectsWithCode(device.flush(), 'EIO');
    await assert.rejects(device.read(0, 1), /NBD connection is lost \(detached, reconnecting\)/);
    assert.deepEqual(timer.pendingDelaysMs, [nbdClientReconnectDelayMsMin]);

    backing.stalled = false;
    await remote.start(backing);
    assert.equal(timer.fire(), nbdClientReconnectDelayMsMin);
    assert.equal(device.connectionState, 'connecting');
    await rejectsWithCode(device.read(0, 1), 'EIO');
    await until('re-attached', () => device.connectionState === 'connected');
    assert.deepEqual(events.map((event) => event.type), ['detached', 'attached']);
    assert.deepEqual(await device.read(4096, data.length), data);
    await device.write(0, Buffer.from('again'), { fua: true });
    assert.equal((await backing.read(0, 5)).toString(), 'again');
    assert.deepEqual([device.reconnectCount, device.reconnectAttemptCount, device.detachCount], [1, 1, 1]);
    assert.deepEqual(timer.pendingDelaysMs, []);
  });

  test('ReconnectingNbdBlockDevice backs off 0.5 s, 1 s, 2 s ... up to the maximum while the server is away, and starts over after a re-attach', async () => {
    const remote = await Remote.create();
    const backing = new MemoryBlockDevice({ sizeBytes: 256 * KiB });
    await remote.start(backing);
    const timer = new ManualTimer();
    const { device } = await openReconnecting(remote.uri, { scheduleTimer: timer.schedule });
    await remote.stop();
    await until('detached', () => device.connectionState === 'detached');
    const delays: number[] = [];
    for (let attempt = 1; attempt <= 9; attempt++) {
      delays.push(timer.fire());
      await until(`attempt ${attempt} to fail`, () => timer.pendingDelaysMs.length === 1);
      assert.equal(device.connectionState, 'detached');
      assert.match(device.lastError?.message ?? '', /Cannot connect to/);
    }
    assert.deepEqual(delays, [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]);
    assert.equal(device.reconnectAttemptCount, 9);
    await remote.start(backing);
    timer.fire();
    await until('re-attached', () => device.connectionState === 'connected');
    await remote.stop();
    await until('detached again', () => device.connectionState === 'detached');
    assert.deepEqual(timer.pendingDelaysMs, [nbdClientReconnectDelayMsMin]);
  });

  test('ReconnectingNbdBlockDevice refuses to re-attach an export whose size changed, stays detached, and retries only on reconnect()', async () => {
    const remote = await Remote.create();
    const backing = new MemoryBlockDevice({ sizeBytes: 256 * KiB });
    await remote.start(backing);
    const timer = new ManualTimer();
    const { device, events } = await openReconnecting(remote.uri, { scheduleTimer: timer.schedule });
    await remote.stop();
    await until('detached', () => device.connectionState === 'detached');
    await remote.start(new MemoryBlockDevice({ sizeBytes: 512 * KiB }));
    timer.fire();
    await until('refused', () => events.length === 2);
    const refused = events[1];
    assert.ok(refused?.type === 'reattach-refused');
    assert.match(refused.reason.message, /size changed from 262144 to 524288 bytes; the leg stays detached/);
    assert.equal(device.connectionState, 'detached');
    assert.equal(device.reattachRefused, true);
    assert.deepEqual(timer.pendingDelaysMs, [], 'no attempt follows a refusal');
    await assert.rejects(device.read(0, 1), /re-attach was refused/);

    await remote.stop();
    await remote.start(backing);
    device.reconnect();
    await until('re-attached', () => device.connectionState === 'connected');
    assert.equal(device.reattachRefused, false);
    assert.deepEqual(events.map((event) => event.type), ['detached', 'reattach-refused', 'attached']);
  });

  test('ReconnectingNbdBlockDevice refuses to re-attach a writable export that came back read-only', async () => {
    const remote = await Remote.create();
    const backing = new MemoryBlockDevice({ sizeBytes: 256 * KiB });
    await remote.start(backing);
    const timer = new ManualTimer();
    const { device, events } = await openReconnecting(remote.uri, { scheduleTimer: timer.schedule });
    await remote.stop();
    await until('detached', () => device.connectionState === 'detached');
    await remote.start(backing, { readOnly: true });
    timer.fire();
    await until('refused', () => events.length === 2);
    assert.ok(events[1]?.type === 'reattach-refused');
    assert.match(events[1].reason.message, /became read-only/);
  });

  test('ReconnectingNbdBlockDevice drops a connection whose request outlives requestTimeoutMs, and reconnects', async () => {
    const remote = await Remote.create();
    const backing = new StallingDevice({ sizeBytes: 256 * KiB });
    await remote.start(backing);
    const timer = new ManualTimer();
    const { device, events } = await openReconnecting(remote.uri, { scheduleTimer: timer.schedule, requestTimeoutMs: 200 });
    backing.stalled = true;
    await assert.rejects(device.read(0, 512), /no reply within 200 ms; connection dropped/);
    await until('detached', () => device.connectionState === 'detached');
    assert.ok(events[0]?.type === 'detached');
    assert.match(events[0].reason.message, /no reply within 200 ms/);
    backing.stalled = false;
    timer.fire();
    await until('re-attached', () => device.connectionState === 'connected');
    assert.equal((await device.read(0, 512)).length, 512);
  });

  test('ReconnectingNbdBlockDevice.close() cancels a pending attempt and drops one under way', async () => {
    const remote = await Remote.create();
    const backing = new MemoryBlockDevice({ sizeBytes: 256 * KiB });
    await remote.start(backing);
    const timer = new ManualTimer();
    const waiting = await ReconnectingNbdBlockDevice.open(remote.uri, { scheduleTimer: timer.schedule });
    const underWay = await ReconnectingNbdBlockDevice.open(remote.uri, { scheduleTimer: timer.schedule });
    await remote.stop();
    await until('both detached', () => waiting.connectionState === 'detached' && underWay.connectionState === 'detached');
    assert.equal(timer.pendingDelaysMs.length, 2);
    await waiting.close();
    assert.equal(timer.pendingDelaysMs.length, 1, 'close() cancelled its timer');
    await remote.start(backing);
    timer.fire();
    assert.equal(underWay.connectionState, 'connecting');
    await underWay.close();
    await until('the dropped connection to leave the server', () => remote.server?.connectionCount === 0);
    await sleep(20);
    assert.equal(remote.server?.connectionCount, 0);
    await rejectsWithCode(underWay.read(0, 1), 'ESHUTDOWN');
  });

  test('ReconnectingNbdBlockDevice.nextDelayMs jitters by at most 20 % and stays within its bounds', async () => {
    const remote = await Remote.create();
    await remote.start(new MemoryBlockDevice({ sizeBytes: 64 * KiB }));
    const low = await openReconnecting(remote.uri, { random: () => 0 });
    const high = await openReconnecting(remote.uri, { random: () => 0.999999 });
    assert.equal(low.device.nextDelayMs(0), nbdClientReconnectDelayMsMin, 'never below the minimum');
    assert.equal(high.device.nextDelayMs(0), 600);
    assert.equal(low.device.nextDelayMs(3), 3200);
    assert.equal(high.device.nextDelayMs(3), 4800);
    assert.equal(high.device.nextDelayMs(50), nbdClientReconnectDelayMsMax, 'never above the maximum');
    assert.equal(low.device.nextDelayMs(50), 24_000);
  });
});
