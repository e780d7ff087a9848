/**
 * HandshakeSession in each TLS mode and with an admission bound, with no sockets: what every option
 * answers before and after STARTTLS (the spec's NOTLS, "TLS on" and FORCEDTLS), that nothing about an
 * export leaves before TLS when it is required, and that STARTTLS forgets what was negotiated before it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryBlockDevice } from '../../src/block/memory-block-device.js';
import { decodeOptionReplyHeader, encodeGoPayload, encodeMetaContextPayload } from '../../src/nbd/client-codec.js';
import { HandshakeSession, type HandshakeStep } from '../../src/nbd/handshake.js';
import { StaticExportResolver } from '../../src/nbd/nbd-export.js';
import { clientFlag, option, optionReply, transmissionFlag } from '../../src/nbd/protocol.js';
import type { NbdTlsMode } from '../../src/nbd/server-tls.js';

const sizeBytes = 3 * 1024 * 1024 + 4096;
const exportName = 'secret-volume-name';

function session(tlsMode: NbdTlsMode, admit?: () => string | undefined): HandshakeSession {
  const device = new MemoryBlockDevice({ sizeBytes });
  const s = new HandshakeSession(new StaticExportResolver([{ name: exportName, description: 'the finance database', device }]), {
    tlsMode,
    ...(admit !== undefined && { admit }),
  });
  assert.equal(s.handleClientFlags(clientFlag.fixedNewstyle | clientFlag.noZeroes), undefined);
  return s;
}

function replyTypes(step: HandshakeStep): number[] {
  return step.replies.map((reply) => {
    const header = decodeOptionReplyHeader(reply);
    assert.ok(header !== undefined);
    return header.replyType;
  });
}

const bytesOf = (step: HandshakeStep): Buffer => Buffer.concat(step.replies);

const go = (name = exportName): Buffer => encodeGoPayload(name, [0, 1, 2, 3]);

test('HandshakeSession with TLS required answers every option but STARTTLS and ABORT with ERR_TLS_REQD and tells nothing about the export', () => {
  const s = session('require');
  const sizeBigEndian = Buffer.alloc(8);
  sizeBigEndian.writeBigUInt64BE(BigInt(sizeBytes));
  const probes: [number, Buffer][] = [
    [option.list, Buffer.alloc(0)],
    [option.info, go()],
    [option.go, go()],
    [option.go, go('')],
    [option.structuredReply, Buffer.alloc(0)],
    [option.listMetaContext, encodeMetaContextPayload(exportName, [])],
    [option.setMetaContext, encodeMetaContextPayload(exportName, ['base:allocation'])],
    [option.extendedHeaders, Buffer.alloc(0)],
    [99, Buffer.from('junk')],
  ];
  for (const [code, payload] of probes) {
    const step = s.handleOption(code, payload);
    assert.equal(step.next, 'continue', `option ${code}`);
    assert.deepEqual(replyTypes(step), [optionReply.errTlsReqd], `option ${code} answers ERR_TLS_REQD`);
    const bytes = bytesOf(step);
    assert.equal(bytes.includes(exportName), false, `option ${code} leaks the export name`);
    assert.equal(bytes.includes('finance'), false, `option ${code} leaks the description`);
    assert.equal(bytes.includes(sizeBigEndian), false, `option ${code} leaks the size`);
  }
  const exportNameStep = s.handleOption(option.exportName, Buffer.from(exportName));
  assert.equal(exportNameStep.next, 'close');
  assert.equal(exportNameStep.replies.length, 0, 'EXPORT_NAME before STARTTLS closes without a word');
});

test('HandshakeSession with TLS required ACKs ABORT before STARTTLS', () => {
  const step = session('require').handleOption(option.abort, Buffer.alloc(0));
  assert.equal(step.next, 'close');
  assert.deepEqual(replyTypes(step), [optionReply.ack]);
});

test('HandshakeSession with TLS required refuses a client without FIXED_NEWSTYLE (it cannot send STARTTLS)', () => {
  const s = new HandshakeSession(new StaticExportResolver([{ name: 'v', device: new MemoryBlockDevice({ sizeBytes: 4096 }) }]), { tlsMode: 'require' });
  assert.match(s.handleClientFlags(0) ?? '', /TLS is required/);
});

test('HandshakeSession with TLS required serves the export after STARTTLS', () => {
  const s = session('require');
  const start = s.handleOption(option.startTls, Buffer.alloc(0));
  assert.equal(start.next, 'startTls');
  assert.deepEqual(replyTypes(start), [optionReply.ack]);
  assert.equal(s.tlsStarted, true);
  const list = s.handleOption(option.list, Buffer.alloc(0));
  assert.deepEqual(replyTypes(list), [optionReply.server, optionReply.ack]);
  assert.ok(bytesOf(list).includes(exportName));
  const step = s.handleOption(option.go, go());
  assert.equal(step.next, 'transmission');
});

test('HandshakeSession answers a second STARTTLS with ERR_INVALID and STARTTLS with data with ERR_INVALID', () => {
  const s = session('on');
  assert.deepEqual(replyTypes(s.handleOption(option.startTls, Buffer.from('x'))), [optionReply.errInvalid]);
  assert.equal(s.tlsStarted, false);
  assert.equal(s.handleOption(option.startTls, Buffer.alloc(0)).next, 'startTls');
  const again = s.handleOption(option.startTls, Buffer.alloc(0));
  assert.equal(again.next, 'continue');
  assert.deepEqual(replyTypes(again), [optionReply.errInvalid]);
});

test('HandshakeSession without TLS answers STARTTLS with ERR_UNSUP (NOTLS mode)', () => {
  const s = session('off');
  const step = s.handleOption(option.startTls, Buffer.alloc(0));
  assert.equal(step.next, 'continue');
  assert.deepEqual(replyTypes(step), [optionReply.errUnsup]);
  assert.equal(s.tlsStarted, false);
});

test('HandshakeSession with TLS on serves plaintext clients and upgrades on STARTTLS', () => {
  const plain = session('on');
  assert.deepEqual(replyTypes(plain.handleOption(option.list, Buffer.alloc(0))), [optionReply.server, optionReply.ack]);
  assert.equal(plain.handleOption(option.go, go()).next, 'transmission');
  const upgraded = session('on');
  assert.equal(upgraded.handleOption(option.startTls, Buffer.alloc(0)).next, 'startTls');
  assert.equal(upgraded.handleOption(option.go, go()).next, 'transmission');
});

test('HandshakeSession forgets STRUCTURED_REPLY and SET_META_CONTEXT sent before STARTTLS', () => {
  const s = session('on');
  assert.deepEqual(replyTypes(s.handleOption(option.structuredReply, Buffer.alloc(0))), [optionReply.ack]);
  const meta = s.handleOption(option.setMetaContext, encodeMetaContextPayload(exportName, ['base:allocation']));
  assert.deepEqual(replyTypes(meta), [optionReply.metaContext, optionReply.ack]);
  assert.equal(s.handleOption(option.startTls, Buffer.alloc(0)).next, 'startTls');
  // SET_META_CONTEXT now needs structured replies again: they were forgotten.
  const metaAfter = s.handleOption(option.setMetaContext, encodeMetaContextPayload(exportName, ['base:allocation']));
  assert.deepEqual(replyTypes(metaAfter), [optionReply.errInvalid]);
  const step = s.handleOption(option.go, go());
  assert.equal(step.next, 'transmission');
  assert.ok(step.next === 'transmission');
  assert.equal(step.negotiated.structuredReplies, false);
  assert.deepEqual(step.negotiated.contexts, []);
  assert.equal(step.negotiated.transmissionFlags & transmissionFlag.sendDf, 0, 'no DF without structured replies');
});

test('HandshakeSession asks admit before GO and EXPORT_NAME: GO gets ERR_POLICY with the reason, EXPORT_NAME closes', () => {
  let calls = 0;
  const full = (): string => {
    calls++;
    return 'export "x" has the most connections allowed (2)';
  };
  const s = session('off', full);
  const info = s.handleOption(option.info, go());
  assert.deepEqual(replyTypes(info).at(-1), optionReply.ack, 'INFO is not admission');
  assert.equal(calls, 0);
  const refused = s.handleOption(option.go, go());
  assert.equal(refused.next, 'continue');
  assert.deepEqual(replyTypes(refused), [optionReply.errPolicy]);
  assert.ok(bytesOf(refused).includes('most connections allowed'));
  assert.equal(calls, 1);
  const closed = session('off', full).handleOption(option.exportName, Buffer.from(exportName));
  assert.equal(closed.next, 'close');
  assert.equal(calls, 2);
  const admitted = session('off', () => undefined).handleOption(option.go, go());
  assert.equal(admitted.next, 'transmission');
});
