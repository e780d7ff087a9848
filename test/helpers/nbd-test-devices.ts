/**
 * Devices for NBD server tests: `ProbeDevice` wraps another device, can delay every operation and
 * counts how many run at once (to check the server's in-flight bound), and can declare that it has no
 * efficient write-zeroes (to check FAST_ZERO).
 */
import type { BlockCapabilities, BlockDevice, ReadOptions, WriteOptions, ZeroOptions } from '../../src/block/block-device.js';
import { BlockDeviceBase } from '../../src/block/block-device-base.js';

export class ProbeDevice extends BlockDeviceBase {
  readonly sizeBytes: number;
  readonly logicalBlockBytes: number;
  readonly capabilities: BlockCapabilities;
  readonly name = 'probe';
  readonly #inner: BlockDevice;
  delayMs: number;
  running = 0;
  runningMax = 0;
  operations = 0;

  constructor(options: { inner: BlockDevice; delayMs?: number; fastZero?: boolean }) {
    super();
    this.#inner = options.inner;
    this.sizeBytes = options.inner.sizeBytes;
    this.logicalBlockBytes = options.inner.logicalBlockBytes;
    this.capabilities = { ...options.inner.capabilities, writeZeroes: options.fastZero ?? true };
    this.delayMs = options.delayMs ?? 0;
    this.checkGeometry();
  }

  async #around<T>(op: () => Promise<T>): Promise<T> {
    this.operations += 1;
    this.running += 1;
    this.runningMax = Math.max(this.runningMax, this.running);
    try {
      if (this.delayMs > 0) await new Promise((resolve) => setTimeout(resolve, this.delayMs));
      return await op();
    } finally {
      this.running -= 1;
    }
  }

  protected doRead(offsetBytes: number, lengthBytes: number, options: ReadOptions): Promise<Buffer> {
    return this.#around(() => this.#inner.read(offsetBytes, lengthBytes, options));
  }
  protected doWrite(offsetBytes: number, data: Uint8Array, options: WriteOptions): Promise<void> {
    return this.#around(() => this.#inner.write(offsetBytes, data, options));
  }
  protected doFlush(): Promise<void> {
    return this.#around(() => this.#inner.flush());
  }
  protected override doTrim(offsetBytes: number, lengthBytes: number, options: WriteOptions): Promise<void> {
    return this.#around(() => this.#inner.trim(offsetBytes, lengthBytes, options));
  }
  protected override doWriteZeroes(offsetBytes: number, lengthBytes: number, options: ZeroOptions): Promise<void> {
    return this.#around(() => this.#inner.writeZeroes(offsetBytes, lengthBytes, options));
  }
  protected doClose(): Promise<void> {
    return this.#inner.close();
  }
}
