/**
 * The dmsetup-style verbs: create, load, clear, suspend, resume, remove, status, table, info, ls, wait,
 * message. Each one parses its arguments (`--socket PATH` anywhere), sends one request to the daemon
 * and prints what dmsetup prints. Exit status: 0 on success, 1 on any failure (dmsetup's), with
 * dmsetup's messages on stderr (dm-output.ts). `--json` on the read verbs prints the result as JSON.
 */
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { ControlClient, type ControlCall } from '../control/control-client.js';
import type { CreateNbdOptions } from '../control/control-protocol.js';
import type { DeviceInfo, TableView } from '../control/device-registry.js';
import { ControlError } from '../errors.js';
import { progressWatchIntervalMs } from '../limits.js';
import { failureLines, infoLines } from './dm-output.js';
import { progressBar, syncSuffix, syncTotals } from './output.js';
import { defaultSocketPath } from './socket-path.js';
import { parseNbdAddress } from './nbd-address.js';
import { deviceNameOption, eventNrArgument, lazyCleanOption, sectorArgument, socketPathOption } from './option-values.js';
import { dmVerbHelp, type DmVerb } from './dm-verbs-help.js';

interface Parsed {
  readonly socket: string;
  readonly json: boolean;
  readonly positionals: readonly string[];
  readonly values: Readonly<Record<string, string | boolean | undefined>>;
  /** wait's EVENT_NR (default 0). */
  readonly eventNr: number;
  /** message's SECTOR. */
  readonly sector: number;
}

/** Options each verb accepts besides --socket, --help (and --json on reads). */
const verbOptions: Record<DmVerb, readonly string[]> = {
  create: ['table', 'nbd', 'readonly', 'lazy-clean', 'tls', 'tls-psk', 'tls-certificates', 'tls-verify-peer', 'max-connections', 'socket-mode', 'socket-group'],
  load: ['table'],
  clear: [],
  suspend: ['noflush'],
  resume: [],
  remove: [],
  status: ['json', 'inactive', 'watch'],
  table: ['json', 'inactive'],
  info: ['json'],
  ls: ['json'],
  wait: ['json', 'progress', 'verbose'],
  message: [],
};

const positionalCounts: Record<DmVerb, readonly [number, number]> = {
  create: [1, 1],
  load: [1, 1],
  clear: [1, 1],
  suspend: [1, 1],
  resume: [1, 1],
  remove: [1, 1],
  status: [0, 1],
  table: [0, 1],
  info: [0, 1],
  ls: [0, 0],
  wait: [1, 2],
  message: [3, Infinity],
};

export async function dmVerbCommand(verb: DmVerb, argv: readonly string[]): Promise<number> {
  let parsed: Parsed;
  try {
    parsed = parse(verb, argv);
  } catch (err) {
    const line = commandLineError(verb, err);
    if (line === undefined) throw err;
    // dmsetup: one line on what is wrong, then "Command failed.", exit 1; nothing was sent.
    console.error(line);
    console.error('Command failed.');
    return 1;
  }
  if (parsed.values['help'] === true) {
    console.log(dmVerbHelp[verb]);
    return 0;
  }
  let client: ControlClient;
  try {
    client = await ControlClient.connect(parsed.socket);
  } catch (err) {
    if (!(err instanceof ControlError)) throw err;
    console.error(`umirror: ${err.message}`);
    console.error('Command failed.');
    return 1;
  }
  const name = parsed.positionals[0] ?? '';
  try {
    return await runVerb({ verb, parsed, client, name });
  } catch (err) {
    if (!(err instanceof ControlError)) throw err;
    if (parsed.json) console.log(JSON.stringify({ error: { code: err.code, message: err.message } }));
    for (const line of failureLines({ verb, name, error: err })) console.error(line);
    return 1;
  } finally {
    client.close();
  }
}

