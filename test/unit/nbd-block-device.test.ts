/**
 * NbdBlockDevice against umirror's own NbdServer (conformance, with and without a minimum block size)
 * and against a scripted server that answers exactly what a test chooses: hostile replies fail the device
 * with EIO and leave the process running, server errors map to their errno, requests are split at the
 * advertised maximum and aligned to the minimum, a stalled request times out and drops the connection.
 * nbdkit-backed tests are in test/interop/nbd-client-nbdkit.test.ts.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { NbdBlockDevice } from '../../src/block/nbd-block-device.js';
import { MemoryBlockDevice } from '../../src/block/memory-block-device.js';
import type { ReadOptions } from '../../src/block/block-device.js';
import { BlockError } from '../../src/errors.js';
import {
  encodeChunkError,
  encodeChunkNone,
  encodeChunkOffsetDataHeader,
  encodeChunkOffsetHole,
  encodeSimpleReply,
} from '../../src/nbd/codec.js';
import type { NbdExport } from '../../src/nbd/nbd-export.js';
import { NbdServer } from '../../src/nbd/server.js';
import { command, commandFlag, magic, nbdErrno, replyFlag, replyType, transmissionFlag } from '../../src/nbd/protocol.js';
import { blockDeviceSuite, pattern, rejectsWithCode } from '../conformance/block-device.suite.js';
import { type ScriptedServer, type ScriptedServerOptions, startScriptedServer } from '../helpers/nbd-scripted-server.js';

const KiB = 1024;
const cleanups: (() => Promise<void>)[] = [];
after(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** umirror's NbdServer on a Unix socket in a temp dir, serving `device`. */
async function serve(device: MemoryBlockDevice, exportOptions: Partial<NbdExport> = {}): Promise<{ uri: string; server: NbdServer }> {
  const dir = await mkdtemp(join(tmpdir(), 'umirror-nbdc-'));
  const server = new NbdServer({ exports: [{ name: 'leg', device, ...exportOptions }] });
  const listener = await server.listen({ path: join(dir, 'nbd.sock') });
  cleanups.push(async () => {
    await server.close({ graceful: false });
    await device.close();
    await rm(dir, { recursive: true, force: true });
  });
  return { uri: listener.uriFor('leg'), server };
}

async function scripted(options: ScriptedServerOptions = {}): Promise<ScriptedServer> {
  const server = await startScriptedServer(options);
  cleanups.push(() => server.close());
  return server;
}

async function openDevice(uri: string, options: Parameters<typeof NbdBlockDevice.open>[1] = {}): Promise<NbdBlockDevice> {
  const device = await NbdBlockDevice.open(uri, options);
  cleanups.push(() => device.close().catch(() => undefined));
  return device;
}

/** A memory device whose reads wait until `release()`; counts the reads waiting. */
class StallingDevice extends MemoryBlockDevice {
  waiting = 0;
  #release: () => void = () => undefined;
  #gate = new Promise<void>((resolve) => {
    this.#release = resolve;
  });
  release(): void {
    this.#release();
  }
  protected override async doRead(offsetBytes: number, lengthBytes: number, options: ReadOptions): Promise<Buffer> {
    this.waiting += 1;
    await this.#gate;
    this.waiting -= 1;
    return super.doRead(offsetBytes, lengthBytes, options);
  }
}

async function until(what: string, condition: () => boolean): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (condition()) return;
    await sleep(10);
  }
  assert.fail(`timed out waiting for ${what}`);
}

blockDeviceSuite({
  name: 'NbdBlockDevice (umirror NbdServer)',
  create: async (sizeBytes) => NbdBlockDevice.open((await serve(new MemoryBlockDevice({ sizeBytes }))).uri),
});

blockDeviceSuite({
  name: 'NbdBlockDevice (umirror NbdServer, 512-byte minimum block)',
  create: async (sizeBytes) => NbdBlockDevice.open((await serve(new MemoryBlockDevice({ sizeBytes }), { minimumBlockBytes: 512 })).uri),
});

