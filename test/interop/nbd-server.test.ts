/**
 * NbdServer against real NBD clients (nbdinfo, qemu-io, qemu-img, nbdcopy, fio) and against a raw socket
 * for the kernel-style path, malformed input, backpressure and shutdown. The server runs in this process;
 * tools run as child processes (asynchronously, so the server keeps serving).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { BlockDevice } from '../../src/block/block-device.js';
import { MemoryBlockDevice } from '../../src/block/memory-block-device.js';
import { inFlightMax, requestBytesMax } from '../../src/limits.js';
import { encodeRequest, readU64, type RequestHeader } from '../../src/nbd/client-codec.js';
import type { ExtentQuery, NbdExport, NbdExtent } from '../../src/nbd/nbd-export.js';
import {
  allocationFlag,
  clientFlag,
  command,
  commandFlag,
  nbdErrno,
  option,
  optionReply,
  replyFlag,
  replyType,
  transmissionFlag,
} from '../../src/nbd/protocol.js';
import { outgoingBuffersMax } from '../../src/nbd/connection.js';
import { NbdServer } from '../../src/nbd/server.js';
import { RawNbdClient } from '../helpers/nbd-raw-client.js';
import { ProbeDevice } from '../helpers/probe-device.js';
import { type NbdFixture, requireTools, run, runOk, startNbdFixture } from '../helpers/nbd-tools.js';

const MiB = 1024 * 1024;

function req(type: number, fields: Partial<RequestHeader> = {}): RequestHeader {
  return { type, flags: 0, cookieHi: 0, cookieLo: 1, offsetBytes: 0, lengthBytes: 0, ...fields };
}

/** Reads the reply to one request and returns its error value (0 on success) and any read data. */
async function replyOf(client: RawNbdClient, options: { structured: boolean; readBytes?: number }): Promise<{ error: number; data: Buffer; cookieLo: number }> {
  const first = await client.reply();
  if (first.header.kind === 'simple') {
    const data = first.header.error === 0 && options.readBytes !== undefined ? await client.read(options.readBytes) : Buffer.alloc(0);
    return { error: first.header.error, data, cookieLo: first.header.cookieLo };
  }
  assert.ok(options.structured, 'a structured chunk only after STRUCTURED_REPLY');
  let error = 0;
  const parts: Buffer[] = [];
  let chunk = first;
  for (;;) {
    assert.ok(chunk.header.kind === 'chunk');
    if (chunk.header.type === replyType.error || chunk.header.type === replyType.errorOffset) error = chunk.payload.readUInt32BE(0);
    if (chunk.header.type === replyType.offsetData) parts.push(chunk.payload.subarray(8));
    if ((chunk.header.flags & replyFlag.done) !== 0) break;
    chunk = await client.reply();
  }
  return { error, data: Buffer.concat(parts), cookieLo: chunk.header.cookieLo };
}

async function connectGo(fixture: NbdFixture, options: { structured?: boolean; contexts?: readonly string[]; name?: string } = {}): Promise<RawNbdClient> {
  const client = await RawNbdClient.connect(fixture.unix.address);
  await client.start();
  await client.go({ name: options.name ?? 'vol0', structured: options.structured ?? true, ...(options.contexts ? { contexts: options.contexts } : {}) });
  return client;
}

/** The connection still serves: a 512-byte read succeeds. */
async function assertServes(client: RawNbdClient, structured: boolean): Promise<void> {
  client.request(req(command.read, { cookieLo: 4242, lengthBytes: 512 }));
  const reply = await replyOf(client, { structured, readBytes: 512 });
  assert.equal(reply.error, 0);
  assert.equal(reply.cookieLo, 4242);
  assert.equal(reply.data.length, 512);
}

