/**
 * The BlockDevice interface: what a leg, a log device, a mirror set and an NBD export all are.
 *
 * Offsets and lengths are in bytes, safe integers, and need no alignment: callers may do byte-granular
 * I/O (qemu-io does), and `logicalBlockBytes` only says what the device would prefer (the disk log rounds
 * its buffer up to it). Every method returns a promise and may wait; every failure is a BlockError with
 * an errno code. Argument and state checks live in BlockDeviceBase, once, so implementations only do I/O.
 *
 * Durability: `write(..., {fua: true})` and `flush()` resolve only when the data is stable (fdatasync for
 * files). A write without FUA may sit in a cache until the next flush.
 */

export interface BlockCapabilities {
  /** flush() does real work (nbdkit can_flush). */
  readonly flush: boolean;
  /** write({fua}) is honoured natively (otherwise it is emulated with a flush). */
  readonly fua: boolean;
  /** trim() may deallocate; a device without it treats trim as a no-op. */
  readonly trim: boolean;
  /** writeZeroes() is efficient (no data transfer). */
  readonly writeZeroes: boolean;
}

export interface WriteOptions {
  /** Force unit access: resolve only when this write is durable. */
  readonly fua?: boolean;
}

export interface ZeroOptions extends WriteOptions {
  /** The range must stay allocated (NBD_CMD_FLAG_NO_HOLE). */
  readonly noHole?: boolean;
}

export interface ReadOptions {
  readonly signal?: AbortSignal;
}

export interface BlockDevice {
  /** Size of the device in bytes; fixed for the life of the object. */
  readonly sizeBytes: number;
  /** Preferred I/O granularity in bytes (512 or 4096); a power of two. */
  readonly logicalBlockBytes: number;
  readonly capabilities: BlockCapabilities;
  /** A short name for messages and status lines (a path, or a device name). */
  readonly name: string;

  /** Reads `lengthBytes` at `offsetBytes`. @throws BlockError EINVAL past the end or after close, EIO. */
  read(offsetBytes: number, lengthBytes: number, options?: ReadOptions): Promise<Buffer>;
  /** Writes `data` at `offsetBytes`. @throws BlockError ENOSPC past the end, EPERM read-only, EIO. */
  write(offsetBytes: number, data: Uint8Array, options?: WriteOptions): Promise<void>;
  /** Makes every completed write durable. @throws BlockError EIO. */
  flush(): Promise<void>;
  /** Hints that a range is unused; contents afterwards are unspecified. @throws BlockError ENOSPC, EIO. */
  trim(offsetBytes: number, lengthBytes: number, options?: WriteOptions): Promise<void>;
  /** Writes zeroes to a range. @throws BlockError ENOSPC, EIO. */
  writeZeroes(offsetBytes: number, lengthBytes: number, options?: ZeroOptions): Promise<void>;
  /** Releases the device; later calls fail with ESHUTDOWN. Idempotent. */
  close(): Promise<void>;
}
