/**
 * DeviceRegistry: the daemon's named devices (dm core's name -> mapped_device table, with dm-ioctl's
 * verbs). Each entry is a MappedDevice, the names of other entries its tables hold open (stacking), and
 * an optional NBD server of its own. With a shared NBD listener (`daemon --nbd`, listenShared()) every
 * ready entry is also an export named after it there, and disappears from it when removed. The control server calls one method per verb; every failure is a
 * ControlError (KernelControlError when the kernel would have logged lines), and a failed verb changes
 * nothing.
 *
 * Entry states:  reserved (create in progress; its name is taken) --> ready --> removed.
 *
 * Stacking: a table's device name resolves to another entry first, to a path otherwise. Opening an entry
 * holds it open (its open count) until the table that opened it is destroyed. An open that would close
 * a cycle (a device holding itself, directly or through others) is refused, so a worker can never wait
 * on itself; distinct mirror sets have distinct workers, so a log on another mirror set only waits for
 * that set's worker.
 *
 * Ordering: no registry-wide lock. Each MappedDevice serializes its own control operations, so a
 * suspend that waits for I/O held by a suspended lower device never blocks verbs on other devices
 * (the lower device can still be resumed, as in the kernel).
 */
import { assert } from '../assert.js';
import type { BlockDevice } from '../block/block-device.js';
import { findImageLockError } from '../block/image-lock.js';
import { ControlError, ListenError, TableError, TlsKeyError, type ControlErrno } from '../errors.js';
import { rethrowProgrammerError } from '../fail-fast.js';
import { deviceCloseWaitMs, devicesMaxDefault, lazyCleanMsMax, sectorBytes } from '../limits.js';
import { MirrorSet, type KernelLogLevel } from '../mirror/mirror-set.js';
import type { ExportResolver, NbdExport } from '../nbd/nbd-export.js';
import { NbdServer, type ListenAddress, type NbdListener } from '../nbd/server.js';
import { MappedDevice, type MappedDeviceInfo } from '../target/mapped-device.js';
import { kernelTableLogLines } from '../target/table-lines.js';
import { targetBuilder, type DeviceResolver } from './build-target.js';
import { KernelControlError, checkDeviceName, type CreateNbdOptions } from './control-protocol.js';
import { checkNbdServeOptions, loadNbdServeOptions, type NbdServeSettings } from './nbd-serve-options.js';
import { deviceHandle } from './device-handle.js';
import { connectionEventLine, deviceResolver, findRemoteOpenError } from './device-resolver.js';
import { MeteredDevice } from './metered-device.js';
import { mirrorExport } from './mirror-export.js';
import { lastScrubText, mirrorIntegrityJson, scrubSegments, type DeviceScrubResult, type MirrorIntegrityJson } from './mirror-integrity.js';

/** Structured log sink (pino's shape, so the daemon passes its logger as it is). */
export interface RegistryLog {
  debug(fields: Record<string, unknown>, message: string): void;
  info(fields: Record<string, unknown>, message: string): void;
  warn(fields: Record<string, unknown>, message: string): void;
  error(fields: Record<string, unknown>, message: string): void;
}

export interface RegistryOptions {
  readonly log: RegistryLog;
  /** Parses `--nbd` addresses (the CLI's syntax). */
  readonly parseAddress: (text: string) => ListenAddress;
  /** Open path legs with O_DIRECT (no page cache; see FileBlockDevice's `direct`). */
  readonly directIo?: boolean;
  /** Devices held at most. */
  readonly devicesMax?: number;
  /** NBD: drop a client that has not finished the handshake by then (0: no limit). Default 10 s. */
  readonly handshakeTimeoutMs?: number;
  /** Remote (NBD URI) devices: the request timeout (`--leg-timeout`). Default 30 s. */
  readonly legTimeoutMs?: number;
  /** Disk logs: the lazy clean delay of devices created without their own (`daemon --lazy-clean`). Default 0: the kernel's timing. */
  readonly lazyCleanMs?: number;
  /** Every device's mirrors repair read errors (`daemon --read-repair`; `create --read-repair` per device). */
  readonly readRepair?: boolean;
  /** The resync cap of every device's mirrors, bytes/s (`daemon --resync-rate`). */
  readonly resyncBytesPerSecondMax?: number;
}

export interface DeviceNbd {
  readonly server: NbdServer;
  readonly listener: NbdListener;
}