blockDeviceSuite({
  name: 'NbdBlockDevice (simple replies, scripted server)',
  create: async (sizeBytes) => NbdBlockDevice.open((await scripted({ sizeBytes, structuredReplies: false })).uri),
});

describe('NbdBlockDevice against umirror NbdServer', () => {
  test('NbdBlockDevice.open reports the export geometry and capabilities', async () => {
    const { uri } = await serve(new MemoryBlockDevice({ sizeBytes: 4 * 1024 * KiB }));
    const device = await openDevice(uri);
    assert.equal(device.sizeBytes, 4 * 1024 * KiB);
    assert.equal(device.name, uri);
    assert.equal(device.uri, uri);
    assert.equal(device.readOnly, false);
    assert.deepEqual(device.capabilities, { flush: true, fua: true, trim: true, writeZeroes: true });
    assert.equal(device.minimumBlockBytes, 1);
    assert.equal(device.maximumPayloadBytes, 32 * 1024 * KiB);
    assert.equal(device.logicalBlockBytes, 512);
    assert.equal(device.connectionState, 'ready');
    assert.equal(device.connection.negotiated.structuredReplies, true);
  });

  test('NbdBlockDevice on a read-only export reads and fails writes, trims and zeroes with EPERM', async () => {
    const memory = new MemoryBlockDevice({ sizeBytes: 1024 * KiB });
    await memory.write(0, Buffer.from('remote'));
    const { uri } = await serve(memory, { readOnly: true });
    const device = await openDevice(uri);
    assert.equal(device.readOnly, true);
    assert.equal(device.capabilities.trim, false);
    assert.equal(device.capabilities.writeZeroes, false);
    assert.equal((await device.read(0, 6)).toString(), 'remote');
    await rejectsWithCode(device.write(0, Buffer.from('x')), 'EPERM');
    await rejectsWithCode(device.trim(0, 4096), 'EPERM');
    await rejectsWithCode(device.writeZeroes(0, 4096), 'EPERM');
  });

  test('NbdBlockDevice.open fails with EINVAL for an unknown export and EIO for a missing socket', async () => {
    const { uri } = await serve(new MemoryBlockDevice({ sizeBytes: 64 * KiB }));
    await rejectsWithCode(NbdBlockDevice.open(uri.replace('/leg?', '/nope?')), 'EINVAL');
    await rejectsWithCode(NbdBlockDevice.open(`nbd+unix:///leg?socket=${join(tmpdir(), 'umirror-no-such-dir', 'sock')}`), 'EIO');
    await rejectsWithCode(NbdBlockDevice.open('nbds://127.0.0.1:1/leg?tls-type=anon'), 'ENOTSUP');
    await rejectsWithCode(NbdBlockDevice.open('nbds://127.0.0.1:1/leg'), 'EIO');
    await rejectsWithCode(NbdBlockDevice.open('nbd+unix:///leg'), 'EINVAL');
  });

  test('NbdBlockDevice keeps at most inFlightMax requests on the wire and queues the rest', async () => {
    const memory = new StallingDevice({ sizeBytes: 1024 * KiB });
    const { uri } = await serve(memory);
    const device = await openDevice(uri, { inFlightMax: 4 });
    const reads = Array.from({ length: 10 }, (_, i) => device.read(i * 4096, 4096));
    await until('4 reads at the server', () => memory.waiting === 4);
    await sleep(50);
    assert.equal(memory.waiting, 4, 'no fifth request reached the server');
    assert.equal(device.connection.inFlightCount, 4);
    memory.release();
    const results = await Promise.all(reads);
    assert.equal(results.length, 10);
    for (const data of results) assert.deepEqual(data, Buffer.alloc(4096));
  });

  test('NbdBlockDevice fails reads in flight with EIO when the server drops the connection, and later reads too', async () => {
    const memory = new StallingDevice({ sizeBytes: 1024 * KiB });
    const { uri, server } = await serve(memory);
    const device = await openDevice(uri);
    const reads = [device.read(0, 512), device.read(4096, 512)];
    const failed = Promise.all(reads.map((read) => rejectsWithCode(read, 'EIO')));
    await until('reads at the server', () => memory.waiting === 2);
    await server.close({ graceful: false });
    await failed;
    assert.equal(device.connectionState, 'failed');
    await rejectsWithCode(device.read(0, 1), 'EIO');
    await rejectsWithCode(device.write(0, Buffer.from('x')), 'EIO');
    await rejectsWithCode(device.flush(), 'EIO');
    memory.release();
    await device.close();
  });

  test('NbdBlockDevice fails a request unanswered within requestTimeoutMs with EIO and drops the connection', async () => {
    const server = await scripted({ answer: ({ request, proper }) => (request.type === command.read ? [] : proper()) });
    const device = await openDevice(server.uri, { requestTimeoutMs: 200 });
    await device.write(0, Buffer.from('fast'));
    await assert.rejects(device.read(0, 4), (err: unknown) => {
      assert.ok(err instanceof BlockError);
      assert.equal(err.code, 'EIO');
      assert.match(err.message, /no reply within 200 ms/);
      return true;
    });
    assert.equal(device.connectionState, 'failed');
    await until('the server to see the connection close', () => server.openConnections() === 0);
    await rejectsWithCode(device.read(0, 4), 'EIO');
  });

  test('NbdBlockDevice.close waits for requests in flight, then sends DISC', async () => {
    const server = await scripted();
    const device = await NbdBlockDevice.open(server.uri);
    const write = device.write(0, Buffer.from('last words'));
    await device.close();
    await write;
    assert.equal(server.requests.at(-1)?.type, command.disc);
    assert.equal(device.connectionState, 'closed');
    assert.equal(server.disk.toString('utf8', 0, 10), 'last words');
  });
});

