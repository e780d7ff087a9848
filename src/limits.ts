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
/** The largest --handshake-limit: one hour (a Node timer holds at most 2^31 - 1 ms). */
export const handshakeLimitMsMax = 3_600_000;
/**
 * Connections a listener holds, unanswered, between binding and starting (the device resumes in between);
 * more are closed. Also the bound on refused control connections waiting for their EBUSY line to drain.
 */
export const heldConnectionsMax = 64;
/** How long a socket whose side we ended waits for the client to hang up before it is destroyed. */
export const closeGraceMs = 2000;

/** NBD client: the request timeout a remote leg gets unless told otherwise (`--leg-timeout`'s default). */
export const nbdClientRequestTimeoutMsDefault = 30_000;
/**
 * `serve`/`daemon --leg-timeout SECONDS`: a request to a remote leg unanswered this long fails and drops
 * the connection (a partition is detected, not waited on); it also bounds the first connection at table
 * load. At least 100 ms (below that a busy server looks partitioned), at most an hour (a Node timer).
 */
export const legTimeoutMsDefault = nbdClientRequestTimeoutMsDefault;
export const legTimeoutMsMin = 100;
export const legTimeoutMsMax = 3_600_000;
/** NBD client reconnect: the first delay after a lost connection; it doubles on each failed attempt. */
export const nbdClientReconnectDelayMsMin = 500;
/** NBD client reconnect: the longest delay between two attempts (the doubling stops here). */
export const nbdClientReconnectDelayMsMax = 30_000;

/** Legs in one mirror set: at least two (dm-raid1's "Invalid number of mirrors")... */
export const legsMin = 2;
/** ...and at most the kernel's DM_KCOPYD_MAX_REGIONS + 1. */
export const legsMax = 9;
/** Targets of one copier job: kcopyd's DM_KCOPYD_MAX_REGIONS. */
export const copierTargetsMax = 8;
/** Bytes of one copier sub-job (kcopyd splits jobs into 128 KiB pieces by default; we use larger). */
export const copierChunkBytes = 1024 * 1024;
/** Copier sub-jobs in flight per job, unless the Copier is told otherwise. */
export const copierInFlightMax = 4;
/** The largest in-flight window a Copier accepts (its `inFlightMax` option). */
export const copierInFlightCeiling = 1024;
/** Longest single sleep of a throttled copier chunk; a rate change wakes sleepers sooner anyway. */
export const copierThrottleSleepMsMax = 1000;

/**
 * The setting `recoveryParallel` (`--recovery-parallel`): regions recovered at once. dm-raid1 uses 1
 * (MAX_RECOVERY); our default is larger, and the setting lies in [recoveryParallelMin, recoveryParallelMax].
 */
export const recoveryParallelMin = 1;
export const recoveryParallelDefault = 4;
export const recoveryParallelMax = 64;
/** Scrub: differing regions a result lists at most (the rest are counted); a sleep of its pace at most. */
export const scrubReportedRegionsMax = 65_536;
export const scrubSleepMsMax = 1000;
/** Client I/O within this window makes recovery run at the busy rate (MirrorSet's rate controller). */
export const recoveryBusyWindowMs = 100;
/** The recovery rate while clients are busy, unless the mirror set is told otherwise. */
export const recoveryBusyBytesPerSecondDefault = 64 * 1024 * 1024;
/** Regions recovered at once while clients are busy (the kernel's one), unless told otherwise. */
export const recoveryBusyParallelDefault = 1;
/** The resync's measured speed (status, metrics) looks this far back, with at most this many samples. */
export const resyncRateWindowMs = 5000;
export const resyncRateSamplesMax = 256;
/** `--resync-rate` and `scrub --rate`, MiB/s: at least 1 (a chunk per second), at most 1 TiB/s. */
export const rateMiBPerSecondMin = 1;
export const rateMiBPerSecondMax = 1024 * 1024;
/** `serve --scrub-every HOURS`: at most a year between scrubs (the timer re-arms in steps of a day). */
export const scrubEveryHoursMax = 24 * 366;

