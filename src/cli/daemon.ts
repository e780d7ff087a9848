/**
 * `umirror daemon`: holds many named devices, like the kernel holds dm devices, and answers the
 * dmsetup-style verbs on a control socket (docs/control-protocol.md). Logs (logger.ts: JSON lines, or
 * text on a terminal) go to stderr, with the kernel's messages where the kernel would log them, and NBD
 * clients connecting and disconnecting. Optional Prometheus endpoint.
 *
 * Start-up: every listener (control socket, metrics, the shared NBD listener) is bound before any is
 * started, so a busy or unusable address is one log line (level fatal) and exit status 1, with nothing
 * accepted; the pidfile, the ready line and the service manager's READY=1 come only when everything answers.
 *
 * SIGTERM/SIGINT/SIGHUP: stop accepting control connections, stop every NBD server (requests in flight
 * finish), then suspend (flushing every dirty log) and close every device, upper devices first; remove
 * the pidfile.
 */
import { parseArgs } from 'node:util';
import { ListenError } from '../errors.js';
import { rethrowProgrammerError } from '../fail-fast.js';
import { ControlServer } from '../control/control-server.js';
import { DeviceRegistry } from '../control/device-registry.js';
import { MetricsServer } from '../control/metrics-server.js';
import { ControlError } from '../errors.js';
import type { NbdListener } from '../nbd/server.js';
import { parseNbdAddress } from './nbd-address.js';
import { handshakeLimitOption, lazyCleanOption, legTimeoutOption, rateOption, socketPathOption } from './option-values.js';
import { serveLazyCleanMsDefault } from '../limits.js';
import { checkNbdServeOptions, loadNbdServeOptions } from '../control/nbd-serve-options.js';
import { createLogger, logFormatOption, logLevelOption } from './logger.js';
import { packageVersion } from './package-version.js';
import { Pidfile } from './pidfile.js';
import { notifyReady } from './service-notify.js';
import { defaultSocketPath, isDefaultRuntimePath } from './socket-path.js';
import { closeHungUpTerminal, ignoreClosedOutput, waitForStopSignal } from './stop-signal.js';

export const daemonHelp = `Usage: umirror daemon [--socket PATH] [--nbd HOST:PORT|unix:PATH] [--metrics HOST:PORT]
                      [--pidfile PATH] [--log-level LEVEL] [--log-format text|json] [--direct-io]
                      [--handshake-limit SECONDS] [--leg-timeout SECONDS] [--socket-mode MODE]
                      [--socket-group GROUP] [--lazy-clean MS] [--read-repair] [--resync-rate MiB/s]

Runs the umirror daemon in the foreground. It holds named devices (umirror create/load/suspend/resume/
remove/status/table/info/ls/wait/message talk to it) and serves them over NBD: every device on the
shared --nbd listener, and one device on a listener of its own with umirror create NAME --nbd ADDR.

  --socket PATH        control socket (default $UMIRROR_SOCKET, else /run/umirror/control.sock for
                       root, else a per-user runtime path; the default folder is made 0700 unless
                       --socket-group). The socket is 0600: only this user may control the daemon.
  --socket-mode MODE   the control socket's permissions instead (octal; 0660 with --socket-group)
  --socket-group GROUP the control socket's group: its members may then control every device
  --nbd ADDR           one NBD listener for every device: each is an export named after it (NBD_OPT_LIST
                       lists them; nbdinfo --list), devices created later included; a removed
                       device's export disappears
  --metrics HOST:PORT  serve Prometheus metrics on http://HOST:PORT/metrics
  --pidfile PATH       write the daemon's pid there once it answers, remove it on exit; refuse to start
                       while it names a running umirror
  --log-level LEVEL    trace, debug, info (default), warn, error, fatal, silent; debug adds each control
                       request (verb, device, time taken, error) and every table loaded
  --log-format FORMAT  text (default on a terminal) or json (default otherwise: one object a line)
  --direct-io          open path devices with O_DIRECT (no page cache; any alignment, via bounce buffers)
  --handshake-limit S  drop an NBD client that has not finished the handshake within S seconds
                       (default 10, as qemu-nbd; 0: no limit)
  --leg-timeout S      a request to a remote (NBD URI) device unanswered S seconds fails and drops the
                       connection, so the leg fails; also bounds the first connection (default 30)
  --lazy-clean MS      disk logs: clear a region only after it stayed idle MS milliseconds (default
                       ${serveLazyCleanMsDefault}, as serve; 0 clears at the next pass, as the kernel); create --lazy-clean
                       sets it per device. The on-disk format is the kernel's either way; after a
                       crash, regions written in the last MS are resynced too
  --read-repair        every device repairs read errors of in-sync regions from another leg (md's
                       behaviour; default off, as the kernel; create --read-repair for one device)
  --resync-rate MiB/s  cap every mirror's resync (default: none; it yields to busy clients anyway)

Logs go to stderr. SIGTERM, Ctrl-C or a closed terminal (SIGHUP) suspends every device (every dirty
log is flushed clean) and exits 0. Under systemd (Type=notify, $NOTIFY_SOCKET) it reports READY=1 once
every listener answers (contrib/systemd/umirror.service).`;

