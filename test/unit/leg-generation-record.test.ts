/**
 * The leg generation record (issue 11): the pure codec (encode/decode, its checksum, the binding to the
 * bitmap that detects a log the kernel rewrote), and DiskDirtyLog keeping it: setLegStale() durable in
 * the same flush as the dirty marks, the record surviving our own resume (also with the legs
 * reordered), ignored after a kernel-style rewrite (after a clean stop, which seals it: see
 * DiskLogWriter.sealRecord), and every prefix of a step's writes (a crash in the
 * middle of a log write) leaving a record that still binds while a leg is stale.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { BlockCapabilities, ReadOptions, WriteOptions } from '../../src/block/block-device.js';
import { BlockDeviceBase } from '../../src/block/block-device-base.js';
import { MemoryBlockDevice } from '../../src/block/memory-block-device.js';
import { DiskDirtyLog } from '../../src/dirty-log/disk-dirty-log.js';
import { diskLogBitsOffsetBytes, diskLogMagic } from '../../src/dirty-log/disk-log-format.js';
import {
  bitsChecksums,
  checkLegRecordBinding,
  crc32,
  decodeLegRecord,
  encodeLegRecord,
  legIdentity,
  legRecordBytes,
  legRecordOffsetBytes,
  type LegGenerationRecord,
} from '../../src/dirty-log/leg-generation-record.js';

/** XORs one byte of a buffer with `mask`. */
function flip(buffer: Uint8Array, index: number, mask: number): void {
  buffer[index] = (buffer[index] ?? 0) ^ mask;
}

// ---- the codec -------------------------------------------------------------------------------

/** A log buffer of `regionCount` regions with a bit pattern, and a record bound to it. */
function boundBuffer(options: { regionCount: number; blockBytes: number; stale: readonly boolean[] }): { buffer: Uint8Array; record: LegGenerationRecord } {
  const bitsBytes = Math.ceil(options.regionCount / 32) * 4;
  const buffer = new Uint8Array(Math.ceil((diskLogBitsOffsetBytes + bitsBytes) / options.blockBytes) * options.blockBytes);
  for (let i = 0; i < bitsBytes; i++) buffer[diskLogBitsOffsetBytes + i] = (i * 37 + 11) & 0xff;
  const headEndBytes = Math.ceil(diskLogBitsOffsetBytes / options.blockBytes) * options.blockBytes;
  const sums = bitsChecksums(buffer, { bitsBytes, headEndBytes });
  const record: LegGenerationRecord = {
    nrRegions: options.regionCount,
    bitsBytes,
    headEndBytes,
    crcHead: sums.crcHead,
    crcTail: sums.crcTail,
    crcTailBefore: 0x12345678,
    legs: options.stale.map((stale, index) => ({ identity: legIdentity(`/dev/leg${index}`), stale })),
  };
  encodeLegRecord(record, buffer);
  return { buffer, record };
}

