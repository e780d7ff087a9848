/**
 * FileBlockDevice: a BlockDevice on a regular file (an image) or a block device node, through positional
 * I/O on one fs.promises FileHandle. Reads, writes and fdatasync use the callback fs API on the handle's
 * descriptor: each is one libuv threadpool request with no FileHandle promise bookkeeping (the hot path);
 * open, stat and close stay on the FileHandle.
 *
 * Who calls it: the mirror (legs and disk-log devices given as paths), the CLI's create-images, tests.
 *
 * Geometry: `sizeBytes` is the option when given, else the file's size (fstat), else for a block device
 * the kernel's size from /sys/dev/block/MAJ:MIN/size. A regular file may be shorter than `sizeBytes`: reads
 * past its end return zeroes (a sparse image), writes extend it.
 *
 * Durability: a plain write may sit in the page cache; `flush()` is fdatasync, and a FUA write is the
 * write followed by fdatasync (capabilities.fua = false: emulated). With `direct: true` the file is opened
 * O_DIRECT, which bypasses the page cache (so a failing backing store, an nbdfuse file over nbdkit's error
 * filter, surfaces EIO on every read, not only on uncached ones). O_DIRECT needs aligned memory, offsets
 * and lengths: every request then goes through DirectIo's aligned bounce buffers (direct-io.ts), with the
 * alignment statx reports (else the logical block size). A file system that refuses O_DIRECT, or a
 * device whose size is not a multiple of that alignment, is refused at open with the reason.
 *
 * Locking: with `lockHolder`, a read-write open takes the process's image lock for that holder (qemu's
 * OFD lock bytes, image-lock.ts) before anything is read, and close releases it. An image locked by
 * another process, or by another holder of this one, fails the open with ImageLockError EBUSY.
 *
 * Errors: every fs failure becomes a BlockError with the fs errno when it is one of ours (else EIO), always
 * with `cause`. A read-only device fails writes, trims and zeroes with EPERM before touching the file.
 *
 * Ordering: requests run concurrently; two overlapping writes in flight have no defined order (as on a
 * disk). close() waits for the requests in flight (counted here, since the FileHandle does not see the
 * descriptor calls), then closes the handle.
 */
import { constants as fsConstants, fdatasync, read, write } from 'node:fs';
import { open, readFile, unlink, type FileHandle } from 'node:fs/promises';
import { assert, assertCount, isPowerOfTwo } from '../assert.js';
import { BlockError, toBlockError } from '../errors.js';
import { directAlignBytesMax, directMemAlignBytesDefault, sectorBytes } from '../limits.js';
import { rethrowProgrammerError } from '../fail-fast.js';
import type { BlockCapabilities, ReadOptions, WriteOptions } from './block-device.js';
import { BlockDeviceBase } from './block-device-base.js';
import { DirectIo } from './direct-io.js';
import { fileKey, lockImage, type ImageLock } from './image-lock.js';
import { nativeAddon } from './native.js';

export interface FileBlockDeviceOptions {
  /** Open read-only; writes, trims and zeroes fail with EPERM. */
  readonly readOnly?: boolean;
  /** Device size; defaults to the file's (or block device's) size. */
  readonly sizeBytes?: number;
  /** Preferred I/O granularity; defaults to 512 (or the block device's logical block size). */
  readonly logicalBlockBytes?: number;
  /** Open with O_DIRECT (bypass the page cache; aligned bounce buffers, see the banner). */
  readonly direct?: boolean;
  /** Take the image lock for this holder (a device name) when opening read-write; see the banner. */
  readonly lockHolder?: string;
  /** Name for messages; defaults to the path. */
  readonly name?: string;
}

/** Bytes of one zero buffer when writing zeroes (bounded memory). */
const zeroChunkBytes = 1024 * 1024;

export class FileBlockDevice extends BlockDeviceBase {
  readonly sizeBytes: number;
  readonly logicalBlockBytes: number;
  readonly name: string;
  readonly path: string;
  readonly readOnly: boolean;
  readonly capabilities: BlockCapabilities = { flush: true, fua: false, trim: false, writeZeroes: false };
  readonly #handle: FileHandle;
  /** The handle's descriptor, for the callback fs calls of the hot path (no FileHandle promise machinery). */
  readonly #fd: number;
  /** Set in O_DIRECT mode: every read and write goes through its aligned buffers. */
  readonly #direct: DirectIo | undefined;
  readonly #lock: ImageLock | undefined;
  #inFlight = 0;
  #drained: (() => void) | undefined;

