/**
 * The control protocol codec (src/control/control-protocol.ts): line splitting at any chunk boundary
 * (pg-protocol's split-buffer property), the line bound, request validation and response round trips.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  KernelControlError,
  LineDecoder,
  decodeJson,
  encodeLine,
  errorResponse,
  okResponse,
  parseRequest,
  parseResponse,
  type ControlRequest,
  type DecodedLine,
} from '../../src/control/control-protocol.js';
import { ControlError } from '../../src/errors.js';

function decodeInChunks(bytes: Buffer, cuts: readonly number[], lineBytesMax = 1024): DecodedLine[] {
  const decoder = new LineDecoder({ lineBytesMax });
  const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
  const out: DecodedLine[] = [];
  let at = 0;
  for (const point of [...points, bytes.length]) {
    out.push(...decoder.push(bytes.subarray(at, point)));
    at = point;
  }
  return out;
}

test('LineDecoder yields the same lines however the stream is split (UTF-8 included)', () => {
  fc.assert(
    fc.property(fc.array(fc.string({ unit: 'grapheme', maxLength: 40 }).map((s) => s.replace(/[\n\r]/g, '')), { maxLength: 8 }), fc.array(fc.nat(), { maxLength: 10 }), (lines, cuts) => {
      const bytes = Buffer.from(lines.map((l) => `${l}\n`).join(''), 'utf8');
      const decoded = decodeInChunks(bytes, cuts);
      assert.deepEqual(decoded, lines.map((text) => ({ kind: 'line', text })));
    }),
  );
});

test('LineDecoder reports an overlong line once, skips it, and keeps decoding after it', () => {
  fc.assert(
    fc.property(fc.integer({ min: 17, max: 200 }), fc.array(fc.nat(), { maxLength: 10 }), (longBytes, cuts) => {
      const bytes = Buffer.from(`ok1\n${'x'.repeat(longBytes)}\nok2\n`);
      const decoded = decodeInChunks(bytes, cuts, 16);
      assert.equal(decoded.length, 3);
      assert.deepEqual(decoded[0], { kind: 'line', text: 'ok1' });
      assert.equal(decoded[1]?.kind, 'overflow');
      assert.deepEqual(decoded[2], { kind: 'line', text: 'ok2' });
    }),
  );
});

test('LineDecoder never buffers more than lineBytesMax of an unterminated line', () => {
  const decoder = new LineDecoder({ lineBytesMax: 64 });
  for (let i = 0; i < 100; i++) decoder.push(Buffer.alloc(50, 0x41));
  assert.ok(decoder.pendingBytes <= 64);
  assert.deepEqual(decoder.push(Buffer.from('\n{"verb":"ls"}\n')), [{ kind: 'line', text: '{"verb":"ls"}' }]);
});

test('LineDecoder strips a CR before the newline', () => {
  assert.deepEqual(new LineDecoder().push(Buffer.from('a\r\nb\n')), [
    { kind: 'line', text: 'a' },
    { kind: 'line', text: 'b' },
  ]);
});

test('parseRequest accepts every verb with its fields and round-trips through encodeLine', () => {
  const requests: ControlRequest[] = [
    { id: 1, verb: 'create', name: 'm', table: '0 8 zero', nbd: 'unix:/tmp/s', readOnly: false },
    { id: 'r', verb: 'create', name: 'r', table: '0 8 zero', readOnly: true },
    { id: 'a', verb: 'load', name: 'm', table: '0 8 zero' },
    { id: 2, verb: 'suspend', name: 'm', noflush: true },
    { id: 3, verb: 'resume', name: 'm' },
    { id: 4, verb: 'remove', name: 'm' },
    { id: 5, verb: 'status', name: 'm', inactive: false },
    { id: 6, verb: 'table', name: 'm', inactive: true },
    { id: 7, verb: 'info', name: 'm' },
    { id: 8, verb: 'ls' },
    { id: 9, verb: 'wait', name: 'm', eventNr: 3 },
    { id: 10, verb: 'message', name: 'm', sector: 0, message: 'hello' },
    { id: 11, verb: 'clear', name: 'm' },
  ];
  for (const request of requests) {
    const line = encodeLine(request);
    assert.ok(line.endsWith('\n') && !line.slice(0, -1).includes('\n'));
    assert.deepEqual(parseRequest(line.trimEnd()), request);
  }
  assert.deepEqual(parseRequest('{"verb":"suspend","name":"m"}'), { id: null, verb: 'suspend', name: 'm', noflush: false });
  assert.deepEqual(parseRequest('{"verb":"wait","name":"m"}'), { id: null, verb: 'wait', name: 'm', eventNr: 0 });
});

test('parseRequest rejects malformed requests with ControlError EINVAL and a reason', () => {
  const bad: [string, RegExp][] = [
    ['not json', /not valid JSON/],
    ['[1,2]', /JSON object/],
    ['"ls"', /JSON object/],
    ['null', /JSON object/],
    ['{}', /no verb/],
    ['{"verb":"format-disk"}', /Unknown verb "format-disk"/],
    ['{"verb":"status"}', /"name" must be a string/],
    ['{"verb":"status","name":7}', /"name" must be a string/],
    ['{"verb":"status","name":"a/b"}', /Invalid device name/],
    ['{"verb":"status","name":""}', /Invalid device name/],
    [`{"verb":"status","name":"${'n'.repeat(200)}"}`, /Invalid device name/],
    ['{"verb":"create","name":"m"}', /"table" must be a string/],
    ['{"verb":"suspend","name":"m","noflush":"yes"}', /"noflush" must be a boolean/],
    ['{"verb":"wait","name":"m","eventNr":-1}', /non-negative integer/],
    ['{"verb":"wait","name":"m","eventNr":1.5}', /non-negative integer/],
    ['{"verb":"ls","id":{"x":1}}', /id must be/],
  ];
  for (const [line, reason] of bad) {
    assert.throws(() => parseRequest(line), (err: unknown) => err instanceof ControlError && err.code === 'EINVAL' && reason.test(err.message), line);
  }
});

test('parseRequest never throws anything but ControlError on arbitrary input', () => {
  fc.assert(
    fc.property(fc.oneof(fc.string(), fc.json(), fc.jsonValue().map((v) => JSON.stringify({ verb: 'create', name: v, table: v }))), (line) => {
      try {
        parseRequest(line);
      } catch (err) {
        assert.ok(err instanceof ControlError, String(err));
        assert.equal(err.code, 'EINVAL');
      }
    }),
  );
});

test('responses round-trip: ok results, errors with codes and kernel lines', () => {
  assert.deepEqual(parseResponse(encodeLine(okResponse(1, { eventNr: 2 })).trimEnd()), { id: 1, ok: true, result: { eventNr: 2 } });
  const plain = errorResponse('x', new ControlError('ENOENT', 'Device m does not exist'));
  assert.deepEqual(parseResponse(encodeLine(plain).trimEnd()), { id: 'x', ok: false, error: { code: 'ENOENT', message: 'Device m does not exist' } });
  const kernel = errorResponse(null, new KernelControlError('EINVAL', 'Invalid number of mirrors', { kernel: ['device-mapper: table: m: mirror: Invalid number of mirrors (-EINVAL)'] }));
  assert.deepEqual(parseResponse(encodeLine(kernel).trimEnd()), {
    id: null,
    ok: false,
    error: { code: 'EINVAL', message: 'Invalid number of mirrors', kernel: ['device-mapper: table: m: mirror: Invalid number of mirrors (-EINVAL)'] },
  });
  assert.throws(() => parseResponse('garbage'), (err: unknown) => err instanceof ControlError && err.code === 'EIO' && err.cause instanceof SyntaxError);
  assert.throws(() => parseResponse('{"ok":false,"error":{"code":"EWHAT","message":"x"}}'), (err: unknown) => err instanceof ControlError && err.code === 'EIO');
});

test('decodeJson returns a SyntaxError instead of throwing it, and parseRequest keeps it as the cause', () => {
  assert.deepEqual(decodeJson('{"verb":"ls"}'), { value: { verb: 'ls' } });
  const bad = decodeJson('{"verb":');
  assert.ok('error' in bad && bad.error instanceof SyntaxError);
  assert.throws(
    () => parseRequest('{"verb":'),
    (err: unknown) => err instanceof ControlError && err.code === 'EINVAL' && err.cause instanceof SyntaxError,
  );
});
