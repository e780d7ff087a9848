/**
 * BlockDeviceBase: the one place where BlockDevice arguments and state are checked (abstract-level's
 * put -> _put, nbdkit's backend.c). Public methods validate bounds, types and the closed state, then call
 * the protected do* methods, which may assume valid arguments. Implementations extend this class.
 *
 *   read/write/trim/writeZeroes: offset and length are safe non-negative integers, inside the device.
 *   Out-of-range reads fail with EINVAL; out-of-range writes, trims and zeroes with ENOSPC (as nbdkit).
 *   Zero-length requests succeed without reaching the implementation.
 *   After close() every call fails with ESHUTDOWN; close() itself is idempotent.
 */
import { assert, assertCount, isPowerOfTwo } from '../assert.js';
import { BlockError } from '../errors.js';
import type { BlockCapabilities, BlockDevice, ReadOptions, WriteOptions, ZeroOptions } from './block-device.js';

export abstract class BlockDeviceBase implements BlockDevice {
  abstract readonly sizeBytes: number;
  abstract readonly logicalBlockBytes: number;
  abstract readonly capabilities: BlockCapabilities;
  abstract readonly name: string;
  #closed = false;
  #closing: Promise<void> | undefined;

  get closed(): boolean {
    return this.#closed;
  }

  async read(offsetBytes: number, lengthBytes: number, options: ReadOptions = {}): Promise<Buffer> {
    this.#checkRange('read', offsetBytes, lengthBytes, 'EINVAL');
    if (lengthBytes === 0) return Buffer.alloc(0);
    const data = await this.doRead(offsetBytes, lengthBytes, options);
    assert(data.length === lengthBytes, `${this.name}: short read (${data.length} of ${lengthBytes})`);
    return data;
  }

  async write(offsetBytes: number, data: Uint8Array, options: WriteOptions = {}): Promise<void> {
    if (!(data instanceof Uint8Array)) throw new TypeError('write data must be a Uint8Array');
    this.#checkRange('write', offsetBytes, data.length, 'ENOSPC');
    if (data.length === 0) {
      if (options.fua === true) await this.doFlush();
      return;
    }
    await this.doWrite(offsetBytes, data, options);
  }

  async flush(): Promise<void> {
    this.#checkOpen('flush');
    await this.doFlush();
  }

  async trim(offsetBytes: number, lengthBytes: number, options: WriteOptions = {}): Promise<void> {
    this.#checkRange('trim', offsetBytes, lengthBytes, 'ENOSPC');
    if (lengthBytes === 0) return;
    await this.doTrim(offsetBytes, lengthBytes, options);
  }

  async writeZeroes(offsetBytes: number, lengthBytes: number, options: ZeroOptions = {}): Promise<void> {
    this.#checkRange('writeZeroes', offsetBytes, lengthBytes, 'ENOSPC');
    if (lengthBytes === 0) return;
    await this.doWriteZeroes(offsetBytes, lengthBytes, options);
  }

  close(): Promise<void> {
    if (this.#closing === undefined) {
      this.#closed = true;
      this.#closing = this.doClose();
    }
    return this.#closing;
  }

  protected abstract doRead(offsetBytes: number, lengthBytes: number, options: ReadOptions): Promise<Buffer>;
  protected abstract doWrite(offsetBytes: number, data: Uint8Array, options: WriteOptions): Promise<void>;
  protected abstract doFlush(): Promise<void>;
  protected abstract doClose(): Promise<void>;

  /** Default trim: a no-op (a hint only). Devices that can deallocate override it. */
  protected doTrim(offsetBytes: number, lengthBytes: number, options: WriteOptions): Promise<void> {
    void offsetBytes;
    void lengthBytes;
    return options.fua === true ? this.doFlush() : Promise.resolve();
  }

  /** Default write-zeroes: writes zero buffers in bounded chunks. */
  protected async doWriteZeroes(offsetBytes: number, lengthBytes: number, options: ZeroOptions): Promise<void> {
    const chunkBytes = 1024 * 1024;
    const zeroes = Buffer.alloc(Math.min(chunkBytes, lengthBytes));
    for (let done = 0; done < lengthBytes; ) {
      const n = Math.min(zeroes.length, lengthBytes - done);
      await this.doWrite(offsetBytes + done, n === zeroes.length ? zeroes : zeroes.subarray(0, n), {});
      done += n;
    }
    if (options.fua === true) await this.doFlush();
  }

  /** Checks the geometry an implementation declared; call at the end of its constructor. */
  protected checkGeometry(): void {
    assertCount(this.sizeBytes, 'sizeBytes');
    assert(isPowerOfTwo(this.logicalBlockBytes), `logicalBlockBytes must be a power of two, got ${this.logicalBlockBytes}`);
  }

  #checkOpen(op: string): void {
    if (this.#closed) throw new BlockError('ESHUTDOWN', `Cannot ${op} ${this.name}: device is closed`);
  }

  #checkRange(op: string, offsetBytes: number, lengthBytes: number, pastEnd: 'EINVAL' | 'ENOSPC'): void {
    if (!Number.isSafeInteger(offsetBytes) || offsetBytes < 0) {
      throw new BlockError('EINVAL', `Cannot ${op} ${this.name}: offset ${offsetBytes} is not a non-negative integer`);
    }
    if (!Number.isSafeInteger(lengthBytes) || lengthBytes < 0) {
      throw new BlockError('EINVAL', `Cannot ${op} ${this.name}: length ${lengthBytes} is not a non-negative integer`);
    }
    this.#checkOpen(op);
    if (offsetBytes + lengthBytes > this.sizeBytes) {
      throw new BlockError(
        pastEnd,
        `Cannot ${op} ${this.name}: ${lengthBytes} bytes at ${offsetBytes} pass the end (${this.sizeBytes} bytes)`,
      );
    }
  }
}
