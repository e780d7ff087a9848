/**
 * FaultyBlockDevice: wraps another BlockDevice and injects faults, switchable at runtime, like the
 * kernel's dm-flakey (error_reads, error_writes, drop_writes, corrupt_bio_byte) and dm-dust (bad blocks).
 * With no faults set it passes every request through unchanged. Unit, property and fault tests use it;
 * the honest end-to-end variant is a real file over nbdkit's error filter (test/helpers/failing-leg.ts).
 *
 * Op kinds: `read`; `write` covers write, trim and writeZeroes (dm-flakey treats discards as writes);
 * `flush` covers flush().
 *
 * A fault applies to a request when every selector it has holds, tested in this order:
 *   range      the request overlaps [offsetBytes, offsetBytes + lengthBytes) (flush has no range: a
 *              ranged fault never applies to it)
 *   everyNth   this is the Nth, 2Nth, ... request that passed the range test (a counter per fault)
 *   rate       a draw from the seeded PRNG is below `rate` (reproducible for one seed and request order)
 *
 * Per request, in this order: latency (sleep), then error (reject, nothing reaches the inner device),
 * then drop (writes: resolve, nothing written), else forward; reads are then maybe corrupted (one byte
 * XORed). setFaults() replaces the whole config and resets the everyNth counters and the PRNG; requests
 * already sleeping finish under the config they started with.
 *
 * Counters (`counts`) only grow; they record what was injected, not what was requested.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { assert, unreachable } from '../assert.js';
import { BlockError, type Errno } from '../errors.js';
import type { BlockCapabilities, BlockDevice, ReadOptions, WriteOptions, ZeroOptions } from './block-device.js';
import { BlockDeviceBase } from './block-device-base.js';

export type FaultOp = 'read' | 'write' | 'flush';

export interface FaultRange {
  readonly offsetBytes: number;
  readonly lengthBytes: number;
}

/** Which requests a fault applies to; an empty selector applies to all of them. */
export interface FaultSelector {
  readonly range?: FaultRange;
  /** Apply to every Nth matching request (N >= 1; 1 is every request). */
  readonly everyNth?: number;
  /** Apply with this probability, 0..1, drawn from the seeded PRNG. */
  readonly rate?: number;
}

export interface ErrorFault extends FaultSelector {
  readonly ops: readonly FaultOp[];
  /** Errno to fail with; EIO by default. */
  readonly code?: Errno;
}

export interface CorruptFault extends FaultSelector {
  /** Byte of the request to corrupt (dm-flakey's Nth byte, 0-based); requests shorter than that pass. */
  readonly byteIndex?: number;
  /** XOR mask applied to that byte; 0xff by default, never 0 (that would corrupt nothing). */
  readonly xorMask?: number;
}

export interface FaultConfig {
  /** Fail matching requests; the first matching entry wins. */
  readonly errors?: readonly ErrorFault[];
  /** Matching writes (and trims, zeroes) report success and write nothing (dm-flakey drop_writes). */
  readonly dropWrites?: FaultSelector;
  /** Matching reads come back with one byte flipped (dm-flakey corrupt_bio_byte on reads). */
  readonly corruptReads?: CorruptFault;
  /** Latency added before each request of a kind, in milliseconds. */
  readonly latencyMs?: { readonly [K in FaultOp]?: number };
  /** PRNG seed for `rate` selectors; 1 by default. */
  readonly seed?: number;
}

export interface FaultCounts {
  readonly readErrors: number;
  readonly writeErrors: number;
  readonly flushErrors: number;
  readonly droppedWrites: number;
  readonly corruptedReads: number;
  readonly delayedRequests: number;
}

export interface FaultyBlockDeviceOptions {
  readonly name?: string;
  readonly faults?: FaultConfig;
  /** Close the inner device on close(); true by default (the wrapper owns it). */
  readonly closeInner?: boolean;
}

/** A selector with its own everyNth counter. */
interface Armed<T extends FaultSelector> {
  readonly fault: T;
  matched: number;
}

interface Armory {
  readonly config: FaultConfig;
  readonly errors: readonly Armed<ErrorFault>[];
  readonly dropWrites: Armed<FaultSelector> | undefined;
  readonly corruptReads: Armed<CorruptFault> | undefined;
  random: () => number;
}

