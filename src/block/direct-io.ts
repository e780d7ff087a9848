/**
 * DirectIo: positional reads and writes on an O_DIRECT descriptor, for FileBlockDevice's `direct` mode.
 * O_DIRECT moves data between the disk and the caller's memory with no page cache, so the kernel needs
 * the memory address, the file offset and the length aligned (ext4/xfs: to the disk's logical block
 * size; statx STATX_DIOALIGN says exactly). Callers of a BlockDevice may do byte-granular I/O at any
 * buffer address, so every request is done on aligned bounce buffers:
 *
 *   read   [offset, offset+length)  ->  read the aligned cover [start, end) into an aligned buffer and
 *                                       return the asked bytes as a view of it (no copy when aligned)
 *   write  aligned offset and length ->  write the caller's buffer if its address is aligned, else a copy
 *   write  unaligned                 ->  read-modify-write: read the partial first/last blocks of the
 *                                       cover, copy the data in, write the whole cover
 *
 * Ordering: a read-modify-write rewrites the bytes around the data with what it read, so a write to
 * the same block landing between its read and its write would be undone. Every write (aligned or not)
 * therefore holds its aligned cover in a range lock while in flight; writes to disjoint blocks run
 * concurrently, writes sharing a block one after the other (overlapping writes have no defined order,
 * so this only removes the lost update). Reads take no lock: a read racing a write sees old or new data
 * per block, as on a disk. Waiters are bounded by the requests in flight above.
 *
 * End of file: an image may be shorter than its device (a sparse image). A read past the end returns
 * short, and the rest reads as zeroes; a short read that ends unaligned is the end (the next O_DIRECT read
 * at an unaligned offset would fail with EINVAL, as qemu notes in handle_aiocb_rw_linear).
 */
import { read, write } from 'node:fs';
import { assert, assertCount, isPowerOfTwo } from '../assert.js';
import { BlockError, toBlockError } from '../errors.js';
import { nativeAddon } from './native.js';

interface Range {
  readonly start: number;
  readonly end: number;
}

export class DirectIo {
  readonly ioAlignBytes: number;
  readonly memAlignBytes: number;
  readonly #fd: number;
  readonly #name: string;
  readonly #held: Range[] = [];
  #waiters: (() => void)[] = [];

  constructor(options: { fd: number; name: string; ioAlignBytes: number; memAlignBytes: number }) {
    assert(isPowerOfTwo(options.ioAlignBytes), 'ioAlignBytes is a power of two');
    assert(isPowerOfTwo(options.memAlignBytes), 'memAlignBytes is a power of two');
    this.#fd = options.fd;
    this.#name = options.name;
    this.ioAlignBytes = options.ioAlignBytes;
    this.memAlignBytes = options.memAlignBytes;
  }

  async read(offsetBytes: number, lengthBytes: number): Promise<Buffer> {
    const cover = this.#cover(offsetBytes, lengthBytes);
    const buffer = this.#alignedBuffer(cover.end - cover.start);
    await this.#readCover(cover.start, buffer);
    return buffer.subarray(offsetBytes - cover.start, offsetBytes - cover.start + lengthBytes);
  }

  async write(offsetBytes: number, data: Uint8Array): Promise<void> {
    if (data.length === 0) return;
    const cover = this.#cover(offsetBytes, data.length);
    const unlock = await this.#lock(cover);
    try {
      const aligned = cover.start === offsetBytes && cover.end === offsetBytes + data.length;
      let source: Uint8Array;
      if (aligned && nativeAddon().addressMod(data, this.memAlignBytes) === 0) {
        source = data;
      } else {
        const buffer = this.#alignedBuffer(cover.end - cover.start);
        if (!aligned) await this.#readEdges(cover, { offsetBytes, lengthBytes: data.length }, buffer);
        buffer.set(data, offsetBytes - cover.start);
        source = buffer;
      }
      await this.#writeAll(cover.start, source);
    } finally {
      unlock();
    }
  }

