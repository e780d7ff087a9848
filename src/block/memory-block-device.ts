/**
 * MemoryBlockDevice: a device held in memory, for unit and property tests and for `zero`-like scratch
 * space. Storage is sparse: 64 KiB pages are allocated on first write, so a large, mostly empty device
 * costs little. Flush and FUA are no-ops (memory is as durable as it gets here).
 */
import { assert } from '../assert.js';
import type { BlockCapabilities, ReadOptions, WriteOptions } from './block-device.js';
import { BlockDeviceBase } from './block-device-base.js';

const pageBytes = 64 * 1024;

export interface MemoryBlockDeviceOptions {
  readonly sizeBytes: number;
  readonly logicalBlockBytes?: number;
  readonly name?: string;
}

export class MemoryBlockDevice extends BlockDeviceBase {
  readonly sizeBytes: number;
  readonly logicalBlockBytes: number;
  readonly name: string;
  readonly capabilities: BlockCapabilities = { flush: true, fua: true, trim: true, writeZeroes: true };
  readonly #pages = new Map<number, Buffer>();

  constructor(options: MemoryBlockDeviceOptions) {
    super();
    this.sizeBytes = options.sizeBytes;
    this.logicalBlockBytes = options.logicalBlockBytes ?? 512;
    this.name = options.name ?? 'memory';
    this.checkGeometry();
  }

  /** Pages currently allocated (for tests of sparseness). */
  get allocatedPages(): number {
    return this.#pages.size;
  }

  protected doRead(offsetBytes: number, lengthBytes: number, options: ReadOptions): Promise<Buffer> {
    void options;
    const out = Buffer.alloc(lengthBytes);
    this.#each(offsetBytes, lengthBytes, (page, pageOffset, outOffset, n) => {
      if (page !== undefined) page.copy(out, outOffset, pageOffset, pageOffset + n);
    });
    return Promise.resolve(out);
  }

  protected doWrite(offsetBytes: number, data: Uint8Array, options: WriteOptions): Promise<void> {
    void options;
    const src = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    this.#each(offsetBytes, data.length, (_page, pageOffset, srcOffset, n, pageIndex) => {
      let page = this.#pages.get(pageIndex);
      if (page === undefined) {
        page = Buffer.alloc(pageBytes);
        this.#pages.set(pageIndex, page);
      }
      src.copy(page, pageOffset, srcOffset, srcOffset + n);
    });
    return Promise.resolve();
  }

  protected override doTrim(offsetBytes: number, lengthBytes: number): Promise<void> {
    return this.doWriteZeroes(offsetBytes, lengthBytes);
  }

  protected override doWriteZeroes(offsetBytes: number, lengthBytes: number): Promise<void> {
    this.#each(offsetBytes, lengthBytes, (page, pageOffset, _srcOffset, n, pageIndex) => {
      if (page === undefined) return;
      if (n === pageBytes) this.#pages.delete(pageIndex);
      else page.fill(0, pageOffset, pageOffset + n);
    });
    return Promise.resolve();
  }

  protected doFlush(): Promise<void> {
    return Promise.resolve();
  }

  protected doClose(): Promise<void> {
    this.#pages.clear();
    return Promise.resolve();
  }

  #each(
    offsetBytes: number,
    lengthBytes: number,
    visit: (page: Buffer | undefined, pageOffset: number, runOffset: number, n: number, pageIndex: number) => void,
  ): void {
    let done = 0;
    while (done < lengthBytes) {
      const at = offsetBytes + done;
      const pageIndex = Math.floor(at / pageBytes);
      const pageOffset = at % pageBytes;
      const n = Math.min(pageBytes - pageOffset, lengthBytes - done);
      assert(n > 0);
      visit(this.#pages.get(pageIndex), pageOffset, done, n, pageIndex);
      done += n;
    }
  }
}
