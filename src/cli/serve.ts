/**
 * `umirror serve`: the main job. One mapped device (a mirror over image files by default, or any
 * kernel-syntax table with --table), served over NBD in the foreground.
 *
 * With no table it creates (or reuses) sparse images under the data folder: N legs and a disk log, and
 * builds `0 <len> mirror disk 2 <log> <region> N <leg> 0 ... 1 handle_errors`. It prints the NBD URI, the
 * table and live status (a progress bar while resyncing). The NBD listener is bound first (a busy
 * address: one line, exit status 1, nothing created or resumed) and answers once the device is resumed;
 * a socket file left by a killed serve is replaced. SIGINT/SIGTERM close the NBD listener (requests in
 * flight finish), suspend the device (the log is flushed) and remove it, and say what the next start
 * must resync (stop-summary.ts): nothing after a clean stop.
 */
import { parseArgs } from 'node:util';
import { findImageLockError } from '../block/image-lock.js';
import { ListenError, TableError } from '../errors.js';
import { rethrowProgrammerError } from '../fail-fast.js';
import {
  handshakeTimeoutMsDefault,
  lazyCleanMsMax,
  legTimeoutMsDefault,
  legsMax,
  legsMin,
  recoveryParallelDefault,
  recoveryParallelMax,
  recoveryParallelMin,
  regionSizeSectorsDefault,
  regionSizeSectorsMin,
  sectorBytes,
  serveLazyCleanMsDefault,
} from '../limits.js';
import { targetBuilder } from '../control/build-target.js';
import { connectionEventLine, deviceResolver, findRemoteOpenError } from '../control/device-resolver.js';
import { type ImageSet, prepareImages, removeImages } from '../control/images.js';
import { mirrorExport } from '../control/mirror-export.js';
import { MirrorSet } from '../mirror/mirror-set.js';
import { NbdServer, type NbdListener } from '../nbd/server.js';
import { MappedDevice } from '../target/mapped-device.js';
import { defaultNbdPort, parseNbdAddress } from './nbd-address.js';
import {
  deviceNameOption,
  folderOption,
  handshakeLimitOption,
  lazyCleanOption,
  legCountOption,
  legTimeoutOption,
  logTypeOption,
  recoveryParallelOption,
  regionSizeOption,
  sizeOption,
} from './option-values.js';
import { syncSuffix, tableErrorLines } from './output.js';
import { heldWritesBySegment, mirrorStopStates, stopSummary } from './stop-summary.js';

export const serveHelp = `Usage: umirror serve [--data DIR] [--size SIZE] [--legs N] [--log disk|core]
                    [--region-size SECTORS] [--table TABLE] [--nbd HOST:PORT|unix:PATH] [--name NAME]
                    [--recovery-parallel N] [--read-balance] [--lazy-clean MS] [--leg-timeout S] [--quiet]

Serve one mirrored device over NBD in the foreground.

Without --table, creates (or reuses) sparse image files under --data (default ./umirror-data):
leg0.img ... leg<N-1>.img of --size (default: the size of an existing leg0.img, else 1G) and log.img
(a kernel-format disk log), and serves
  0 <len> mirror disk 2 <log.img> <region> <N> <leg0.img> 0 ... 1 handle_errors
With --table, serves any kernel-syntax table (mirror, linear, zero, error lines; a device is a path or an
NBD URI: nbd://HOST[:PORT]/EXPORT, nbd+unix:///EXPORT?socket=PATH, nbds://... with TLS).

  --nbd ADDR              listen address (default 127.0.0.1:${defaultNbdPort}); unix:/path for a Unix socket
  --name NAME             device and export name (default: umirror)
  --legs N                legs to create, ${legsMin}..${legsMax} (default 2)
  --log disk|core         dirty log for created images (default disk)
  --region-size SECTORS   region size in 512-byte sectors, a power of two from ${regionSizeSectorsMin} (default ${regionSizeSectorsDefault})
  --recovery-parallel N   regions resynced at once, ${recoveryParallelMin}..${recoveryParallelMax} (default ${recoveryParallelDefault}; the kernel uses 1)
  --read-balance          spread reads of in-sync regions over legs (needs handle_errors)
  --lazy-clean MS         disk log: clear a region only after it stayed idle MS milliseconds, at most
                          ${lazyCleanMsMax} (default ${serveLazyCleanMsDefault}; 0 clears at the next pass, as the kernel). The on-disk format is the kernel's
                          either way; a crash resyncs at most the regions written in the last MS.
  --handshake-limit S     drop an NBD client that has not finished the handshake within S seconds
                          (default ${handshakeTimeoutMsDefault / 1000}, as qemu-nbd; 0: no limit)
  --leg-timeout S         a request to a remote (NBD URI) device unanswered S seconds fails and drops the
                          connection, so the leg fails; also bounds the first connection (default ${legTimeoutMsDefault / 1000})
  --quiet                 print the URI and table only, no live status

Ctrl-C suspends the device (the disk log is flushed) and says what the next start must resync: nothing
after a clean stop ("the log is clean"), else the regions a failed leg or a held write left dirty.`;

