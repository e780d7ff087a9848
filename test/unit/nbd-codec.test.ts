import assert from 'node:assert/strict';
import { AssertionError } from 'node:assert';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { BlockError } from '../../src/errors.js';
import { ByteQueue } from '../../src/nbd/byte-queue.js';
import {
  decodeOptionReplyHeader,
  decodeReplyHeader,
  encodeClientFlags,
  encodeOption,
  encodeRequest,
  readU64,
  type RequestHeader,
} from '../../src/nbd/client-codec.js';
import {
  type ClientFrame,
  encodeChunkBlockStatus,
  encodeChunkError,
  encodeChunkNone,
  encodeChunkOffsetDataHeader,
  encodeGreeting,
  encodeOptionReply,
  encodeSimpleReply,
  NbdServerParser,
} from '../../src/nbd/codec.js';
import { toNbdError } from '../../src/nbd/errors.js';
import { clipExtents } from '../../src/nbd/transmission.js';
import { command, commandFlag, magic, nbdErrno, option, optionReply, replyFlag, replyType } from '../../src/nbd/protocol.js';

const runs = Number(process.env['UMIRROR_PROPERTY_RUNS'] ?? 200);
const payloadMax = 4096;

function newParser(): NbdServerParser {
  return new NbdServerParser({ payloadBytesMax: payloadMax, skipBytesMax: 2 * payloadMax, optionBytesMax: 1024 });
}

/** Feeds chunks, calling enterTransmission after `optionCount` options; returns every frame. */
function parseAll(chunks: readonly Buffer[], optionCount: number): ClientFrame[] {
  const parser = newParser();
  const frames: ClientFrame[] = [];
  let options = 0;
  const drain = (): void => {
    for (let frame = parser.next(); frame !== undefined; frame = parser.next()) {
      frames.push(frame);
      const lastOption = frame.kind === 'option' && ++options === optionCount;
      const noOptions = frame.kind === 'clientFlags' && optionCount === 0;
      if (lastOption || noOptions) parser.enterTransmission();
    }
  };
  for (const chunk of chunks) {
    parser.push(chunk);
    drain();
  }
  return frames;
}

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

const u32 = fc.integer({ min: 0, max: 0xffffffff });
const requestArb = fc
  .record({
    type: fc.constantFrom(command.read, command.write, command.flush, command.trim, command.writeZeroes, command.blockStatus, 9),
    flags: fc.integer({ min: 0, max: 0xffff }),
    cookieHi: u32,
    cookieLo: u32,
    offsetBytes: fc.integer({ min: 0, max: 2 ** 50 }),
    writeBytes: fc.integer({ min: 0, max: 600 }),
    lengthBytes: u32,
  })
  .map((r) => ({
    header: { ...r, lengthBytes: r.type === command.write ? r.writeBytes : r.lengthBytes } as RequestHeader,
    payload: r.type === command.write ? Buffer.alloc(r.writeBytes, r.cookieLo & 0xff) : undefined,
  }));
const optionArb = fc.record({ code: fc.integer({ min: 1, max: 12 }), payload: fc.uint8Array({ maxLength: 300 }) });

