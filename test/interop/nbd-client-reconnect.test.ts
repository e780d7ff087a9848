/**
 * ReconnectingNbdBlockDevice against a real nbdkit (`file` plugin, so the bytes outlive the process),
 * one scenario per test: nbdkit killed with -9 while reads are in flight and started again on the same
 * TCP port ('detached', then 'attached', the same bytes, I/O works again); started again with another
 * size ('reattach-refused', the device stays detached); the `delay` filter holding a read past
 * requestTimeoutMs ('detached' by the timeout, then 'attached'); the same over TLS with a PSK, whose
 * file is read again at the reconnect. Real time, with short backoff bounds.
 * Without nbdkit the tests skip with a printed reason (fail under CI=true).
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type NbdConnectionEvent, ReconnectingNbdBlockDevice } from '../../src/block/reconnecting-block-device.js';
import { pattern, rejectsWithCode } from '../conformance/block-device.suite.js';
import { freeTcpPort, type NbdkitServer, startNbdkit } from '../helpers/nbdkit-server.js';
import { requireTools } from '../helpers/nbd-tools.js';
import { pskKey, writePskFile } from '../helpers/tls-files.js';

const MiB = 1024 * 1024;
const cleanups: (() => Promise<unknown>)[] = [];
after(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
});

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'umirror-reconnect-'));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** A zero-filled image file of `sizeBytes` in `dir`. */
async function image(dir: string, sizeBytes: number): Promise<string> {
  const path = join(dir, 'leg.img');
  await writeFile(path, '');
  await truncate(path, sizeBytes);
  return path;
}

async function nbdkit(options: Parameters<typeof startNbdkit>[0]): Promise<NbdkitServer> {
  const server = await startNbdkit(options);
  cleanups.push(() => server.close());
  return server;
}

async function open(uri: string, requestTimeoutMs = 30_000): Promise<{ device: ReconnectingNbdBlockDevice; events: NbdConnectionEvent[] }> {
  const device = await ReconnectingNbdBlockDevice.open(uri, { requestTimeoutMs, reconnectDelayMsMin: 200, reconnectDelayMsMax: 2000 });
  const events: NbdConnectionEvent[] = [];
  device.onEvent((event) => events.push(event));
  cleanups.push(() => device.close());
  return { device, events };
}

/** Resolves with the next event of `type` (at most 30 s). */
function nextEvent<T extends NbdConnectionEvent['type']>(device: ReconnectingNbdBlockDevice, type: T): Promise<Extract<NbdConnectionEvent, { type: T }>> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      stop();
      reject(new Error(`no '${type}' event within 30 s (state ${device.connectionState}, last error ${device.lastError?.message ?? 'none'})`));
    }, 30_000);
    const stop = device.onEvent((event) => {
      if (event.type !== type) return;
      clearTimeout(timer);
      stop();
      resolve(event as Extract<NbdConnectionEvent, { type: T }>);
    });
  });
}