  /** The aligned range covering [offset, offset+length). */
  #cover(offsetBytes: number, lengthBytes: number): Range {
    assertCount(offsetBytes, 'offsetBytes');
    assertCount(lengthBytes, 'lengthBytes');
    const align = this.ioAlignBytes;
    const start = Math.floor(offsetBytes / align) * align;
    const end = Math.ceil((offsetBytes + lengthBytes) / align) * align;
    assert(start <= offsetBytes && offsetBytes + lengthBytes <= end, 'the cover holds the request');
    return { start, end };
  }

  /** A zeroed buffer of `lengthBytes` whose first byte sits at an aligned address. */
  #alignedBuffer(lengthBytes: number): Buffer {
    const align = this.memAlignBytes;
    const backing = Buffer.alloc(lengthBytes + align);
    const shift = (align - nativeAddon().addressMod(backing, align)) % align;
    const buffer = backing.subarray(shift, shift + lengthBytes);
    assert(nativeAddon().addressMod(buffer, align) === 0, 'the bounce buffer is aligned');
    return buffer;
  }

  /** Reads the blocks of the cover the data does not fill whole: its first and its last block. */
  async #readEdges(cover: Range, data: { offsetBytes: number; lengthBytes: number }, buffer: Buffer): Promise<void> {
    const align = this.ioAlignBytes;
    const headPartial = data.offsetBytes !== cover.start;
    const tailPartial = data.offsetBytes + data.lengthBytes !== cover.end;
    assert(headPartial || tailPartial, 'only an unaligned write reads its edges');
    if (headPartial) await this.#readCover(cover.start, buffer.subarray(0, align));
    const lastStart = cover.end - align;
    // One block holding both ends was read as the head already.
    if (tailPartial && !(headPartial && lastStart === cover.start)) {
      await this.#readCover(lastStart, buffer.subarray(lastStart - cover.start));
    }
  }

  /** Fills `buffer` from the aligned `startBytes`; past the end of the file, zeroes. */
  #readCover(startBytes: number, buffer: Buffer): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const step = (doneBytes: number): void => {
        read(this.#fd, buffer, doneBytes, buffer.length - doneBytes, startBytes + doneBytes, (err, bytesRead) => {
          if (err !== null) {
            reject(toBlockError(err, `Cannot read ${this.#name}: ${buffer.length} bytes at ${startBytes} (O_DIRECT): ${err.message}`));
            return;
          }
          assertCount(bytesRead, 'bytesRead');
          const next = doneBytes + bytesRead;
          assert(next <= buffer.length, 'a read never returns more than asked');
          if (next < buffer.length && bytesRead > 0 && next % this.ioAlignBytes === 0) {
            step(next);
            return;
          }
          if (next < buffer.length) buffer.fill(0, next); // The end of the file: a hole reads as zeroes.
          resolve();
        });
      };
      step(0);
    });
  }

  #writeAll(startBytes: number, source: Uint8Array): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const step = (doneBytes: number): void => {
        write(this.#fd, source, doneBytes, source.length - doneBytes, startBytes + doneBytes, (err, bytesWritten) => {
          if (err !== null) {
            reject(toBlockError(err, `Cannot write ${this.#name}: ${source.length} bytes at ${startBytes} (O_DIRECT): ${err.message}`));
            return;
          }
          assertCount(bytesWritten, 'bytesWritten');
          const next = doneBytes + bytesWritten;
          assert(next <= source.length, 'a write never takes more than given');
          if (next === source.length) {
            resolve();
          } else if (bytesWritten === 0 || next % this.ioAlignBytes !== 0) {
            reject(new BlockError('EIO', `Cannot write ${this.#name}: short O_DIRECT write at ${startBytes + doneBytes} (${bytesWritten} bytes)`));
          } else {
            step(next);
          }
        });
      };
      step(0);
    });
  }

  /** Holds `range` against every other write's range; resolves with the release. */
  async #lock(range: Range): Promise<() => void> {
    while (this.#held.some((held) => held.start < range.end && range.start < held.end)) {
      await new Promise<void>((resolve) => this.#waiters.push(resolve));
    }
    this.#held.push(range);
    return () => {
      const index = this.#held.indexOf(range);
      assert(index >= 0, 'a range is released once');
      this.#held.splice(index, 1);
      const waiters = this.#waiters;
      this.#waiters = [];
      for (const wake of waiters) wake();
    };
  }
}