/**
 * Region size bounds in sectors: dm-log requires >= 2 and a power of two, and reads the size as an
 * unsigned int, so 2^31 is the largest power of two a table can carry.
 */
export const regionSizeSectorsMin = 2;
export const regionSizeSectorsMax = 2 ** 31;
/** The region size `serve` and `create-images` use when none is given (512 KiB, lvm2's default). */
export const regionSizeSectorsDefault = 1024;

/**
 * The one region-size rule (dm-log's _check_region_size, without its `<= target length` part, which
 * needs the table): a power of two from regionSizeSectorsMin to regionSizeSectorsMax.
 */
export function isRegionSizeSectors(regionSizeSectors: number): boolean {
  return (
    Number.isSafeInteger(regionSizeSectors) &&
    regionSizeSectors >= regionSizeSectorsMin &&
    regionSizeSectors <= regionSizeSectorsMax &&
    isPowerOfTwo(regionSizeSectors)
  );
}

/**
 * Regions one dirty log may hold. The kernel refuses more than 2^32 - 1 ("region count exceeds limit of
 * 4294967295", its region_count is an unsigned int) and then tries to vmalloc three bitsets of that many
 * bits; we refuse earlier, at a count whose bitsets we can hold: 3 x 64 MiB (clean, sync, recovering), a
 * 256 TiB mirror at the default 512 KiB regions. Past this bound a table gets the kernel's allocation
 * failure ("couldn't allocate clean bitset" for a core log, "couldn't allocate disk log buffer" for a
 * disk log), as a kernel short of memory answers.
 */
export const regionCountMax = 2 ** 29;
/** The kernel's bound on a log's region count (dm-log's UINT_MAX check). */
export const kernelRegionCountMax = 2 ** 32 - 1;

/**
 * The longest a disk log may keep a region dirty after its last write (`--lazy-clean`): one hour. A
 * crash resyncs at most the regions written in that window, and Node's timers hold at most 2^31 - 1 ms.
 */
export const lazyCleanMsMax = 60 * 60 * 1000;
/**
 * Rounds a waiting disk-log flush spends on clean steps: the running one, then its own, with slack for
 * steps that start meanwhile. Past it a wanted clean stays pending (dirty on disk, the safe side).
 */
export const diskLogCleanRoundsMax = 8;

/** dm core (src/target): lines of one table; dm's DM_MAX_TARGETS is larger, but a bound is a bound. */
export const tableLinesMax = 1024;
/** dm core: the largest end sector a table may reach, so that byte offsets stay safe integers. */
export const tableEndSectorsMax = Math.floor(Number.MAX_SAFE_INTEGER / sectorBytes);
/**
 * dm core: I/O a suspended MappedDevice holds (queued plus parked) by default; beyond it new I/O fails
 * with ENOMEM. Well above one NBD connection's in-flight window (checked below).
 */
export const heldIoMaxDefault = 4096;

/**
 * Bytes of a Unix socket path (sun_path holds 108 bytes with the NUL). Node truncates a longer path
 * silently and binds another name, so longer paths are refused.
 */
export const unixSocketPathBytesMax = 107;
/** Bytes of a --pidfile read at most (a pid and a newline; anything longer is not a pidfile). */
export const pidfileBytesMax = 64;
/** systemd-notify may wait this long for the service manager to take the message (its barrier). */
export const serviceNotifyTimeoutMs = 15_000;

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

/** O_DIRECT: the largest offset/length alignment a device may ask for (statx STATX_DIOALIGN), and the
 *  memory alignment of bounce buffers when the kernel does not say (a page). */
export const directAlignBytesMax = 64 * 1024;
export const directMemAlignBytesDefault = 4096;
/** Read retries across legs for one read: at most one try per leg. */
export const readRetriesMax = legsMax;

