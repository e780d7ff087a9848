// Test targets and a buildTarget for MappedDevice tests: linear/zero/error over MemoryBlockDevices, plus
// HoldingTarget, which behaves like a handle_errors mirror with a failed leg: while `holding`, writes
// wait; presuspend releases them with RequeueRequest (noflush) or EIO (plain suspend).
import type { BlockCapabilities, ReadOptions, WriteOptions } from '../../src/block/block-device.js';
import { BlockDeviceBase } from '../../src/block/block-device-base.js';
import { MemoryBlockDevice } from '../../src/block/memory-block-device.js';
import { BlockError } from '../../src/errors.js';
import { ErrorTarget } from '../../src/target/error-target.js';
import { LinearTarget, linearLookupFailure, parseLinearArgs } from '../../src/target/linear-target.js';
import type { TargetContext } from '../../src/target/mapped-device.js';
import type { TableLine } from '../../src/target/table-lines.js';
import { RequeueRequest, type SuspendOptions, type Target, type TargetType } from '../../src/target/target.js';
import { ZeroTarget, parseZeroArgs } from '../../src/target/zero-target.js';

export class HoldingTarget extends BlockDeviceBase implements Target {
  // A mirror stand-in: it reports itself as a mirror target.
  readonly type: TargetType = 'mirror';
  readonly lengthSectors: number;
  readonly sizeBytes: number;
  readonly logicalBlockBytes = 512;
  readonly capabilities: BlockCapabilities = { flush: true, fua: true, trim: false, writeZeroes: false };
  readonly name = 'holding';
  readonly context: TargetContext;
  readonly backing: MemoryBlockDevice;
  holding = true;
  flushes = 0;
  destroyed = false;
  readonly #held: { release: (error: Error | undefined) => void }[] = [];
  #heldWaiters: (() => void)[] = [];

  constructor(options: { lengthSectors: number; context: TargetContext }) {
    super();
    this.lengthSectors = options.lengthSectors;
    this.sizeBytes = options.lengthSectors * 512;
    this.context = options.context;
    this.backing = new MemoryBlockDevice({ sizeBytes: this.sizeBytes });
    this.checkGeometry();
  }

  get heldCount(): number {
    return this.#held.length;
  }

  /** Resolves once at least `count` writes are held. */
  async waitHeld(count: number): Promise<void> {
    while (this.#held.length < count) await new Promise<void>((resolve) => this.#heldWaiters.push(resolve));
  }

  statusInfo(): string {
    return `held ${this.#held.length}`;
  }
  statusTable(): string {
    return 'holding';
  }
  presuspend(options: SuspendOptions = {}): Promise<void> {
    const held = this.#held.splice(0);
    for (const io of held) {
      io.release(options.noflush === true ? new RequeueRequest() : new BlockError('EIO', 'held write failed by suspend'));
    }
    return Promise.resolve();
  }
  postsuspend(): Promise<void> {
    return Promise.resolve();
  }
  resume(): Promise<void> {
    return Promise.resolve();
  }
  async destroy(): Promise<void> {
    this.destroyed = true;
    await this.close();
  }
  protected doRead(offsetBytes: number, lengthBytes: number, options: ReadOptions): Promise<Buffer> {
    return this.backing.read(offsetBytes, lengthBytes, options);
  }
  protected async doWrite(offsetBytes: number, data: Uint8Array, options: WriteOptions): Promise<void> {
    if (this.holding) {
      const error = await new Promise<Error | undefined>((resolve) => {
        this.#held.push({ release: resolve });
        const waiters = this.#heldWaiters;
        this.#heldWaiters = [];
        for (const wake of waiters) wake();
      });
      if (error !== undefined) throw error;
    }
    await this.backing.write(offsetBytes, data, options);
  }
  protected doFlush(): Promise<void> {
    this.flushes++;
    return Promise.resolve();
  }
  protected doClose(): Promise<void> {
    return Promise.resolve();
  }
}

export interface TestTargets {
  readonly devices: Map<string, MemoryBlockDevice>;
  readonly built: Target[];
  readonly holding: HoldingTarget[];
  readonly buildTarget: (line: TableLine, context: TargetContext) => Promise<Target>;
}

/** A buildTarget over named memory devices; `holding` lines build HoldingTargets. */
export function testTargets(devices: Record<string, number>): TestTargets {
  const map = new Map<string, MemoryBlockDevice>();
  for (const [name, sectors] of Object.entries(devices)) {
    map.set(name, new MemoryBlockDevice({ sizeBytes: sectors * 512, name }));
  }
  const built: Target[] = [];
  const holding: HoldingTarget[] = [];
  const buildTarget = (line: TableLine, context: TargetContext): Promise<Target> => {
    let target: Target;
    switch (line.type) {
      case 'linear': {
        const args = parseLinearArgs(line.args);
        const device = map.get(args.device);
        if (device === undefined) return Promise.reject(linearLookupFailure());
        target = new LinearTarget({
          device,
          displayName: args.device,
          offsetSectors: args.offsetSectors,
          lengthSectors: line.lengthSectors,
        });
        break;
      }
      case 'zero':
        parseZeroArgs(line.args);
        target = new ZeroTarget({ lengthSectors: line.lengthSectors });
        break;
      case 'error':
        target = new ErrorTarget({ lengthSectors: line.lengthSectors });
        break;
      case 'holding': {
        const h = new HoldingTarget({ lengthSectors: line.lengthSectors, context });
        holding.push(h);
        target = h;
        break;
      }
      default:
        return Promise.reject(new Error(`no such test target ${line.type}`));
    }
    built.push(target);
    return Promise.resolve(target);
  };
  return { devices: map, built, holding, buildTarget };
}
