/**
 * `umirror daemon`: holds many named devices, like the kernel holds dm devices, and answers the
 * dmsetup-style verbs on a control socket (docs/control-protocol.md). Structured logs (pino) go to
 * stderr, with the kernel's messages where the kernel would log them. Optional Prometheus endpoint.
 *
 * Start-up: every listener (control socket, metrics) is bound before any is started, so a busy or
 * unusable address is one log line (level fatal) and exit status 1, with nothing accepted; the ready
 * line comes only when everything answers.
 *
 * SIGTERM/SIGINT: stop accepting control connections, stop every NBD server (requests in flight
 * finish), then suspend (flushing every dirty log) and close every device, upper devices first.
 */
import { parseArgs } from 'node:util';
import { pino, destination } from 'pino';
import { ListenError } from '../errors.js';
import { rethrowProgrammerError } from '../fail-fast.js';
import { ControlServer } from '../control/control-server.js';
import { DeviceRegistry } from '../control/device-registry.js';
import { MetricsServer } from '../control/metrics-server.js';
import { ResyncRateSampler } from '../control/metrics.js';
import { ControlError } from '../errors.js';
import { parseNbdAddress } from './nbd-address.js';
import { handshakeLimitOption, legTimeoutOption, socketPathOption } from './option-values.js';
import { defaultSocketPath } from './socket-path.js';

export const daemonHelp = `Usage: umirror daemon [--socket PATH] [--metrics HOST:PORT] [--log-level LEVEL] [--direct-io]
                      [--handshake-limit SECONDS] [--leg-timeout SECONDS]

Runs the umirror daemon in the foreground. It holds named devices (umirror create/load/suspend/resume/
remove/status/table/info/ls/wait/message talk to it) and serves each one over NBD on request
(umirror create NAME --table ... --nbd ADDR).

  --socket PATH        control socket (default $UMIRROR_SOCKET, else a per-user runtime path)
  --metrics HOST:PORT  serve Prometheus metrics on http://HOST:PORT/metrics
  --log-level LEVEL    pino level: trace, debug, info (default), warn, error
  --direct-io          open path devices with O_DIRECT (no page cache; any alignment, via bounce buffers)
  --handshake-limit S  drop an NBD client that has not finished the handshake within S seconds
                       (default 10, as qemu-nbd; 0: no limit)
  --leg-timeout S      a request to a remote (NBD URI) device unanswered S seconds fails and drops the
                       connection, so the leg fails; also bounds the first connection (default 30)

Logs are JSON lines (pino) on stderr. SIGTERM or Ctrl-C suspends every device (every dirty log is
flushed clean) and exits.`;

const logLevels: readonly string[] = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'];

export async function daemonCommand(argv: readonly string[]): Promise<number> {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      socket: { type: 'string' },
      metrics: { type: 'string' },
      'log-level': { type: 'string', default: 'info' },
      'direct-io': { type: 'boolean', default: false },
      'handshake-limit': { type: 'string' },
      'leg-timeout': { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
  });
  if (values.help) {
    console.log(daemonHelp);
    return 0;
  }
  // Every value is checked before anything is bound or created.
  const level = values['log-level'];
  if (!logLevels.includes(level)) throw new ControlError('EINVAL', `--log-level must be one of ${logLevels.join(', ')}, got ${JSON.stringify(level)}`);
  const metricsAddress = values.metrics === undefined ? undefined : parseNbdAddress(values.metrics, '--metrics');
  if (metricsAddress !== undefined && 'path' in metricsAddress) throw new ControlError('EINVAL', '--metrics needs HOST:PORT, not a Unix socket');
  const socketPath = socketPathOption(values.socket === undefined ? 'the default control socket' : '--socket', values.socket ?? defaultSocketPath());
  const handshakeLimit = values['handshake-limit'];
  const handshakeTimeoutMs = handshakeLimit === undefined ? undefined : handshakeLimitOption(handshakeLimit);
  const legTimeout = values['leg-timeout'];
  const legTimeoutMs = legTimeout === undefined ? undefined : legTimeoutOption(legTimeout);
  const log = pino({ level, base: { pid: process.pid } }, destination({ dest: 2, sync: true }));

  const registry = new DeviceRegistry({
    log,
    parseAddress: parseNbdAddress,
    directIo: values['direct-io'],
    ...(handshakeTimeoutMs === undefined ? {} : { handshakeTimeoutMs }),
    ...(legTimeoutMs === undefined ? {} : { legTimeoutMs }),
  });
  const control = new ControlServer({ registry, log });
  const sampler = new ResyncRateSampler(registry);
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
      metrics = await MetricsServer.listen({ ...metricsAddress, registry, sampler, log: (message) => log.error({}, `metrics: ${message}`) });
    } catch (err) {
      await control.close();
      return listenFailed('metrics', err);
    }
  }
  control.start();
  metrics?.start();
  sampler.start();
  log.info({ socket: socketPath, metrics: metrics === undefined ? undefined : `http://${metrics.address.host}:${metrics.address.port}/metrics` }, 'umirror daemon ready');

  const signal = await new Promise<string>((resolve) => {
    process.once('SIGINT', () => resolve('SIGINT'));
    process.once('SIGTERM', () => resolve('SIGTERM'));
  });
  log.info({ signal }, 'stopping: suspending every device');
  sampler.stop();
  await control.close();
  await metrics?.close();
  await registry.shutdown();
  log.info('umirror daemon stopped; every device suspended');
  return 0;
}
