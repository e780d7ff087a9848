/**
 * `umirror serve`: the main job. One mapped device (a mirror over image files by default, or any
 * kernel-syntax table with --table), served over NBD in the foreground.
 *
 * With no table it creates (or reuses) sparse images under the data folder: N legs and a disk log, and
 * builds `0 <len> mirror disk 2 <log> <region> N <leg> 0 ... 1 handle_errors`. It prints the NBD URI, the
 * table and live status (a progress bar while resyncing). The NBD listener is bound first (a busy
 * address: one line, exit status 1, nothing created or resumed) and answers once the device is resumed;
 * a socket file left by a killed serve is replaced. Once it answers it writes --pidfile and tells a
 * service manager (READY=1, service-notify.ts). SIGINT/SIGTERM/SIGHUP close the NBD listener (requests in
 * flight finish), suspend the device (the log is flushed) and remove it, say what the next start must
 * resync (stop-summary.ts): nothing after a clean stop; then the pidfile is removed.
 *
 * Security options (docs/security.md): --tls/--tls-psk/--tls-certificates/--tls-verify-peer (nbdkit's),
 * --max-connections, --socket-mode/--socket-group; key files are read before the listener is bound,
 * so a missing, malformed or readable-by-others key is one line and exit status 1.
 */
import { parseArgs } from 'node:util';
import { findImageLockError } from '../block/image-lock.js';
import { ControlError, ListenError, TableError, TlsKeyError } from '../errors.js';
import { rethrowProgrammerError } from '../fail-fast.js';
import {
  handshakeTimeoutMsDefault,
  lazyCleanMsMax,
  legTimeoutMsDefault,
  legsMax,
  legsMin,
  recoveryBusyBytesPerSecondDefault,
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
import { checkNbdServeOptions, loadNbdServeOptions, type NbdServeSettings } from '../control/nbd-serve-options.js';
import { MirrorSet } from '../mirror/mirror-set.js';
import { NbdServer, type NbdListener } from '../nbd/server.js';
import { MappedDevice, type Segment } from '../target/mapped-device.js';
import { defaultNbdPort, parseNbdAddress } from './nbd-address.js';
import {
  deviceNameOption,
  folderOption,
  handshakeLimitOption,
  lazyCleanOption,
  legCountOption,
  legTimeoutOption,
  logTypeOption,
  rateOption,
  scrubEveryOption,
  recoveryParallelOption,
  regionSizeOption,
  sizeOption,
} from './option-values.js';
import { syncSuffix, tableErrorLines } from './output.js';
import { Pidfile } from './pidfile.js';
import { notifyReady } from './service-notify.js';
import { closeHungUpTerminal, ignoreClosedOutput, type StopSignal, waitForStopSignal } from './stop-signal.js';
import { LiveLines, ProgressRate } from './progress.js';
import { createLogger, logFormatOption, logLevelOption } from './logger.js';
import { heldWritesBySegment, mirrorStopStates, stopSummary } from './stop-summary.js';
import { scheduleScrubs } from './scrub-schedule.js';
import { scrubSummaryLines } from './scrub-verb.js';
import { scrubSegments } from '../control/mirror-integrity.js';
import type { Logger } from './logger.js';

export const serveHelp = `Usage: umirror serve [--data DIR] [--size SIZE] [--legs N] [--log disk|core]
                    [--region-size SECTORS] [--table TABLE] [--nbd HOST:PORT|unix:PATH] [--name NAME]
                    [--recovery-parallel N] [--read-balance] [--lazy-clean MS] [--handshake-limit S]
                    [--leg-timeout S] [--read-repair] [--resync-rate MiB/s] [--scrub-every HOURS]
                    [--readonly] [--pidfile PATH] [--quiet] [--log-level LEVEL] [--log-format text|json]
                    [--tls off|on|require] [--tls-psk FILE | --tls-certificates DIR [--tls-verify-peer]]
                    [--max-connections N] [--socket-mode MODE] [--socket-group GROUP]

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
  --read-repair           a read of an in-sync region that fails on a leg is served by another leg
                          and the data written back; the leg stays A if that write succeeds (md's
                          behaviour; default off: the kernel fails the leg, R)
  --resync-rate MiB/s     cap the resync (idle or busy; default: none, full speed while clients are
                          idle, ${recoveryBusyBytesPerSecondDefault / 2 ** 20} MiB/s and one region at a time while they are busy)
  --scrub-every HOURS     compare the legs every HOURS (umirror scrub's check, no repair; default off);
                          differences are logged
  --handshake-limit S     drop an NBD client that has not finished the handshake within S seconds
                          (default ${handshakeTimeoutMsDefault / 1000}, as qemu-nbd; 0: no limit)
  --readonly              NBD clients may only read (qemu-nbd -r): writes, trims and zeroes fail with EPERM
  --pidfile PATH          write serve's pid there once it answers, remove it on exit; refuse to start
                          while it names a running umirror
  --leg-timeout S         a request to a remote (NBD URI) device unanswered S seconds fails and drops the
                          connection, so the leg fails; also bounds the first connection (default ${legTimeoutMsDefault / 1000})
  --quiet                 print the URI and table only, no live status
  --log-level LEVEL       trace, debug, info (default), warn, error, fatal, silent; debug adds the table
                          loaded and NBD clients' negotiated options
  --log-format FORMAT     text (default on a terminal) or json (default otherwise: one object a line)

The URI, table, status and stop lines go to stdout; logs (the kernel's messages, NBD clients connecting
and disconnecting) go to stderr.

Security (see docs/security.md):
  --tls off|on|require    TLS after NBD_OPT_STARTTLS: off, offered, or required (nothing about the
                          export is told before it). Default: require with a key below, else off.
  --tls-psk FILE          pre-shared keys, "identity:hexkey" lines as psktool writes (mode 600)
  --tls-certificates DIR  DIR/server-cert.pem, DIR/server-key.pem (mode 600), DIR/ca-cert.pem
  --tls-verify-peer       with certificates: clients need a certificate signed by DIR/ca-cert.pem
  --max-connections N     NBD clients at once per export, 1..64 (default 16); one more is refused
  --socket-mode MODE      a unix: socket's permissions, octal (default 0600: only this user)
  --socket-group GROUP    a unix: socket's group (e.g. the one qemu runs in; mode 0660 unless given)

Ctrl-C, SIGTERM or a closed terminal (SIGHUP) suspends the device (the disk log is flushed) and says
what the next start must resync: nothing after a clean stop ("the log is clean"), else the regions a
failed leg or a held write left dirty. Under systemd (Type=notify) it reports READY=1 once it answers
(contrib/systemd/umirror-serve@.service).`;

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
      'read-repair': { type: 'boolean', default: false },
      'resync-rate': { type: 'string' },
      'scrub-every': { type: 'string' },
      // Lazy clean by default: without it every write burst to a region costs a mark, then a clean
      // (an fdatasync of every leg), then a mark again (measured: 4k random writes 3x faster).
      'lazy-clean': { type: 'string', default: String(serveLazyCleanMsDefault) },
      'handshake-limit': { type: 'string' },
      readonly: { type: 'boolean', default: false },
      pidfile: { type: 'string' },
      'leg-timeout': { type: 'string' },
      quiet: { type: 'boolean', default: false },
      tls: { type: 'string' },
      'tls-psk': { type: 'string' },
      'tls-certificates': { type: 'string' },
      'tls-verify-peer': { type: 'boolean', default: false },
      'max-connections': { type: 'string' },
      'socket-mode': { type: 'string' },
      'socket-group': { type: 'string' },
      'log-level': { type: 'string', default: 'info' },
      'log-format': { type: 'string' },
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
  const resyncRate = values['resync-rate'] === undefined ? undefined : rateOption('--resync-rate', values['resync-rate']);
  const scrubEveryHours = values['scrub-every'] === undefined ? undefined : scrubEveryOption(values['scrub-every']);
  const handshakeLimit = values['handshake-limit'];
  const handshakeTimeoutMs = handshakeLimit === undefined ? undefined : handshakeLimitOption(handshakeLimit);
  const security = checkNbdServeOptions({
    ...(values.tls !== undefined && { tls: values.tls }),
    ...(values['tls-psk'] !== undefined && { tlsPsk: values['tls-psk'] }),
    ...(values['tls-certificates'] !== undefined && { tlsCertificates: values['tls-certificates'] }),
    tlsVerifyPeer: values['tls-verify-peer'],
    ...(values['max-connections'] !== undefined && { maxConnections: values['max-connections'] }),
    ...(values['socket-mode'] !== undefined && { socketMode: values['socket-mode'] }),
    ...(values['socket-group'] !== undefined && { socketGroup: values['socket-group'] }),
  });
  if ('host' in address && (security.socketMode !== undefined || security.socketGroup !== undefined)) {
    throw new ControlError('EINVAL', '--socket-mode and --socket-group are for a unix: listener');
  }
  let settings: NbdServeSettings;
  try {
    settings = await loadNbdServeOptions(security);
  } catch (err) {
    rethrowProgrammerError(err);
    if (!(err instanceof TlsKeyError)) throw err;
    console.error(`umirror serve: ${err.message}`);
    return 1;
  }
  const pidfile = values.pidfile === undefined ? undefined : await Pidfile.check(values.pidfile);
  // A terminal closed under us (SIGHUP) fails every later write with EIO: serve still stops cleanly.
  process.stdout.on('error', ignoreClosedOutput);
  process.stderr.on('error', ignoreClosedOutput);
  const logger = createLogger({ level: logLevelOption(values['log-level']), format: logFormatOption(values['log-format']) });
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
      ...(values['read-repair'] && { readRepair: true }),
      ...(resyncRate === undefined ? {} : { resyncBytesPerSecondMax: resyncRate * 2 ** 20 }),
      log: { lazyCleanMs },
      onMessage: (device, level, message) => logger[level]({ device }, `device-mapper: raid1: ${message}`),
      onLogWarning: (device, line) => logger.warn({ device }, `device-mapper: dirty region log: ${line}`),
    }),
  });
  // Bind first, answer last: a busy address stops serve before any image is created or the device
  // resumed, and no client reaches the device before it is resumed (the listener holds them).
  const nbdExport = { ...mirrorExport({ name, device }), readOnly: values.readonly };
  const server = new NbdServer({
    exports: [nbdExport],
    log: (message) => logger.warn({ device: name }, message),
    onClient: (event) => {
      const fields = { device: name, peer: event.peer, export: event.exportName };
      logger.info(fields, `nbd client ${event.kind}ed`);
      if (event.kind === 'connect') logger.debug({ ...fields, structuredReplies: event.structuredReplies }, 'nbd client options');
    },
    ...(handshakeTimeoutMs === undefined ? {} : { handshakeTimeoutMs }),
    ...(settings.tls !== undefined && { tls: settings.tls }),
    ...(settings.connectionsPerExportMax !== undefined && { connectionsPerExportMax: settings.connectionsPerExportMax }),
  });
  let listener: NbdListener;
  try {
    listener = await server.listen(address, { start: false, ...(settings.socket !== undefined && { socket: settings.socket }) });
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
    logger.debug({ device: name, table: table.trim() }, 'loading table');
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
  if (settings.tls !== undefined) console.log(`tls: ${settings.tls.mode === 'require' ? 'required' : 'offered'} (${settings.tls.kind === 'psk' ? 'pre-shared keys' : 'X.509 certificates'})`);
  console.log(`table:  ${device.table().trimEnd()}`);
  console.log(`status: ${device.status().trimEnd()}`);

  // The live status line: redrawn in place on a terminal, printed again on change elsewhere (tests and
  // logs read those lines). The rate behind the speed and finish time is sampled every tick.
  const live = new LiveLines(process.stdout);
  const rate = new ProgressRate();
  let lastStatus = `status: ${device.status().trimEnd()}`;
  const ticker = values.quiet
    ? undefined
    : setInterval(() => {
        const mirrors = device
          .segments()
          .filter((s): s is Segment & { target: MirrorSet } => s.target instanceof MirrorSet)
          .map((s) => ({ syncRegions: s.target.syncCount(), regionCount: s.target.regionCount, health: s.target.healthLetters(), sizeBytes: s.line.lengthSectors * sectorBytes }));
        const line = `status: ${device.status().trimEnd()}${syncSuffix(mirrors, { rate })}`;
        if (line === lastStatus && !live.tty) return;
        lastStatus = line;
        live.show([line]);
      }, 1000);

  const scrubs =
    scrubEveryHours === undefined
      ? undefined
      : scheduleScrubs({ everyMs: scrubEveryHours * 3_600_000, run: (signal) => periodicScrub({ name, device, signal, logger }) });
  const stopSignal = waitForStopSignal();
  let exitCode = 0;
  try {
    await pidfile?.write();
  } catch (err) {
    rethrowProgrammerError(err);
    console.error(`umirror serve: pidfile: ${err instanceof Error ? err.message : String(err)}`);
    exitCode = 1;
  }
  let signal: StopSignal | undefined;
  if (exitCode === 0) {
    await notifyReady({ status: `serving ${name} at ${listener.uri}`, log: (message) => console.error(`umirror serve: ${message}`) });
    signal = await stopSignal;
  }
  if (ticker !== undefined) clearInterval(ticker);
  await scrubs?.stop();
  live.end();
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
  await pidfile?.remove();
  if (signal === 'SIGHUP') closeHungUpTerminal();
  return exitCode;
}

/** One `--scrub-every` turn: a check of every mirror segment; the summary goes to the log. */
async function periodicScrub(options: { name: string; device: MappedDevice; signal: AbortSignal; logger: Logger }): Promise<void> {
  const { name, device, logger } = options;
  try {
    const result = await scrubSegments({ name, segments: device.segments(), repair: false, signal: options.signal });
    const lines = scrubSummaryLines(result);
    if (result.mismatchedRegions > 0) logger.warn({ device: name, mismatchedRegions: result.mismatchedRegions }, lines.join('\n'));
    else logger.info({ device: name }, lines.join('\n'));
  } catch (err) {
    rethrowProgrammerError(err);
    // Suspended, or a scrub already running: this turn is skipped.
    logger.warn({ device: name, err: err instanceof Error ? err.message : String(err) }, 'scheduled scrub skipped');
  }
}
