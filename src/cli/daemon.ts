/**
 * `umirror daemon`: holds many named devices, like the kernel holds dm devices, and answers the
 * dmsetup-style verbs on a control socket (docs/control-protocol.md). Logs (logger.ts: JSON lines, or
 * text on a terminal) go to stderr, with the kernel's messages where the kernel would log them, and NBD
 * clients connecting and disconnecting. Optional Prometheus endpoint.
 *
 * Start-up: every listener (control socket, metrics) is bound before any is started, so a busy or
 * unusable address is one log line (level fatal) and exit status 1, with nothing accepted; the ready
 * line comes only when everything answers.
 *
 * SIGTERM/SIGINT: stop accepting control connections, stop every NBD server (requests in flight
 * finish), then suspend (flushing every dirty log) and close every device, upper devices first.
 */
import { parseArgs } from 'node:util';
import { ListenError } from '../errors.js';
import { rethrowProgrammerError } from '../fail-fast.js';
import { ControlServer } from '../control/control-server.js';
import { DeviceRegistry } from '../control/device-registry.js';
import { MetricsServer } from '../control/metrics-server.js';
import { ControlError } from '../errors.js';
import { parseNbdAddress } from './nbd-address.js';
import { handshakeLimitOption, socketPathOption } from './option-values.js';
import { defaultSocketPath } from './socket-path.js';
import { createLogger, logFormatOption, logLevelOption } from './logger.js';
import { packageVersion } from './package-version.js';

export const daemonHelp = `Usage: umirror daemon [--socket PATH] [--metrics HOST:PORT] [--log-level LEVEL] [--log-format text|json]
                      [--direct-io] [--handshake-limit SECONDS]

Runs the umirror daemon in the foreground. It holds named devices (umirror create/load/suspend/resume/
remove/status/table/info/ls/wait/message talk to it) and serves each one over NBD on request
(umirror create NAME --table ... --nbd ADDR).

  --socket PATH        control socket (default $UMIRROR_SOCKET, else a per-user runtime path)
  --metrics HOST:PORT  serve Prometheus metrics on http://HOST:PORT/metrics
  --log-level LEVEL    trace, debug, info (default), warn, error, fatal, silent; debug adds each control
                       request (verb, device, time taken, error) and every table loaded
  --log-format FORMAT  text (default on a terminal) or json (default otherwise: one object a line)
  --direct-io          open path devices with O_DIRECT (no page cache; any alignment, via bounce buffers)
  --handshake-limit S  drop an NBD client that has not finished the handshake within S seconds
                       (default 10, as qemu-nbd; 0: no limit)

Logs go to stderr. SIGTERM or Ctrl-C suspends every device (every dirty log is
flushed clean) and exits.`;

export async function daemonCommand(argv: readonly string[]): Promise<number> {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      socket: { type: 'string' },
      metrics: { type: 'string' },
      'log-level': { type: 'string', default: 'info' },
      'log-format': { type: 'string' },
      'direct-io': { type: 'boolean', default: false },
      'handshake-limit': { type: 'string' },
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
  const log = createLogger({ level, format: logFormat });

  const registry = new DeviceRegistry({
    log,
    parseAddress: parseNbdAddress,
    directIo: values['direct-io'],
    ...(handshakeTimeoutMs === undefined ? {} : { handshakeTimeoutMs }),
  });
  const control = new ControlServer({ registry, log });
  const listenFailed = (what: string, err: unknown): number => {
    rethrowProgrammerError(err);
    if (!(err instanceof ListenError)) throw err;
    log.fatal({ code: err.code }, `${what}: ${err.message}`);
    return 1;
  };
  try {
    await control.listen(socketPath);
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
  control.start();
  metrics?.start();
  log.info({ socket: socketPath, metrics: metrics === undefined ? undefined : `http://${metrics.address.host}:${metrics.address.port}/metrics` }, 'umirror daemon ready');

  const signal = await new Promise<string>((resolve) => {
    process.once('SIGINT', () => resolve('SIGINT'));
    process.once('SIGTERM', () => resolve('SIGTERM'));
  });
  log.info({ signal }, 'stopping: suspending every device');
  await control.close();
  await metrics?.close();
  await registry.shutdown();
  log.info('umirror daemon stopped; every device suspended');
  return 0;
}
