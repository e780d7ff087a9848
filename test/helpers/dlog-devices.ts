/**
 * A test device for the dirty-log tests: a wrapper that records writes, counts flushes and fails reads,
 * writes or flushes on demand. (The log on a real file uses FileBlockDevice itself.)
 */
import type { BlockCapabilities, BlockDevice, ReadOptions, WriteOptions } from '../../src/block/block-device.js';
import { BlockDeviceBase } from '../../src/block/block-device-base.js';
import { BlockError } from '../../src/errors.js';

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