/** Control socket: bytes of one request or response line, newline excluded. Tables of 1024 lines fit easily. */
export const controlLineBytesMax = 1024 * 1024;
/** Control socket: requests one connection runs at once before the daemon stops reading from it. */
export const controlRequestsInFlightMax = 16;
/** Control socket: connections at once; one more gets an EBUSY line and is closed. */
export const controlConnectionsMax = 64;
/** Devices one daemon holds unless `devicesMax` says otherwise. */
export const devicesMaxDefault = 256;
/** Daemon shutdown: a device not closed within this is reported, and shutdown goes on to the next. */
export const deviceCloseWaitMs = 10_000;
/** Device names: at most DM_NAME_LEN - 1 bytes, as dmsetup. */
export const deviceNameBytesMax = 127;
/** Messages quote at most this many characters of what a user or a peer sent (a name, a size, a line). */
export const quotedInputCharsMax = 64;
/** dm's event counter is 32 bits (`wait NAME EVENT_NR`). */
export const eventNrMax = 2 ** 32 - 1;
/** NBD block status for the umirror:sync context: extents in one reply (the client asks again for the rest). */
export const syncExtentsMax = 1024;

/** `serve`/`create-images`: the leg size of a fresh data folder when none is given. */
export const imageBytesDefault = 2 ** 30;
/** A disk log image is at least this large, and sized for logical blocks of up to logImageBlockBytes. */
export const logImageBytesMin = 1024 * 1024;
export const logImageBlockBytes = 4096;
/** `serve`'s and `daemon`'s --lazy-clean default (the library's default stays 0, the kernel's way). */
export const serveLazyCleanMsDefault = 1000;
/** `status --progress` and `wait --progress`: how often the CLI polls the daemon. */
export const progressWatchIntervalMs = 500;
/** Listen addresses: a host name (RFC 1123) of at most 253 bytes, labels of at most 63; TCP ports. */
export const hostNameBytesMax = 253;
export const hostLabelBytesMax = 63;
export const tcpPortMax = 65535;

/** Repeated kernel messages (DMERR_LIMIT): at most this many per interval (printk_ratelimit: 10 per 5 s). */
export const kernelMessageBurst = 10;
export const kernelMessageIntervalMs = 5000;