describe('NbdServerParser', () => {
  test('NbdServerParser decodes client flags, options and requests it was given encoded', () => {
    const stream = Buffer.concat([
      encodeClientFlags(3),
      encodeOption(option.structuredReply),
      encodeOption(option.go, Buffer.from('abc')),
      encodeRequest({ type: command.write, flags: commandFlag.fua, cookieHi: 1, cookieLo: 2, offsetBytes: 2 ** 40 + 5, lengthBytes: 3 }, Buffer.from('xyz')),
      encodeRequest({ type: command.read, flags: 0, cookieHi: 0xffffffff, cookieLo: 7, offsetBytes: 512, lengthBytes: 4096 }),
    ]);
    const frames = parseAll([stream], 2);
    assert.equal(frames.length, 5);
    assert.deepEqual(frames[0], { kind: 'clientFlags', flags: 3 });
    assert.deepEqual(frames[1], { kind: 'option', option: option.structuredReply, payload: Buffer.alloc(0) });
    assert.deepEqual(frames[2], { kind: 'option', option: option.go, payload: Buffer.from('abc') });
    const write = frames[3];
    assert.ok(write?.kind === 'request');
    assert.equal(write.request.offsetBytes, 2 ** 40 + 5);
    assert.equal(write.request.flags, commandFlag.fua);
    assert.deepEqual(write.request.payload, Buffer.from('xyz'));
    const read = frames[4];
    assert.ok(read?.kind === 'request');
    assert.equal(read.request.cookieHi, 0xffffffff);
    assert.equal(read.request.lengthBytes, 4096);
    assert.equal(read.request.payload, undefined);
  });

  test('NbdServerParser parses any split of a valid stream to the same frames (property)', () => {
    fc.assert(
      fc.property(
        fc.array(optionArb, { minLength: 0, maxLength: 4 }),
        fc.array(requestArb, { minLength: 0, maxLength: 8 }),
        fc.array(fc.nat(), { maxLength: 40 }),
        (options, requests, cuts) => {
          const stream = Buffer.concat([
            encodeClientFlags(1),
            ...options.map((o) => encodeOption(o.code, Buffer.from(o.payload))),
            ...requests.map((r) => encodeRequest(r.header, r.payload)),
          ]);
          const whole = parseAll([stream], options.length);
          const split = parseAll(splitAt(stream, cuts), options.length);
          assert.equal(whole.length, 1 + options.length + requests.length);
          assert.deepEqual(split, whole);
          requests.forEach((r, i) => {
            const frame = whole[1 + options.length + i];
            assert.ok(frame?.kind === 'request');
            assert.equal(frame.request.type, r.header.type);
            assert.equal(frame.request.offsetBytes, r.header.offsetBytes);
            assert.equal(frame.request.cookieLo, r.header.cookieLo);
            assert.deepEqual(frame.request.payload, r.payload);
          });
        },
      ),
      { numRuns: runs },
    );
  });

  test('NbdServerParser reports a bad request magic as a protocol error and stops', () => {
    const bad = encodeRequest({ type: command.read, flags: 0, cookieHi: 0, cookieLo: 0, offsetBytes: 0, lengthBytes: 1 });
    bad.writeUInt32BE(0xdeadbeef, 0);
    const frames = parseAll([encodeClientFlags(1), bad, bad], 0);
    assert.equal(frames.length, 2);
    assert.equal(frames[1]?.kind, 'protocolError');
  });

  test('NbdServerParser reports a bad option magic and an over-long option as protocol errors', () => {
    const badMagic = encodeOption(option.go);
    badMagic.writeUInt32BE(0, 0);
    assert.equal(parseAll([encodeClientFlags(1), badMagic], 1)[1]?.kind, 'protocolError');
    const long = encodeOption(option.go, Buffer.alloc(2000));
    assert.equal(parseAll([encodeClientFlags(1), long], 1)[1]?.kind, 'protocolError');
  });

  test('NbdServerParser skips an oversized write payload and keeps parsing', () => {
    const big = Buffer.alloc(payloadMax + 1, 7);
    const next = { type: command.flush, flags: 0, cookieHi: 0, cookieLo: 9, offsetBytes: 0, lengthBytes: 0 };
    const stream = Buffer.concat([
      encodeClientFlags(1),
      encodeRequest({ type: command.write, flags: 0, cookieHi: 0, cookieLo: 8, offsetBytes: 0, lengthBytes: big.length }, big),
      encodeRequest(next),
    ]);
    const frames = parseAll(splitAt(stream, [10, 100, 1000]), 0);
    assert.equal(frames.length, 3);
    const skipped = frames[1];
    assert.ok(skipped?.kind === 'request');
    assert.equal(skipped.request.payloadSkipped, true);
    assert.equal(skipped.request.payload, undefined);
    const flush = frames[2];
    assert.ok(flush?.kind === 'request');
    assert.equal(flush.request.cookieLo, 9);
  });

  test('NbdServerParser drops a write too large even to skip', () => {
    const header = encodeRequest({ type: command.write, flags: 0, cookieHi: 0, cookieLo: 0, offsetBytes: 0, lengthBytes: 3 * payloadMax });
    const frames = parseAll([encodeClientFlags(1), header], 0);
    assert.equal(frames[1]?.kind, 'protocolError');
  });
});

