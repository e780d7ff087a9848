/**
 * LinearTarget: dm-linear. Maps its segment onto one device at an offset: `<dev> <offset>`. Offsets it
 * receives are segment-relative (the mapped device subtracted the segment start); it adds its own
 * offset once. Status info is empty; the table params are `<dev> <offset>` with the device's display
 * name. Suspend hooks have nothing to do. destroy() calls `release` (dm_put_device) once.
 *
 * The area must fit the device ("<dev> too small for target", dm core's check, named as the kernel names
 * the block device); a device with no whole sector is accepted and its I/O fails with EIO
 * (endCheckedDevice, test/scenario/oracle/tiny-devices.out).
 *
 * Argument errors are linear_ctr's (kernel 6.x): "Invalid argument count", "Invalid device sector",
 * "Device lookup failed" (from linearLookupFailure(), for whoever opens the device).
 */
import { assert, assertCount } from '../assert.js';
import type { BlockCapabilities, BlockDevice, ReadOptions, WriteOptions, ZeroOptions } from '../block/block-device.js';
import { endCheckedDevice } from '../block/end-checked-device.js';
import { SimpleTarget } from './simple-target.js';
import { TableError } from '../errors.js';
import { sectorBytes } from '../limits.js';
import { checkDeviceArea, scanOffsetSectors } from './device-area.js';

export interface LinearArgs {
  readonly device: string;
  readonly offsetSectors: number;
}

/**
 * linear_ctr's argument checks; `lengthSectors` (the line's length, default 0) bounds the offset to the
 * sectors we can address (scanOffsetSectors). @throws TableError with the kernel's ti->error.
 */
export function parseLinearArgs(args: readonly string[], options: { lengthSectors?: number } = {}): LinearArgs {
  if (args.length !== 2) throw new TableError({ kernelError: 'Invalid argument count' });
  const offsetSectors = scanOffsetSectors(args[1], { lengthSectors: options.lengthSectors ?? 0 });
  if (offsetSectors === null) throw new TableError({ kernelError: 'Invalid device sector' });
  return { device: args[0] ?? '', offsetSectors };
}

/** linear_ctr's dm_get_device failure. */
export function linearLookupFailure(cause?: unknown): TableError {
  return new TableError({ code: 'ENODEV', kernelError: 'Device lookup failed', cause });
}

export interface LinearTargetOptions {
  readonly device: BlockDevice;
  /** How the device appears in `table` output (the kernel prints maj:min). */
  readonly displayName: string;
  readonly offsetSectors: number;
  readonly lengthSectors: number;
  /** dm_put_device: called once by destroy(). */
  readonly release?: () => Promise<void>;
}

export class LinearTarget extends SimpleTarget {
  readonly type = 'linear' as const;
  readonly logicalBlockBytes: number;
  readonly capabilities: BlockCapabilities;
  readonly name: string;
  readonly #device: BlockDevice;
  readonly #offsetBytes: number;
  readonly #offsetSectors: number;
  readonly #release: (() => Promise<void>) | undefined;

  /**
   * @throws TableError "<name> too small for target: ..." when the area does not fit the device. A device
   * with no whole sector is not checked (as in the kernel): every I/O to it fails with EIO instead.
   */
  constructor(options: LinearTargetOptions) {
    super(options);
    assertCount(options.offsetSectors, 'offsetSectors');
    checkDeviceArea({
      deviceName: options.device.name,
      deviceSectors: Math.floor(options.device.sizeBytes / sectorBytes),
      offsetSectors: options.offsetSectors,
      lengthSectors: options.lengthSectors,
    });
    this.#device = endCheckedDevice(options.device, { mappedBytes: (options.offsetSectors + options.lengthSectors) * sectorBytes });
    this.#offsetSectors = options.offsetSectors;
    this.#offsetBytes = options.offsetSectors * sectorBytes;
    this.#release = options.release;
    this.logicalBlockBytes = options.device.logicalBlockBytes;
    this.capabilities = options.device.capabilities;
    this.name = options.displayName;
    this.checkGeometry();
    assert(this.#offsetBytes + this.sizeBytes <= this.#device.sizeBytes, 'area fits the (end-checked) device');
  }

  statusInfo(): string {
    return '';
  }

  statusTable(): string {
    return `${this.name} ${this.#offsetSectors}`;
  }

  protected doRead(offsetBytes: number, lengthBytes: number, options: ReadOptions): Promise<Buffer> {
    return this.#device.read(this.#offsetBytes + offsetBytes, lengthBytes, options);
  }

  protected doWrite(offsetBytes: number, data: Uint8Array, options: WriteOptions): Promise<void> {
    return this.#device.write(this.#offsetBytes + offsetBytes, data, options);
  }

  protected doFlush(): Promise<void> {
    return this.#device.flush();
  }

  protected override doTrim(offsetBytes: number, lengthBytes: number, options: WriteOptions): Promise<void> {
    return this.#device.trim(this.#offsetBytes + offsetBytes, lengthBytes, options);
  }

  protected override doWriteZeroes(offsetBytes: number, lengthBytes: number, options: ZeroOptions): Promise<void> {
    return this.#device.writeZeroes(this.#offsetBytes + offsetBytes, lengthBytes, options);
  }

  protected async doClose(): Promise<void> {
    if (this.#release !== undefined) await this.#release();
  }
}