describe('leg generation record codec', () => {
  test('crc32 is zlib\'s CRC-32 (check value of "123456789")', () => {
    assert.equal(crc32(new TextEncoder().encode('123456789')), 0xcbf43926);
    assert.equal(crc32(new Uint8Array(0)), 0);
  });

  for (const stale of [[false], [true, false], [false, true, true], [true, false, true, false, true, false, true, false, true]]) {
    test(`encode then decode gives the same record (${stale.length} legs)`, () => {
      const { buffer, record } = boundBuffer({ regionCount: 5000, blockBytes: 512, stale });
      const decoded = decodeLegRecord(buffer);
      assert.equal(decoded.kind, 'record');
      assert.ok(decoded.kind === 'record');
      assert.deepEqual(decoded.record, record);
      assert.equal(checkLegRecordBinding(decoded.record, buffer, { nrRegions: 5000 }), undefined);
    });
  }

  test('the record stays inside header bytes 16..1023 and leaves the kernel header alone', () => {
    const buffer = new Uint8Array(2048).fill(0xee);
    const { record } = boundBuffer({ regionCount: 64, blockBytes: 512, stale: new Array<boolean>(9).fill(true) });
    encodeLegRecord(record, buffer);
    assert.ok(buffer.subarray(0, legRecordOffsetBytes).every((b) => b === 0xee), 'bytes 0..15 untouched');
    assert.ok(buffer.subarray(legRecordOffsetBytes + legRecordBytes(9)).every((b) => b === 0xee), 'nothing after the record');
    assert.ok(legRecordOffsetBytes + legRecordBytes(9) <= diskLogBitsOffsetBytes);
  });

  const damaged: readonly { name: string; edit: (buffer: Uint8Array) => void; kind: 'none' | 'invalid'; reason?: RegExp }[] = [
    { name: 'all zero (a new log, or one the kernel made)', edit: (b) => b.fill(0, 16, 1024), kind: 'none' },
    { name: 'another magic', edit: (b) => (b[16] = 0x00), kind: 'none' },
    { name: 'a later version', edit: (b) => (b[20] = 2), kind: 'invalid', reason: /version 2/ },
    { name: 'no legs', edit: (b) => ((b[22] = 0), (b[23] = 0)), kind: 'invalid', reason: /lists 0 legs/ },
    { name: 'ten legs', edit: (b) => ((b[22] = 10), (b[23] = 0)), kind: 'invalid', reason: /lists 10 legs/ },
    { name: 'a flipped stale flag', edit: (b) => flip(b, 16 + 40 + 8, 1), kind: 'invalid', reason: /checksum mismatch/ },
    { name: 'a flipped identity byte', edit: (b) => flip(b, 16 + 40 + 16, 0x80), kind: 'invalid', reason: /checksum mismatch/ },
    { name: 'a flipped bitmap checksum', edit: (b) => flip(b, 16 + 24, 1), kind: 'invalid', reason: /checksum mismatch/ },
  ];
  for (const row of damaged) {
    test(`decode: ${row.name} is ${row.kind}`, () => {
      const { buffer } = boundBuffer({ regionCount: 100, blockBytes: 512, stale: [true, false] });
      row.edit(buffer);
      const decoded = decodeLegRecord(buffer);
      assert.equal(decoded.kind, row.kind);
      if (decoded.kind === 'invalid' && row.reason !== undefined) assert.match(decoded.reason, row.reason);
    });
  }

  const bindings: readonly { name: string; blockBytes: number; edit: (buffer: Uint8Array, record: LegGenerationRecord) => void; nrRegions?: number; bound: boolean }[] = [
    { name: 'the bits as written', blockBytes: 512, edit: () => undefined, bound: true },
    { name: 'a tail bit changed (the kernel wrote the log)', blockBytes: 512, edit: (b) => flip(b, 1500, 1), bound: false },
    { name: 'every bit set (the kernel resynced)', blockBytes: 512, edit: (b) => b.fill(0xff, 1024, 1024 + 628), bound: false },
    { name: 'a head bit changed (4 KiB blocks)', blockBytes: 4096, edit: (b) => flip(b, 1030, 4), bound: false },
    { name: 'a tail bit changed (4 KiB blocks)', blockBytes: 4096, edit: (b) => flip(b, 4096 + 8, 4), nrRegions: 40000, bound: false },
    { name: 'another region count in the kernel header', blockBytes: 512, edit: () => undefined, nrRegions: 5001, bound: false },
  ];
  for (const row of bindings) {
    test(`binding: ${row.name} ${row.bound ? 'binds' : 'does not bind'}`, () => {
      const regionCount = row.nrRegions === 40000 ? 40000 : 5000;
      const { buffer, record } = boundBuffer({ regionCount, blockBytes: row.blockBytes, stale: [false, true] });
      row.edit(buffer, record);
      const problem = checkLegRecordBinding(record, buffer, { nrRegions: row.nrRegions ?? regionCount });
      assert.equal(problem === undefined, row.bound, problem);
    });
  }

  test('binding: a tail equal to crcTailBefore binds (a write cut short after its header blocks)', () => {
    const { buffer, record } = boundBuffer({ regionCount: 5000, blockBytes: 512, stale: [true, false] });
    const before = buffer.slice();
    flip(buffer, 1400, 0x10); // The new tail, not yet on disk.
    const sums = bitsChecksums(buffer, { bitsBytes: record.bitsBytes, headEndBytes: record.headEndBytes });
    const old = bitsChecksums(before, { bitsBytes: record.bitsBytes, headEndBytes: record.headEndBytes });
    const next = { ...record, crcTail: sums.crcTail, crcTailBefore: old.crcTail };
    encodeLegRecord(next, before); // Header blocks written, tail still the old one.
    assert.equal(checkLegRecordBinding(next, before, { nrRegions: 5000 }), undefined);
    flip(before, 1401, 0x10); // Neither tail.
    assert.match(checkLegRecordBinding(next, before, { nrRegions: 5000 }) ?? '', /the kernel used the log/);
  });
});

// ---- DiskDirtyLog keeping the record ---------------------------------------------------------

type Event = { readonly kind: 'write'; readonly offsetBytes: number; readonly data: Buffer } | { readonly kind: 'flush' };

