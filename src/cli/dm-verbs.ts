/**
 * The dmsetup-style verbs: create, load, clear, suspend, resume, remove, status, table, info, ls, wait,
 * message. Each one parses its arguments (`--socket PATH` anywhere), sends one request to the daemon
 * and prints what dmsetup prints. Exit status: 0 on success, 1 on any failure (dmsetup's), with
 * dmsetup's messages on stderr (dm-output.ts). `--json` on the read verbs prints the result as JSON.
 */
import { resolve } from 'node:path';
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { ControlClient, type ControlCall } from '../control/control-client.js';
import type { CreateNbdOptions } from '../control/control-protocol.js';
import type { DeviceInfo, TableView } from '../control/device-registry.js';
import { ControlError } from '../errors.js';
import { progressWatchIntervalMs } from '../limits.js';
import { failureLines, infoLines } from './dm-output.js';
import { depsLine, tableDependencies, treeLines, utf8Locale } from './dm-tree.js';
import { rethrowProgrammerError } from '../fail-fast.js';
import { resyncing, syncProgressText, syncSuffix, syncTotals, type SyncCounts } from './output.js';
import { LiveLines, ProgressRate } from './progress.js';
import { sectorBytes } from '../limits.js';
import { defaultSocketPath } from './socket-path.js';
import { parseNbdAddress } from './nbd-address.js';
import { deviceNameOption, eventNrArgument, lazyCleanOption, rateOption, sectorArgument, socketPathOption } from './option-values.js';
import { scrubVerb } from './scrub-verb.js';
import { dmVerbHelp, type DmVerb } from './dm-verbs-help.js';
import { parseArgsMessage } from './option-values.js';

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
  create: ['table', 'nbd', 'readonly', 'lazy-clean', 'read-repair', 'tls', 'tls-psk', 'tls-certificates', 'tls-verify-peer', 'max-connections', 'socket-mode', 'socket-group'],
  load: ['table'],
  clear: [],
  suspend: ['noflush'],
  resume: [],
  remove: ['force'],
  status: ['json', 'inactive', 'watch'],
  table: ['json', 'inactive'],
  info: ['json'],
  deps: [],
  ls: ['json', 'tree'],
  wait: ['json', 'progress', 'verbose'],
  message: [],
  scrub: ['json', 'repair', 'rate'],
};

