/**
 * A bounded NBD fuzz run against the real `umirror serve` process (a mirror over two image files):
 * random bytes, mutated handshakes and option streams, and mutated request streams with hostile
 * flags, offsets, lengths and cut-off payloads, many connections at once, some never read from.
 *
 * Afterwards the process must still be serving: a normal client (qemu-io) writes and verifies a
 * pattern, Ctrl-C suspends cleanly, and the two legs are byte-identical (every write the fuzzer got
 * through went to both legs).
 *
 * The run is seeded (UMIRROR_FUZZ_SEED, printed on every run) and bounded (UMIRROR_FUZZ_CONNECTIONS,
 * default 240), so a failure replays.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { encodeClientFlags, encodeGoPayload, encodeMetaContextPayload, encodeOption, encodeRequest } from '../../src/nbd/client-codec.js';
import { clientFlag, command, option } from '../../src/nbd/protocol.js';
import { assertCleanExit, startServe } from '../helpers/serve-process.js';
import { run } from '../helpers/nbd-tools.js';
import { fuzzSeed, SeededRandom } from '../helpers/seeded-random.js';
import { requireTools } from '../helpers/tools.js';

const MiB = 1024 * 1024;
const volumeBytes = 8 * MiB;
const connectionsTotal = Number(process.env['UMIRROR_FUZZ_CONNECTIONS'] ?? '240');
const concurrency = 8;
/** How long one fuzz connection may live before the fuzzer hangs up on it. */
const connectionLifeMsMax = 400;

/** The fuzzer's draws: the seeded ones, plus mutated bytes and the extents a hostile client tries. */
class Fuzz extends SeededRandom {
  /** Flips, overwrites or cuts a few bytes of `buf`. */
  mutate(buf: Buffer): Buffer {
    const out = Buffer.from(buf);
    if (out.length === 0) return out;
    const edits = 1 + this.int(4);
    for (let i = 0; i < edits; i += 1) {
      const at = this.int(out.length);
      out[at] = this.chance(0.5) ? (out[at] ?? 0) ^ (1 << this.int(8)) : this.int(256);
    }
    return this.chance(0.2) ? out.subarray(0, this.int(out.length)) : out;
  }
  /** An offset or length a hostile client would try: in range, unaligned, at the edge, or huge. */
  extent(): number {
    return this.pick([
      0,
      1,
      511,
      512,
      4096,
      this.int(volumeBytes),
      volumeBytes - 512,
      volumeBytes,
      volumeBytes + 512,
      2 ** 32 - 1,
      2 ** 31,
      Number.MAX_SAFE_INTEGER,
      33 * MiB,
    ]);
  }
}

function optionPayload(fuzz: Fuzz, code: number): Buffer {
  switch (code) {
    case option.go:
    case option.info:
      return encodeGoPayload(fuzz.pick(['', 'umirror', 'nope', 'x'.repeat(fuzz.int(5000))]), fuzz.chance(0.5) ? [0, 1, 2, 3] : [fuzz.int(65536)]);
    case option.setMetaContext:
    case option.listMetaContext:
      return encodeMetaContextPayload(fuzz.pick(['', 'umirror']), fuzz.pick([[], ['base:allocation'], ['umirror:sync'], ['base:'], ['x'.repeat(300)]]));
    case option.exportName:
      return Buffer.from(fuzz.pick(['', 'umirror', 'nope']));
    default:
      return fuzz.chance(0.5) ? Buffer.alloc(0) : fuzz.bytes(fuzz.int(64));
  }
}

/** The bytes of one fuzz connection: a prefix of a plausible session with mutations along the way. */
function sessionBytes(fuzz: Fuzz): Buffer[] {
  const parts: Buffer[] = [];
  const style = fuzz.int(4);
  if (style === 0) {
    parts.push(fuzz.bytes(fuzz.int(2000)));
    return parts;
  }
  parts.push(style === 1 ? encodeClientFlags(fuzz.int(2 ** 32)) : encodeClientFlags(clientFlag.fixedNewstyle | clientFlag.noZeroes));
  const optionCodes = Object.values(option);
  const optionCount = style === 1 ? fuzz.int(8) : fuzz.int(4);
  for (let i = 0; i < optionCount; i += 1) {
    const code = fuzz.chance(0.9) ? fuzz.pick(optionCodes) : fuzz.int(2 ** 32);
    const encoded = encodeOption(code >>> 0, optionPayload(fuzz, code));
    parts.push(fuzz.chance(0.3) ? fuzz.mutate(encoded) : encoded);
  }
  if (style < 3) return parts;
  // A session that reaches transmission: STRUCTURED_REPLY maybe, then GO on the real export.
  if (fuzz.chance(0.5)) parts.push(encodeOption(option.structuredReply));
  parts.push(encodeOption(option.go, encodeGoPayload('umirror', [])));
  const commands = Object.values(command);
  const requestCount = 1 + fuzz.int(40);
  for (let i = 0; i < requestCount; i += 1) {
    const type = fuzz.chance(0.95) ? fuzz.pick(commands) : fuzz.int(65536);
    const lengthBytes = fuzz.chance(0.7) ? fuzz.pick([512, 4096, 65536, 1 + fuzz.int(70000)]) : fuzz.extent();
    const offsetBytes = fuzz.chance(0.7) ? fuzz.int(volumeBytes / 512) * 512 : fuzz.extent();
    const header = {
      type,
      flags: fuzz.chance(0.8) ? fuzz.pick([0, 1, 2, 4, 8, 16]) : fuzz.int(65536),
      cookieHi: fuzz.int(2 ** 32),
      cookieLo: fuzz.int(2 ** 32),
      offsetBytes: Math.min(offsetBytes, 2 ** 53 - 1),
      lengthBytes: Math.min(lengthBytes, 2 ** 32 - 1),
    };
    // A write's payload is sent as long as it is small; a huge declared length is sent cut off.
    const payload = type === command.write ? fuzz.bytes(Math.min(header.lengthBytes, 70000)) : undefined;
    const encoded = encodeRequest(header, payload);
    parts.push(fuzz.chance(0.1) ? fuzz.mutate(encoded) : encoded);
  }
  if (fuzz.chance(0.3)) parts.push(encodeRequest({ type: command.disc, flags: 0, cookieHi: 0, cookieLo: 0, offsetBytes: 0, lengthBytes: 0 }));
  return parts;
}