export interface RegistryEntry {
  readonly name: string;
  readonly md: MappedDevice;
  /** Entries this entry's tables hold open, with how many handles each. */
  readonly holds: Map<string, number>;
  /** What NBD clients reach, on the entry's own listener and on the shared one: one object, metered. */
  readonly nbdExport: NbdExport;
  readonly metered: MeteredDevice;
  /** The entry's own listener (`create --nbd`). */
  nbd: DeviceNbd | undefined;
  ready: boolean;
}

export interface DeviceInfo extends MappedDeviceInfo {
  /** Stacked openers plus NBD clients (connections past the handshake whose client is still there). */
  readonly openCount: number;
  readonly nbdConnections: number;
  /** The device's own listener's URI, else its export's on the shared listener. */
  readonly nbdUri?: string;
  /** The last scrub: when it finished and what it found (mirror-integrity.ts). */
  readonly lastScrub?: string;
}

export interface SegmentJson {
  readonly start: number;
  readonly length: number;
  readonly type: string;
  readonly params: string;
}

export interface MirrorProgress extends Partial<MirrorIntegrityJson> {
  readonly start: number;
  readonly regionCount: number;
  readonly syncRegions: number;
  readonly health: string;
}

export interface TableView {
  readonly name: string;
  /** Exactly what dmsetup prints. */
  readonly text: string;
  readonly segments: readonly SegmentJson[];
  readonly mirrors: readonly MirrorProgress[];
}