/** A memory device that records every write (with its bytes) and flush, in order; close() keeps the memory. */
class RecordingDevice extends BlockDeviceBase {
  readonly sizeBytes: number;
  readonly logicalBlockBytes: number;
  readonly name = 'log';
  readonly capabilities: BlockCapabilities = { flush: true, fua: true, trim: false, writeZeroes: false };
  readonly events: Event[] = [];
  readonly memory: MemoryBlockDevice;

  constructor(memory: MemoryBlockDevice) {
    super();
    this.memory = memory;
    this.sizeBytes = memory.sizeBytes;
    this.logicalBlockBytes = memory.logicalBlockBytes;
    this.checkGeometry();
  }

  protected doRead(offsetBytes: number, lengthBytes: number, options: ReadOptions): Promise<Buffer> {
    return this.memory.read(offsetBytes, lengthBytes, options);
  }

  protected async doWrite(offsetBytes: number, data: Uint8Array, options: WriteOptions): Promise<void> {
    this.events.push({ kind: 'write', offsetBytes, data: Buffer.from(data) });
    await this.memory.write(offsetBytes, data, options);
  }

  protected async doFlush(): Promise<void> {
    this.events.push({ kind: 'flush' });
  }

  protected doClose(): Promise<void> {
    return Promise.resolve();
  }
}

const legNames = ['/dev/vdb', 'nbd://10.200.0.2/leg1'];

function openLog(
  memory: MemoryBlockDevice,
  options: { legNames?: readonly string[]; regionCount?: number; writeMode?: 'changed-blocks' | 'whole-buffer'; syncMode?: 'default' | 'nosync' } = {},
): { log: DiskDirtyLog; device: RecordingDevice } {
  const device = new RecordingDevice(memory);
  const log = new DiskDirtyLog({
    device,
    displayName: 'log',
    regionCount: options.regionCount ?? 8000,
    regionSizeSectors: 8,
    syncMode: options.syncMode ?? 'default',
    flushData: () => Promise.resolve(),
    raiseEvent: () => undefined,
    lazyCleanTimer: false,
    ...(options.writeMode === undefined ? {} : { writeMode: options.writeMode }),
    legNames: options.legNames ?? legNames,
  });
  return { log, device };
}