export async function daemonCommand(argv: readonly string[]): Promise<number> {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      socket: { type: 'string' },
      metrics: { type: 'string' },
      nbd: { type: 'string' },
      pidfile: { type: 'string' },
      'log-level': { type: 'string', default: 'info' },
      'log-format': { type: 'string' },
      'direct-io': { type: 'boolean', default: false },
      'handshake-limit': { type: 'string' },
      'socket-mode': { type: 'string' },
      'socket-group': { type: 'string' },
      'leg-timeout': { type: 'string' },
      'lazy-clean': { type: 'string', default: String(serveLazyCleanMsDefault) },
      'read-repair': { type: 'boolean', default: false },
      'resync-rate': { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
  });
  if (values.help) {
    console.log(daemonHelp);
    return 0;
  }
  // Every value is checked before anything is bound or created.
  const level = logLevelOption(values['log-level']);
  const logFormat = logFormatOption(values['log-format']);
  const metricsAddress = values.metrics === undefined ? undefined : parseNbdAddress(values.metrics, '--metrics');
  if (metricsAddress !== undefined && 'path' in metricsAddress) throw new ControlError('EINVAL', '--metrics needs HOST:PORT, not a Unix socket');
  const socketPath = socketPathOption(values.socket === undefined ? 'the default control socket' : '--socket', values.socket ?? defaultSocketPath());
  const handshakeLimit = values['handshake-limit'];
  const handshakeTimeoutMs = handshakeLimit === undefined ? undefined : handshakeLimitOption(handshakeLimit);
  const legTimeout = values['leg-timeout'];
  const legTimeoutMs = legTimeout === undefined ? undefined : legTimeoutOption(legTimeout);
  const nbdAddress = values.nbd === undefined ? undefined : parseNbdAddress(values.nbd);
  const lazyCleanMs = lazyCleanOption(values['lazy-clean']);
  const resyncRate = values['resync-rate'] === undefined ? undefined : rateOption('--resync-rate', values['resync-rate']);
  const pidfile = values.pidfile === undefined ? undefined : await Pidfile.check(values.pidfile);
  // A terminal closed under us (SIGHUP) fails later log writes with EIO: the daemon still stops cleanly.
  process.stderr.on('error', ignoreClosedOutput);
  const log = createLogger({ level, format: logFormat });
  const access = checkNbdServeOptions({
    ...(values['socket-mode'] !== undefined && { socketMode: values['socket-mode'] }),
    ...(values['socket-group'] !== undefined && { socketGroup: values['socket-group'] }),
  });
  const { socket } = await loadNbdServeOptions(access);

  const registry = new DeviceRegistry({
    log,
    parseAddress: parseNbdAddress,
    directIo: values['direct-io'],
    lazyCleanMs,
    ...(handshakeTimeoutMs === undefined ? {} : { handshakeTimeoutMs }),
    ...(legTimeoutMs === undefined ? {} : { legTimeoutMs }),
    ...(values['read-repair'] && { readRepair: true }),
    ...(resyncRate === undefined ? {} : { resyncBytesPerSecondMax: resyncRate * 2 ** 20 }),
  });
  const control = new ControlServer({ registry, log });
  const listenFailed = (what: string, err: unknown): number => {
    rethrowProgrammerError(err);
    if (!(err instanceof ListenError)) throw err;
    log.fatal({ code: err.code }, `${what}: ${err.message}`);
    return 1;
  };
  try {
    // The default path's folder (/run/umirror for root) is ours alone (0700), unless --socket-group shares
    // the socket (the group must pass through the folder); a path given is the caller's choice of folder.
    const privateFolder = values.socket === undefined && values['socket-group'] === undefined && isDefaultRuntimePath(socketPath);
    await control.listen(socketPath, { privateFolder, ...(socket !== undefined && { socket }) });
  } catch (err) {
    return listenFailed('control socket', err);
  }
  let metrics: MetricsServer | undefined;
  if (metricsAddress !== undefined) {
    try {
      metrics = await MetricsServer.listen({ ...metricsAddress, registry, version: packageVersion(), log: (message) => log.error({}, `metrics: ${message}`) });
    } catch (err) {
      await control.close();
      return listenFailed('metrics', err);
    }
  }
  let nbd: NbdListener | undefined;
  if (nbdAddress !== undefined) {
    try {
      nbd = await registry.listenShared(nbdAddress);
    } catch (err) {
      await control.close();
      await metrics?.close();
      return listenFailed('nbd', err);
    }
  }
  control.start();
  metrics?.start();
  nbd?.start();
  const stopSignal = waitForStopSignal();
  const stop = async (): Promise<void> => {
    await control.close();
    await metrics?.close();
    await registry.shutdown();
    await pidfile?.remove();
  };
  try {
    await pidfile?.write();
  } catch (err) {
    rethrowProgrammerError(err);
    const code = typeof err === 'object' && err !== null && 'code' in err ? err.code : undefined;
    log.fatal({ code }, `pidfile: ${err instanceof Error ? err.message : String(err)}`);
    await stop();
    return 1;
  }
  const metricsUrl = metrics === undefined ? undefined : `http://${metrics.address.host}:${metrics.address.port}/metrics`;
  log.info({ socket: socketPath, nbd: nbd?.uri, metrics: metricsUrl, pidfile: pidfile?.path }, 'umirror daemon ready');
  await notifyReady({ status: `serving ${socketPath}${nbd === undefined ? '' : ` and ${nbd.uri}`}`, log: (message) => log.error({}, message) });

  const signal = await stopSignal;
  log.info({ signal }, 'stopping: suspending every device');
  await stop();
  log.info('umirror daemon stopped; every device suspended');
  if (signal === 'SIGHUP') closeHungUpTerminal();
  return 0;
}