/** base:allocation: first MiB data, the rest a zeroed hole. umirror:sync: first 2 MiB out of sync. */
function splitExtents(boundaryBytes: number, flags: readonly [number, number]): (query: ExtentQuery) => Promise<readonly NbdExtent[]> {
  return (query) => {
    const end = query.offsetBytes + query.lengthBytes;
    const out: NbdExtent[] = [];
    if (query.offsetBytes < boundaryBytes) out.push({ lengthBytes: Math.min(boundaryBytes, end) - query.offsetBytes, flags: flags[0] });
    if (end > boundaryBytes) out.push({ lengthBytes: end - Math.max(boundaryBytes, query.offsetBytes), flags: flags[1] });
    return Promise.resolve(out);
  };
}

describe('NbdServer with real NBD clients', () => {
  let fixture: NbdFixture;
  before(async () => {
    fixture = await startNbdFixture();
  });
  after(async () => {
    await fixture.close();
  });

  test('NbdServer answers nbdinfo --json with size, flags, contexts and block sizes', async (t) => {
    if (!requireTools(t, 'nbdinfo')) return;
    assert.equal(fixture.unix.uri, `nbd+unix:///vol0?socket=${join(fixture.dir, 'nbd.sock')}`);
    assert.match(fixture.tcp.uri, /^nbd:\/\/127\.0\.0\.1:\d+\/vol0$/);
    for (const uri of [fixture.unix.uri, fixture.tcp.uri]) {
      const info = JSON.parse(await runOk('nbdinfo', ['--json', uri])) as {
        protocol: string;
        structured: boolean;
        exports: Record<string, unknown>[];
      };
      assert.equal(info.protocol, 'newstyle-fixed');
      assert.equal(info.structured, true);
      const only = info.exports[0];
      assert.ok(only !== undefined);
      assert.equal(only['export-name'], 'vol0');
      assert.equal(only['description'], 'umirror test volume');
      assert.equal(only['export-size'], 64 * MiB);
      assert.deepEqual(only['contexts'], ['base:allocation']);
      for (const can of ['can_flush', 'can_fua', 'can_trim', 'can_zero', 'can_fast_zero', 'can_multi_conn', 'can_cache', 'can_df']) {
        assert.equal(only[can], true, can);
      }
      assert.equal(only['is_read_only'], false);
      assert.equal(only['block_size_minimum'], 1);
      assert.equal(only['block_size_preferred'], 4096);
      assert.equal(only['block_size_maximum'], requestBytesMax);
    }
  });

  test('NbdServer lists its export for nbdinfo --list and answers --can for each capability', async (t) => {
    if (!requireTools(t, 'nbdinfo')) return;
    const list = JSON.parse(await runOk('nbdinfo', ['--list', '--json', fixture.tcp.uri])) as { exports: { 'export-name': string }[] };
    assert.deepEqual(list.exports.map((e) => e['export-name']), ['vol0']);
    for (const can of ['flush', 'fua', 'trim', 'zero', 'multi-conn', 'cache', 'fast-zero']) {
      assert.equal((await run('nbdinfo', ['--can', can, fixture.unix.uri])).code, 0, `--can ${can}`);
    }
    assert.equal((await run('nbdinfo', ['--is', 'read-only', fixture.unix.uri])).code, 2);
  });

  test('NbdServer answers the default (empty) export name on a single-export listener', async (t) => {
    if (!requireTools(t, 'nbdinfo')) return;
    const size = await runOk('nbdinfo', ['--size', fixture.tcp.uriFor('')]);
    assert.equal(size.trim(), String(64 * MiB));
  });

  test('NbdServer passes qemu-io pattern writes and reads, unaligned, aio, zero, discard and flush', async (t) => {
    if (!requireTools(t, 'qemu-io')) return;
    const commands = [
      'write -P 0xab 0 1M',
      'read -P 0xab 0 1M',
      'write -P 0x11 1000 3333',
      'read -P 0x11 1000 3333',
      'read -P 0xab 0 1000',
      'aio_write -P 0x22 2M 64k',
      'aio_write -P 0x23 3M 64k',
      'aio_write -P 0x24 5M 1M',
      'aio_flush',
      'read -P 0x22 2M 64k',
      'read -P 0x23 3M 64k',
      'read -P 0x24 5M 1M',
      'write -z 2M 32k',
      'read -P 0 2M 32k',
      'discard 6M 1M',
      'flush',
    ];
    const result = await run('qemu-io', ['-f', 'raw', fixture.unix.uri, ...commands.flatMap((c) => ['-c', c])]);
    assert.equal(result.code, 0, result.stderr);
    assert.doesNotMatch(result.stdout + result.stderr, /fail|error/i);
    const data = await fixture.device.read(1000, 3333);
    assert.ok(data.every((b) => b === 0x11));
    assert.ok((await fixture.device.read(2 * MiB, 32 * 1024)).every((b) => b === 0));
    assert.ok((await fixture.device.read(3 * MiB, 64 * 1024)).every((b) => b === 0x23));
  });

  test('NbdServer round-trips an image through qemu-img convert, compare, info and map', async (t) => {
    if (!requireTools(t, 'qemu-img')) return;
    const source = join(fixture.dir, 'source.img');
    const back = join(fixture.dir, 'back.img');
    await writeFile(source, randomBytes(64 * MiB));
    await runOk('qemu-img', ['convert', '-n', '-f', 'raw', '-O', 'raw', source, fixture.tcp.uri]);
    const compare = await run('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', source, fixture.tcp.uri]);
    assert.equal(compare.code, 0, compare.stdout + compare.stderr);
    await runOk('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', fixture.unix.uri, back]);
    assert.ok((await readFile(source)).equals(await readFile(back)));
    const info = JSON.parse(await runOk('qemu-img', ['info', '--output=json', fixture.unix.uri])) as { 'virtual-size': number };
    assert.equal(info['virtual-size'], 64 * MiB);
    const map = JSON.parse(await runOk('qemu-img', ['map', '-f', 'raw', '--output=json', fixture.unix.uri])) as { length: number; data: boolean }[];
    assert.equal(map.reduce((sum, e) => sum + e.length, 0), 64 * MiB);
    assert.ok(map.every((e) => e.data));
  });

  test('NbdServer copies both ways with nbdcopy byte for byte', async (t) => {
    if (!requireTools(t, 'nbdcopy')) return;
    const source = join(fixture.dir, 'copy-in.img');
    const out = join(fixture.dir, 'copy-out.img');
    const bytes = randomBytes(64 * MiB);
    await writeFile(source, bytes);
    await runOk('nbdcopy', [source, fixture.unix.uri]);
    assert.ok((await fixture.device.read(0, 64 * MiB)).equals(bytes));
    await runOk('nbdcopy', [fixture.tcp.uri, out]);
    assert.ok((await readFile(out)).equals(bytes));
  });

  test('NbdServer survives fio random writes with crc32c verify through the nbd engine', async (t) => {
    if (!requireTools(t, 'fio')) return;
    const args = [
      '--name=verify',
      '--ioengine=nbd',
      `--uri=${fixture.unix.uri}`,
      '--rw=randwrite',
      '--bs=4k',
      '--size=16M',
      '--iodepth=32',
      '--verify=crc32c',
      '--do_verify=1',
      '--verify_fatal=1',
      '--verify_state_save=0',
      '--output-format=json',
    ];
    const result = await run('fio', args, { timeoutMs: 120_000 });
    assert.equal(result.code, 0, result.stderr);
    const report = JSON.parse(result.stdout.slice(result.stdout.indexOf('{'))) as { jobs: { error: number; write: { io_bytes: number } }[] };
    assert.equal(report.jobs[0]?.error, 0);
    assert.equal(report.jobs[0]?.write.io_bytes, 16 * MiB);
  });

  test('NbdServer serves the kernel-style path: EXPORT_NAME, no structured replies, simple replies', async () => {
    const client = await RawNbdClient.connect(fixture.tcp.address);
    await client.start(clientFlag.fixedNewstyle);
    client.write(Buffer.concat([Buffer.from('IHAVEOPT'), u32(option.exportName), u32(4), Buffer.from('vol0')]));
    const reply = await client.read(10 + 124);
    assert.equal(readU64(reply, 0), 64 * MiB);
    const flags = reply.readUInt16BE(8);
    assert.equal(flags & transmissionFlag.sendDf, 0, 'no DF without structured replies');
    assert.ok(reply.subarray(10).every((b) => b === 0));
    const payload = Buffer.alloc(4096, 0x5a);
    client.request(req(command.write, { cookieLo: 1, offsetBytes: 8192, lengthBytes: 4096, flags: commandFlag.fua }), payload);
    assert.equal((await replyOf(client, { structured: false })).error, 0);
    client.request(req(command.flush, { cookieLo: 2 }));
    assert.equal((await replyOf(client, { structured: false })).error, 0);
    client.request(req(command.read, { cookieLo: 3, offsetBytes: 8192, lengthBytes: 4096 }));
    const read = await replyOf(client, { structured: false, readBytes: 4096 });
    assert.equal(read.cookieLo, 3);
    assert.ok(read.data.equals(payload));
    client.request(req(command.read, { cookieLo: 4, offsetBytes: 64 * MiB, lengthBytes: 512 }));
    assert.equal((await replyOf(client, { structured: false })).error, nbdErrno.EINVAL);
    await assertServes(client, false);
    client.request(req(command.disc));
    assert.ok(await client.closedByServer());
  });
});