  private constructor(options: {
    path: string;
    handle: FileHandle;
    sizeBytes: number;
    logicalBlockBytes: number;
    readOnly: boolean;
    name: string;
    direct: DirectIo | undefined;
    lock: ImageLock | undefined;
  }) {
    super();
    this.path = options.path;
    this.#handle = options.handle;
    this.#fd = options.handle.fd;
    this.#direct = options.direct;
    this.#lock = options.lock;
    this.sizeBytes = options.sizeBytes;
    this.logicalBlockBytes = options.logicalBlockBytes;
    this.readOnly = options.readOnly;
    this.name = options.name;
    this.checkGeometry();
  }

  /**
   * Opens a regular file or block device. @throws BlockError (the open's errno, e.g. EPERM, or EIO for
   * ENOENT/EISDIR) and BlockError EINVAL when the size cannot be found. Programmer errors are RangeError.
   */
  static async open(path: string, options: FileBlockDeviceOptions = {}): Promise<FileBlockDevice> {
    if (options.sizeBytes !== undefined && (!Number.isSafeInteger(options.sizeBytes) || options.sizeBytes < 0)) {
      throw new RangeError(`sizeBytes must be a non-negative safe integer, got ${options.sizeBytes}`);
    }
    if (options.logicalBlockBytes !== undefined && !isPowerOfTwo(options.logicalBlockBytes)) {
      throw new RangeError(`logicalBlockBytes must be a power of two, got ${options.logicalBlockBytes}`);
    }
    const readOnly = options.readOnly === true;
    let flags = readOnly ? fsConstants.O_RDONLY : fsConstants.O_RDWR;
    if (options.direct === true) flags |= fsConstants.O_DIRECT;
    let handle: FileHandle;
    try {
      handle = await open(path, flags);
    } catch (err) {
      if (options.direct === true && errnoCode(err) === 'EINVAL') {
        throw new BlockError('EINVAL', `Cannot open ${path} with O_DIRECT (direct I/O): its file system refuses direct I/O (EINVAL)`, { cause: err });
      }
      throw toBlockError(err, `Cannot open ${path}: ${describe(err)}`);
    }
    let lock: ImageLock | undefined;
    try {
      const geometry = await probeGeometry(path, handle);
      const sizeBytes = options.sizeBytes ?? geometry.sizeBytes;
      if (geometry.isBlockDevice && sizeBytes > geometry.sizeBytes) {
        throw new BlockError('EINVAL', `Cannot open ${path}: sizeBytes ${sizeBytes} exceeds the device (${geometry.sizeBytes})`);
      }
      // Locked before anything is read: a second opener must not even see the image half-written.
      if (options.lockHolder !== undefined && !readOnly) lock = await lockImage({ path, key: geometry.key, holder: options.lockHolder });
      const name = options.name ?? path;
      const direct = options.direct === true ? directIoFor({ path, name, fd: handle.fd, geometry, sizeBytes }) : undefined;
      const logicalBlockBytes = options.logicalBlockBytes ?? Math.max(geometry.logicalBlockBytes, direct?.ioAlignBytes ?? 0);
      return new FileBlockDevice({ path, handle, sizeBytes, logicalBlockBytes, readOnly, name, direct, lock });
    } catch (err) {
      await handle.close().catch(rethrowProgrammerError); // The open already failed; this close error adds nothing.
      await lock?.release().catch(rethrowProgrammerError); // Likewise: the open's error is the one to report.
      throw err instanceof RangeError ? err : toBlockError(err, `Cannot open ${path}: ${describe(err)}`);
    }
  }

  /**
   * Creates a new sparse image file of `sizeBytes` (ftruncate, no data written) and opens it read-write.
   * Refuses to overwrite an existing file. @throws BlockError (EIO with cause EEXIST when it exists).
   */
  static async create(path: string, sizeBytes: number): Promise<FileBlockDevice> {
    if (!Number.isSafeInteger(sizeBytes) || sizeBytes < 0) {
      throw new RangeError(`sizeBytes must be a non-negative safe integer, got ${sizeBytes}`);
    }
    let handle: FileHandle;
    try {
      handle = await open(path, 'wx');
    } catch (err) {
      throw toBlockError(err, `Cannot create ${path}: ${describe(err)}`);
    }
    try {
      await handle.truncate(sizeBytes);
    } catch (err) {
      await handle.close().catch(rethrowProgrammerError); // The sizing error is the one to report.
      await unlink(path).catch(rethrowProgrammerError); // Leave no half-made image behind.
      throw toBlockError(err, `Cannot size ${path} to ${sizeBytes} bytes: ${describe(err)}`);
    }
    try {
      await handle.close();
    } catch (err) {
      throw toBlockError(err, `Cannot create ${path}: ${describe(err)}`);
    }
    return FileBlockDevice.open(path, { sizeBytes });
  }