describe('ReconnectingNbdBlockDevice against nbdkit', () => {
  test('ReconnectingNbdBlockDevice detaches when nbdkit is killed with -9 mid-read and re-attaches when it is back on the same port', async (t) => {
    if (!requireTools(t, 'nbdkit')) return;
    const dir = await tempDir();
    const file = await image(dir, 4 * MiB);
    const tcpPort = await freeTcpPort();
    // rdelay holds every read 2 s, long enough to kill the server under them.
    const first = await nbdkit({ dir, tcpPort, filters: ['delay'], plugin: ['file', file, 'rdelay=2'] });
    const { device, events } = await open(first.uri);
    const data = pattern(MiB, 11);
    await device.write(MiB, data, { fua: true });

    const detached = nextEvent(device, 'detached');
    const reads = [device.read(0, 4096), device.read(MiB, 65536), device.read(3 * MiB, 512)].map((read) => rejectsWithCode(read, 'EIO'));
    await waitFor(() => (device.device?.connection.inFlightCount ?? 0) === 3);
    first.kill('SIGKILL');
    await Promise.all(reads);
    assert.equal((await detached).reason.code, 'EIO');
    await rejectsWithCode(device.write(0, Buffer.from('lost')), 'EIO');

    const attached = nextEvent(device, 'attached');
    await nbdkit({ dir, tcpPort, plugin: ['file', file] });
    assert.equal((await attached).reconnectCount, 1);
    assert.deepEqual(events.map((event) => event.type), ['detached', 'attached']);
    assert.deepEqual(await device.read(MiB, data.length), data, 'the bytes written before the crash are there');
    await device.write(0, Buffer.from('after'), { fua: true });
    assert.equal((await device.read(0, 5)).toString(), 'after');
    assert.equal(device.connectionState, 'connected');
  });

  test('ReconnectingNbdBlockDevice refuses to re-attach when nbdkit comes back with another size, and stays detached', async (t) => {
    if (!requireTools(t, 'nbdkit')) return;
    const dir = await tempDir();
    const file = await image(dir, 4 * MiB);
    const first = await nbdkit({ dir, plugin: ['file', file] });
    const { device } = await open(first.uri);
    const detached = nextEvent(device, 'detached');
    first.kill('SIGKILL');
    await detached;
    await truncate(file, 8 * MiB);
    const refused = nextEvent(device, 'reattach-refused');
    await nbdkit({ dir, plugin: ['file', file] });
    const { reason } = await refused;
    assert.match(reason.message, /size changed from 4194304 to 8388608 bytes; the leg stays detached/);
    assert.equal(device.connectionState, 'detached');
    assert.equal(device.reattachRefused, true);
    await rejectsWithCode(device.read(0, 512), 'EIO');
  });

  test('ReconnectingNbdBlockDevice detaches when the delay filter holds a read past requestTimeoutMs, and re-attaches', async (t) => {
    if (!requireTools(t, 'nbdkit')) return;
    const dir = await tempDir();
    const file = await image(dir, 4 * MiB);
    const slow = await nbdkit({ dir, filters: ['delay'], plugin: ['file', file, 'rdelay=5'] });
    const { device, events } = await open(slow.uri, 300);
    await device.write(0, Buffer.from('writes are not delayed'));
    const detached = nextEvent(device, 'detached');
    const attached = nextEvent(device, 'attached');
    await assert.rejects(device.read(0, 4), /no reply within 300 ms; connection dropped/);
    assert.match((await detached).reason.message, /no reply within 300 ms/);
    await attached;
    assert.deepEqual(events.map((event) => event.type).slice(0, 2), ['detached', 'attached']);
    await device.write(0, Buffer.from('still writable'), { fua: true });
  });

  test('ReconnectingNbdBlockDevice re-attaches over TLS with a PSK when nbdkit --tls=require comes back', async (t) => {
    if (!requireTools(t, 'nbdkit')) return;
    const dir = await tempDir();
    const file = await image(dir, 4 * MiB);
    const pskFile = await writePskFile({ path: join(dir, 'keys.psk'), entries: [{ identity: 'alice', key: pskKey() }] });
    const tls = ['--tls=require', `--tls-psk=${pskFile}`];
    const first = await nbdkit({ dir, flags: tls, plugin: ['file', file] });
    const { device } = await open(`nbds+unix://alice@/?socket=${encodeURIComponent(first.socketPath)}&tls-psk-file=${encodeURIComponent(pskFile)}`);
    await device.write(0, Buffer.from('secret'), { fua: true });
    const detached = nextEvent(device, 'detached');
    first.kill('SIGKILL');
    await detached;
    const attached = nextEvent(device, 'attached');
    await nbdkit({ dir, flags: tls, plugin: ['file', file] });
    await attached;
    assert.equal((await device.read(0, 6)).toString(), 'secret');
  });
});

async function waitFor(condition: () => boolean): Promise<void> {
  for (let i = 0; i < 500 && !condition(); i++) await new Promise((resolve) => setTimeout(resolve, 10));
  assert.ok(condition(), 'condition reached within 5 s');
}