describe('NbdBlockDevice against a hostile server', () => {
  type Breaker = (context: Parameters<NonNullable<ScriptedServerOptions['answer']>>[0]) => Buffer[];
  const chunkHeader = (options: { flags: number; type: number; cookieLo: number; cookieHi?: number; lengthBytes: number }): Buffer => {
    const out = Buffer.alloc(20);
    out.writeUInt32BE(magic.structuredReply, 0);
    out.writeUInt16BE(options.flags, 4);
    out.writeUInt16BE(options.type, 6);
    out.writeUInt32BE(options.cookieHi ?? 0, 8);
    out.writeUInt32BE(options.cookieLo, 12);
    out.writeUInt32BE(options.lengthBytes, 16);
    return out;
  };
  const u64 = (value: number): Buffer => {
    const out = Buffer.alloc(8);
    out.writeBigUInt64BE(BigInt(value));
    return out;
  };
  const hostile: readonly { name: string; op: 'read' | 'write'; structured?: boolean; breaker: Breaker }[] = [
    {
      name: 'a reply with a cookie not in flight',
      op: 'read',
      breaker: ({ request, proper }) => {
        const [header, data] = proper();
        assert.ok(header !== undefined && data !== undefined);
        header.writeUInt32BE(request.cookieLo + 1000, 12);
        return [header, data];
      },
    },
    {
      name: 'a chunk with a cookie whose high half is not ours',
      op: 'write',
      breaker: ({ request }) => [chunkHeader({ flags: replyFlag.done, type: replyType.none, cookieLo: request.cookieLo, cookieHi: 7, lengthBytes: 0 })],
    },
    {
      name: 'an OFFSET_DATA chunk larger than the request',
      op: 'read',
      breaker: ({ request }) => [
        chunkHeader({ flags: replyFlag.done, type: replyType.offsetData, cookieLo: request.cookieLo, lengthBytes: 8 + request.lengthBytes + 1 }),
        u64(request.offsetBytes),
        Buffer.alloc(request.lengthBytes + 1, 0xee),
      ],
    },
    {
      name: 'a 4 GiB chunk header (refused before any payload is buffered)',
      op: 'read',
      breaker: ({ request }) => [chunkHeader({ flags: 0, type: replyType.offsetData, cookieLo: request.cookieLo, lengthBytes: 0xffffffff })],
    },
    {
      name: 'garbage instead of a reply magic',
      op: 'read',
      breaker: () => [Buffer.from('this is not an NBD reply at all!')],
    },
    {
      name: 'overlapping OFFSET_DATA chunks',
      op: 'read',
      breaker: ({ request }) => [
        encodeChunkOffsetDataHeader({ cookie: request, offsetBytes: request.offsetBytes, dataBytes: 300, done: false }),
        Buffer.alloc(300, 1),
        encodeChunkOffsetDataHeader({ cookie: request, offsetBytes: request.offsetBytes + 200, dataBytes: request.lengthBytes - 200, done: true }),
        Buffer.alloc(request.lengthBytes - 200, 2),
      ],
    },
    {
      name: 'a successful READ reply that leaves bytes uncovered',
      op: 'read',
      breaker: ({ request }) => [
        encodeChunkOffsetDataHeader({ cookie: request, offsetBytes: request.offsetBytes, dataBytes: request.lengthBytes - 1, done: false }),
        Buffer.alloc(request.lengthBytes - 1, 3),
        encodeChunkNone(request),
      ],
    },
    {
      name: 'a data chunk outside the request',
      op: 'read',
      breaker: ({ request }) => [
        encodeChunkOffsetDataHeader({ cookie: request, offsetBytes: request.offsetBytes + 1, dataBytes: request.lengthBytes, done: true }),
        Buffer.alloc(request.lengthBytes, 4),
      ],
    },
    {
      name: 'a NONE chunk without DONE',
      op: 'write',
      breaker: ({ request }) => [chunkHeader({ flags: 0, type: replyType.none, cookieLo: request.cookieLo, lengthBytes: 0 })],
    },
    {
      name: 'an OFFSET_HOLE chunk answering a WRITE',
      op: 'write',
      breaker: ({ request }) => [encodeChunkOffsetHole({ cookie: request, offsetBytes: request.offsetBytes, holeBytes: request.lengthBytes, done: true })],
    },
    {
      name: 'a BLOCK_STATUS chunk nobody asked for',
      op: 'write',
      breaker: ({ request }) => [chunkHeader({ flags: replyFlag.done, type: replyType.blockStatus, cookieLo: request.cookieLo, lengthBytes: 12 }), Buffer.alloc(12)],
    },
    {
      name: 'an ERROR chunk with error value 0',
      op: 'write',
      breaker: ({ request }) => [
        chunkHeader({ flags: replyFlag.done, type: replyType.error, cookieLo: request.cookieLo, lengthBytes: 6 }),
        Buffer.alloc(6),
      ],
    },
    {
      name: 'an ERROR chunk whose message length disagrees with the chunk',
      op: 'write',
      breaker: ({ request }) => {
        const payload = Buffer.alloc(10);
        payload.writeUInt32BE(nbdErrno.EIO, 0);
        payload.writeUInt16BE(100, 4);
        return [chunkHeader({ flags: replyFlag.done, type: replyType.error, cookieLo: request.cookieLo, lengthBytes: 10 }), payload];
      },
    },
    {
      name: 'a simple reply to a READ after structured replies were negotiated',
      op: 'read',
      breaker: ({ request }) => [encodeSimpleReply(request, 0), Buffer.alloc(request.lengthBytes)],
    },
  ];

  for (const { name, op, breaker } of hostile) {
    test(`NbdBlockDevice fails with EIO on ${name}, and the process survives`, async () => {
      let broken = false;
      const server = await scripted({
        answer: (context) => {
          const isTarget = op === 'read' ? context.request.type === command.read : context.request.type === command.write;
          if (!isTarget || broken) return context.proper();
          broken = true;
          return breaker(context);
        },
      });
      const device = await openDevice(server.uri);
      const data = pattern(1000, 5);
      const attempt = op === 'read' ? device.read(4096, 1000) : device.write(4096, data);
      await rejectsWithCode(attempt, 'EIO');
      assert.equal(device.connectionState, 'failed');
      assert.match(device.connection.failure?.message ?? '', /protocol error/);
      await rejectsWithCode(device.read(0, 16), 'EIO');
      await until('the server to see the connection close', () => server.openConnections() === 0);
      await device.close();
    });
  }

  test('NbdBlockDevice maps error chunks to errno codes and keeps the connection', async () => {
    const errors = [nbdErrno.ENOSPC, nbdErrno.EPERM, nbdErrno.EIO, 9999];
    let next = 0;
    const server = await scripted({
      answer: (context) => {
        if (context.request.type !== command.write || next >= errors.length) return context.proper();
        const error = errors[next++] ?? nbdErrno.EIO;
        return [encodeChunkError({ cookie: context.request, error, message: `injected ${error}`, done: true })];
      },
    });
    const device = await openDevice(server.uri);
    await rejectsWithCode(device.write(0, Buffer.from('a')), 'ENOSPC');
    await rejectsWithCode(device.write(0, Buffer.from('a')), 'EPERM');
    await assert.rejects(device.write(0, Buffer.from('a')), (err: unknown) => {
      assert.ok(err instanceof BlockError);
      assert.equal(err.code, 'EIO');
      assert.match(err.message, /injected 5/);
      return true;
    });
    await rejectsWithCode(device.write(0, Buffer.from('a')), 'EIO');
    assert.equal(device.connectionState, 'ready');
    await device.write(0, Buffer.from('fine'));
    assert.equal((await device.read(0, 4)).toString(), 'fine');
  });

  test('NbdBlockDevice assembles READ replies from out-of-order data and hole chunks', async () => {
    const server = await scripted({
      answer: ({ request, proper }) => {
        if (request.type !== command.read) return proper();
        const { offsetBytes } = request;
        return [
          encodeChunkOffsetDataHeader({ cookie: request, offsetBytes: offsetBytes + 600, dataBytes: 400, done: false }),
          Buffer.alloc(400, 0xbb),
          encodeChunkOffsetHole({ cookie: request, offsetBytes: offsetBytes + 100, holeBytes: 500, done: false }),
          encodeChunkOffsetDataHeader({ cookie: request, offsetBytes, dataBytes: 100, done: false }),
          Buffer.alloc(100, 0xaa),
          encodeChunkNone(request),
        ];
      },
    });
    const device = await openDevice(server.uri);
    const data = await device.read(8192, 1000);
    assert.deepEqual(data, Buffer.concat([Buffer.alloc(100, 0xaa), Buffer.alloc(500), Buffer.alloc(400, 0xbb)]));
  });

  test('NbdBlockDevice splits reads and writes at the advertised maximum payload', async () => {
    const server = await scripted({ blockSizes: { minimumBytes: 1, preferredBytes: 4096, maximumBytes: 4096 } });
    const device = await openDevice(server.uri);
    assert.equal(device.maximumPayloadBytes, 4096);
    const data = pattern(20_000, 8);
    await device.write(100, data);
    assert.deepEqual(await device.read(100, data.length), data);
    const io = server.requests.filter((r) => r.type === command.read || r.type === command.write);
    assert.equal(io.length, 10, 'five pieces each way');
    for (const request of io) assert.ok(request.lengthBytes <= 4096, `a ${request.lengthBytes}-byte request`);
  });

  test('NbdBlockDevice read-modify-writes partial blocks when the server demands a 512-byte minimum', async () => {
    const server = await scripted({ blockSizes: { minimumBytes: 512, preferredBytes: 4096, maximumBytes: 64 * KiB } });
    server.disk.fill(0x11);
    const device = await openDevice(server.uri);
    assert.equal(device.minimumBlockBytes, 512);
    await device.write(1000, Buffer.from('abc'));
    await device.writeZeroes(1500, 1100);
    await device.trim(100, 2000);
    const expected = Buffer.alloc(4096, 0x11);
    expected.write('abc', 1000);
    expected.fill(0, 1500, 2600);
    // The trim covered the whole blocks 512..2048 (a trim's contents are unspecified: the server zeroes).
    expected.fill(0, 512, 2048);
    assert.deepEqual(await device.read(0, 4096), expected);
    for (const request of server.requests) {
      if (request.type === command.disc || request.type === command.flush) continue;
      assert.equal(request.offsetBytes % 512, 0, `offset ${request.offsetBytes} aligned`);
      assert.equal(request.lengthBytes % 512, 0, `length ${request.lengthBytes} aligned`);
    }
  });

  test('NbdBlockDevice serializes overlapping patches of one block (no lost bytes)', async () => {
    const server = await scripted({ blockSizes: { minimumBytes: 4096, preferredBytes: 4096, maximumBytes: 64 * KiB } });
    const device = await openDevice(server.uri);
    const writes = Array.from({ length: 64 }, (_, i) => device.write(i * 8, Buffer.alloc(8, i + 1)));
    await Promise.all(writes);
    const back = await device.read(0, 512);
    for (let i = 0; i < 64; i++) assert.deepEqual(back.subarray(i * 8, i * 8 + 8), Buffer.alloc(8, i + 1), `patch ${i}`);
  });

  test('NbdBlockDevice emulates FUA with FLUSH, and skips FLUSH when the server has none', async () => {
    const noFua = await scripted({ transmissionFlags: transmissionFlag.hasFlags | transmissionFlag.sendFlush });
    const device = await openDevice(noFua.uri);
    assert.deepEqual(device.capabilities, { flush: true, fua: false, trim: false, writeZeroes: false });
    await device.write(0, Buffer.from('durable'), { fua: true });
    assert.deepEqual(noFua.requests.map((r) => [r.type, r.flags & commandFlag.fua]), [[command.write, 0], [command.flush, 0]]);

    const bare = await scripted({ transmissionFlags: transmissionFlag.hasFlags });
    const plain = await openDevice(bare.uri);
    await plain.flush();
    await plain.write(0, Buffer.from('x'), { fua: true });
    await plain.writeZeroes(0, 10);
    await plain.trim(0, 4096);
    assert.deepEqual(bare.requests.map((r) => r.type), [command.write, command.write], 'zeroes written as data, trim a no-op, no FLUSH');
  });

  test('NbdBlockDevice talks to a server without NBD_OPT_GO through EXPORT_NAME', async () => {
    const server = await scripted({ go: false, structuredReplies: false });
    const device = await openDevice(server.uri);
    await device.write(10, Buffer.from('old server'));
    assert.equal((await device.read(10, 10)).toString(), 'old server');
    assert.equal(device.connection.negotiated.structuredReplies, false);
  });

  test('NbdBlockDevice.open refuses an oldstyle server with ENOTSUP and a server that hangs up with EIO', async () => {
    const oldstyle = Buffer.alloc(152);
    Buffer.from('NBDMAGIC').copy(oldstyle, 0);
    oldstyle.writeUInt32BE(0x00004202, 8);
    oldstyle.writeUInt32BE(0x81861253, 12);
    const old = await scripted({ greeting: oldstyle });
    await rejectsWithCode(NbdBlockDevice.open(old.uri), 'ENOTSUP');
    const rude = await scripted({ afterClientFlags: () => 'close' });
    await rejectsWithCode(NbdBlockDevice.open(rude.uri), 'EIO');
    const silent = await scripted({ afterClientFlags: () => 'stall' });
    await rejectsWithCode(NbdBlockDevice.open(silent.uri, { connectTimeoutMs: 200 }), 'EIO');
  });
});