  protected doRead(offsetBytes: number, lengthBytes: number, options: ReadOptions): Promise<Buffer> {
    void options;
    const direct = this.#direct;
    if (direct !== undefined) return this.#track(() => direct.read(offsetBytes, lengthBytes));
    // Unzeroed: the reads fill it, and an end-of-file tail is zeroed explicitly below.
    const out = Buffer.allocUnsafe(lengthBytes);
    this.#begin();
    return new Promise<Buffer>((resolve, reject) => {
      const step = (doneBytes: number): void => {
        read(this.#fd, out, doneBytes, lengthBytes - doneBytes, offsetBytes + doneBytes, (err, bytesRead) => {
          if (err !== null) {
            this.#end();
            reject(toBlockError(err, `Cannot read ${this.name}: ${lengthBytes} bytes at ${offsetBytes}: ${describe(err)}`));
            return;
          }
          assertCount(bytesRead, 'bytesRead');
          const next = doneBytes + bytesRead;
          assert(next <= lengthBytes, 'a read never returns more than asked');
          if (next < lengthBytes && bytesRead > 0) {
            step(next); // A short read (a signal, a FUSE file): ask for the rest.
            return;
          }
          // End of file inside sizeBytes (the base checked the range): the rest is a hole, read as zeroes.
          if (next < lengthBytes) out.fill(0, next);
          this.#end();
          resolve(out);
        });
      };
      step(0);
    });
  }

  protected doWrite(offsetBytes: number, data: Uint8Array, options: WriteOptions): Promise<void> {
    this.#checkWritable('write');
    this.#begin();
    const written = this.#writeData(offsetBytes, data);
    const durable = options.fua === true ? written.then(() => this.#datasync()) : written;
    return durable.finally(() => this.#end());
  }

  protected override doTrim(offsetBytes: number, lengthBytes: number, options: WriteOptions): Promise<void> {
    // Trim is a hint and Node has no fallocate(PUNCH_HOLE): nothing to do but honour FUA.
    this.#checkWritable('trim');
    void offsetBytes;
    void lengthBytes;
    return options.fua === true ? this.doFlush() : Promise.resolve();
  }

  protected override doWriteZeroes(offsetBytes: number, lengthBytes: number, options: WriteOptions): Promise<void> {
    this.#checkWritable('write zeroes to');
    return this.#track(async () => {
      const zeroes = Buffer.alloc(Math.min(zeroChunkBytes, lengthBytes));
      for (let done = 0; done < lengthBytes; ) {
        const n = Math.min(zeroes.length, lengthBytes - done);
        await this.#writeData(offsetBytes + done, n === zeroes.length ? zeroes : zeroes.subarray(0, n));
        done += n;
      }
      if (options.fua === true) await this.#datasync();
    });
  }

  protected doFlush(): Promise<void> {
    return this.#track(() => this.#datasync());
  }

  protected async doClose(): Promise<void> {
    if (this.#inFlight > 0) {
      await new Promise<void>((resolve) => {
        this.#drained = resolve;
      });
    }
    assert(this.#inFlight === 0, 'close: requests still in flight');
    try {
      await this.#handle.close();
    } catch (err) {
      throw toBlockError(err, `Cannot close ${this.name}: ${describe(err)}`);
    } finally {
      await this.#lock?.release();
    }
  }

  /** The alignment O_DIRECT needs here (0 when the device is not opened O_DIRECT). */
  get directAlignBytes(): number {
    return this.#direct?.ioAlignBytes ?? 0;
  }

  #writeData(offsetBytes: number, data: Uint8Array): Promise<void> {
    return this.#direct === undefined ? this.#writeAll(offsetBytes, data) : this.#direct.write(offsetBytes, data);
  }

  /** Writes all of `data` at `offsetBytes`, continuing after short writes. */
  #writeAll(offsetBytes: number, data: Uint8Array): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const step = (doneBytes: number): void => {
        write(this.#fd, data, doneBytes, data.length - doneBytes, offsetBytes + doneBytes, (err, bytesWritten) => {
          if (err !== null) {
            reject(toBlockError(err, `Cannot write ${this.name}: ${data.length} bytes at ${offsetBytes}: ${describe(err)}`));
            return;
          }
          assertCount(bytesWritten, 'bytesWritten');
          const next = doneBytes + bytesWritten;
          assert(next <= data.length, 'a write never takes more than given');
          if (next === data.length) {
            resolve();
          } else if (bytesWritten === 0) {
            // A regular file never writes 0 bytes without an error; guard the loop anyway (bounded retries).
            reject(new BlockError('EIO', `Cannot write ${this.name}: no progress at ${offsetBytes + doneBytes}`));
          } else {
            step(next);
          }
        });
      };
      step(0);
    });
  }

  #datasync(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      fdatasync(this.#fd, (err) => {
        if (err === null) resolve();
        else reject(toBlockError(err, `Cannot flush ${this.name}: ${describe(err)}`));
      });
    });
  }

  #checkWritable(op: string): void {
    if (this.readOnly) throw new BlockError('EPERM', `Cannot ${op} ${this.name}: device is read-only`);
  }

  #begin(): void {
    this.#inFlight += 1;
  }

  #end(): void {
    this.#inFlight -= 1;
    assert(this.#inFlight >= 0);
    if (this.#inFlight === 0 && this.#drained !== undefined) {
      const drained = this.#drained;
      this.#drained = undefined;
      drained();
    }
  }

  #track<T>(run: () => Promise<T>): Promise<T> {
    this.#begin();
    return run().finally(() => this.#end());
  }
}

