/**
 * The pure NBD client codec: the handshake state machine (paired with umirror's server handshake, and
 * against scripted byte streams), the reply parser (split-buffer property and every violation it must
 * refuse), the READ assembler, and the wire error mapping in both directions.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { MemoryBlockDevice } from '../../src/block/memory-block-device.js';
import { BlockError, ERRNOS, type Errno } from '../../src/errors.js';
import { NbdReplyParser, type PendingRequest, ReadReplyAssembler, type ReplyFrame } from '../../src/nbd/client-reply-parser.js';
import { type ClientHandshakeStep, NbdClientHandshake } from '../../src/nbd/client-handshake.js';
import {
  type Cookie,
  encodeChunkError,
  encodeChunkNone,
  encodeChunkOffsetDataHeader,
  encodeChunkOffsetHole,
  encodeExportNameReply,
  encodeGreeting,
  encodeInfoBlockSize,
  encodeInfoExport,
  encodeOptionReply,
  encodeSimpleReply,
  NbdServerParser,
} from '../../src/nbd/codec.js';
import { fromNbdError, toNbdError } from '../../src/nbd/errors.js';
import { HandshakeSession } from '../../src/nbd/handshake.js';
import { StaticExportResolver } from '../../src/nbd/nbd-export.js';
import { command, commandFlag, handshakeFlag, magic, nbdErrno, option, optionReply, replyFlag, replyType, transmissionFlag } from '../../src/nbd/protocol.js';

const runs = Number(process.env['UMIRROR_PROPERTY_RUNS'] ?? 200);

function splitAt(stream: Buffer, cuts: readonly number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => c % (stream.length + 1)))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let last = 0;
  for (const point of [...points, stream.length]) {
    out.push(stream.subarray(last, point));
    last = point;
  }
  return out;
}

/** Pushes each chunk and collects every step, in order. */
function drive(handshake: NbdClientHandshake, chunks: readonly Buffer[]): ClientHandshakeStep[] {
  const steps: ClientHandshakeStep[] = [];
  const drain = (): void => {
    for (let step = handshake.next(); step !== undefined; step = handshake.next()) steps.push(step);
  };
  drain();
  for (const chunk of chunks) {
    handshake.push(chunk);
    drain();
  }
  return steps;
}

const greeting = encodeGreeting(handshakeFlag.fixedNewstyle | handshakeFlag.noZeroes);
const reply = (code: number, replyTypeValue: number, payload?: Buffer): Buffer =>
  encodeOptionReply({ option: code, replyType: replyTypeValue, ...(payload !== undefined && { payload }) });
const flags = transmissionFlag.hasFlags | transmissionFlag.sendFlush;
const goodServer = Buffer.concat([
  greeting,
  reply(option.structuredReply, optionReply.ack),
  reply(option.go, optionReply.info, encodeInfoExport(1 << 20, flags)),
  reply(option.go, optionReply.info, encodeInfoBlockSize({ minimumBytes: 512, preferredBytes: 4096, maximumBytes: 65536 })),
  reply(option.go, optionReply.ack),
]);

function failure(steps: readonly ClientHandshakeStep[]): BlockError | undefined {
  const last = steps.at(-1);
  return last?.kind === 'failed' ? last.error : undefined;
}