function u32(value: number): Buffer {
  const out = Buffer.alloc(4);
  out.writeUInt32BE(value, 0);
  return out;
}

describe('NbdServer block status', () => {
  let fixture: NbdFixture;
  before(async () => {
    fixture = await startNbdFixture({
      sizeBytes: 8 * MiB,
      exportOptions: {
        blockStatus: splitExtents(MiB, [0, allocationFlag.hole | allocationFlag.zero]),
        metaContexts: [{ name: 'umirror:sync', extents: splitExtents(2 * MiB, [1, 0]) }],
      },
    });
  });
  after(async () => {
    await fixture.close();
  });

  test('NbdServer lists base:allocation and umirror:sync and maps both with nbdinfo --map', async (t) => {
    if (!requireTools(t, 'nbdinfo')) return;
    const info = JSON.parse(await runOk('nbdinfo', ['--json', fixture.unix.uri])) as { exports: { contexts: string[] }[] };
    assert.deepEqual(info.exports[0]?.contexts, ['base:allocation', 'umirror:sync']);
    const base = JSON.parse(await runOk('nbdinfo', ['--map', '--json', fixture.unix.uri])) as { offset: number; length: number; type: number }[];
    assert.deepEqual(base.map((e) => [e.offset, e.length, e.type]), [[0, MiB, 0], [MiB, 7 * MiB, 3]]);
    const sync = JSON.parse(await runOk('nbdinfo', ['--map=umirror:sync', '--json', fixture.tcp.uri])) as { offset: number; length: number; type: number }[];
    assert.deepEqual(sync.map((e) => [e.offset, e.length, e.type]), [[0, 2 * MiB, 1], [2 * MiB, 6 * MiB, 0]]);
  });

  test('NbdServer reports holes to qemu-img map from the base:allocation callback', async (t) => {
    if (!requireTools(t, 'qemu-img')) return;
    const map = JSON.parse(await runOk('qemu-img', ['map', '-f', 'raw', '--output=json', fixture.unix.uri])) as { start: number; length: number; data: boolean; zero: boolean }[];
    assert.deepEqual(map.map((e) => [e.start, e.length, e.data, e.zero]), [[0, MiB, true, false], [MiB, 7 * MiB, false, true]]);
  });

  test('NbdServer answers BLOCK_STATUS with REQ_ONE with one descriptor per selected context', async () => {
    const client = await connectGo(fixture, { contexts: ['base:allocation', 'umirror:'] });
    client.request(req(command.blockStatus, { cookieLo: 7, offsetBytes: 512 * 1024, lengthBytes: 4 * MiB, flags: commandFlag.reqOne }));
    const chunks = [await client.reply(), await client.reply()];
    const seen = chunks.map(({ header, payload }) => {
      assert.ok(header.kind === 'chunk' && header.type === replyType.blockStatus);
      assert.equal(payload.length, 4 + 8);
      return [payload.readUInt32BE(0), payload.readUInt32BE(4), payload.readUInt32BE(8)];
    });
    assert.deepEqual(seen, [[1, 512 * 1024, 0], [2, 1.5 * MiB, 1]]);
    assert.ok(chunks[1]?.header.kind === 'chunk' && (chunks[1].header.flags & replyFlag.done) !== 0);
    client.destroy();
  });

  test('NbdServer lists only matching contexts for LIST_META_CONTEXT queries', async () => {
    const client = await RawNbdClient.connect(fixture.unix.address);
    await client.start();
    const before = await client.option(option.listMetaContext, metaPayload('vol0', []));
    assert.equal(before.at(-1)?.replyType, optionReply.errInvalid, 'needs structured replies first');
    await client.option(option.structuredReply);
    const all = await client.option(option.listMetaContext, metaPayload('vol0', []));
    assert.deepEqual(all.filter((r) => r.replyType === optionReply.metaContext).map((r) => r.payload.toString('utf8', 4)), ['base:allocation', 'umirror:sync']);
    const ours = await client.option(option.listMetaContext, metaPayload('vol0', ['umirror:', 'other:thing']));
    assert.deepEqual(ours.filter((r) => r.replyType === optionReply.metaContext).map((r) => r.payload.toString('utf8', 4)), ['umirror:sync']);
    const unknown = await client.option(option.listMetaContext, metaPayload('nope', []));
    assert.equal(unknown.at(-1)?.replyType, optionReply.errUnknown);
    client.destroy();
  });
});