interface Geometry {
  readonly sizeBytes: number;
  readonly logicalBlockBytes: number;
  readonly isBlockDevice: boolean;
  /** The file's identity for image locks. */
  readonly key: string;
}

/**
 * The O_DIRECT alignment of an open file: statx's STATX_DIOALIGN when the kernel reports it (Linux 6.1+
 * for ext4/xfs/btrfs; an offset alignment of 0 means the file system does no direct I/O), else the
 * logical block size (at least a sector). @throws BlockError EINVAL with the reason it cannot work.
 */
function directIoFor(options: { path: string; name: string; fd: number; geometry: Geometry; sizeBytes: number }): DirectIo {
  const reported = nativeAddon().dioAlign(options.fd);
  const refuse = (reason: string): never => {
    throw new BlockError('EINVAL', `Cannot open ${options.path} with O_DIRECT (direct I/O): ${reason}`);
  };
  if (reported !== null && reported[1] === 0) refuse('its file system does not support direct I/O');
  const ioAlignBytes = reported?.[1] ?? Math.max(sectorBytes, options.geometry.logicalBlockBytes);
  const memAlignBytes = Math.max(reported?.[0] ?? directMemAlignBytesDefault, sectorBytes);
  if (!isPowerOfTwo(ioAlignBytes) || ioAlignBytes > directAlignBytesMax || !isPowerOfTwo(memAlignBytes) || memAlignBytes > directAlignBytesMax) {
    refuse(`unsupported alignment (offsets ${ioAlignBytes}, memory ${memAlignBytes} bytes)`);
  }
  if (options.sizeBytes % ioAlignBytes !== 0) {
    refuse(`its size ${options.sizeBytes} is not a multiple of the direct I/O alignment (${ioAlignBytes} bytes)`);
  }
  return new DirectIo({ fd: options.fd, name: options.name, ioAlignBytes, memAlignBytes });
}

function errnoCode(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string' ? err.code : undefined;
}

/** Size and block size of an open file: fstat for files, sysfs for block devices (fstat says 0). */
async function probeGeometry(path: string, handle: FileHandle): Promise<Geometry> {
  const stat = await handle.stat({ bigint: true });
  if (stat.isFile()) {
    const sizeBytes = Number(stat.size);
    assert(Number.isSafeInteger(sizeBytes), `${path}: file size ${stat.size} is not a safe integer`);
    return { sizeBytes, logicalBlockBytes: 512, isBlockDevice: false, key: fileKey(stat) };
  }
  if (!stat.isBlockDevice()) {
    throw new BlockError('EINVAL', `Cannot open ${path}: not a regular file or block device`);
  }
  // Linux dev_t encoding (glibc gnu_dev_major/minor).
  const rdev = stat.rdev;
  const major = ((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn);
  const minor = (rdev & 0xffn) | ((rdev >> 12n) & ~0xffn);
  const sysfs = `/sys/dev/block/${major}:${minor}`;
  const sectors = Number((await readFile(`${sysfs}/size`, 'utf8')).trim());
  const sizeBytes = sectors * 512; // sysfs counts 512-byte sectors whatever the logical block size.
  assert(Number.isSafeInteger(sizeBytes), `${path}: size ${sectors} sectors is not a safe integer`);
  let logicalBlockBytes = 512;
  try {
    logicalBlockBytes = Number((await readFile(`${sysfs}/queue/logical_block_size`, 'utf8')).trim());
  } catch (err) {
    rethrowProgrammerError(err);
    // Partitions have no queue/ directory; 512 is then the right default.
    logicalBlockBytes = 512;
  }
  return { sizeBytes, logicalBlockBytes: isPowerOfTwo(logicalBlockBytes) ? logicalBlockBytes : 512, isBlockDevice: true, key: fileKey(stat) };
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
