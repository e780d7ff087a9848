/**
 * ZeroTarget: dm-zero. Reads return zeroes; writes, trims and flushes succeed and are discarded. Takes
 * no arguments (zero_ctr: "No arguments required"); status info and table params are empty.
 */
import type { BlockCapabilities } from '../block/block-device.js';
import { sectorBytes } from '../limits.js';
import { SimpleTarget } from './simple-target.js';
import { TableError } from '../errors.js';

/** zero_ctr's argument check. @throws TableError "No arguments required". */
export function parseZeroArgs(args: readonly string[]): void {
  if (args.length !== 0) throw new TableError({ kernelError: 'No arguments required' });
}

export class ZeroTarget extends SimpleTarget {
  readonly type = 'zero' as const;
  readonly logicalBlockBytes = sectorBytes;
  readonly capabilities: BlockCapabilities = { flush: false, fua: true, trim: true, writeZeroes: true };
  readonly name = 'zero';

  constructor(options: { lengthSectors: number }) {
    super(options);
    this.checkGeometry();
  }

  statusInfo(): string {
    return '';
  }

  statusTable(): string {
    return '';
  }

  protected doRead(_offsetBytes: number, lengthBytes: number): Promise<Buffer> {
    return Promise.resolve(Buffer.alloc(lengthBytes));
  }

  protected doWrite(): Promise<void> {
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