describe('ByteQueue', () => {
  test('ByteQueue.take returns a zero-copy view inside one chunk and one copy across chunks', () => {
    const queue = new ByteQueue();
    const a = Buffer.from('hello');
    queue.push(a);
    queue.push(Buffer.from('world'));
    const inside = queue.take(3);
    assert.equal(inside.buffer, a.buffer);
    assert.equal(inside.toString(), 'hel');
    assert.equal(queue.take(4).toString(), 'lowo');
    assert.equal(queue.length, 3);
    queue.contiguous(3);
    assert.equal(queue.view.toString('utf8', queue.viewAt, queue.viewAt + 3), 'rld');
  });
});

describe('NBD encoders', () => {
  test('encodeGreeting writes NBDMAGIC, IHAVEOPT and the handshake flags', () => {
    const greeting = encodeGreeting(3);
    assert.equal(greeting.toString('latin1', 0, 16), 'NBDMAGICIHAVEOPT');
    assert.equal(greeting.readUInt16BE(16), 3);
  });

  test('encodeOptionReply round-trips through decodeOptionReplyHeader', () => {
    const reply = encodeOptionReply({ option: option.go, replyType: optionReply.errUnknown, payload: Buffer.from('nope') });
    assert.deepEqual(decodeOptionReplyHeader(reply), { option: option.go, replyType: optionReply.errUnknown, lengthBytes: 4 });
    assert.equal(reply.subarray(20).toString(), 'nope');
    assert.equal(decodeOptionReplyHeader(Buffer.alloc(20)), undefined);
  });

  test('reply encoders round-trip through decodeReplyHeader', () => {
    fc.assert(
      fc.property(u32, u32, fc.integer({ min: 0, max: 2 ** 52 }), fc.integer({ min: 1, max: 2 ** 31 }), (cookieHi, cookieLo, offsetBytes, dataBytes) => {
        const cookie = { cookieHi, cookieLo };
        assert.deepEqual(decodeReplyHeader(encodeSimpleReply(cookie, 22)), { kind: 'simple', error: 22, cookieHi, cookieLo });
        const data = encodeChunkOffsetDataHeader({ cookie, offsetBytes, dataBytes, done: true });
        assert.deepEqual(decodeReplyHeader(data), { kind: 'chunk', flags: replyFlag.done, type: replyType.offsetData, cookieHi, cookieLo, lengthBytes: dataBytes + 8 });
        assert.equal(readU64(data, 20), offsetBytes);
        assert.deepEqual(decodeReplyHeader(encodeChunkNone(cookie)), { kind: 'chunk', flags: replyFlag.done, type: replyType.none, cookieHi, cookieLo, lengthBytes: 0 });
      }),
      { numRuns: runs },
    );
  });

  test('encodeChunkError and encodeChunkBlockStatus lay out their payloads as the spec says', () => {
    const cookie = { cookieHi: 0, cookieLo: 1 };
    const error = encodeChunkError({ cookie, error: nbdErrno.EIO, message: 'boom', offsetBytes: 4096, done: true });
    const header = decodeReplyHeader(error);
    assert.ok(header?.kind === 'chunk');
    assert.equal(header.type, replyType.errorOffset);
    assert.equal(header.lengthBytes, 6 + 4 + 8);
    assert.equal(error.readUInt32BE(20), nbdErrno.EIO);
    assert.equal(error.readUInt16BE(24), 4);
    assert.equal(error.toString('utf8', 26, 30), 'boom');
    assert.equal(readU64(error, 30), 4096);
    const status = encodeChunkBlockStatus({ cookie, contextId: 2, descriptors: [{ lengthBytes: 512, flags: 3 }, { lengthBytes: 1024, flags: 0 }], done: false });
    assert.equal(status.readUInt32BE(16), 4 + 16);
    assert.equal(status.readUInt32BE(20), 2);
    assert.deepEqual([status.readUInt32BE(24), status.readUInt32BE(28), status.readUInt32BE(32), status.readUInt32BE(36)], [512, 3, 1024, 0]);
    assert.equal(status.readUInt32BE(0), magic.structuredReply);
  });
});