const positionalCounts: Record<DmVerb, readonly [number, number]> = {
  create: [1, 2],
  load: [1, 2],
  clear: [1, 1],
  suspend: [1, 1],
  resume: [1, 1],
  remove: [1, Infinity],
  status: [0, 1],
  table: [0, 1],
  info: [0, 1],
  deps: [0, 1],
  ls: [0, 0],
  wait: [1, 2],
  message: [3, Infinity],
  scrub: [1, 1],
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
  // The table of create/load is read before the daemon is asked anything, as dmsetup reads its file.
  let table = '';
  if (verb === 'create' || verb === 'load') {
    try {
      table = await tableText(parsed);
    } catch (err) {
      if (!(err instanceof ControlError)) throw err;
      console.error(err.message);
      console.error('Command failed.');
      return 1;
    }
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
    if (verb === 'remove') return await removeDevices({ client, names: parsed.positionals, force: parsed.values['force'] === true });
    return await runVerb({ verb, parsed, client, name, table });
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
    force: { type: 'boolean', short: 'f' },
    tree: { type: 'boolean' },
    repair: { type: 'boolean' },
    'read-repair': { type: 'boolean' },
    rate: { type: 'string' },
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
  if (!help && verb === 'remove') for (const name of positionals) deviceNameOption(name);
  if (values.table !== undefined && positionals[1] !== undefined) throw new ControlError('EINVAL', `give the table with --table or in TABLE_FILE, not both`);
  if (values.nbd !== undefined) parseNbdAddress(values.nbd);
  if (values['lazy-clean'] !== undefined) lazyCleanOption(values['lazy-clean']);
  if (values.rate !== undefined) rateOption('--rate', values.rate);
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

/**
 * The line a command line the verb refuses gets, or undefined for an error that is not about it. An
 * option the parser does not know (or without its value) is named in one sentence, with where to look.
 */
function commandLineError(verb: DmVerb, err: unknown): string | undefined {
  if (err instanceof InvalidSector) return err.message;
  if (err instanceof ControlError) return `umirror ${verb}: ${err.message}`;
  const code = err instanceof TypeError ? (err as { code?: unknown }).code : undefined;
  if (typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS_') && err instanceof Error) {
    return `umirror ${verb}: ${parseArgsMessage(err.message)} (see 'umirror ${verb} --help')`;
  }
  return undefined;
}

async function runVerb(options: { verb: DmVerb; parsed: Parsed; client: ControlClient; name: string; table: string }): Promise<number> {
  const { verb, parsed, client, name, table } = options;
  const call = (request: ControlCall): Promise<unknown> => client.request(request);
  const flag = (key: string): boolean => parsed.values[key] === true;
  switch (verb) {
    case 'create': {
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
        ...(flag('read-repair') && { readRepair: true }),
      });
      const uri = isRecord(result) && typeof result['uri'] === 'string' ? result['uri'] : undefined;
      if (uri !== undefined) console.log(uri);
      return 0;
    }
    case 'load':
      await call({ verb, name, table });
      return 0;
    case 'clear':
    case 'resume':
    case 'remove':
      await call({ verb, name });
      return 0;
    case 'deps': {
      const names = parsed.positionals.length > 0 ? parsed.positionals : (await listDevices(client)).map((d) => d.name);
      if (names.length === 0) console.log('No devices found');
      for (const device of names) {
        const view = asView(await call({ verb: 'table', name: device, inactive: false }));
        console.log(depsLine({ dependencies: tableDependencies(view.text), ...(parsed.positionals.length === 0 ? { name: device } : {}) }));
      }
      return 0;
    }
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
      else {
        // mdadm --detail's "Resync Status": read from the status of each device's mirror segments.
        const views = await Promise.all(infos.map((info) => call({ verb: 'status', name: info.name, inactive: false }).then(asView)));
        infos.forEach((info, index) => {
          const view = views[index];
          const mirrors = view === undefined ? [] : viewMirrors(view);
          console.log(infoLines(info, { resyncStatus: resyncStatus(mirrors), scrubStatus: scrubStatus(view) }).join('\n'));
        });
      }
      return 0;
    }
    case 'ls': {
      const devices = await listDevices(client);
      if (flag('tree') && !parsed.json) {
        if (devices.length === 0) console.log('No devices found');
        const tables = new Map<string, string[]>();
        for (const device of devices) tables.set(device.name, tableDependencies(asView(await call({ verb: 'table', name: device.name, inactive: false })).text));
        for (const line of treeLines(tables, { utf8: utf8Locale() })) console.log(line);
        return 0;
      }
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
    case 'scrub': {
      const rate = parsed.values['rate'];
      return scrubVerb({
        client,
        name,
        repair: flag('repair'),
        json: parsed.json,
        ...(typeof rate === 'string' ? { rateMiBPerSecond: rateOption('--rate', rate) } : {}),
      });
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
 * mdadm --detail's "Resync Status" words: `27% complete` while resyncing, `27% in sync, waiting for a new
 * table (a leg failed: AD)` when a failed leg holds the resync; undefined when in sync (no line).
 */
function resyncStatus(mirrors: readonly SyncCounts[]): string | undefined {
  const { synced, total } = syncTotals(mirrors);
  if (synced >= total) return undefined;
  const percent = Math.floor((synced * 100) / total);
  if (resyncing(mirrors)) return `${percent}% complete`;
  return `${percent}% in sync, waiting for a new table (a leg failed: ${mirrors.map((m) => m.health).join(', ')})`;
}

/** `info`'s "Scrub Status" words while a scrub runs: `27% checked, 3 differ`; undefined otherwise. */
function scrubStatus(view: TableView | undefined): string | undefined {
  const running = view?.mirrors.find((m) => m.scrub?.running !== null && m.scrub?.running !== undefined)?.scrub?.running;
  if (running === null || running === undefined) return undefined;
  return `${Math.floor((running.doneRegions * 100) / running.regionCount)}% checked, ${running.mismatchedRegions} differ`;
}

/** The mirror segments of a status view with their sizes, as the progress displays need them. */
function viewMirrors(view: TableView): SyncCounts[] {
  return view.mirrors.map((m) => {
    const segment = view.segments.find((s) => s.start === m.start);
    return { ...m, sizeBytes: (segment?.length ?? 0) * sectorBytes };
  });
}

/**
 * `status --watch [NAME]`: the status lines with resync progress (mdstat's bar, percent, finish time and
 * speed), until interrupted. On a terminal the block is redrawn in place every interval; elsewhere a
 * device's lines are printed again whenever they change (so once per interval while it resyncs).
 * Without NAME it watches every device, each line prefixed by "NAME: " as `status` prints them, and
 * reports devices that come and go; a device removed between the listing and its status is reported as
 * gone, not as an error.
 */
async function watchStatus(options: { client: ControlClient; name: string }): Promise<number> {
  const all = options.name === '';
  const live = new LiveLines(process.stdout);
  const last = new Map<string, string>();
  const rates = new Map<string, ProgressRate>();
  let announcedNone = false;
  for (;;) {
    const names = all ? (await listDevices(options.client)).map((d) => d.name) : [options.name];
    const seen = new Set<string>();
    const block: string[] = [];
    const changed: string[] = [];
    for (const name of names) {
      let view: TableView;
      try {
        view = asView(await options.client.request({ verb: 'status', name, inactive: false }));
      } catch (err) {
        if (all && err instanceof ControlError && err.code === 'ENOENT') continue;
        throw err;
      }
      seen.add(name);
      const rate = rates.get(name) ?? new ProgressRate();
      rates.set(name, rate);
      const suffix = syncSuffix(viewMirrors(view), { rate });
      const lines = view.text.trimEnd().split('\n');
      const text = lines.map((line, index) => `${all ? `${name}: ` : ''}${line}${index === lines.length - 1 ? suffix : ''}`).join('\n');
      block.push(text);
      if (last.get(name) !== text) changed.push(text);
      last.set(name, text);
    }
    for (const name of [...last.keys()]) {
      if (seen.has(name)) continue;
      if (!live.tty) changed.push(`${name}: removed`);
      last.delete(name);
      rates.delete(name);
    }
    if (all && last.size === 0 && (live.tty || !announcedNone)) {
      block.push('No devices found');
      changed.push('No devices found');
    }
    announcedNone = all && last.size === 0;
    live.show((live.tty ? block : changed).flatMap((text) => text.split('\n')));
    await sleep(progressWatchIntervalMs);
  }
}

/**
 * `wait --progress`: resync progress (mdstat's bar, percent, finish time and speed) on stderr until every
 * mirror segment is in sync; redrawn in place on a terminal, a line per change elsewhere. A mirror with
 * a failed leg does not resync its out-of-sync regions until a new table is loaded (they wait, as the
 * kernel's do), so the wait would never end: it says so and exits 1 instead.
 */
async function waitProgress(options: { client: ControlClient; name: string; json: boolean }): Promise<number> {
  const live = new LiveLines(process.stderr);
  const rate = new ProgressRate();
  let last = '';
  for (;;) {
    const view = asView(await options.client.request({ verb: 'status', name: options.name, inactive: false }));
    const mirrors = viewMirrors(view);
    const totals = syncTotals(mirrors);
    const { synced, total } = totals;
    rate.sample({ atMs: performance.now(), doneBytes: totals.syncedBytes });
    if (options.json) {
      const line = JSON.stringify({ syncRegions: synced, regionCount: total });
      if (line !== last) console.log(line);
      last = line;
    } else {
      const line = `${options.name}: ${synced >= total ? `in sync (${synced}/${total} regions)` : syncProgressText(totals, { resyncing: resyncing(mirrors), rate })}`;
      if (line !== last || live.tty) live.show([line]);
      last = line;
    }
    if (synced === total) {
      live.end();
      return 0;
    }
    const failed = view.mirrors.filter((m) => !/^A+$/.test(m.health) && m.syncRegions < m.regionCount);
    if (failed.length > 0) {
      live.end();
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

/**
 * The table of create/load: --table, else TABLE_FILE, else stdin (dmsetup reads the file, or stdin
 * when there is none). @throws ControlError with dmsetup's message for a file it cannot open.
 */
async function tableText(parsed: Parsed): Promise<string> {
  const table = parsed.values['table'];
  if (typeof table === 'string') return table;
  const file = parsed.positionals[1];
  if (file !== undefined) {
    try {
      return await readFile(file, 'utf8');
    } catch (err) {
      rethrowProgrammerError(err);
      throw new ControlError('ENOENT', `Couldn't open '${file}' for reading.`, { cause: err });
    }
  }
  if (process.stdin.isTTY) throw new ControlError('EINVAL', 'No table given: use --table TABLE, a TABLE_FILE, or pipe the table on stdin');
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk)));
  return Buffer.concat(chunks).toString('utf8');
}