function parse(verb: DmVerb, argv: readonly string[]): Parsed {
  const allowed = verbOptions[verb];
  const all = {
    socket: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
    json: { type: 'boolean' },
    table: { type: 'string' },
    nbd: { type: 'string' },
    tls: { type: 'string' },
    'tls-psk': { type: 'string' },
    'tls-certificates': { type: 'string' },
    'tls-verify-peer': { type: 'boolean' },
    'max-connections': { type: 'string' },
    'socket-mode': { type: 'string' },
    'socket-group': { type: 'string' },
    readonly: { type: 'boolean' },
    'lazy-clean': { type: 'string' },
    noflush: { type: 'boolean' },
    inactive: { type: 'boolean' },
    watch: { type: 'boolean' },
    progress: { type: 'boolean' },
    verbose: { type: 'boolean', short: 'v' },
  } as const;
  const { values, positionals } = parseArgs({ args: [...argv], options: all, allowPositionals: true, strict: true });
  for (const [key, value] of Object.entries(values)) {
    if (value !== undefined && key !== 'socket' && key !== 'help' && !allowed.includes(key)) {
      throw new ControlError('EINVAL', `option --${key} is not valid for ${verb} (see 'umirror ${verb} --help')`);
    }
  }
  const [min, max] = positionalCounts[verb];
  const help = values.help === true;
  if (!help && (positionals.length < min || positionals.length > max)) {
    throw new ControlError('EINVAL', min === 1 && positionals.length === 0 ? 'Please specify device.' : `wrong number of arguments (see 'umirror ${verb} --help')`);
  }
  // Every value is checked here, before the daemon is asked anything.
  const socket = socketPathOption(values.socket === undefined ? 'the default control socket' : '--socket', values.socket ?? defaultSocketPath());
  if (!help && positionals[0] !== undefined) deviceNameOption(positionals[0]);
  if (values.nbd !== undefined) parseNbdAddress(values.nbd);
  if (values['lazy-clean'] !== undefined) lazyCleanOption(values['lazy-clean']);
  if (verb === 'wait' && values.progress === true && positionals.length > 1) throw new ControlError('EINVAL', 'wait --progress takes no EVENT_NR');
  const eventNr = verb === 'wait' && !help && values.progress !== true ? eventNrArgument(positionals[1] ?? '0') : 0;
  let sector = 0;
  if (verb === 'message' && !help) {
    const scanned = sectorArgument(positionals[1] ?? '');
    if (scanned === null) throw new InvalidSector();
    sector = scanned;
  }
  return { socket, json: values.json === true, positionals, values, eventNr, sector };
}

/** dmsetup's answer to a SECTOR that is not a 64-bit number: "Invalid sector." (then "Command failed."). */
class InvalidSector extends ControlError {
  constructor() {
    super('EINVAL', 'Invalid sector.');
  }
}