describe('NbdClientHandshake', () => {
  test('NbdClientHandshake negotiates with umirror’s own server handshake (paired halves)', () => {
    const device = new MemoryBlockDevice({ sizeBytes: 2 << 20 });
    const session = new HandshakeSession(new StaticExportResolver([{ name: 'vol', device, minimumBlockBytes: 512 }]));
    const serverParser = new NbdServerParser({ payloadBytesMax: 1 << 20, skipBytesMax: 1 << 20 });
    const client = new NbdClientHandshake({ exportName: 'vol', tls: false });
    client.push(encodeGreeting(handshakeFlag.fixedNewstyle | handshakeFlag.noZeroes));
    let done: ClientHandshakeStep | undefined;
    for (let round = 0; round < 10 && done === undefined; round++) {
      for (let step = client.next(); step !== undefined; step = client.next()) {
        if (step.kind !== 'send') {
          done = step;
          break;
        }
        serverParser.push(step.data);
        for (let frame = serverParser.next(); frame !== undefined; frame = serverParser.next()) {
          if (frame.kind === 'clientFlags') assert.equal(session.handleClientFlags(frame.flags), undefined);
          else if (frame.kind === 'option') for (const buffer of session.handleOption(frame.option, frame.payload).replies) client.push(buffer);
          else assert.fail(`unexpected frame ${frame.kind}`);
        }
      }
    }
    assert.equal(done?.kind, 'done');
    assert.ok(done?.kind === 'done');
    assert.equal(done.negotiated.sizeBytes, 2 << 20);
    assert.equal(done.negotiated.structuredReplies, true);
    assert.deepEqual(done.negotiated.blockSizes, { minimumBytes: 512, preferredBytes: 4096, maximumBytes: 32 << 20 });
    assert.equal(done.negotiated.transmissionFlags & transmissionFlag.sendFua, transmissionFlag.sendFua);
  });

  test('NbdClientHandshake reaches the same result however the server bytes are split', () => {
    fc.assert(
      fc.property(fc.array(fc.nat(), { maxLength: 12 }), (cuts) => {
        const steps = drive(new NbdClientHandshake({ exportName: 'vol', tls: false }), splitAt(goodServer, cuts));
        const sends = steps.filter((s) => s.kind === 'send').map((s) => (s.kind === 'send' ? s.data : Buffer.alloc(0)));
        assert.equal(sends.length, 3, 'client flags, STRUCTURED_REPLY, GO');
        assert.deepEqual(sends[0], Buffer.from([0, 0, 0, 3]));
        assert.equal(sends[1]?.readUInt32BE(8), option.structuredReply);
        assert.equal(sends[2]?.readUInt32BE(8), option.go);
        const last = steps.at(-1);
        assert.ok(last?.kind === 'done');
        assert.deepEqual(last.negotiated, {
          exportName: 'vol',
          sizeBytes: 1 << 20,
          transmissionFlags: flags,
          structuredReplies: true,
          blockSizes: { minimumBytes: 512, preferredBytes: 4096, maximumBytes: 65536 },
        });
      }),
      { numRuns: runs },
    );
  });

  test('NbdClientHandshake falls back to simple replies and to EXPORT_NAME for old servers', () => {
    const steps = drive(new NbdClientHandshake({ exportName: 'old', tls: false }), [
      encodeGreeting(handshakeFlag.fixedNewstyle),
      reply(option.structuredReply, optionReply.errUnsup),
      reply(option.go, optionReply.errUnsup),
      encodeExportNameReply({ sizeBytes: 4096, transmissionFlags: flags, zeroes: true }),
    ]);
    const sends = steps.flatMap((s) => (s.kind === 'send' ? [s.data] : []));
    assert.deepEqual(sends[0], Buffer.from([0, 0, 0, 1]), 'no NO_ZEROES when the server did not offer it');
    assert.equal(sends.at(-1)?.readUInt32BE(8), option.exportName);
    assert.equal(sends.at(-1)?.toString('utf8', 16), 'old');
    const last = steps.at(-1);
    assert.ok(last?.kind === 'done');
    assert.equal(last.negotiated.structuredReplies, false);
    assert.equal(last.negotiated.sizeBytes, 4096);
    assert.equal(last.negotiated.blockSizes, undefined);
  });

  test('NbdClientHandshake sends STARTTLS first when asked and resumes after the TLS upgrade', () => {
    const handshake = new NbdClientHandshake({ exportName: 'x', tls: true });
    const first = drive(handshake, [greeting, reply(option.startTls, optionReply.ack)]);
    assert.deepEqual(first.map((s) => s.kind), ['send', 'send', 'startTls']);
    assert.equal(first[1]?.kind === 'send' && first[1].data.readUInt32BE(8), option.startTls);
    assert.equal(handshake.state, 'tlsPending');
    handshake.tlsEstablished();
    const rest = drive(handshake, [goodServer.subarray(greeting.length)]);
    assert.equal(rest.at(-1)?.kind, 'done');
    const refused = drive(new NbdClientHandshake({ exportName: 'x', tls: true }), [greeting, reply(option.startTls, optionReply.errUnsup)]);
    assert.equal(failure(refused)?.code, 'ENOTSUP');
  });

  test('NbdClientHandshake fails with a code that says why', () => {
    const oldstyle = Buffer.alloc(18);
    Buffer.from('NBDMAGIC').copy(oldstyle);
    oldstyle.writeUInt32BE(0x00004202, 8);
    oldstyle.writeUInt32BE(0x81861253, 12);
    const sr = reply(option.structuredReply, optionReply.ack);
    const cases: readonly [string, Buffer[], Errno][] = [
      ['not NBD', [Buffer.alloc(18, 0x41)], 'EIO'],
      ['oldstyle', [oldstyle], 'ENOTSUP'],
      ['no fixed newstyle', [encodeGreeting(0)], 'ENOTSUP'],
      ['unknown export', [greeting, sr, reply(option.go, optionReply.errUnknown, Buffer.from('no such export'))], 'EINVAL'],
      ['TLS required', [greeting, reply(option.structuredReply, optionReply.errTlsReqd)], 'ENOTSUP'],
      ['policy', [greeting, sr, reply(option.go, optionReply.errPolicy)], 'EPERM'],
      ['reply for another option', [greeting, reply(option.list, optionReply.ack)], 'EIO'],
      ['bad reply magic', [greeting, Buffer.alloc(20, 0x55)], 'EIO'],
      ['ACK without INFO_EXPORT', [greeting, sr, reply(option.go, optionReply.ack)], 'EIO'],
      ['short INFO_EXPORT', [greeting, sr, reply(option.go, optionReply.info, Buffer.alloc(6))], 'EIO'],
      ['bad block sizes', [greeting, sr, reply(option.go, optionReply.info, Buffer.from([0, 3, 0, 0, 0, 3, 0, 0, 16, 0, 0, 1, 0, 0]))], 'EIO'],
      ['size past 2^53', [greeting, sr, reply(option.go, optionReply.info, Buffer.from([0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 1]))], 'EOVERFLOW'],
      ['oversized option reply', [greeting, (() => {
        const header = reply(option.structuredReply, optionReply.ack);
        header.writeUInt32BE(1 << 30, 16);
        return header;
      })()], 'EIO'],
      ['data after the ACK', [goodServer, Buffer.from([1, 2, 3])], 'EIO'],
    ];
    for (const [name, chunks, code] of cases) {
      const handshake = new NbdClientHandshake({ exportName: 'vol', tls: false });
      const steps = drive(handshake, [Buffer.concat(chunks)]);
      assert.equal(failure(steps)?.code, code, name);
      assert.equal(handshake.state, 'failed', name);
    }
  });
});