export class FaultyBlockDevice extends BlockDeviceBase {
  readonly inner: BlockDevice;
  readonly name: string;
  readonly #closeInner: boolean;
  #armory: Armory;
  #counts = { readErrors: 0, writeErrors: 0, flushErrors: 0, droppedWrites: 0, corruptedReads: 0, delayedRequests: 0 };

  constructor(inner: BlockDevice, options: FaultyBlockDeviceOptions = {}) {
    super();
    this.inner = inner;
    this.name = options.name ?? `faulty(${inner.name})`;
    this.#closeInner = options.closeInner ?? true;
    this.#armory = arm(options.faults ?? {});
    this.checkGeometry();
  }

  get sizeBytes(): number {
    return this.inner.sizeBytes;
  }

  get logicalBlockBytes(): number {
    return this.inner.logicalBlockBytes;
  }

  get capabilities(): BlockCapabilities {
    return this.inner.capabilities;
  }

  /** The config in force. */
  get faults(): FaultConfig {
    return this.#armory.config;
  }

  /** What was injected so far (a snapshot). */
  get counts(): FaultCounts {
    return { ...this.#counts };
  }

  /** Replaces the fault config; resets everyNth counters and the PRNG. @throws RangeError on a bad config. */
  setFaults(config: FaultConfig): void {
    this.#armory = arm(config);
  }

  /** Back to pass-through. */
  clearFaults(): void {
    this.#armory = arm({});
  }

  protected async doRead(offsetBytes: number, lengthBytes: number, options: ReadOptions): Promise<Buffer> {
    const armory = await this.#delay('read');
    this.#maybeFail(armory, { op: 'read', offsetBytes, lengthBytes });
    const data = await this.inner.read(offsetBytes, lengthBytes, options);
    const corrupt = armory.corruptReads;
    if (corrupt !== undefined && applies(armory, corrupt, { offsetBytes, lengthBytes })) {
      const byteIndex = corrupt.fault.byteIndex ?? 0;
      if (byteIndex < data.length) {
        const before = data[byteIndex];
        assert(before !== undefined);
        data[byteIndex] = before ^ (corrupt.fault.xorMask ?? 0xff);
        assert(data[byteIndex] !== before, 'corruption must change the byte');
        this.#counts.corruptedReads += 1;
      }
    }
    return data;
  }

  protected async doWrite(offsetBytes: number, data: Uint8Array, options: WriteOptions): Promise<void> {
    if (await this.#failOrDrop({ offsetBytes, lengthBytes: data.length })) return;
    await this.inner.write(offsetBytes, data, options);
  }

  protected override async doTrim(offsetBytes: number, lengthBytes: number, options: WriteOptions): Promise<void> {
    if (await this.#failOrDrop({ offsetBytes, lengthBytes })) return;
    await this.inner.trim(offsetBytes, lengthBytes, options);
  }

  protected override async doWriteZeroes(offsetBytes: number, lengthBytes: number, options: ZeroOptions): Promise<void> {
    if (await this.#failOrDrop({ offsetBytes, lengthBytes })) return;
    await this.inner.writeZeroes(offsetBytes, lengthBytes, options);
  }

  protected async doFlush(): Promise<void> {
    const armory = await this.#delay('flush');
    this.#maybeFail(armory, { op: 'flush', offsetBytes: -1, lengthBytes: 0 });
    await this.inner.flush();
  }

  protected async doClose(): Promise<void> {
    if (this.#closeInner) await this.inner.close();
  }

  /** Runs latency, error and drop for a write-kind request; true when the write is to be dropped. */
  async #failOrDrop(request: { offsetBytes: number; lengthBytes: number }): Promise<boolean> {
    const armory = await this.#delay('write');
    this.#maybeFail(armory, { op: 'write', ...request });
    const drop = armory.dropWrites;
    if (drop !== undefined && applies(armory, drop, request)) {
      this.#counts.droppedWrites += 1;
      return true;
    }
    return false;
  }

  /** Sleeps the configured latency, then returns the config to judge this request by. */
  async #delay(op: FaultOp): Promise<Armory> {
    const ms = this.#armory.config.latencyMs?.[op] ?? 0;
    if (ms > 0) {
      this.#counts.delayedRequests += 1;
      await sleep(ms);
    }
    return this.#armory;
  }

  #maybeFail(armory: Armory, request: { op: FaultOp; offsetBytes: number; lengthBytes: number }): void {
    for (const armed of armory.errors) {
      if (!armed.fault.ops.includes(request.op)) continue;
      if (request.op === 'flush' && armed.fault.range !== undefined) continue;
      if (!applies(armory, armed, request)) continue;
      switch (request.op) {
        case 'read':
          this.#counts.readErrors += 1;
          break;
        case 'write':
          this.#counts.writeErrors += 1;
          break;
        case 'flush':
          this.#counts.flushErrors += 1;
          break;
        default:
          return unreachable(request.op);
      }
      const code = armed.fault.code ?? 'EIO';
      const where = request.op === 'flush' ? '' : `: ${request.lengthBytes} bytes at ${request.offsetBytes}`;
      throw new BlockError(code, `Cannot ${request.op} ${this.name}${where}: injected ${code}`, {
        cause: { injected: true, op: request.op },
      });
    }
  }
}

/** Tests the selectors in order (range, everyNth, rate); counts everyNth only past the range test. */
function applies(
  armory: Armory,
  armed: Armed<FaultSelector>,
  request: { offsetBytes: number; lengthBytes: number },
): boolean {
  const { range, everyNth, rate } = armed.fault;
  if (range !== undefined) {
    const end = request.offsetBytes + request.lengthBytes;
    if (request.offsetBytes < 0) return false;
    if (!(request.offsetBytes < range.offsetBytes + range.lengthBytes && range.offsetBytes < end)) return false;
  }
  if (everyNth !== undefined) {
    armed.matched += 1;
    if (armed.matched % everyNth !== 0) return false;
  }
  if (rate !== undefined && !(armory.random() < rate)) return false;
  return true;
}

function arm(config: FaultConfig): Armory {
  const errors = config.errors ?? [];
  for (const fault of errors) {
    checkSelector(fault);
    if (fault.ops.length === 0) throw new RangeError('an error fault needs at least one op');
  }
  if (config.dropWrites !== undefined) checkSelector(config.dropWrites);
  const corrupt = config.corruptReads;
  if (corrupt !== undefined) {
    checkSelector(corrupt);
    if (corrupt.byteIndex !== undefined && (!Number.isSafeInteger(corrupt.byteIndex) || corrupt.byteIndex < 0)) {
      throw new RangeError(`corruptReads.byteIndex must be a non-negative integer, got ${corrupt.byteIndex}`);
    }
    const mask = corrupt.xorMask;
    if (mask !== undefined && (!Number.isInteger(mask) || mask < 1 || mask > 0xff)) {
      throw new RangeError(`corruptReads.xorMask must be 1..255, got ${mask}`);
    }
  }
  for (const [op, ms] of Object.entries(config.latencyMs ?? {})) {
    if (ms !== undefined && (!Number.isFinite(ms) || ms < 0)) throw new RangeError(`latencyMs.${op} must be >= 0, got ${ms}`);
  }
  const seed = config.seed ?? 1;
  if (!Number.isSafeInteger(seed)) throw new RangeError(`seed must be an integer, got ${seed}`);
  return {
    config,
    errors: errors.map((fault) => ({ fault, matched: 0 })),
    dropWrites: config.dropWrites === undefined ? undefined : { fault: config.dropWrites, matched: 0 },
    corruptReads: corrupt === undefined ? undefined : { fault: corrupt, matched: 0 },
    random: mulberry32(seed),
  };
}

function checkSelector(selector: FaultSelector): void {
  if (selector.range !== undefined) {
    const { offsetBytes, lengthBytes } = selector.range;
    if (!Number.isSafeInteger(offsetBytes) || offsetBytes < 0 || !Number.isSafeInteger(lengthBytes) || lengthBytes < 0) {
      throw new RangeError(`range must be non-negative integers, got ${offsetBytes}+${lengthBytes}`);
    }
  }
  const n = selector.everyNth;
  if (n !== undefined && (!Number.isSafeInteger(n) || n < 1)) throw new RangeError(`everyNth must be >= 1, got ${n}`);
  const rate = selector.rate;
  if (rate !== undefined && !(rate >= 0 && rate <= 1)) throw new RangeError(`rate must be in 0..1, got ${rate}`);
}

/** A small seeded PRNG (mulberry32): uniform in [0, 1), reproducible for a seed. */
export function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