describe('DiskDirtyLog leg generations', () => {
  test('a new log has no record: every leg current', async () => {
    const memory = new MemoryBlockDevice({ sizeBytes: 64 * 1024 });
    const { log } = openLog(memory);
    await log.resume();
    assert.deepEqual(log.legGenerations, { record: 'none', reason: undefined, legs: [{ stale: false, recorded: false }, { stale: false, recorded: false }] });
    await log.close();
  });

  test('setLegStale is written by the same flush as the dirty marks, before its device flush', async () => {
    const memory = new MemoryBlockDevice({ sizeBytes: 64 * 1024 });
    const { log, device } = openLog(memory);
    await log.resume();
    device.events.length = 0;
    log.setLegStale(0, true);
    log.markRegion(7000); // A bit far from the header blocks: two runs.
    await log.flush();
    const flushes = device.events.filter((event) => event.kind === 'flush').length;
    assert.equal(flushes, 1, 'one device flush');
    assert.equal(device.events.at(-1)?.kind, 'flush', 'the flush comes last');
    const header = device.events.find((event) => event.kind === 'write' && event.offsetBytes === 0);
    assert.ok(header !== undefined && header.kind === 'write', 'the header blocks were written');
    const decoded = decodeLegRecord(header.data);
    assert.ok(decoded.kind === 'record');
    assert.deepEqual(decoded.record.legs.map((leg) => leg.stale), [true, false]);
    assert.deepEqual(log.legGenerations?.legs.map((leg) => leg.stale), [true, false]);
    await log.close();
  });

  test('the record survives our own resume, through marks and cleans, with the legs reordered too', async () => {
    const memory = new MemoryBlockDevice({ sizeBytes: 64 * 1024 });
    const first = openLog(memory, { syncMode: 'nosync' }).log;
    await first.resume();
    first.setLegStale(1, true);
    for (const region of [3, 4000, 7999]) first.markRegion(region);
    await first.flush();
    first.clearRegion(4000);
    await first.flush();
    await first.postsuspend();
    await first.close();

    const second = openLog(memory).log;
    await second.resume();
    assert.equal(second.legGenerations?.record, 'bound', second.legGenerations?.reason);
    assert.deepEqual(second.legGenerations?.legs, [{ stale: false, recorded: true }, { stale: true, recorded: true }]);
    assert.equal(second.isClean(3), false, 'the bits are the kernel format as before');
    await second.close();

    const reordered = openLog(memory, { legNames: [legNames[1] ?? '', legNames[0] ?? '', '/dev/new'] }).log;
    await reordered.resume();
    assert.deepEqual(reordered.legGenerations?.legs, [{ stale: true, recorded: true }, { stale: false, recorded: true }, { stale: false, recorded: false }]);
    reordered.setLegStale(0, false); // Recovered onto it.
    await reordered.flush();
    await reordered.close();

    const third = openLog(memory, { legNames: [legNames[1] ?? '', legNames[0] ?? '', '/dev/new'] }).log;
    await third.resume();
    assert.deepEqual(third.legGenerations?.legs.map((leg) => leg.stale), [false, false, false]);
    await third.close();
  });

  test('a log the kernel rewrote afterwards (same header, other bits) is detected and the record ignored', async () => {
    const memory = new MemoryBlockDevice({ sizeBytes: 64 * 1024 });
    const first = openLog(memory, { syncMode: 'nosync' }).log;
    await first.resume();
    first.setLegStale(0, true);
    first.markRegion(10);
    await first.flush();
    await first.postsuspend(); // A clean stop seals the record: only these exact bits bind it.
    await first.close();
    // The kernel's resume and resync: it writes the header and every bit clean, and keeps bytes 16..1023.
    const buffer = await memory.read(0, first.bufferBytes);
    const view = new DataView(buffer.buffer, buffer.byteOffset);
    assert.equal(view.getUint32(0, true), diskLogMagic);
    buffer.fill(0xff, diskLogBitsOffsetBytes, diskLogBitsOffsetBytes + 1000);
    await memory.write(0, buffer);

    const second = openLog(memory).log;
    await second.resume();
    assert.equal(second.legGenerations?.record, 'unbound');
    assert.match(second.legGenerations?.reason ?? '', /the kernel used the log/);
    assert.deepEqual(second.legGenerations?.legs.map((leg) => leg.stale), [false, false], 'the kernel rule: table order');
    await second.close();
  });

  test('a log without legNames never touches bytes 16..1023 (the kernel\'s bytes stay as they were)', async () => {
    const memory = new MemoryBlockDevice({ sizeBytes: 64 * 1024 });
    await memory.write(0, new Uint8Array(1024).fill(0x5a));
    const plain = new DiskDirtyLog({
      device: new RecordingDevice(memory),
      displayName: 'log',
      regionCount: 8000,
      regionSizeSectors: 8,
      syncMode: 'default',
      flushData: () => Promise.resolve(),
      raiseEvent: () => undefined,
    });
    await plain.resume();
    plain.markRegion(5);
    await plain.flush();
    await plain.close();
    const bytes = await memory.read(16, 1008);
    assert.ok(bytes.every((b) => b === 0x5a));
    assert.equal(plain.legGenerations, undefined);
  });

  for (const writeMode of ['changed-blocks', 'whole-buffer'] as const) {
    for (const blockBytes of [512, 4096]) {
      test(`every prefix of the writes of a step binds while a leg is stale (${writeMode}, ${blockBytes}-byte blocks)`, async () => {
        const memory = new MemoryBlockDevice({ sizeBytes: 64 * 1024, logicalBlockBytes: blockBytes });
        // nosync: every bit starts clean, so each mark below changes a bit and is written.
        const { log, device } = openLog(memory, { writeMode, regionCount: 200_000, syncMode: 'nosync' });
        await log.resume();
        log.setLegStale(1, true);
        await log.flush();
        const base = Buffer.from(await memory.read(0, log.bufferBytes));
        device.events.length = 0;
        // Steps touching the head bits, the far tail and the middle, marks and cleans.
        for (const regions of [[1, 150_000], [60_000, 199_999, 2], [90_000]]) {
          for (const region of regions) log.markRegion(region);
          await log.flush();
        }
        log.clearRegion(150_000);
        log.clearRegion(2);
        await log.flush();
        const writes = device.events.filter((event): event is Extract<Event, { kind: 'write' }> => event.kind === 'write');
        assert.ok(writes.length >= 4);
        const image = Buffer.from(base);
        for (let k = 0; k <= writes.length; k++) {
          if (k > 0) {
            const write = writes[k - 1];
            assert.ok(write !== undefined);
            image.set(write.data, write.offsetBytes);
          }
          const copy = new MemoryBlockDevice({ sizeBytes: 64 * 1024, logicalBlockBytes: blockBytes });
          await copy.write(0, image);
          const again = openLog(copy, { writeMode, regionCount: 200_000 }).log;
          await again.resume();
          assert.equal(again.legGenerations?.record, 'bound', `after ${k} of ${writes.length} writes: ${again.legGenerations?.reason ?? ''}`);
          assert.equal(again.legGenerations?.legs[1]?.stale, true);
          await again.close();
        }
        await log.close();
      });
    }
  }
});