describe('NbdReplyParser', () => {
  const pending = new Map<number, PendingRequest>([
    [1, { type: command.read, offsetBytes: 1000, lengthBytes: 300 }],
    [2, { type: command.write, offsetBytes: 0, lengthBytes: 10 }],
    [3, { type: command.read, offsetBytes: 0, lengthBytes: 64 }],
    [4, { type: command.flush, offsetBytes: 0, lengthBytes: 0 }],
  ]);
  const lookup = (cookie: Cookie): PendingRequest | undefined => (cookie.cookieHi === 0 ? pending.get(cookie.cookieLo) : undefined);
  const cookie = (n: number): Cookie => ({ cookieHi: 0, cookieLo: n });
  const parseAll = (chunks: readonly Buffer[], structuredReplies = true): ReplyFrame[] => {
    const parser = new NbdReplyParser({ structuredReplies, lookup });
    const frames: ReplyFrame[] = [];
    for (const chunk of chunks) {
      parser.push(chunk);
      for (let frame = parser.next(); frame !== undefined; frame = parser.next()) frames.push(frame);
    }
    return frames;
  };
  const normalize = (frames: readonly ReplyFrame[]): unknown[] =>
    frames.map((f) => ('data' in f && f.data !== undefined ? { ...f, data: [...f.data] } : f));

  const structuredStream = Buffer.concat([
    encodeChunkOffsetDataHeader({ cookie: cookie(1), offsetBytes: 1100, dataBytes: 200, done: false }),
    Buffer.alloc(200, 7),
    encodeChunkNone(cookie(2)),
    encodeChunkOffsetHole({ cookie: cookie(1), offsetBytes: 1000, holeBytes: 100, done: true }),
    encodeSimpleReply(cookie(4), 0),
    encodeChunkError({ cookie: cookie(3), error: nbdErrno.ENOSPC, message: 'full', offsetBytes: 10, done: false }),
    encodeChunkError({ cookie: cookie(3), error: nbdErrno.EIO, message: '', done: true }),
  ]);

  test('NbdReplyParser decodes structured and simple replies however the bytes are split', () => {
    const whole = normalize(parseAll([structuredStream]));
    assert.deepEqual(
      whole.map((f) => (f as { kind: string }).kind),
      ['data', 'none', 'hole', 'simple', 'error', 'error'],
    );
    assert.deepEqual(whole[4], { kind: 'error', cookieHi: 0, cookieLo: 3, done: false, error: nbdErrno.ENOSPC, message: 'full', offsetBytes: 10 });
    fc.assert(
      fc.property(fc.array(fc.nat(), { maxLength: 20 }), (cuts) => {
        assert.deepEqual(normalize(parseAll(splitAt(structuredStream, cuts))), whole);
      }),
      { numRuns: runs },
    );
  });

  test('NbdReplyParser reads a simple READ reply payload of the request length', () => {
    const stream = Buffer.concat([encodeSimpleReply(cookie(3), 0), Buffer.alloc(64, 9), encodeSimpleReply(cookie(1), nbdErrno.EIO)]);
    fc.assert(
      fc.property(fc.array(fc.nat(), { maxLength: 10 }), (cuts) => {
        const frames = parseAll(splitAt(stream, cuts), false);
        assert.equal(frames.length, 2);
        assert.deepEqual(frames[0], { kind: 'simple', cookieHi: 0, cookieLo: 3, error: 0, data: Buffer.alloc(64, 9) });
        assert.deepEqual(frames[1], { kind: 'simple', cookieHi: 0, cookieLo: 1, error: nbdErrno.EIO, data: undefined });
      }),
      { numRuns: runs },
    );
  });

  test('NbdReplyParser refuses every protocol violation and then stays dead', () => {
    const header = (o: { flags?: number; type: number; cookieLo: number; cookieHi?: number; lengthBytes: number }): Buffer => {
      const out = Buffer.alloc(20);
      out.writeUInt32BE(magic.structuredReply, 0);
      out.writeUInt16BE(o.flags ?? replyFlag.done, 4);
      out.writeUInt16BE(o.type, 6);
      out.writeUInt32BE(o.cookieHi ?? 0, 8);
      out.writeUInt32BE(o.cookieLo, 12);
      out.writeUInt32BE(o.lengthBytes, 16);
      return out;
    };
    const errorPayload = (error: number, messageBytes: number, extra = 0): Buffer => {
      const out = Buffer.alloc(6 + extra);
      out.writeUInt32BE(error, 0);
      out.writeUInt16BE(messageBytes, 4);
      return out;
    };
    const offset = (value: number): Buffer => {
      const out = Buffer.alloc(8);
      out.writeBigUInt64BE(BigInt(value));
      return out;
    };
    const cases: readonly [string, Buffer, boolean?][] = [
      ['unknown magic', Buffer.from('GARBAGE GARBAGE GARBAGE!')],
      ['unknown cookie (simple)', encodeSimpleReply(cookie(99), 0)],
      ['unknown cookie (chunk)', encodeChunkNone(cookie(99))],
      ['cookie high half set', header({ type: replyType.none, cookieLo: 2, cookieHi: 1, lengthBytes: 0 })],
      ['simple READ reply with structured replies', encodeSimpleReply(cookie(3), 0)],
      ['chunk without structured replies', encodeChunkNone(cookie(2)), false],
      ['NONE with a length', Buffer.concat([header({ type: replyType.none, cookieLo: 2, lengthBytes: 4 }), Buffer.alloc(4)])],
      ['NONE without DONE', header({ flags: 0, type: replyType.none, cookieLo: 2, lengthBytes: 0 })],
      ['OFFSET_DATA for a WRITE', Buffer.concat([header({ type: replyType.offsetData, cookieLo: 2, lengthBytes: 9 }), Buffer.alloc(9)])],
      ['OFFSET_DATA without data', Buffer.concat([header({ type: replyType.offsetData, cookieLo: 3, lengthBytes: 8 }), Buffer.alloc(8)])],
      ['OFFSET_DATA over the request', header({ type: replyType.offsetData, cookieLo: 3, lengthBytes: 8 + 65 })],
      ['OFFSET_DATA of 4 GiB', header({ type: replyType.offsetData, cookieLo: 3, lengthBytes: 0xffffffff })],
      ['OFFSET_DATA before the request', Buffer.concat([header({ type: replyType.offsetData, cookieLo: 1, lengthBytes: 9 }), offset(999), Buffer.alloc(1)])],
      ['OFFSET_DATA past the request', Buffer.concat([header({ type: replyType.offsetData, cookieLo: 1, lengthBytes: 10 }), offset(1299), Buffer.alloc(2)])],
      ['OFFSET_HOLE of the wrong size', Buffer.concat([header({ type: replyType.offsetHole, cookieLo: 1, lengthBytes: 16 }), Buffer.alloc(16)])],
      ['empty OFFSET_HOLE', Buffer.concat([header({ type: replyType.offsetHole, cookieLo: 1, lengthBytes: 12 }), offset(1000), Buffer.alloc(4)])],
      ['OFFSET_HOLE past the request', encodeChunkOffsetHole({ cookie: cookie(1), offsetBytes: 1200, holeBytes: 101, done: true })],
      ['BLOCK_STATUS', Buffer.concat([header({ type: replyType.blockStatus, cookieLo: 2, lengthBytes: 12 }), Buffer.alloc(12)])],
      ['unknown informational chunk', Buffer.concat([header({ type: 77, cookieLo: 2, lengthBytes: 0 })])],
      ['ERROR with value 0', Buffer.concat([header({ type: replyType.error, cookieLo: 2, lengthBytes: 6 }), errorPayload(0, 0)])],
      ['ERROR with a short message', Buffer.concat([header({ type: replyType.error, cookieLo: 2, lengthBytes: 8 }), errorPayload(5, 1, 2)])],
      ['ERROR with a long message', Buffer.concat([header({ type: replyType.error, cookieLo: 2, lengthBytes: 8 }), errorPayload(5, 9, 2)])],
      ['ERROR over 4 KiB', header({ type: replyType.error, cookieLo: 2, lengthBytes: 6 + 4097 })],
      ['ERROR_OFFSET outside the request', Buffer.concat([header({ type: replyType.errorOffset, cookieLo: 1, lengthBytes: 14 }), errorPayload(5, 0), offset(5)])],
    ];
    for (const [name, bytes, structured] of cases) {
      const parser = new NbdReplyParser({ structuredReplies: structured ?? true, lookup });
      parser.push(bytes);
      const frame = parser.next();
      assert.equal(frame?.kind, 'protocolError', name);
      assert.equal(parser.state, 'dead', name);
      parser.push(encodeSimpleReply(cookie(4), 0));
      assert.equal(parser.next(), undefined, `${name}: nothing after death`);
    }
  });

  test('NbdReplyParser accepts an error type from a later extension as an error', () => {
    const out = Buffer.alloc(20 + 10);
    out.writeUInt32BE(magic.structuredReply, 0);
    out.writeUInt16BE(replyFlag.done, 4);
    out.writeUInt16BE(0x8000 + 40, 6);
    out.writeUInt32BE(2, 12);
    out.writeUInt32BE(10, 16);
    out.writeUInt32BE(nbdErrno.EPERM, 20);
    out.writeUInt16BE(2, 24);
    out.write('no', 26);
    const frames = parseAll([out]);
    assert.deepEqual(frames, [{ kind: 'error', cookieHi: 0, cookieLo: 2, done: true, error: nbdErrno.EPERM, message: 'no', offsetBytes: undefined }]);
  });
});

