/**
 * SimpleTarget: the common part of targets with no state of their own across suspend (linear, zero,
 * error): a fixed length, no-op presuspend/postsuspend/resume, and destroy() = close(). Subclasses
 * supply the I/O, the status words and what close() releases.
 */
import { assert } from '../assert.js';
import { BlockDeviceBase } from '../block/block-device-base.js';
import { sectorBytes } from '../limits.js';
import type { SuspendOptions, Target, TargetType } from './target.js';

export abstract class SimpleTarget extends BlockDeviceBase implements Target {
  abstract readonly type: TargetType;
  readonly lengthSectors: number;
  readonly sizeBytes: number;

  constructor(options: { lengthSectors: number }) {
    super();
    assert(Number.isSafeInteger(options.lengthSectors) && options.lengthSectors > 0, 'lengthSectors > 0');
    this.lengthSectors = options.lengthSectors;
    this.sizeBytes = options.lengthSectors * sectorBytes;
  }

  abstract statusInfo(): string;
  abstract statusTable(): string;

  presuspend(_options?: SuspendOptions): Promise<void> {
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
}
