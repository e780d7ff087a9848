/**
 * MirrorIo: one request inside a mirror set (the kernel's bio as dm-raid1 sees it). Requests that carry
 * data never span a region: the mirror set splits them at region boundaries before they are queued
 * (seed: split_io so no I/O crosses a region). Flushes have no region.
 *
 *   kind    region-counted  goes to
 *   read    no              one leg (retried on another in-sync leg on error)
 *   write   yes             all legs (or the default leg for a NOSYNC region)
 *   zero    yes             all legs, as write-zeroes
 *   trim    yes             all legs; an error fails the trim and resyncs the region, degrades no leg
 *   flush   no              all legs
 *
 * A request completes exactly once, through settle(); `counted` records whether the region hash's
 * pending count was taken for it, so completion gives it back exactly once.
 */
import { assert } from '../assert.js';
import type { Leg } from './leg.js';

export type MirrorIoKind = 'read' | 'write' | 'zero' | 'trim' | 'flush';

export interface MirrorIo {
  readonly kind: MirrorIoKind;
  /** Offset from the start of the mirror set, in bytes. */
  readonly offsetBytes: number;
  readonly lengthBytes: number;
  /** Region index, or -1 for a flush. */
  readonly regionIndex: number;
  readonly data: Uint8Array | undefined;
  readonly fua: boolean;
  readonly noHole: boolean;
  /** The pending count of the region was incremented for this request. */
  counted: boolean;
  /** Read attempts made, and the leg of the last attempt. */
  readAttempts: number;
  readLeg: Leg | undefined;
  /** Legs on which this write failed (write_callback's error bits). */
  failedLegs: Leg[];
  settled: boolean;
  readonly resolve: (value: Buffer | undefined) => void;
  readonly reject: (err: unknown) => void;
}

export interface MirrorIoInit {
  readonly kind: MirrorIoKind;
  readonly offsetBytes: number;
  readonly lengthBytes: number;
  readonly regionIndex: number;
  readonly data?: Uint8Array;
  readonly fua?: boolean;
  readonly noHole?: boolean;
}

/** Creates a request and the promise its completion settles. */
export function newMirrorIo(init: MirrorIoInit): { io: MirrorIo; done: Promise<Buffer | undefined> } {
  let resolve: (value: Buffer | undefined) => void = () => undefined;
  let reject: (err: unknown) => void = () => undefined;
  const done = new Promise<Buffer | undefined>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  if (init.kind === 'flush') assert(init.regionIndex === -1 && init.lengthBytes === 0);
  else assert(init.regionIndex >= 0 && init.lengthBytes > 0);
  if (init.kind === 'write') assert(init.data !== undefined && init.data.length === init.lengthBytes);
  const io: MirrorIo = {
    kind: init.kind,
    offsetBytes: init.offsetBytes,
    lengthBytes: init.lengthBytes,
    regionIndex: init.regionIndex,
    data: init.data,
    fua: init.fua ?? false,
    noHole: init.noHole ?? false,
    counted: false,
    readAttempts: 0,
    readLeg: undefined,
    failedLegs: [],
    settled: false,
    resolve,
    reject,
  };
  return { io, done };
}

/**
 * Whether the request changes data and so takes a region pending count (not flush or read). Trim is
 * counted too, unlike the kernel's discard, so that it never races a recovery of its region.
 */
export function isRegionCounted(kind: MirrorIoKind): boolean {
  return kind === 'write' || kind === 'zero' || kind === 'trim';
}

/**
 * Splits [offsetBytes, offsetBytes + lengthBytes) at region boundaries.
 * Each piece lies inside one region; pieces are in order and cover the range exactly.
 */
export function splitByRegion(options: {
  offsetBytes: number;
  lengthBytes: number;
  regionBytes: number;
}): { offsetBytes: number; lengthBytes: number; regionIndex: number }[] {
  const { offsetBytes, lengthBytes, regionBytes } = options;
  assert(regionBytes > 0);
  const pieces: { offsetBytes: number; lengthBytes: number; regionIndex: number }[] = [];
  let at = offsetBytes;
  const end = offsetBytes + lengthBytes;
  while (at < end) {
    const regionIndex = Math.floor(at / regionBytes);
    const regionEnd = (regionIndex + 1) * regionBytes;
    const pieceEnd = Math.min(end, regionEnd);
    pieces.push({ offsetBytes: at, lengthBytes: pieceEnd - at, regionIndex });
    at = pieceEnd;
  }
  assert(pieces.reduce((sum, p) => sum + p.lengthBytes, 0) === lengthBytes, 'pieces cover the request');
  return pieces;
}