export async function serveCommand(argv: readonly string[]): Promise<number> {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      data: { type: 'string', default: './umirror-data' },
      size: { type: 'string' },
      legs: { type: 'string', default: '2' },
      log: { type: 'string', default: 'disk' },
      'region-size': { type: 'string', default: String(regionSizeSectorsDefault) },
      table: { type: 'string' },
      nbd: { type: 'string', default: `127.0.0.1:${defaultNbdPort}` },
      name: { type: 'string', default: 'umirror' },
      'recovery-parallel': { type: 'string' },
      'read-balance': { type: 'boolean', default: false },
      // Lazy clean by default: without it every write burst to a region costs a mark, then a clean
      // (an fdatasync of every leg), then a mark again (measured: 4k random writes 3x faster).
      'lazy-clean': { type: 'string', default: String(serveLazyCleanMsDefault) },
      'handshake-limit': { type: 'string' },
      'leg-timeout': { type: 'string' },
      quiet: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
  });
  if (values.help) {
    console.log(serveHelp);
    return 0;
  }
  // Every value is checked before anything is created, opened or bound.
  const name = deviceNameOption(values.name);
  const address = parseNbdAddress(values.nbd);
  const dataDir = folderOption('--data', values.data);
  const sizeBytes = values.size === undefined ? undefined : sizeOption(values.size);
  const legCount = legCountOption(values.legs);
  const log = logTypeOption(values.log);
  const regionSectors = regionSizeOption(values['region-size']);
  const recoveryParallel = values['recovery-parallel'] === undefined ? undefined : recoveryParallelOption(values['recovery-parallel']);
  const lazyCleanMs = lazyCleanOption(values['lazy-clean']);
  const handshakeLimit = values['handshake-limit'];
  const handshakeTimeoutMs = handshakeLimit === undefined ? undefined : handshakeLimitOption(handshakeLimit);
  const legTimeoutMs = values['leg-timeout'] === undefined ? legTimeoutMsDefault : legTimeoutOption(values['leg-timeout']);
  const device = new MappedDevice({
    name,
    buildTarget: targetBuilder({
      resolver: deviceResolver({
        lockHolder: name,
        legTimeoutMs,
        onConnectionEvent: (event) => {
          const line = connectionEventLine(event);
          console.error(`${line.level}: ${line.message}`);
        },
      }),
      ...(recoveryParallel === undefined ? {} : { recoveryParallel }),
      ...(values['read-balance'] ? { readPolicy: 'balance' as const } : {}),
      log: { lazyCleanMs },
      onMessage: (_device, level, message) => console.error(`${level}: device-mapper: raid1: ${message}`),
      onLogWarning: (_device, line) => console.error(`warn: device-mapper: dirty region log: ${line}`),
    }),
  });
  // Bind first, answer last: a busy address stops serve before any image is created or the device
  // resumed, and no client reaches the device before it is resumed (the listener holds them).
  const server = new NbdServer({ exports: [mirrorExport({ name, device })], ...(handshakeTimeoutMs === undefined ? {} : { handshakeTimeoutMs }) });
  let listener: NbdListener;
  try {
    listener = await server.listen(address, { start: false });
  } catch (err) {
    rethrowProgrammerError(err);
    if (!(err instanceof ListenError)) throw err;
    console.error(`umirror serve: ${err.message}`);
    return 1;
  }
  let images: ImageSet | undefined;
  try {
    let table = values.table;
    if (table === undefined) {
      images = await prepareImages({ dataDir, ...(sizeBytes === undefined ? {} : { sizeBytes }), legCount, regionSectors, log, handleErrors: true });
      for (const path of images.created) console.log(`created ${path}`);
      table = images.table;
    }
    try {
      await device.load(table);
    } catch (err) {
      rethrowProgrammerError(err);
      // Nothing was served: images this start created go again, so a refused start leaves nothing behind.
      const left = images === undefined ? [] : await removeImages(images);
      for (const line of left) console.error(`umirror serve: could not remove ${line}`);
      await server.close({ graceful: false });
      // An image another process holds (a second serve, qemu): one line, before anything is resumed.
      const locked = findImageLockError(err);
      if (locked !== undefined) {
        console.error(`umirror: ${locked.message}`);
        return 1;
      }
      if (err instanceof TableError) {
        // A URI that could not be reached: why (the kernel's lines below only say "Device lookup failure").
        const remote = findRemoteOpenError(err);
        if (remote !== undefined) console.error(`umirror: ${remote.message}`);
        for (const line of tableErrorLines(err, { device: name })) console.error(line);
        return 1;
      }
      throw err;
    }
    await device.resume();
  } catch (err) {
    await server.close({ graceful: false });
    throw err;
  }
  listener.start();
  console.log(`serving ${name}: ${(device.sizeBytes / 2 ** 20).toFixed(0)} MiB (${device.sizeBytes / sectorBytes} sectors)`);
  console.log(`nbd uri: ${listener.uri}`);
  console.log(`table:  ${device.table().trimEnd()}`);
  console.log(`status: ${device.status().trimEnd()}`);

  let lastStatus = device.status();
  const ticker = values.quiet
    ? undefined
    : setInterval(() => {
        const status = device.status();
        if (status === lastStatus) return;
        lastStatus = status;
        const mirrors = device
          .segments()
          .map((s) => s.target)
          .filter((t): t is MirrorSet => t instanceof MirrorSet)
          .map((m) => ({ syncRegions: m.syncCount(), regionCount: m.regionCount, health: m.healthLetters() }));
        console.log(`status: ${status.trimEnd()}${syncSuffix(mirrors)}`);
      }, 1000);

  await new Promise<void>((resolve) => {
    const stop = (): void => resolve();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  if (ticker !== undefined) clearInterval(ticker);
  console.log('stopping: closing NBD connections, suspending the device');
  // Drain the connections while suspending, not before: a write held by handle_errors completes only when
  // the suspend releases it (with EIO), and I/O that reached the device once it was suspended completes
  // only when remove fails it (ESHUTDOWN). Waiting for the drain first would wait forever.
  const drained = listener.close({ graceful: true }).then(() => server.close({ graceful: true }));
  const held = heldWritesBySegment(device.segments());
  await device.suspend();
  const summary = stopSummary(mirrorStopStates(device.segments(), held));
  await device.remove();
  await drained;
  console.log(summary);
  return 0;
}
