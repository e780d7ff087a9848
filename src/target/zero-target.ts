/**
 * ZeroTarget: dm-zero. Reads return zeroes; writes, trims and flushes succeed and are discarded. Takes
 * no arguments (zero_ctr: "No arguments required"); status info and table params are empty.
 */
import { assert } from '../assert.js';
import type { BlockCapabilities, ReadOptions, WriteOptions } from '../block/block-device.js';
import { BlockDeviceBase } from '../block/block-device-base.js';
import { TableError } from '../errors.js';
import { sectorBytes } from '../limits.js';
import type { SuspendOptions, Target } from './target.js';

/** zero_ctr's argument check. @throws TableError "No arguments required". */
export function parseZeroArgs(args: readonly string[]): void {
  if (args.length !== 0) throw new TableError({ kernelError: 'No arguments required' });
}

export class ZeroTarget extends BlockDeviceBase implements Target {
  readonly type = 'zero' as const;
  readonly lengthSectors: number;
  readonly sizeBytes: number;
  readonly logicalBlockBytes = 512;
  readonly capabilities: BlockCapabilities = { flush: false, fua: true, trim: true, writeZeroes: true };
  readonly name = 'zero';

  constructor(options: { lengthSectors: number }) {
    super();
    assert(Number.isSafeInteger(options.lengthSectors) && options.lengthSectors > 0, 'lengthSectors > 0');
    this.lengthSectors = options.lengthSectors;
    this.sizeBytes = options.lengthSectors * sectorBytes;
    this.checkGeometry();
  }

  statusInfo(): string {
    return '';
  }

  statusTable(): string {
    return '';
  }

  presuspend(options?: SuspendOptions): Promise<void> {
    void options;
    return Promise.resolve();
  }

  postsuspend(): Promise<void> {
    return Promise.resolve();
  }

  resume(): Promise<void> {
    return Promise.resolve();
  }

  destroy(): Promise<void> {
    return this.close();
  }

  protected doRead(offsetBytes: number, lengthBytes: number, options: ReadOptions): Promise<Buffer> {
    void offsetBytes;
    void options;
    return Promise.resolve(Buffer.alloc(lengthBytes));
  }

  protected doWrite(offsetBytes: number, data: Uint8Array, options: WriteOptions): Promise<void> {
    void offsetBytes;
    void data;
    void options;
    return Promise.resolve();
  }

  protected override doWriteZeroes(): Promise<void> {
    return Promise.resolve();
  }

  protected doFlush(): Promise<void> {
    return Promise.resolve();
  }

  protected doClose(): Promise<void> {
    return Promise.resolve();
  }
}