/** The line a command line the verb refuses gets, or undefined for an error that is not about it. */
function commandLineError(verb: DmVerb, err: unknown): string | undefined {
  if (err instanceof InvalidSector) return err.message;
  if (err instanceof ControlError) return `umirror ${verb}: ${err.message}`;
  const code = err instanceof TypeError ? (err as { code?: unknown }).code : undefined;
  if (typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS_')) return `umirror ${verb}: ${err instanceof Error ? err.message : ''}`;
  return undefined;
}

async function runVerb(options: { verb: DmVerb; parsed: Parsed; client: ControlClient; name: string }): Promise<number> {
  const { verb, parsed, client, name } = options;
  const call = (request: ControlCall): Promise<unknown> => client.request(request);
  const flag = (key: string): boolean => parsed.values[key] === true;
  switch (verb) {
    case 'create': {
      const table = await tableText(parsed);
      const nbd = parsed.values['nbd'];
      const nbdOptions = createNbdOptions(parsed);
      const lazyClean = parsed.values['lazy-clean'];
      const result = await call({
        verb,
        name,
        table,
        ...(typeof nbd === 'string' ? { nbd } : {}),
        ...(nbdOptions !== undefined && { nbdOptions }),
        readOnly: flag('readonly'),
        ...(typeof lazyClean === 'string' && { lazyCleanMs: lazyCleanOption(lazyClean) }),
      });
      const uri = isRecord(result) && typeof result['uri'] === 'string' ? result['uri'] : undefined;
      if (uri !== undefined) console.log(uri);
      return 0;
    }
    case 'load':
      await call({ verb, name, table: await tableText(parsed) });
      return 0;
    case 'clear':
    case 'resume':
    case 'remove':
      await call({ verb, name });
      return 0;
    case 'suspend':
      await call({ verb, name, noflush: flag('noflush') });
      return 0;
    case 'status':
    case 'table':
      if (flag('watch')) return watchStatus({ client, name });
      return printViews({ client, verb, names: parsed.positionals, json: parsed.json, inactive: flag('inactive') });
    case 'info': {
      const names = parsed.positionals.length > 0 ? parsed.positionals : (await listDevices(client)).map((d) => d.name);
      const infos = await Promise.all(names.map((n) => call({ verb: 'info', name: n }).then(asInfo)));
      if (parsed.json) console.log(JSON.stringify(parsed.positionals.length > 0 ? infos[0] : infos));
      else if (infos.length === 0) console.log('No devices found');
      else for (const info of infos) console.log(infoLines(info).join('\n'));
      return 0;
    }
    case 'ls': {
      const devices = await listDevices(client);
      if (parsed.json) console.log(JSON.stringify(devices));
      else if (devices.length === 0) console.log('No devices found');
      else for (const device of devices) console.log(device.nbdUri === undefined ? device.name : `${device.name}\t(${device.nbdUri})`);
      return 0;
    }
    case 'wait': {
      if (flag('progress')) return waitProgress({ client, name, json: parsed.json });
      const result = await call({ verb, name, eventNr: parsed.eventNr });
      if (parsed.json) console.log(JSON.stringify(result));
      else if (flag('verbose')) console.log(infoLines(asInfo(await call({ verb: 'info', name }))).join('\n'));
      return 0;
    }
    case 'message': {
      const result = await call({ verb, name, sector: parsed.sector, message: parsed.positionals.slice(2).join(' ') });
      const output = isRecord(result) && typeof result['output'] === 'string' ? result['output'] : '';
      if (output !== '') console.log(output);
      return 0;
    }
  }
}

async function printViews(options: { client: ControlClient; verb: 'status' | 'table'; names: readonly string[]; json: boolean; inactive: boolean }): Promise<number> {
  const { client, verb } = options;
  const all = options.names.length === 0;
  const names = all ? (await listDevices(client)).map((d) => d.name) : options.names;
  const views = await Promise.all(names.map((name) => client.request({ verb, name, inactive: options.inactive }).then(asView)));
  if (options.json) {
    console.log(JSON.stringify(all ? views : views[0]));
    return 0;
  }
  if (views.length === 0) console.log('No devices found');
  for (const view of views) {
    const lines = view.text.split('\n').filter((line, index, list) => index < list.length - 1 || line !== '');
    for (const line of lines) console.log(all ? `${view.name}: ${line}` : line);
  }
  return 0;
}

/**
 * `status --watch [NAME]`: prints the status lines (with a resync bar) whenever they change, until
 * interrupted. Without NAME it watches every device, each line prefixed by "NAME: " as `status` prints
 * them, and reports devices that come and go; a device removed between the listing and its status is
 * reported as gone, not as an error.
 */
async function watchStatus(options: { client: ControlClient; name: string }): Promise<number> {
  const all = options.name === '';
  const last = new Map<string, string>();
  let announcedNone = false;
  for (;;) {
    const names = all ? (await listDevices(options.client)).map((d) => d.name) : [options.name];
    const seen = new Set<string>();
    for (const name of names) {
      let view: TableView;
      try {
        view = asView(await options.client.request({ verb: 'status', name, inactive: false }));
      } catch (err) {
        if (all && err instanceof ControlError && err.code === 'ENOENT') continue;
        throw err;
      }
      seen.add(name);
      const lines = view.text.trimEnd().split('\n');
      const text = lines.map((line, index) => `${all ? `${name}: ` : ''}${line}${index === lines.length - 1 ? syncSuffix(view.mirrors) : ''}`).join('\n');
      if (last.get(name) !== text) console.log(text);
      last.set(name, text);
    }
    for (const name of [...last.keys()]) {
      if (seen.has(name)) continue;
      console.log(`${name}: removed`);
      last.delete(name);
    }
    if (all && last.size === 0 && !announcedNone) console.log('No devices found');
    announcedNone = all && last.size === 0;
    await sleep(progressWatchIntervalMs);
  }
}

/**
 * `wait --progress`: a resync progress bar until every mirror segment is in sync. A mirror with a failed
 * leg does not resync its out-of-sync regions until a new table is loaded (they wait, as the kernel's
 * do), so the wait would never end: it says so and exits 1 instead.
 */
async function waitProgress(options: { client: ControlClient; name: string; json: boolean }): Promise<number> {
  let last = '';
  for (;;) {
    const view = asView(await options.client.request({ verb: 'status', name: options.name, inactive: false }));
    const { synced, total } = syncTotals(view.mirrors);
    const line = options.json ? JSON.stringify({ syncRegions: synced, regionCount: total }) : `${options.name}: resync ${progressBar(synced, total)} ${synced}/${total} regions`;
    if (line !== last) (options.json ? console.log : console.error)(line);
    last = line;
    if (synced === total) return 0;
    const failed = view.mirrors.filter((m) => !/^A+$/.test(m.health) && m.syncRegions < m.regionCount);
    if (failed.length > 0) {
      const health = failed.map((m) => m.health).join(', ');
      console.error(`${options.name}: a leg failed (${health}): ${total - synced} regions stay out of sync until a new table is loaded`);
      return 1;
    }
    await sleep(progressWatchIntervalMs);
  }
}

async function listDevices(client: ControlClient): Promise<DeviceInfo[]> {
  const result = await client.request({ verb: 'ls' });
  const devices = isRecord(result) ? result['devices'] : undefined;
  return Array.isArray(devices) ? devices.map(asInfo) : [];
}

/** The table: --table, else stdin (dmsetup reads the table from stdin when --table is missing). */
async function tableText(parsed: Parsed): Promise<string> {
  const table = parsed.values['table'];
  if (typeof table === 'string') return table;
  if (process.stdin.isTTY) throw new ControlError('EINVAL', 'No table given: use --table TABLE or pipe the table on stdin');
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk)));
  return Buffer.concat(chunks).toString('utf8');
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Decode boundary: the daemon's info result (validated field by field). */
function asInfo(value: unknown): DeviceInfo {
  if (!isRecord(value) || typeof value['name'] !== 'string' || typeof value['eventNr'] !== 'number' || typeof value['openCount'] !== 'number') {
    throw new ControlError('EIO', 'The daemon sent a malformed info result');
  }
  return value as unknown as DeviceInfo;
}