/** Runs one fuzz connection: sends its bytes (maybe slowly), reads or ignores replies, hangs up. */
async function fuzzConnection(options: { fuzz: Fuzz; path: string }): Promise<void> {
  const { fuzz, path } = options;
  const parts = sessionBytes(fuzz);
  const readReplies = fuzz.chance(0.8);
  const lifeMs = fuzz.int(connectionLifeMsMax);
  const socket: Socket = connect({ path });
  socket.on('error', () => undefined);
  if (readReplies) socket.on('data', () => undefined);
  else socket.pause();
  await new Promise<void>((resolve) => {
    socket.once('connect', resolve);
    socket.once('close', resolve);
  });
  for (const part of parts) {
    if (socket.destroyed) break;
    socket.write(part);
    if (fuzz.chance(0.1)) await sleep(fuzz.int(20));
  }
  await sleep(lifeMs);
  if (fuzz.chance(0.5)) socket.end();
  socket.destroy();
}

test('umirror serve survives a seeded NBD fuzz run and keeps its legs identical', async (t) => {
  if (!requireTools(t, ['qemu-io'])) return;
  const seed = fuzzSeed();
  t.diagnostic(`fuzz seed ${seed} (replay with UMIRROR_FUZZ_SEED=${seed}), ${connectionsTotal} connections`);
  const dir = await mkdtemp(join(tmpdir(), 'umirror-fuzz-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const legs = [join(dir, 'leg0.img'), join(dir, 'leg1.img')];
  for (const leg of legs) {
    await writeFile(leg, '');
    await truncate(leg, volumeBytes);
  }
  const sock = join(dir, 'nbd.sock');
  const table = `0 ${volumeBytes / 512} mirror core 2 64 nosync 2 ${legs[0]} 0 ${legs[1]} 0 1 handle_errors`;
  const serve = await startServe(['--table', table, '--nbd', `unix:${sock}`, '--quiet']);
  t.after(() => serve.stop({ timeoutMs: 10_000 }));

  const fuzz = new Fuzz(seed);
  let started = 0;
  const worker = async (): Promise<void> => {
    while (started < connectionsTotal) {
      started += 1;
      // Each connection draws from its own stream so the run replays whatever the interleaving.
      await fuzzConnection({ fuzz: new Fuzz(fuzz.int(2 ** 31)), path: sock });
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));

  // Still serving: a normal client writes and reads back a pattern.
  const uri = `nbd+unix:///umirror?socket=${sock}`;
  const io = await run('qemu-io', ['-f', 'raw', '-c', 'write -P 0x5a 1M 256k', '-c', 'read -P 0x5a 1M 256k', '-c', 'flush', uri], { timeoutMs: 30_000 });
  assert.equal(io.code, 0, `qemu-io after the fuzz run failed:\n${io.stdout}\n${io.stderr}\n${serve.stderr()}`);
  assert.doesNotMatch(io.stdout, /Pattern verification failed/);

  const exit = await serve.stop({ timeoutMs: 20_000 });
  assertCleanExit(exit, /^device suspended; a core log is not kept/m);
  assert.doesNotMatch(exit.stderr, /AssertionError|TypeError|RangeError|Unhandled/);
  const [leg0, leg1] = await Promise.all(legs.map((leg) => readFile(leg)));
  assert.ok(leg0 !== undefined && leg1 !== undefined);
  assert.ok(leg0.equals(leg1), 'legs differ after the fuzz run');
  const outsidePattern = Buffer.concat([leg0.subarray(0, MiB), leg0.subarray(MiB + 256 * 1024)]);
  assert.ok(outsidePattern.some((byte) => byte !== 0), 'fuzzed writes reached the legs (the fuzzer got past the handshake)');
  const pattern = Buffer.alloc(256 * 1024, 0x5a);
  assert.ok(leg0.subarray(MiB, MiB + pattern.length).equals(pattern), 'the pattern written after the fuzz run is on the legs');
});