/**
 * `remove [--force] NAME...`: each device in turn, as dmsetup repeats the command for every name; a
 * failure is reported (dmsetup's lines) and the others are still removed; exit status 1 if any failed.
 * --force first swaps in an `error` table of the same size (dmsetup's _error_device: load, then a
 * resume whose suspend does not flush, so I/O held by the old table fails instead of waiting), then
 * removes; a device still open is refused as without --force, but all its I/O now fails.
 */
async function removeDevices(options: { client: ControlClient; names: readonly string[]; force: boolean }): Promise<number> {
  const { client } = options;
  let status = 0;
  const attempt = async (verb: DmVerb, name: string, request: ControlCall): Promise<boolean> => {
    try {
      await client.request(request);
      return true;
    } catch (err) {
      if (!(err instanceof ControlError)) throw err;
      for (const line of failureLines({ verb, name, error: err })) console.error(line);
      return false;
    }
  };
  for (const name of options.names) {
    if (options.force) {
      let sizeSectors = 0;
      try {
        const view = asView(await client.request({ verb: 'table', name, inactive: false }));
        sizeSectors = view.segments.reduce((sum, segment) => sum + segment.length, 0);
      } catch (err) {
        if (!(err instanceof ControlError)) throw err;
      }
      if (sizeSectors > 0 && (await attempt('load', name, { verb: 'load', name, table: `0 ${sizeSectors} error` }))) {
        const resumed = (await attempt('suspend', name, { verb: 'suspend', name, noflush: true })) && (await attempt('resume', name, { verb: 'resume', name }));
        if (!resumed) await attempt('clear', name, { verb: 'clear', name });
      }
    }
    if (!(await attempt('remove', name, { verb: 'remove', name }))) status = 1;
  }
  return status;
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
