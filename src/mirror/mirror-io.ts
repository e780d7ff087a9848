/**
 * MirrorIo: one request inside a mirror set (the kernel's bio as dm-raid1 sees it), a union by `kind`.
 * Requests that carry data never span a region: the mirror set splits them at region boundaries before
 * they are queued (seed: split_io so no I/O crosses a region). A flush has no region.
 *
 *   kind    type         region-counted  goes to
 *   read    ReadIo       no              one leg (retried on another in-sync leg on error)
 *   write   DataWriteIo  yes             all legs (or the default leg for a NOSYNC region)
 *   zero    ZeroIo       yes             all legs, as write-zeroes
 *   trim    TrimIo       yes             all legs; an error fails the trim and resyncs the region, degrades no leg
 *   flush   FlushIo      no              all legs
 *
 * A read completes with its data, every other request with nothing. Each request completes exactly
 * once (`settled`, asserted by the worker that completes it); `counted` records whether the region
 * hash's pending count was taken for it, so completion gives it back exactly once.
 */
import { assert, unreachable } from '../assert.js';
import type { Leg } from './leg.js';

/** A byte range inside one region, relative to the start of the mirror set. */
export interface RegionPiece {
  readonly offsetBytes: number;
  readonly lengthBytes: number;
  readonly regionIndex: number;
}

interface Completion<T> {
  settled: boolean;
  readonly resolve: (value: T) => void;
  readonly reject: (err: unknown) => void;
}

export interface ReadIo extends RegionPiece, Completion<Buffer> {
  readonly kind: 'read';
  /** Read attempts made so far (each on a leg; bounded by readRetriesMax and the leg count). */
  readAttempts: number;
}

interface RegionWrite extends RegionPiece, Completion<void> {
  readonly fua: boolean;
  /** The pending count of the region was incremented for this request. */
  counted: boolean;
  /** Legs on which this request failed (write_callback's error bits). */
  readonly failedLegs: Leg[];
}

export interface DataWriteIo extends RegionWrite {
  readonly kind: 'write';
  readonly data: Uint8Array;
}

export interface ZeroIo extends RegionWrite {
  readonly kind: 'zero';
  readonly noHole: boolean;
}

export interface TrimIo extends RegionWrite {
  readonly kind: 'trim';
}

export interface FlushIo extends Completion<void> {
  readonly kind: 'flush';
  readonly failedLegs: Leg[];
}

/**
 * The requests that take a region pending count (not flush or read). Trim is counted too, unlike the
 * kernel's discard, so that it never races a recovery of its region.
 */
export type RegionWriteIo = DataWriteIo | ZeroIo | TrimIo;
/** What the write queue holds: everything but reads. */
export type WriteQueueIo = RegionWriteIo | FlushIo;
export type MirrorIo = ReadIo | WriteQueueIo;

/** How a write, zero or trim is described before it is split into region pieces. */
export type RegionWriteInit =
  | { readonly kind: 'write'; readonly fua: boolean }
  | { readonly kind: 'zero'; readonly fua: boolean; readonly noHole: boolean }
  | { readonly kind: 'trim'; readonly fua: boolean };

function completion<T>(): { done: Promise<T>; resolve: (value: T) => void; reject: (err: unknown) => void } {
  let resolve: ((value: T) => void) | undefined;
  let reject: ((err: unknown) => void) | undefined;
  const done = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  assert(resolve !== undefined && reject !== undefined, 'the promise executor runs at once');
  return { done, resolve, reject };
}

function checkPiece(piece: RegionPiece): void {
  assert(Number.isSafeInteger(piece.offsetBytes) && piece.offsetBytes >= 0, 'offsetBytes >= 0');
  assert(Number.isSafeInteger(piece.lengthBytes) && piece.lengthBytes > 0, 'a piece is not empty');
  assert(Number.isSafeInteger(piece.regionIndex) && piece.regionIndex >= 0, 'a piece has a region');
}

/** A read of one region piece and the promise its completion settles with the data. */
export function newReadIo(piece: RegionPiece): { io: ReadIo; done: Promise<Buffer> } {
  checkPiece(piece);
  const { done, resolve, reject } = completion<Buffer>();
  const io: ReadIo = { kind: 'read', ...piece, readAttempts: 0, settled: false, resolve, reject };
  return { io, done };
}

/**
 * A write, zero or trim of one region piece. `data` is the piece's own bytes (a view into the caller's
 * buffer, never a copy) and is required exactly for writes.
 */
export function newRegionWriteIo(
  init: RegionWriteInit,
  piece: RegionPiece,
  data: Uint8Array | undefined,
): { io: RegionWriteIo; done: Promise<void> } {
  checkPiece(piece);
  const { done, resolve, reject } = completion<void>();
  const common = { ...piece, fua: init.fua, counted: false, failedLegs: [], settled: false, resolve, reject };
  switch (init.kind) {
    case 'write':
      assert(data !== undefined && data.length === piece.lengthBytes, 'a write carries its data');
      return { io: { kind: 'write', data, ...common }, done };
    case 'zero':
      assert(data === undefined, 'only a write carries data');
      return { io: { kind: 'zero', noHole: init.noHole, ...common }, done };
    case 'trim':
      assert(data === undefined, 'only a write carries data');
      return { io: { kind: 'trim', ...common }, done };
    default:
      return unreachable(init);
  }
}

/** A flush of every leg. */
export function newFlushIo(): { io: FlushIo; done: Promise<void> } {
  const { done, resolve, reject } = completion<void>();
  return { io: { kind: 'flush', failedLegs: [], settled: false, resolve, reject }, done };
}

/**
 * Splits [offsetBytes, offsetBytes + lengthBytes) at region boundaries.
 * Each piece lies inside one region; pieces are in order and cover the range exactly.
 */
export function splitByRegion(options: { offsetBytes: number; lengthBytes: number; regionBytes: number }): RegionPiece[] {
  const { offsetBytes, lengthBytes, regionBytes } = options;
  assert(regionBytes > 0);
  const pieces: RegionPiece[] = [];
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
