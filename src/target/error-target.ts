/**
 * ErrorTarget: dm's `error` target (dm-target.c io_err). Every I/O, flushes included, fails with
 * BlockError EIO (DM_MAPIO_KILL). The kernel 6.1 constructor ignores its arguments, and the target has
 * no status function, so status info and table params are empty: dmsetup prints `0 32768 error `.
 */
import type { BlockCapabilities } from '../block/block-device.js';
import { sectorBytes } from '../limits.js';
import { SimpleTarget } from './simple-target.js';
import { BlockError } from '../errors.js';

export class ErrorTarget extends SimpleTarget {
  readonly type = 'error' as const;
  readonly logicalBlockBytes = sectorBytes;
  readonly capabilities: BlockCapabilities = { flush: true, fua: true, trim: true, writeZeroes: false };
  readonly name = 'error';

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

  protected doRead(offsetBytes: number, lengthBytes: number): Promise<Buffer> {
    return Promise.reject(this.#fail('read', offsetBytes, lengthBytes));
  }

  protected doWrite(offsetBytes: number, data: Uint8Array): Promise<void> {
    return Promise.reject(this.#fail('write', offsetBytes, data.length));
  }

  protected override doTrim(offsetBytes: number, lengthBytes: number): Promise<void> {
    return Promise.reject(this.#fail('trim', offsetBytes, lengthBytes));
  }

  protected override doWriteZeroes(offsetBytes: number, lengthBytes: number): Promise<void> {
    return Promise.reject(this.#fail('write zeroes to', offsetBytes, lengthBytes));
  }

  protected doFlush(): Promise<void> {
    return Promise.reject(new BlockError('EIO', 'Cannot flush the error target: every I/O fails'));
  }

  protected doClose(): Promise<void> {
    return Promise.resolve();
  }

  #fail(op: string, offsetBytes: number, lengthBytes: number): BlockError {
    return new BlockError('EIO', `Cannot ${op} ${lengthBytes} bytes at ${offsetBytes}: the error target fails every I/O`);
  }
}
