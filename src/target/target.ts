/**
 * The Target interface: one segment of a mapped device's table (dm's target_type). A target is a
 * BlockDevice whose size is its segment length; offsets it receives are relative to the segment start
 * (the kernel's dm_target_offset, subtracted exactly once by the mapped device). Targets: mirror,
 * linear, zero, error.
 *
 * Lifecycle (dm core): constructed from a table line (ctr) -> resume() -> I/O ... presuspend() ->
 * postsuspend() -> resume() ... -> destroy(). While suspended the mapped device holds new I/O back.
 * A target may answer an I/O with RequeueRequest (dm's DM_ENDIO_REQUEUE): the mapped device then parks
 * that I/O and re-issues it against whatever table is live after the next resume (noflush suspend).
 */
import type { BlockDevice } from '../block/block-device.js';

export type TargetType = 'mirror' | 'linear' | 'zero' | 'error';

/** What a target gets from the mapped device it belongs to (through buildTarget). */
export interface TargetContext {
  /** The mapped device's name. */
  readonly deviceName: string;
  /** dm_table_event: counts only while the target's table is live. */
  readonly raiseEvent: () => void;
}

export interface SuspendOptions {
  /** dmsetup suspend --noflush: held I/O is requeued instead of failed. */
  readonly noflush?: boolean;
}

export interface Target extends BlockDevice {
  readonly type: TargetType;
  readonly lengthSectors: number;
  /** STATUSTYPE_INFO params (after "<start> <len> <type> "), no trailing space. */
  statusInfo(): string;
  /** STATUSTYPE_TABLE params, canonical as the kernel re-emits them, no trailing space. */
  statusTable(): string;
  presuspend(options?: SuspendOptions): Promise<void>;
  postsuspend(): Promise<void>;
  resume(): Promise<void>;
  /** The target's dtr: releases devices. Idempotent. */
  destroy(): Promise<void>;
}

/** Thrown by a target to hand an I/O back to the mapped device for reissue after resume. */
export class RequeueRequest extends Error {
  constructor(message = 'I/O requeued until the next resume') {
    super(message);
    this.name = 'RequeueRequest';
  }
}