/** Decode boundary: the daemon's status/table result. */
function asView(value: unknown): TableView {
  if (!isRecord(value) || typeof value['name'] !== 'string' || typeof value['text'] !== 'string' || !Array.isArray(value['mirrors'])) {
    throw new ControlError('EIO', 'The daemon sent a malformed status result');
  }
  return value as unknown as TableView;
}

/** create's NBD security options for the daemon; key paths made absolute (the daemon has its own cwd). */
function createNbdOptions(parsed: Parsed): CreateNbdOptions | undefined {
  const text = (key: string): string | undefined => {
    const value = parsed.values[key];
    return typeof value === 'string' ? value : undefined;
  };
  const path = (key: string): string | undefined => {
    const value = text(key);
    return value === undefined || value === '' ? value : resolve(value);
  };
  const [tls, tlsPsk, tlsCertificates] = [text('tls'), path('tls-psk'), path('tls-certificates')];
  const [maxConnections, socketMode, socketGroup] = [text('max-connections'), text('socket-mode'), text('socket-group')];
  const options: CreateNbdOptions = {
    ...(tls !== undefined && { tls }),
    ...(tlsPsk !== undefined && { tlsPsk }),
    ...(tlsCertificates !== undefined && { tlsCertificates }),
    ...(parsed.values['tls-verify-peer'] === true && { tlsVerifyPeer: true }),
    ...(maxConnections !== undefined && { maxConnections }),
    ...(socketMode !== undefined && { socketMode }),
    ...(socketGroup !== undefined && { socketGroup }),
  };
  return Object.keys(options).length === 0 ? undefined : options;
}