assert(isPowerOfTwo(sectorBytes));
assert(requestBytesMax % sectorBytes === 0);
assert(nbdClientInFlightBytesMax >= requestBytesMax, 'one request of the largest payload always fits');
assert(nbdClientWaitingMax >= nbdClientInFlightMax);
assert(isPowerOfTwo(nbdClientTrimBytesMax) && nbdClientTrimBytesMax >= requestBytesMax);
assert(isPowerOfTwo(nbdClientMinimumBlockBytesMax) && requestBytesMax % nbdClientMinimumBlockBytesMax === 0);
assert(nbdClientReconnectDelayMsMin > 0 && nbdClientReconnectDelayMsMin <= nbdClientReconnectDelayMsMax);
assert(nbdClientRequestTimeoutMsDefault > 0);
assert(copierTargetsMax === legsMax - 1, 'a recovery copies the default leg to every other leg');
assert(copierChunkBytes % sectorBytes === 0 && isPowerOfTwo(copierChunkBytes));
assert(legsMin >= 2 && legsMin <= legsMax);
assert(recoveryParallelMin >= 1 && recoveryParallelMin <= recoveryParallelDefault && recoveryParallelDefault <= recoveryParallelMax);
assert(legsMin === 2 && legsMin <= legsMax, 'a mirror set has 2..legsMax legs');
assert(readRetriesMax >= legsMax, 'a read may try every leg once');
assert(copierInFlightMax >= 1 && copierInFlightMax <= copierInFlightCeiling);
assert(copierChunkBytes <= requestBytesMax, 'a copier chunk is one leg request, which a remote leg accepts');
assert(copierThrottleSleepMsMax > 0 && copierThrottleSleepMsMax < 2 ** 31 - 1, "a throttle sleep fits in Node's timer range");
assert(scrubReportedRegionsMax >= 1 && scrubSleepMsMax > 0 && scrubSleepMsMax < 2 ** 31 - 1, "a scrub lists a region and its sleeps fit in Node's timer range");
assert(recoveryBusyWindowMs > 0, 'a busy window is not empty');
assert(recoveryBusyBytesPerSecondDefault >= copierChunkBytes, 'a busy recovery still copies a chunk per second');
assert(isPowerOfTwo(regionSizeSectorsMin) && isPowerOfTwo(regionSizeSectorsMax));
assert(isPowerOfTwo(regionSizeSectorsDefault) && regionSizeSectorsMin <= regionSizeSectorsDefault && regionSizeSectorsDefault <= regionSizeSectorsMax);
assert(isPowerOfTwo(directAlignBytesMax) && isPowerOfTwo(directMemAlignBytesDefault) && directMemAlignBytesDefault <= directAlignBytesMax);
assert(kernelMessageBurst >= 1 && kernelMessageIntervalMs > 0);
assert(Number.isSafeInteger(handshakeTimeoutMsDefault) && handshakeTimeoutMsDefault > 0);
assert(heldConnectionsMax >= 1 && closeGraceMs > 0);
assert(regionCountMax <= kernelRegionCountMax, 'we never hold more regions than the kernel allows');
assert(regionCountMax % 32 === 0, 'whole 32-bit bitset words');
assert(lazyCleanMsMax > 0 && lazyCleanMsMax < 2 ** 31 - 1, "a lazy clean timer fits in Node's timer range");
assert(handshakeTimeoutMsDefault <= handshakeLimitMsMax && handshakeLimitMsMax < 2 ** 31 - 1);
assert(legTimeoutMsMin > 0 && legTimeoutMsMin <= legTimeoutMsDefault && legTimeoutMsDefault <= legTimeoutMsMax && legTimeoutMsMax < 2 ** 31 - 1);
assert(regionSizeSectorsMin === 2, 'dm-log refuses regions below 2 sectors');
assert(regionSizeSectorsMax <= 2 ** 32 - 1, 'the kernel reads the region size as an unsigned int');
assert(isRegionSizeSectors(regionSizeSectorsMin) && isRegionSizeSectors(regionSizeSectorsMax));
assert(diskLogCleanRoundsMax >= 2, 'a waiting flush may wait for the running clean step, then run its own');
assert(tableLinesMax >= 1 && tableEndSectorsMax * sectorBytes <= Number.MAX_SAFE_INTEGER);
assert(heldIoMaxDefault >= 4 * inFlightMax, 'a suspend holds the full in-flight window of several NBD connections');
assert(requestBytesMax % regionBytesMin === 0, 'a span of requestBytesMax bytes is whole smallest regions');
assert(Number.isSafeInteger(spanPiecesMax) && spanPiecesMax >= 2);
assert(spanPiecesMax <= writeQueueMax, 'the largest span fits an empty write queue (admission cannot deadlock)');
assert(
  controlConnectionsMax * controlRequestsInFlightMax * controlLineBytesMax <= 2 ** 30,
  'the control socket holds at most 1 GiB of request lines at once',
);
assert(controlLineBytesMax < 2 ** 31 && controlRequestsInFlightMax >= 1 && controlConnectionsMax >= 1);
assert(devicesMaxDefault >= 1 && deviceCloseWaitMs > 0 && deviceCloseWaitMs < 2 ** 31 - 1, "a close wait fits in Node's timer range");
assert(syncExtentsMax >= 1 && syncExtentsMax * 8 <= requestBytesMax, 'one block status reply of syncExtentsMax extents fits a payload');
assert(imageBytesDefault % sectorBytes === 0 && imageBytesDefault / sectorBytes >= regionSizeSectorsDefault, 'the default image holds a region');
assert(isPowerOfTwo(logImageBlockBytes) && logImageBytesMin % logImageBlockBytes === 0);
assert(serveLazyCleanMsDefault >= 0 && serveLazyCleanMsDefault <= lazyCleanMsMax);
assert(progressWatchIntervalMs > 0);
assert(hostLabelBytesMax < hostNameBytesMax && tcpPortMax === 2 ** 16 - 1);
assert(Number.isSafeInteger(eventNrMax) && deviceNameBytesMax > 0 && quotedInputCharsMax > 0);
assert(recoveryBusyParallelDefault >= 1 && recoveryBusyParallelDefault <= recoveryParallelDefault);
assert(resyncRateWindowMs > 0 && resyncRateSamplesMax >= 2);
assert(rateMiBPerSecondMin >= 1 && rateMiBPerSecondMin <= rateMiBPerSecondMax);