describe('toNbdError', () => {
  test('toNbdError maps BlockError codes as nbdkit does', () => {
    const cases: [BlockError, number, number][] = [
      [new BlockError('EIO', 'x'), 0, nbdErrno.EIO],
      [new BlockError('EPERM', 'x'), 0, nbdErrno.EPERM],
      [new BlockError('ENOSPC', 'x'), 0, nbdErrno.ENOSPC],
      [new BlockError('EINVAL', 'x'), 0, nbdErrno.EINVAL],
      [new BlockError('ENOMEM', 'x'), 0, nbdErrno.ENOMEM],
      [new BlockError('ESHUTDOWN', 'x'), 0, nbdErrno.ESHUTDOWN],
      [new BlockError('ENOTSUP', 'x'), 0, nbdErrno.EINVAL],
      [new BlockError('ENOTSUP', 'x'), commandFlag.fastZero, nbdErrno.ENOTSUP],
      [new BlockError('EOVERFLOW', 'x'), 0, nbdErrno.EINVAL],
      [new BlockError('EOVERFLOW', 'x'), commandFlag.df, nbdErrno.EOVERFLOW],
    ];
    for (const [err, flags, expected] of cases) assert.equal(toNbdError(err, flags), expected, `${err.code} flags ${flags}`);
  });

  test('toNbdError maps fs codes, sends EIO for errors without a code, and rethrows programmer errors', () => {
    assert.equal(toNbdError(Object.assign(new Error('ro'), { code: 'EROFS' })), nbdErrno.EPERM);
    assert.equal(toNbdError(Object.assign(new Error('q'), { code: 'EDQUOT' })), nbdErrno.ENOSPC);
    assert.equal(toNbdError(new Error('plain')), nbdErrno.EIO);
    assert.equal(toNbdError('a string'), nbdErrno.EIO);
    assert.throws(() => toNbdError(new AssertionError({ message: 'broken' })), AssertionError);
    assert.throws(() => toNbdError(new TypeError('broken')), TypeError);
    assert.throws(() => toNbdError(new RangeError('broken')), RangeError);
  });
});

describe('clipExtents', () => {
  test('clipExtents trims to the request, merges equal neighbours and honours REQ_ONE', () => {
    const extents = [
      { lengthBytes: 100, flags: 0 },
      { lengthBytes: 100, flags: 0 },
      { lengthBytes: 100, flags: 3 },
      { lengthBytes: 1000, flags: 0 },
    ];
    assert.deepEqual(clipExtents({ extents, lengthBytes: 350, reqOne: false }), [
      { lengthBytes: 200, flags: 0 },
      { lengthBytes: 100, flags: 3 },
      { lengthBytes: 50, flags: 0 },
    ]);
    assert.deepEqual(clipExtents({ extents, lengthBytes: 350, reqOne: true }), [{ lengthBytes: 200, flags: 0 }]);
    assert.deepEqual(clipExtents({ extents, lengthBytes: 50, reqOne: false }), [{ lengthBytes: 50, flags: 0 }]);
  });
});