function metaPayload(name: string, queries: readonly string[]): Buffer {
  const parts = [u32(Buffer.byteLength(name)), Buffer.from(name), u32(queries.length)];
  for (const query of queries) parts.push(u32(Buffer.byteLength(query)), Buffer.from(query));
  return Buffer.concat(parts);
}

describe('NbdServer malformed input over a raw socket', () => {
  let fixture: NbdFixture;
  before(async () => {
    fixture = await startNbdFixture({ sizeBytes: 8 * MiB });
  });
  after(async () => {
    await fixture.close();
  });

  test('NbdServer drops a client that sends a bad request magic and keeps serving others', async () => {
    const bad = await connectGo(fixture);
    const other = await connectGo(fixture);
    bad.write(Buffer.alloc(28, 0xee));
    assert.ok(await bad.closedByServer());
    await assertServes(other, true);
    other.destroy();
  });

  test('NbdServer drops a client with unknown client flags or a bad option magic', async () => {
    const flags = await RawNbdClient.connect(fixture.unix.address);
    await flags.start(clientFlag.fixedNewstyle | 0x100);
    assert.ok(await flags.closedByServer());
    const magic = await RawNbdClient.connect(fixture.unix.address);
    await magic.start();
    magic.write(Buffer.concat([Buffer.from('IHAVEOPX'), u32(option.go), u32(0)]));
    assert.ok(await magic.closedByServer());
    await assertServes(await connectGo(fixture), true);
  });

  test('NbdServer refuses unknown options, STARTTLS and malformed options, then still enters transmission', async () => {
    const client = await RawNbdClient.connect(fixture.unix.address);
    const { handshakeFlags } = await client.start();
    assert.equal(handshakeFlags, 3);
    assert.equal((await client.option(99)).at(-1)?.replyType, optionReply.errUnsup);
    assert.equal((await client.option(option.startTls)).at(-1)?.replyType, optionReply.errUnsup);
    assert.equal((await client.option(option.list, Buffer.from('x'))).at(-1)?.replyType, optionReply.errInvalid);
    assert.equal((await client.option(option.structuredReply, Buffer.from('x'))).at(-1)?.replyType, optionReply.errInvalid);
    // GO whose name length runs past the payload, and one with a truncated info list.
    assert.equal((await client.option(option.go, Buffer.concat([u32(50), Buffer.from('vol0')]))).at(-1)?.replyType, optionReply.errInvalid);
    assert.equal((await client.option(option.go, Buffer.concat([u32(4), Buffer.from('vol0'), Buffer.from([0, 2, 0])]))).at(-1)?.replyType, optionReply.errInvalid);
    const unknown = await client.option(option.info, Buffer.concat([u32(4), Buffer.from('nope'), Buffer.from([0, 0])]));
    assert.equal(unknown.at(-1)?.replyType, optionReply.errUnknown);
    const list = await client.option(option.list);
    assert.equal(list[0]?.replyType, optionReply.server);
    assert.equal(list[0]?.payload.toString('utf8', 4, 8), 'vol0');
    await client.go({ name: 'vol0', structured: true });
    await assertServes(client, true);
    client.destroy();
  });

  test('NbdServer answers bad requests with the spec errors and keeps the connection', async () => {
    for (const structured of [true, false]) {
      const client = await connectGo(fixture, { structured });
      const cases: [string, RequestHeader, number][] = [
        ['unknown flag', req(command.read, { lengthBytes: 512, flags: 1 << 9 }), nbdErrno.EINVAL],
        ['NO_HOLE on read', req(command.read, { lengthBytes: 512, flags: commandFlag.noHole }), nbdErrno.EINVAL],
        ['REQ_ONE on read', req(command.read, { lengthBytes: 512, flags: commandFlag.reqOne }), nbdErrno.EINVAL],
        ['unknown command', req(42, { lengthBytes: 0 }), nbdErrno.EINVAL],
        ['read over 32 MiB', req(command.read, { lengthBytes: requestBytesMax + 512 }), nbdErrno.EOVERFLOW],
        ['read past end', req(command.read, { offsetBytes: 8 * MiB - 512, lengthBytes: 1024 }), nbdErrno.EINVAL],
        ['read at a huge offset', req(command.read, { offsetBytes: Number.MAX_SAFE_INTEGER - 511, lengthBytes: 512 }), nbdErrno.EINVAL],
        ['trim past end', req(command.trim, { offsetBytes: 8 * MiB, lengthBytes: 512 }), nbdErrno.EINVAL],
        ['zero past end', req(command.writeZeroes, { offsetBytes: 8 * MiB, lengthBytes: 512 }), nbdErrno.ENOSPC],
        ['flush with a length', req(command.flush, { lengthBytes: 512 }), nbdErrno.EINVAL],
        ['block status without contexts', req(command.blockStatus, { lengthBytes: 512 }), nbdErrno.EINVAL],
      ];
      if (!structured) cases.push(['DF without structured replies', req(command.read, { lengthBytes: 512, flags: commandFlag.df }), nbdErrno.EINVAL]);
      for (const [what, header, expected] of cases) {
        client.request({ ...header, cookieLo: 77 });
        const reply = await replyOf(client, { structured });
        assert.equal(reply.error, expected, `${what} (structured ${structured})`);
        assert.equal(reply.cookieLo, 77);
      }
      const wrapping = encodeRequest(req(command.read, { cookieLo: 80, lengthBytes: 512 }));
      wrapping.fill(0xff, 16, 24);
      client.write(wrapping);
      assert.equal((await replyOf(client, { structured })).error, nbdErrno.EINVAL, 'read at offset 2^64-1');
      client.request(req(command.write, { cookieLo: 78, offsetBytes: 8 * MiB - 512, lengthBytes: 1024 }), Buffer.alloc(1024));
      assert.equal((await replyOf(client, { structured })).error, nbdErrno.ENOSPC, 'write past end');
      client.request(req(command.write, { cookieLo: 79, lengthBytes: requestBytesMax + 512 }), Buffer.alloc(requestBytesMax + 512));
      assert.equal((await replyOf(client, { structured })).error, nbdErrno.EOVERFLOW, 'write over 32 MiB');
      await assertServes(client, structured);
      client.destroy();
    }
  });

  test('NbdServer rejects misaligned requests when the export advertises a 512-byte minimum', async () => {
    const aligned = await startNbdFixture({ sizeBytes: MiB, exportOptions: { minimumBlockBytes: 512 } });
    try {
      const client = await connectGo(aligned);
      client.request(req(command.read, { offsetBytes: 100, lengthBytes: 512 }));
      assert.equal((await replyOf(client, { structured: true })).error, nbdErrno.EINVAL);
      client.request(req(command.write, { offsetBytes: 512, lengthBytes: 100 }), Buffer.alloc(100));
      assert.equal((await replyOf(client, { structured: true })).error, nbdErrno.EINVAL);
      await assertServes(client, true);
      client.destroy();
    } finally {
      await aligned.close();
    }
  });

  test('NbdServer answers EPERM to writes on a read-only export and ENOTSUP to FAST_ZERO without fast zeroes', async () => {
    const device = new ProbeDevice(new MemoryBlockDevice({ sizeBytes: MiB }), { capabilities: { writeZeroes: false } });
    const server = new NbdServer({
      exports: [
        { name: 'ro', device, readOnly: true },
        { name: 'slowzero', device },
      ] satisfies NbdExport[],
    });
    const fixtureLike = await server.listen({ host: '127.0.0.1', port: 0 });
    try {
      const ro = await RawNbdClient.connect(fixtureLike.address);
      await ro.start();
      const go = await ro.go({ name: 'ro', structured: true });
      assert.notEqual(go.transmissionFlags & transmissionFlag.readOnly, 0);
      for (const type of [command.write, command.trim, command.writeZeroes]) {
        ro.request(req(type, { lengthBytes: 512 }), type === command.write ? Buffer.alloc(512) : undefined);
        assert.equal((await replyOf(ro, { structured: true })).error, nbdErrno.EPERM);
      }
      await assertServes(ro, true);
      ro.destroy();
      const zero = await RawNbdClient.connect(fixtureLike.address);
      await zero.start();
      await zero.go({ name: 'slowzero', structured: true });
      zero.request(req(command.writeZeroes, { lengthBytes: 4096, flags: commandFlag.fastZero }));
      assert.equal((await replyOf(zero, { structured: true })).error, nbdErrno.ENOTSUP);
      zero.request(req(command.writeZeroes, { lengthBytes: 4096, flags: commandFlag.noHole }));
      assert.equal((await replyOf(zero, { structured: true })).error, 0);
      zero.destroy();
    } finally {
      await server.close({ graceful: false });
    }
  });

  test('NbdServer treats a client that closes without DISC as normal', async () => {
    const client = await connectGo(fixture);
    client.request(req(command.read, { lengthBytes: 4096 }));
    client.socket.end();
    const other = await connectGo(fixture);
    await assertServes(other, true);
    other.destroy();
    assert.ok(await client.closedByServer());
  });
});

