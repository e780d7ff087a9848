/**
 * Every bound in umirror, in one place, with load-time assertions between them (TigerStyle's comptime
 * checks). Units come last in names. Queues, windows, retries and buffers are bounded by these.
 */
import { assert, isPowerOfTwo } from './assert.js';

export const sectorBytes = 512;

/** NBD: the largest request payload we accept (the spec's 32 MiB common maximum). */
export const requestBytesMax = 32 * 1024 * 1024;
/** NBD: requests in flight per connection before we stop reading from the socket. */
export const inFlightMax = 64;

/** Legs in one mirror set: the kernel's DM_KCOPYD_MAX_REGIONS + 1. */
export const legsMax = 9;
/** Targets of one copier job: kcopyd's DM_KCOPYD_MAX_REGIONS. */
export const copierTargetsMax = 8;
/** Bytes of one copier sub-job (kcopyd splits jobs into 128 KiB pieces by default; we use larger). */
export const copierChunkBytes = 1024 * 1024;
/** Copier sub-jobs in flight per job. */
export const copierInFlightMax = 4;

/** Regions recovered at once. dm-raid1 uses 1 (MAX_RECOVERY); our default is larger. */
export const recoveryParallelDefault = 4;
export const recoveryParallelMax = 64;

/** Region size bounds in sectors: dm-log requires >= 2 and a power of two. */
export const regionSizeSectorsMin = 2;
export const regionSizeSectorsMax = 2 ** 31;

/** The smallest region, in bytes. */
export const regionBytesMin = regionSizeSectorsMin * sectorBytes;
/**
 * Region pieces of one mirror-set span at most: a span is at most requestBytesMax bytes (a larger request
 * is cut into spans run one after another), split at region boundaries, with the smallest regions and a
 * start inside a region (one piece more).
 */
export const spanPiecesMax = requestBytesMax / regionBytesMin + 1;
/**
 * Write pieces queued per mirror set between two worker passes. A span enters the queue whole or waits
 * (first come, first served) until a pass has taken the queue; since every span fits an empty queue and a
 * pass takes the whole queue, admission cannot deadlock, whatever the request size.
 */
export const writeQueueMax = 65536;

/** Read retries across legs for one read: at most one try per leg. */
export const readRetriesMax = legsMax;

assert(isPowerOfTwo(sectorBytes));
assert(requestBytesMax % sectorBytes === 0);
assert(copierTargetsMax === legsMax - 1, 'a recovery copies the default leg to every other leg');
assert(copierChunkBytes % sectorBytes === 0 && isPowerOfTwo(copierChunkBytes));
assert(recoveryParallelDefault >= 1 && recoveryParallelDefault <= recoveryParallelMax);
assert(isPowerOfTwo(regionSizeSectorsMin) && isPowerOfTwo(regionSizeSectorsMax));
assert(requestBytesMax % regionBytesMin === 0, 'a span of requestBytesMax bytes is whole smallest regions');
assert(Number.isSafeInteger(spanPiecesMax) && spanPiecesMax >= 2);
assert(spanPiecesMax <= writeQueueMax, 'the largest span fits an empty write queue (admission cannot deadlock)');
