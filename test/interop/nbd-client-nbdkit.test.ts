/**
 * NbdBlockDevice against a real nbdkit: the BlockDevice conformance suite over `nbdkit memory` (with
 * structured replies, with `--no-sr`, and behind a strict blocksize policy that refuses unaligned and
 * oversized requests), then one scenario per test: requests split at a small maximum, errors from the
 * `error` filter mapped to their errno, nbdkit killed with requests in flight, and the request timeout
 * against the `delay` filter. Without nbdkit the tests skip with a printed reason (fail under CI=true).
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NbdBlockDevice } from '../../src/block/nbd-block-device.js';
import { BlockError } from '../../src/errors.js';
import { blockDeviceSuite, pattern, rejectsWithCode } from '../conformance/block-device.suite.js';
import { type NbdkitServer, startNbdkit } from '../helpers/nbdkit-server.js';
import { hasTool, requireTools } from '../helpers/nbd-tools.js';

const KiB = 1024;
const servers: NbdkitServer[] = [];
const devices: NbdBlockDevice[] = [];
after(async () => {
  await Promise.allSettled(devices.map((device) => device.close()));
  await Promise.allSettled(servers.map((server) => server.close()));
});

async function nbdkit(options: Parameters<typeof startNbdkit>[0]): Promise<NbdkitServer> {
  const server = await startNbdkit(options);
  servers.push(server);
  return server;
}

async function open(uri: string, options: Parameters<typeof NbdBlockDevice.open>[1] = {}): Promise<NbdBlockDevice> {
  const device = await NbdBlockDevice.open(uri, options);
  devices.push(device);
  return device;
}

const strictPolicy = (minimum: string, maximum: string): string[] => [
  `blocksize-minimum=${minimum}`,
  `blocksize-maximum=${maximum}`,
  'blocksize-error-policy=error',
];

if (hasTool('nbdkit')) {
  blockDeviceSuite({
    name: 'NbdBlockDevice (nbdkit memory)',
    create: async (sizeBytes) => NbdBlockDevice.open((await nbdkit({ plugin: ['memory', String(sizeBytes)] })).uri),
  });
  blockDeviceSuite({
    name: 'NbdBlockDevice (nbdkit --no-sr memory, simple replies)',
    create: async (sizeBytes) => NbdBlockDevice.open((await nbdkit({ flags: ['--no-sr'], plugin: ['memory', String(sizeBytes)] })).uri),
  });
  blockDeviceSuite({
    name: 'NbdBlockDevice (nbdkit memory, strict 512-byte minimum and 64 KiB maximum)',
    create: async (sizeBytes) =>
      NbdBlockDevice.open((await nbdkit({ filters: ['blocksize-policy'], plugin: ['memory', String(sizeBytes), ...strictPolicy('512', '64K')] })).uri),
  });
} else {
  test('NbdBlockDevice conformance against nbdkit', (t) => {
    requireTools(t, 'nbdkit');
  });
}

describe('NbdBlockDevice against nbdkit', () => {
  test('NbdBlockDevice splits I/O at a 4 KiB maximum that nbdkit enforces', async (t) => {
    if (!requireTools(t, 'nbdkit')) return;
    const server = await nbdkit({ filters: ['blocksize-policy'], plugin: ['memory', '4M', ...strictPolicy('1', '4K')] });
    const device = await open(server.uri);
    assert.equal(device.maximumPayloadBytes, 4096);
    // The server really refuses a larger request: splitting is what makes the next lines work.
    await rejectsWithCode(device.connection.read({ offsetBytes: 0, lengthBytes: 8192 }), 'EINVAL');
    const data = pattern(1024 * KiB + 5, 21);
    await device.write(3, data, { fua: true });
    assert.deepEqual(await device.read(3, data.length), data);
    await device.writeZeroes(100, 64 * KiB);
    assert.deepEqual(await device.read(100, 64 * KiB), Buffer.alloc(64 * KiB));
    assert.equal(device.connectionState, 'ready');
  });

  test('NbdBlockDevice maps errors from the nbdkit error filter to EIO and ENOSPC, and recovers when they stop', async (t) => {
    if (!requireTools(t, 'nbdkit')) return;
    const triggers = await mkdtemp(join(tmpdir(), 'umirror-triggers-'));
    t.after(() => rm(triggers, { recursive: true, force: true }));
    const eioTrigger = join(triggers, 'eio');
    const enospcTrigger = join(triggers, 'enospc');
    const faulty = await nbdkit({
      filters: ['error'],
      plugin: [
        'memory',
        '1M',
        'error=EIO',
        'error-rate=100%',
        `error-file=${eioTrigger}`,
        'error-pwrite=ENOSPC',
        'error-pwrite-rate=100%',
        `error-pwrite-file=${enospcTrigger}`,
      ],
    });
    const device = await open(faulty.uri);
    await device.write(0, Buffer.from('before'));
    await writeFile(eioTrigger, '');
    await rejectsWithCode(device.read(0, 6), 'EIO');
    await rejectsWithCode(device.writeZeroes(0, 512), 'EIO');
    await rm(eioTrigger);
    await writeFile(enospcTrigger, '');
    await rejectsWithCode(device.write(0, Buffer.from('after')), 'ENOSPC');
    await rm(enospcTrigger);
    assert.equal(device.connectionState, 'ready', 'error replies do not fail the connection');
    assert.equal((await device.read(0, 6)).toString(), 'before');
    await device.write(0, Buffer.from('after!'));
    assert.equal((await device.read(0, 6)).toString(), 'after!');
  });

  test('NbdBlockDevice fails I/O in flight with EIO when nbdkit is killed, and every later request too', async (t) => {
    if (!requireTools(t, 'nbdkit')) return;
    const server = await nbdkit({ filters: ['delay'], plugin: ['memory', '1M', 'rdelay=60'] });
    const device = await open(server.uri);
    await device.write(0, Buffer.from('written'));
    const reads = [device.read(0, 7), device.read(4096, 4096), device.read(8192, 100)];
    const failed = Promise.all(reads.map((read) => rejectsWithCode(read, 'EIO')));
    await waitFor(() => device.connection.inFlightCount === 3);
    server.kill('SIGKILL');
    await failed;
    assert.equal(device.connectionState, 'failed');
    await rejectsWithCode(device.write(0, Buffer.from('x')), 'EIO');
    await rejectsWithCode(device.flush(), 'EIO');
    await device.close();
  });

  test('NbdBlockDevice times out a read the delay filter holds past requestTimeoutMs, and not one below it', async (t) => {
    if (!requireTools(t, 'nbdkit')) return;
    const slow = await nbdkit({ filters: ['delay'], plugin: ['memory', '1M', 'rdelay=30'] });
    const device = await open(slow.uri, { requestTimeoutMs: 300 });
    await device.write(0, Buffer.from('slow'));
    await assert.rejects(device.read(0, 4), (err: unknown) => {
      assert.ok(err instanceof BlockError);
      assert.equal(err.code, 'EIO');
      assert.match(err.message, /no reply within 300 ms; connection dropped/);
      return true;
    });
    assert.equal(device.connectionState, 'failed');

    const fine = await nbdkit({ filters: ['delay'], plugin: ['memory', '1M', 'rdelay=50ms'] });
    const patient = await open(fine.uri, { requestTimeoutMs: 30_000 });
    await patient.write(0, Buffer.from('ok'));
    assert.equal((await patient.read(0, 2)).toString(), 'ok');
    assert.equal(patient.connectionState, 'ready');
  });
});

async function waitFor(condition: () => boolean): Promise<void> {
  for (let i = 0; i < 500 && !condition(); i++) await new Promise((resolve) => setTimeout(resolve, 10));
  assert.ok(condition(), 'condition reached within 5 s');
}