/** A server exporting `device` as vol0 on a TCP port, and a raw client in transmission with structured replies. */
async function serveRaw(device: BlockDevice): Promise<{ server: NbdServer; client: RawNbdClient }> {
  const server = new NbdServer({ exports: [{ name: 'vol0', device }] });
  const listener = await server.listen({ host: '127.0.0.1', port: 0 });
  const client = await RawNbdClient.connect(listener.address);
  await client.start();
  await client.go({ structured: true });
  return { server, client };
}

describe('NbdServer pipelining, backpressure and shutdown', () => {
  test('NbdServer runs at most inFlightMax requests at once and answers every pipelined request', async () => {
    const device = new ProbeDevice(new MemoryBlockDevice({ sizeBytes: 8 * MiB }), { delayMs: 5 });
    const { server, client } = await serveRaw(device);
    try {
      const total = 3 * inFlightMax;
      // One write, so the server sees the whole pipeline at once.
      client.write(Buffer.concat(Array.from({ length: total }, (_, i) => encodeRequest(req(command.read, { cookieLo: i, offsetBytes: i * 4096, lengthBytes: 4096 })))));
      const seen = new Set<number>();
      for (let i = 0; i < total; i++) {
        const reply = await replyOf(client, { structured: true });
        assert.equal(reply.error, 0);
        assert.equal(reply.data.length, 4096);
        seen.add(reply.cookieLo);
      }
      assert.equal(seen.size, total);
      assert.equal(device.inFlightMax, inFlightMax);
      client.destroy();
    } finally {
      await server.close({ graceful: false });
    }
  });

  test('NbdServer answers a flood of rejected requests, more than one socket write holds, in full', async () => {
    const { server, client } = await serveRaw(new MemoryBlockDevice({ sizeBytes: MiB }));
    try {
      const total = 3 * outgoingBuffersMax;
      // Reads past the end are rejected at once, so every reply is queued in the same event-loop turn.
      client.write(Buffer.concat(Array.from({ length: total }, (_, i) => encodeRequest(req(command.read, { cookieLo: i, offsetBytes: 2 * MiB, lengthBytes: 512 })))));
      for (let i = 0; i < total; i++) {
        const reply = await replyOf(client, { structured: true });
        assert.equal(reply.error, nbdErrno.EINVAL);
        assert.equal(reply.cookieLo, i, 'rejections are answered in order');
      }
      client.destroy();
    } finally {
      await server.close({ graceful: false });
    }
  });

  test('NbdServer writes every queued reply before it closes after DISC, each reply whole and in one piece', async () => {
    const device = new MemoryBlockDevice({ sizeBytes: 8 * MiB });
    await device.write(0, Buffer.alloc(64 * 4096, 0x5a));
    const { server, client } = await serveRaw(device);
    try {
      const total = inFlightMax;
      // Reads, writes and a DISC in one packet: replies are batched per event-loop turn and the socket
      // must end only after the last of them.
      const requests = Array.from({ length: total }, (_, i) =>
        i % 2 === 0
          ? encodeRequest(req(command.read, { cookieLo: i, offsetBytes: i * 4096, lengthBytes: 4096 }))
          : encodeRequest(req(command.write, { cookieLo: i, offsetBytes: i * 4096, lengthBytes: 512 }), Buffer.alloc(512, i)),
      );
      client.write(Buffer.concat([...requests, encodeRequest(req(command.disc, {}))]));
      const seen = new Set<number>();
      for (let i = 0; i < total; i++) {
        const reply = await replyOf(client, { structured: true });
        assert.equal(reply.error, 0);
        assert.equal(reply.data.length, reply.cookieLo % 2 === 0 ? 4096 : 0);
        if (reply.cookieLo % 2 === 0) assert.ok(reply.data.every((byte) => byte === 0x5a));
        seen.add(reply.cookieLo);
      }
      assert.equal(seen.size, total);
      assert.ok(await client.closedByServer());
      assert.deepEqual(await device.read(4096, 512), Buffer.alloc(512, 1));
    } finally {
      await server.close({ graceful: false });
    }
  });

  test('NbdServer.close({graceful}) finishes requests in flight and answers queued ones with ESHUTDOWN', async () => {
    const device = new ProbeDevice(new MemoryBlockDevice({ sizeBytes: 8 * MiB }), { delayMs: 100 });
    const { server, client } = await serveRaw(device);
    const total = inFlightMax + 6;
    client.write(Buffer.concat(Array.from({ length: total }, (_, i) => encodeRequest(req(command.read, { cookieLo: i, offsetBytes: i * 512, lengthBytes: 512 })))));
    // The server parses the whole packet in one go and stops at inFlightMax requests running: once they
    // run, the other six wait in its parser, where the graceful close answers them.
    while (device.inFlight < inFlightMax) await new Promise((resolve) => setTimeout(resolve, 5));
    const closing = server.close({ graceful: true });
    const errors: number[] = [];
    for (let i = 0; i < total; i++) errors.push((await replyOf(client, { structured: true })).error);
    await closing;
    assert.equal(errors.filter((e) => e === 0).length, inFlightMax);
    assert.equal(errors.filter((e) => e === nbdErrno.ESHUTDOWN).length, 6);
    assert.ok(await client.closedByServer());
    assert.equal(server.connectionCount, 0);
  });
});