export class DeviceRegistry {
  readonly #entries = new Map<string, RegistryEntry>();
  readonly #log: RegistryLog;
  readonly #options: RegistryOptions;
  #shared: DeviceNbd | undefined;
  /** The shared listener's exports: ready entries only, so nothing reaches a device not resumed yet. */
  readonly #sharedExports: ExportResolver = {
    list: () => this.entries().map((entry) => entry.nbdExport),
    get: (name) => {
      const entry = this.#entries.get(name);
      return entry?.ready === true ? entry.nbdExport : undefined;
    },
  };

  constructor(options: RegistryOptions) {
    this.#options = options;
    this.#log = options.log;
  }

  /** Ready entries, in creation order. */
  entries(): RegistryEntry[] {
    return [...this.#entries.values()].filter((entry) => entry.ready);
  }

  /**
   * Binds the shared NBD listener (`daemon --nbd`): every ready device is an export named after it
   * (NBD_OPT_LIST lists them), devices created later included. Connections are held until the caller
   * starts the listener. @throws ListenError (nothing is left bound).
   */
  async listenShared(address: ListenAddress): Promise<NbdListener> {
    assert(this.#shared === undefined, 'one shared listener');
    const server = new NbdServer({
      exports: this.#sharedExports,
      log: (message) => this.#log.warn({}, message),
      ...(this.#options.handshakeTimeoutMs === undefined ? {} : { handshakeTimeoutMs: this.#options.handshakeTimeoutMs }),
    });
    const listener = await server.listen(address, { start: false });
    this.#shared = { server, listener };
    return listener;
  }

  /**
   * `dmsetup create NAME --table T` (+ our --nbd with its security options, --readonly): create, load,
   * resume; all or nothing. Key files are read first: a bad one fails the verb (EINVAL) before anything
   * is opened.
   */
  async create(options: {
    name: string;
    table: string;
    nbd?: string;
    nbdOptions?: CreateNbdOptions;
    readOnly?: boolean;
    lazyCleanMs?: number;
    readRepair?: boolean;
  }): Promise<{ uri?: string }> {
    checkDeviceName(options.name);
    if (this.#entries.has(options.name)) throw new ControlError('EEXIST', `Device ${options.name} already exists`);
    if (this.#entries.size >= (this.#options.devicesMax ?? devicesMaxDefault)) {
      throw new ControlError('EBUSY', `Cannot create ${options.name}: ${this.#entries.size} devices already exist`);
    }
    const address = options.nbd === undefined ? undefined : this.#parseAddress(options.nbd);
    if (address === undefined && options.nbdOptions !== undefined) throw new ControlError('EINVAL', `Cannot create ${options.name}: NBD options need --nbd`);
    const settings = address === undefined ? {} : await this.#nbdSettings(options.name, address, options.nbdOptions ?? {});
    const lazyCleanMs = options.lazyCleanMs ?? this.#options.lazyCleanMs ?? 0;
    assert(Number.isSafeInteger(lazyCleanMs) && lazyCleanMs >= 0 && lazyCleanMs <= lazyCleanMsMax, 'lazy clean delays are checked by the protocol and the CLI');
    const md = this.#newDevice(options.name, { lazyCleanMs, readRepair: options.readRepair === true || this.#options.readRepair === true });
    const metered = new MeteredDevice(md);
    const nbdExport: NbdExport = { ...mirrorExport({ name: options.name, device: md }), device: metered.device, readOnly: options.readOnly === true };
    const entry: RegistryEntry = { name: options.name, md, holds: new Map(), nbdExport, metered, nbd: undefined, ready: false };
    this.#entries.set(options.name, entry);
    // The NBD listener is bound before the resume and answers only after it: a busy address fails the
    // verb with the device never resumed, and no client reaches a device that is not resumed yet.
    let nbd: DeviceNbd | undefined;
    try {
      await this.#load(entry, options.table);
      if (address !== undefined) nbd = await this.#bind(entry, address, settings);
      await entry.md.resume();
    } catch (err) {
      this.#entries.delete(options.name);
      await nbd?.server.close({ graceful: false });
      await entry.md.close().catch((closeErr: unknown) => {
        rethrowProgrammerError(closeErr);
        this.#log.error({ device: options.name, err: closeErr }, 'closing a failed device failed');
      });
      throw err;
    }
    entry.nbd = nbd;
    nbd?.listener.start();
    entry.ready = true;
    entry.md.onEvent((eventNr) => this.#log.info({ device: entry.name, eventNr, status: entry.md.status().trimEnd() }, 'device event'));
    const uri = this.#uri(entry);
    this.#log.info({ device: entry.name, table: entry.md.table().trimEnd(), nbd: uri, readOnly: options.readOnly === true, lazyCleanMs }, 'device created');
    return uri === undefined ? {} : { uri };
  }

  /** `dmsetup load`: builds the inactive table. */
  async load(options: { name: string; table: string }): Promise<void> {
    const entry = this.#get(options.name);
    await this.#load(entry, options.table);
    this.#log.info({ device: entry.name, table: entry.md.table({ inactive: true }).trimEnd() }, 'table loaded');
  }

  /** `dmsetup clear`: drops the inactive table. */
  async clear(name: string): Promise<void> {
    await this.#get(name).md.clearInactive();
  }

  async suspend(options: { name: string; noflush: boolean }): Promise<void> {
    const entry = this.#get(options.name);
    await entry.md.suspend({ noflush: options.noflush });
    this.#log.info({ device: entry.name, noflush: options.noflush }, 'device suspended');
  }

  async resume(name: string): Promise<void> {
    const entry = this.#get(name);
    await entry.md.resume();
    this.#log.info({ device: entry.name, table: entry.md.table().trimEnd() }, 'device resumed');
  }

  /**
   * `dmsetup remove`: refused while another device stacks on it or NBD clients are connected. Sockets
   * that are not clients (a handshake in progress, a client gone while its write is held) are closed:
   * the NBD server closes while the device suspends, since a held write ends only with the suspend.
   * On the shared listener the export disappears first (no new client reaches it), then its sockets close.
   */
  async remove(name: string): Promise<void> {
    const entry = this.#get(name);
    const stacked = entry.md.info().openCount;
    const clients = this.#nbdClients(entry);
    if (stacked > 0 || clients > 0) {
      throw new ControlError('EBUSY', `Cannot remove ${name}: device is open (${stacked} stacked, ${clients} NBD clients)`);
    }
    entry.ready = false;
    try {
      const serverClosed = entry.nbd?.server.close({ graceful: true });
      const sharedClosed = this.#shared?.server.disconnect(entry.nbdExport, { graceful: true });
      entry.nbd = undefined;
      await Promise.all([entry.md.remove(), serverClosed, sharedClosed]);
    } catch (err) {
      entry.ready = !entry.md.closed;
      if (!entry.ready) this.#entries.delete(name);
      throw err;
    }
    this.#entries.delete(name);
    this.#log.info({ device: name }, 'device removed');
  }

  info(name: string): DeviceInfo {
    return this.#info(this.#get(name));
  }

  list(): DeviceInfo[] {
    return this.entries().map((entry) => this.#info(entry));
  }

  view(options: { name: string; kind: 'status' | 'table'; inactive: boolean }): TableView {
    const entry = this.#get(options.name);
    const md = entry.md;
    const inactive = { inactive: options.inactive };
    const text = options.kind === 'status' ? md.status(inactive) : md.table(inactive);
    const segments = md.segments(inactive).map((segment) => ({
      start: segment.line.startSectors,
      length: segment.line.lengthSectors,
      type: segment.target.type,
      params: options.kind === 'status' ? segment.target.statusInfo() : segment.target.statusTable(),
    }));
    const mirrors = md.segments(inactive).flatMap((segment) =>
      segment.target instanceof MirrorSet
        ? [
            {
              start: segment.line.startSectors,
              regionCount: segment.target.regionCount,
              syncRegions: segment.target.syncCount(),
              health: segment.target.healthLetters(),
              ...mirrorIntegrityJson(segment.target),
            },
          ]
        : [],
    );
    return { name: entry.name, text, segments, mirrors };
  }

  /** `dmsetup wait NAME [EVENT_NR]`: resolves once the event number exceeds `afterNr`. */
  wait(options: { name: string; afterNr: number; signal?: AbortSignal }): Promise<number> {
    return this.#get(options.name).md.waitEvent(options.afterNr, options.signal);
  }

  /**
   * `umirror scrub NAME [--repair] [--rate MiB/s]`: compares the legs of every mirror segment online
   * (mirror-integrity.ts); resolves when done or aborted (`signal`: the connection closed).
   */
  async scrub(options: { name: string; repair: boolean; rateMiBPerSecond?: number; signal?: AbortSignal }): Promise<DeviceScrubResult> {
    const entry = this.#get(options.name);
    this.#log.info({ device: entry.name, repair: options.repair, rateMiBPerSecond: options.rateMiBPerSecond }, 'scrub started');
    const result = await scrubSegments({
      name: entry.name,
      segments: entry.md.segments(),
      repair: options.repair,
      ...(options.rateMiBPerSecond === undefined ? {} : { bytesPerSecond: options.rateMiBPerSecond * 2 ** 20 }),
      ...(options.signal === undefined ? {} : { signal: options.signal }),
    });
    const regions = result.segments.flatMap((segment) => segment.regions.map((r) => r.region));
    const fields = { device: entry.name, state: result.state, mismatchedRegions: result.mismatchedRegions, repairedRegions: result.repairedRegions, regions };
    if (result.mismatchedRegions > 0) this.#log.warn(fields, 'scrub finished: legs differ');
    else this.#log.info(fields, 'scrub finished');
    return result;
  }

  /**
   * `dmsetup message NAME SECTOR MSG`. dm core answers `@cancel_deferred_remove` and `@stats_list`
   * itself; every umirror target answers like the kernel's mirror, which has no message method.
   */
  message(options: { name: string; sector: number; message: string }): string {
    const entry = this.#get(options.name);
    const fail = (text: string): never => {
      this.#log.warn({ device: entry.name }, `device-mapper: ioctl: ${text}`);
      throw new KernelControlError('EINVAL', text, { kernel: [`device-mapper: ioctl: ${text}`] });
    };
    if (options.message.trim() === '') return fail('Empty message received.');
    if (options.message === '@cancel_deferred_remove' || options.message === '@stats_list') return '';
    if (options.sector * sectorBytes >= entry.md.sizeBytes) return fail('Target message sector outside device.');
    return fail('Target type does not support messages');
  }

  /**
   * SIGTERM: stop every NBD server from accepting (requests in flight may finish), and close every
   * device, upper devices first, each with a flushing suspend, so every disk log is left clean. The
   * servers are awaited only after the devices closed: a write a mirror holds after a leg failure is
   * released by the suspend (EIO), so waiting for it first would wait forever.
   */
  async shutdown(): Promise<void> {
    for (const entry of this.#entries.values()) entry.ready = false;
    const servers = [...this.#entries.values()].map((entry) => entry.nbd?.server.close({ graceful: true }));
    servers.push(this.#shared?.server.close({ graceful: true }));
    while (this.#entries.size > 0) {
      const free = [...this.#entries.values()].filter((entry) => entry.md.info().openCount === 0);
      // A cycle cannot exist (opens that would make one are refused), so some device is always free.
      const next = free[free.length - 1] ?? [...this.#entries.values()].at(-1);
      assert(next !== undefined, 'the registry is not empty');
      this.#entries.delete(next.name);
      const closed = next.md.close().then(
        () => 'closed' as const,
        (err: unknown) => {
          rethrowProgrammerError(err);
          this.#log.error({ device: next.name, err }, 'closing the device failed');
          return 'failed' as const;
        },
      );
      const late = new Promise<'late'>((resolve) => setTimeout(() => resolve('late'), deviceCloseWaitMs).unref());
      const outcome = await Promise.race([closed, late]);
      if (outcome === 'closed') this.#log.info({ device: next.name }, 'device suspended and closed');
      if (outcome === 'late') this.#log.error({ device: next.name }, `device did not close within ${deviceCloseWaitMs} ms`);
    }
    await Promise.all(servers);
  }

  #get(name: string): RegistryEntry {
    const entry = this.#entries.get(name);
    if (entry === undefined || !entry.ready) throw new ControlError('ENOENT', `Device ${name} does not exist`);
    return entry;
  }

  /**
   * NBD sockets reaching the device: all of its own listener's (a handshake included) and those of the
   * shared listener that chose its export. Undefined when no listener serves it.
   */
  nbdSocketCount(entry: RegistryEntry): number | undefined {
    if (entry.nbd === undefined && this.#shared === undefined) return undefined;
    return (entry.nbd?.server.connectionCount ?? 0) + (this.#shared?.server.connectionCountOf(entry.nbdExport) ?? 0);
  }

  #info(entry: RegistryEntry): DeviceInfo {
    const info = entry.md.info();
    const nbdConnections = this.#nbdClients(entry);
    const nbdUri = this.#uri(entry);
    const lastScrub = lastScrubText(entry.md.segments());
    return {
      ...info,
      openCount: info.openCount + nbdConnections,
      nbdConnections,
      ...(nbdUri === undefined ? {} : { nbdUri }),
      ...(lastScrub === undefined ? {} : { lastScrub }),
    };
  }

  /** NBD clients holding the device open, on its own listener and on the shared one. */
  #nbdClients(entry: RegistryEntry): number {
    return (entry.nbd?.server.clientCount ?? 0) + (this.#shared?.server.clientCountOf(entry.nbdExport) ?? 0);
  }

  #uri(entry: RegistryEntry): string | undefined {
    return entry.nbd?.listener.uri ?? this.#shared?.listener.uriFor(entry.name);
  }

  #parseAddress(text: string): ListenAddress {
    try {
      return this.#options.parseAddress(text);
    } catch (err) {
      // The parser reports malformed user text as RangeError (the CLI's usage-error convention): this is
      // a decode boundary, and only that error becomes EINVAL.
      if (!(err instanceof RangeError)) throw err;
      throw new ControlError('EINVAL', err.message, { cause: err });
    }
  }

  /** Checks and loads `create --nbd`'s security options. @throws ControlError EINVAL (usage, key files). */
  async #nbdSettings(name: string, address: ListenAddress, text: CreateNbdOptions): Promise<NbdServeSettings> {
    try {
      const checked = checkNbdServeOptions(text);
      if ('host' in address && (checked.socketMode !== undefined || checked.socketGroup !== undefined)) {
        throw new ControlError('EINVAL', '--socket-mode and --socket-group are for a unix: listener');
      }
      return await loadNbdServeOptions(checked);
    } catch (err) {
      // ControlError EINVAL is a bad option value; TlsKeyError a key file.
      if (!(err instanceof ControlError) && !(err instanceof TlsKeyError)) throw err;
      throw new ControlError('EINVAL', `Cannot serve ${name} over NBD: ${err.message}`, { cause: err });
    }
  }

  /** Binds the device's NBD listener, holding connections until `listener.start()`. */
  async #bind(entry: RegistryEntry, address: ListenAddress, settings: NbdServeSettings): Promise<DeviceNbd> {
    const server = new NbdServer({
      exports: [entry.nbdExport],
      log: (message) => this.#log.warn({ device: entry.name }, message),
      onClient: (event) => this.#log.info({ device: entry.name, peer: event.peer, export: event.exportName }, `nbd client ${event.kind}ed`),
      ...(this.#options.handshakeTimeoutMs === undefined ? {} : { handshakeTimeoutMs: this.#options.handshakeTimeoutMs }),
      ...(settings.tls !== undefined && { tls: settings.tls }),
      ...(settings.connectionsPerExportMax !== undefined && { connectionsPerExportMax: settings.connectionsPerExportMax }),
    });
    try {
      const listener = await server.listen(address, { start: false, ...(settings.socket !== undefined && { socket: settings.socket }) });
      return { server, listener };
    } catch (err) {
      rethrowProgrammerError(err);
      await server.close();
      if (!(err instanceof ListenError)) throw err;
      throw new ControlError(err.code === 'EADDRINUSE' ? 'EBUSY' : 'EINVAL', `Cannot serve ${entry.name} over NBD: ${err.message}`, { cause: err });
    }
  }

  async #load(entry: RegistryEntry, table: string): Promise<void> {
    this.#log.debug({ device: entry.name, table: table.trim() }, 'loading table');
    try {
      await entry.md.load(table);
    } catch (err) {
      if (!(err instanceof TableError)) throw err;
      const remote = findRemoteOpenError(err);
      if (remote !== undefined) this.#log.warn({ device: entry.name, code: remote.code }, remote.message);
      // An image held by another process or device: say so in one line (the kernel's EBUSY of a claimed device).
      const locked = findImageLockError(err);
      if (locked !== undefined) {
        this.#log.warn({ device: entry.name }, locked.message);
        throw new ControlError(locked.code === 'EBUSY' ? 'EBUSY' : 'EIO', locked.message, { cause: err });
      }
      const type = /^\s*\d+\s+\d+\s+(\S+)/m.exec(table)?.[1] ?? 'mirror';
      const kernel = kernelTableLogLines(err, { deviceNumber: entry.name, targetType: type });
      for (const line of kernel) this.#log.warn({ device: entry.name }, line);
      const code: ControlErrno = err.code;
      throw new KernelControlError(code, err.kernelError, { kernel, cause: err });
    }
  }

  /** A device whose every table (create's and later loads') builds its disk logs with `lazyCleanMs`. */
  #newDevice(name: string, options: { lazyCleanMs: number; readRepair: boolean }): MappedDevice {
    const resyncCap = this.#options.resyncBytesPerSecondMax;
    return new MappedDevice({
      name,
      buildTarget: targetBuilder({
        resolver: this.#resolver(name),
        log: { lazyCleanMs: options.lazyCleanMs },
        ...(options.readRepair && { readRepair: true }),
        ...(resyncCap === undefined ? {} : { resyncBytesPerSecondMax: resyncCap }),
        onMessage: (device, level, message) => this.#kernelMessage(device, level, message),
        onLogWarning: (device, line) => this.#log.warn({ device }, `device-mapper: dirty region log: ${line}`),
      }),
    });
  }

  #kernelMessage(device: string, level: KernelLogLevel, message: string): void {
    this.#log[level]({ device }, `device-mapper: raid1: ${message}`);
  }

  /** Table names of one device: daemon devices first (stacking), then NBD URIs and paths. */
  #resolver(holderName: string): DeviceResolver {
    return {
      open: async (name: string): Promise<BlockDevice> => {
        const target = this.#entries.get(name);
        if (target === undefined) {
          return deviceResolver({
            lockHolder: holderName,
            direct: this.#options.directIo === true,
            ...(this.#options.legTimeoutMs === undefined ? {} : { legTimeoutMs: this.#options.legTimeoutMs }),
            onConnectionEvent: (event) => {
              const line = connectionEventLine(event);
              this.#log[line.level]({ device: holderName, remote: event.name, event: event.type }, line.message);
            },
          }).open(name);
        }
        const holder = this.#entries.get(holderName);
        assert(holder !== undefined, 'a device builds tables only while registered');
        if (!target.ready) throw new ControlError('ENXIO', `Device ${name} is being created or removed`);
        if (this.#reaches(name, holderName)) {
          this.#log.warn({ device: holderName }, `Cannot stack ${holderName} on ${name}: it would make a cycle`);
          throw new ControlError('EINVAL', `Cannot stack ${holderName} on ${name}: it would make a cycle`);
        }
        holder.holds.set(name, (holder.holds.get(name) ?? 0) + 1);
        return deviceHandle(target.md, {
          onClose: () => {
            const count = holder.holds.get(name) ?? 0;
            assert(count > 0, 'a handle is released once');
            if (count === 1) holder.holds.delete(name);
            else holder.holds.set(name, count - 1);
          },
        });
      },
    };
  }

  /** True when `from` is `to` or holds it, directly or through other devices. */
  #reaches(from: string, to: string): boolean {
    const seen = new Set<string>();
    const stack = [from];
    while (stack.length > 0) {
      const name = stack.pop();
      assert(name !== undefined);
      if (name === to) return true;
      if (seen.has(name)) continue;
      seen.add(name);
      for (const held of this.#entries.get(name)?.holds.keys() ?? []) stack.push(held);
    }
    return false;
  }
}
