/**
 * Test devices for the dirty-log tests: a small file-backed device (a real file, pread/pwrite and
 * fdatasync) and a wrapper that counts I/O and fails reads, writes or flushes on demand. Kept local to
 * the dirty-log tests so they do not depend on block/ implementations developed elsewhere.
 */
import { open, type FileHandle } from 'node:fs/promises';
import type { BlockCapabilities, BlockDevice, ReadOptions, WriteOptions } from '../../src/block/block-device.js';
import { BlockDeviceBase } from '../../src/block/block-device-base.js';
import { BlockError } from '../../src/errors.js';

export class TestFileDevice extends BlockDeviceBase {
  readonly sizeBytes: number;
  readonly logicalBlockBytes: number;
  readonly name: string;
  readonly capabilities: BlockCapabilities = { flush: true, fua: false, trim: false, writeZeroes: false };
  readonly #handle: FileHandle;

  private constructor(options: { handle: FileHandle; sizeBytes: number; logicalBlockBytes: number; name: string }) {
    super();
    this.#handle = options.handle;
    this.sizeBytes = options.sizeBytes;
    this.logicalBlockBytes = options.logicalBlockBytes;
    this.name = options.name;
    this.checkGeometry();
  }

  static async open(options: { path: string; logicalBlockBytes?: number }): Promise<TestFileDevice> {
    const handle = await open(options.path, 'r+');
    const { size } = await handle.stat();
    return new TestFileDevice({ handle, sizeBytes: size, logicalBlockBytes: options.logicalBlockBytes ?? 512, name: options.path });
  }

  protected async doRead(offsetBytes: number, lengthBytes: number, options: ReadOptions): Promise<Buffer> {
    void options;
    const out = Buffer.alloc(lengthBytes);
    const { bytesRead } = await this.#handle.read(out, 0, lengthBytes, offsetBytes);
    if (bytesRead !== lengthBytes) throw new BlockError('EIO', `short read from ${this.name}`);
    return out;
  }

  protected async doWrite(offsetBytes: number, data: Uint8Array, options: WriteOptions): Promise<void> {
    await this.#handle.write(data, 0, data.length, offsetBytes);
    if (options.fua === true) await this.#handle.datasync();
  }

  protected async doFlush(): Promise<void> {
    await this.#handle.datasync();
  }

  protected async doClose(): Promise<void> {
    await this.#handle.close();
  }
}

export interface RecordedWrite {
  readonly offsetBytes: number;
  readonly lengthBytes: number;
}

/** Passes I/O to an inner device, records writes, and fails operations while a switch is on. */
export class TestFailingDevice extends BlockDeviceBase {
  readonly sizeBytes: number;
  readonly logicalBlockBytes: number;
  readonly name: string;
  readonly capabilities: BlockCapabilities;
  readonly inner: BlockDevice;
  failReads = false;
  failWrites = false;
  failFlushes = false;
  readonly writes: RecordedWrite[] = [];
  flushes = 0;

  constructor(inner: BlockDevice) {
    super();
    this.inner = inner;
    this.sizeBytes = inner.sizeBytes;
    this.logicalBlockBytes = inner.logicalBlockBytes;
    this.name = inner.name;
    this.capabilities = inner.capabilities;
    this.checkGeometry();
  }

  get bytesWritten(): number {
    return this.writes.reduce((sum, w) => sum + w.lengthBytes, 0);
  }

  protected doRead(offsetBytes: number, lengthBytes: number, options: ReadOptions): Promise<Buffer> {
    if (this.failReads) return Promise.reject(new BlockError('EIO', `injected read error on ${this.name}`));
    return this.inner.read(offsetBytes, lengthBytes, options);
  }

  protected doWrite(offsetBytes: number, data: Uint8Array, options: WriteOptions): Promise<void> {
    if (this.failWrites) return Promise.reject(new BlockError('EIO', `injected write error on ${this.name}`));
    this.writes.push({ offsetBytes, lengthBytes: data.length });
    return this.inner.write(offsetBytes, data, options);
  }

  protected doFlush(): Promise<void> {
    if (this.failFlushes) return Promise.reject(new BlockError('EIO', `injected flush error on ${this.name}`));
    this.flushes++;
    return this.inner.flush();
  }

  protected doClose(): Promise<void> {
    return Promise.resolve();
  }
}
