/**
 * ErrorTarget: dm's `error` target (dm-target.c io_err). Every I/O, flushes included, fails with
 * BlockError EIO (DM_MAPIO_KILL). The kernel 6.1 constructor ignores its arguments, and the target has
 * no status function, so status info and table params are empty: dmsetup prints `0 32768 error `.
 */
import { assert } from '../assert.js';
import type { BlockCapabilities, ReadOptions, WriteOptions } from '../block/block-device.js';
import { BlockDeviceBase } from '../block/block-device-base.js';
import { BlockError } from '../errors.js';
import { sectorBytes } from '../limits.js';
import type { SuspendOptions, Target } from './target.js';

export class ErrorTarget extends BlockDeviceBase implements Target {
  readonly type = 'error' as const;
  readonly lengthSectors: number;
  readonly sizeBytes: number;
  readonly logicalBlockBytes = 512;
  readonly capabilities: BlockCapabilities = { flush: true, fua: true, trim: true, writeZeroes: false };
  readonly name = 'error';

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
    void options;
    return Promise.reject(this.#fail('read', offsetBytes, lengthBytes));
  }

  protected doWrite(offsetBytes: number, data: Uint8Array, options: WriteOptions): Promise<void> {
    void options;
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
