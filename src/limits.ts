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
/**
 * NBD: payload bytes (READ lengths and WRITE payloads) in flight per connection before we stop reading
 * from the socket: inFlightMax requests of 32 MiB would otherwise hold 2 GiB. One request is always
 * admitted. With inFlightMax, this is what one client can hold of the server's memory and the device's
 * queue at a time; the rest of its requests wait in its own socket buffer (TCP backpressure).
 */
export const inFlightBytesMax = 256 * 1024 * 1024;
/**
 * NBD server: clients in transmission on one export at once unless told otherwise (`--max-connections`).
 * One more GO is refused with NBD_REP_ERR_POLICY (EXPORT_NAME: the connection closes). qemu-nbd's
 * default is 1 (`--shared`), nbdkit has none; nbdcopy opens 4 connections to a multi-conn export, and a
 * few tools beside it must fit, so 16.
 */
export const nbdConnectionsPerExportDefault = 16;
/** NBD server: the largest `--max-connections`; with inFlightMax each, all fit in one write queue. */
export const nbdConnectionsPerExportMax = 64;
/**
 * NBD server: connections still in the handshake (not yet holding an export: plaintext, or in the TLS
 * handshake) per server; one more is closed at once, before the greeting (nbdkit's limit filter
 * refuses so). Unauthenticated peers cannot hold more descriptors than this, each for at most the
 * handshake limit.
 */
export const nbdHandshakingConnectionsMax = 64;
/** TLS: the largest PSK file, CA bundle, certificate, CRL or key we read. */
export const tlsFileBytesMax = 1024 * 1024;
/** TLS: the longest PSK identity (OpenSSL's PSK_MAX_IDENTITY_LEN). */
export const pskIdentityBytesMax = 128;
/** TLS: the longest pre-shared key (OpenSSL's PSK_MAX_PSK_LEN); psktool makes 32 bytes. */
export const pskKeyBytesMax = 256;
/** TLS: identities one PSK file may hold. */
export const pskEntriesMax = 4096;
// Checked beside the bounds; src/nbd/server.ts checks them against the mirror's write queue.
assert(inFlightBytesMax >= requestBytesMax, 'one request of the largest payload always fits');
assert(nbdConnectionsPerExportDefault >= 1 && nbdConnectionsPerExportDefault <= nbdConnectionsPerExportMax);
assert(nbdHandshakingConnectionsMax >= 1);
assert(pskIdentityBytesMax > 0 && pskKeyBytesMax > 0 && pskEntriesMax > 0 && tlsFileBytesMax > 0);

/** NBD client (a remote leg): requests in flight on one connection; later requests wait for a slot. */
export const nbdClientInFlightMax = 64;
/** NBD client: payload bytes in flight on one connection (bounds the socket's send and receive buffers). */
export const nbdClientInFlightBytesMax = 64 * 1024 * 1024;
/** NBD client: callers waiting for a slot before requests fail with ENOMEM (the queue is bounded). */
export const nbdClientWaitingMax = 4096;
/** NBD client: connect plus handshake must finish within this unless the caller gives its own timeout. */
export const nbdClientConnectTimeoutMsDefault = 30_000;
/** NBD client: one TRIM carries at most this many bytes (qemu caps discards near INT_MAX). */
export const nbdClientTrimBytesMax = 1024 * 1024 * 1024;
/** NBD client: disjoint pieces a READ reply may arrive in before it is refused as a protocol error. */
export const nbdClientReplyFragmentsMax = 4096;
/** NBD client: the largest minimum block size a server may demand (the spec's 64 KiB). */
export const nbdClientMinimumBlockBytesMax = 64 * 1024;
/**
 * NBD: a client must finish the handshake (reach transmission) within this, or it is dropped and stops
 * holding the device open. qemu-nbd's --handshake-limit default. `serve`/`daemon --handshake-limit`
 * and the NbdServer option override it; 0 means no limit.
 */
export const handshakeTimeoutMsDefault = 10_000;
/**
 * Connections a listener holds, unanswered, between binding and starting (the device resumes in between);
 * more are closed. Also the bound on refused control connections waiting for their EBUSY line to drain.
 */
export const heldConnectionsMax = 64;
/** How long a socket whose side we ended waits for the client to hang up before it is destroyed. */
export const closeGraceMs = 2000;

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

/** Writes queued per mirror set between two worker passes before writers wait. */
export const writeQueueMax = 4096;
/** Mirror-set writes the worker issues per pass (the batch under one log flush). */
export const writeBatchMax = 1024;

/** O_DIRECT: the largest offset/length alignment a device may ask for (statx STATX_DIOALIGN), and the
 *  memory alignment of bounce buffers when the kernel does not say (a page). */
export const directAlignBytesMax = 64 * 1024;
export const directMemAlignBytesDefault = 4096;
/** Read retries across legs for one read: at most one try per leg. */
export const readRetriesMax = legsMax;

/** Repeated kernel messages (DMERR_LIMIT): at most this many per interval (printk_ratelimit: 10 per 5 s). */
export const kernelMessageBurst = 10;
export const kernelMessageIntervalMs = 5000;

assert(isPowerOfTwo(sectorBytes));
assert(requestBytesMax % sectorBytes === 0);
assert(nbdClientInFlightBytesMax >= requestBytesMax, 'one request of the largest payload always fits');
assert(nbdClientWaitingMax >= nbdClientInFlightMax);
assert(isPowerOfTwo(nbdClientTrimBytesMax) && nbdClientTrimBytesMax >= requestBytesMax);
assert(isPowerOfTwo(nbdClientMinimumBlockBytesMax) && requestBytesMax % nbdClientMinimumBlockBytesMax === 0);
assert(copierTargetsMax === legsMax - 1, 'a recovery copies the default leg to every other leg');
assert(copierChunkBytes % sectorBytes === 0 && isPowerOfTwo(copierChunkBytes));
assert(recoveryParallelDefault >= 1 && recoveryParallelDefault <= recoveryParallelMax);
assert(isPowerOfTwo(regionSizeSectorsMin) && isPowerOfTwo(regionSizeSectorsMax));
assert(writeBatchMax <= writeQueueMax);
assert(isPowerOfTwo(directAlignBytesMax) && isPowerOfTwo(directMemAlignBytesDefault) && directMemAlignBytesDefault <= directAlignBytesMax);
assert(kernelMessageBurst >= 1 && kernelMessageIntervalMs > 0);
assert(Number.isSafeInteger(handshakeTimeoutMsDefault) && handshakeTimeoutMsDefault > 0);
assert(heldConnectionsMax >= 1 && closeGraceMs > 0);