describe('ReadReplyAssembler', () => {
  test('ReadReplyAssembler puts pieces in any order together, holes as zeroes', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: 99 }), { maxLength: 8 }), fc.nat(), (cuts, seed) => {
        const points = [...new Set(cuts)].sort((a, b) => a - b);
        const bounds = [0, ...points, 100];
        const pieces = bounds.slice(1).map((end, i) => ({ start: bounds[i] ?? 0, end, hole: (seed >> i) % 2 === 1 }));
        const order = [...pieces].sort((a, b) => ((a.start * 7919 + seed) % 101) - ((b.start * 7919 + seed) % 101));
        const assembler = new ReadReplyAssembler({ offsetBytes: 5000, lengthBytes: 100 });
        const expected = Buffer.alloc(100);
        for (const piece of order) {
          const problem = piece.hole
            ? assembler.addHole(5000 + piece.start, piece.end - piece.start)
            : assembler.addData(5000 + piece.start, Buffer.alloc(piece.end - piece.start, piece.start + 1));
          assert.equal(problem, undefined);
          if (!piece.hole) expected.fill(piece.start + 1, piece.start, piece.end);
        }
        const result = assembler.finish();
        assert.ok('data' in result);
        assert.deepEqual(result.data, expected);
      }),
      { numRuns: runs },
    );
  });

  test('ReadReplyAssembler keeps a single whole chunk without copying it', () => {
    const data = Buffer.alloc(64, 1);
    const assembler = new ReadReplyAssembler({ offsetBytes: 0, lengthBytes: 64 });
    assert.equal(assembler.addData(0, data), undefined);
    const result = assembler.finish();
    assert.ok('data' in result);
    assert.equal(result.data, data);
  });

  test('ReadReplyAssembler refuses overlaps, incomplete replies and too many fragments', () => {
    const overlap = new ReadReplyAssembler({ offsetBytes: 0, lengthBytes: 100 });
    assert.equal(overlap.addData(10, Buffer.alloc(20)), undefined);
    assert.match(overlap.addHole(29, 5) ?? '', /overlap/);
    assert.match(overlap.addData(0, Buffer.alloc(11)) ?? '', /overlap/);
    assert.equal(overlap.addData(30, Buffer.alloc(70)), undefined);
    assert.match('problem' in overlap.finish() ? 'incomplete' : 'complete', /incomplete/);

    const fragments = new ReadReplyAssembler({ offsetBytes: 0, lengthBytes: 20_000 });
    let problem: string | undefined;
    for (let i = 0; i < 10_000 && problem === undefined; i++) problem = fragments.addHole(i * 2, 1);
    assert.match(problem ?? '', /disjoint pieces/);
  });
});

test('fromNbdError inverts toNbdError for every errno, and maps unknown values to EIO', () => {
  const flags = commandFlag.fastZero | commandFlag.df;
  // EBUSY is an open-time error (an image lock) with no NBD wire value: nbdkit's rules send it as EINVAL.
  const openOnly: readonly string[] = ['EBUSY'];
  for (const code of ERRNOS.filter((c) => !openOnly.includes(c))) assert.equal(fromNbdError(toNbdError(new BlockError(code, 'x'), flags)), code, code);
  assert.equal(toNbdError(new BlockError('EBUSY', 'x'), flags), nbdErrno.EINVAL);
  assert.equal(fromNbdError(0x7fff), 'EIO');
  assert.equal(fromNbdError(nbdErrno.EIO), 'EIO');
});
