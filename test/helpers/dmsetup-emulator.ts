/**
 * A dmsetup look-alike over MappedDevice + targetBuilder, to replay the oracle's scenarios
 * (../shared/oracle/scenarios/*.sh) and print what the VM printed (reference/*.out): `$ cmd` lines,
 * dmsetup's output, `event_nr(m)=N`, dd's output and `[exit N]`. Kernel messages go to `kmsg` with the
 * kernel's prefixes ("device-mapper: raid1: ...").
 *
 * Disks vda, vdb, vdc... are memory devices shown as 254:0, 254:16, 254:32... (loop0, loop1... as 7:N);
 * dm devices get 253:N,
 * the lowest free N, in creation order, as the kernel numbers them. Table text names devices as the
 * scenarios do (/dev/vda, /dev/mapper/g). After every command the emulator settles: it waits until
 * every device's status and event number stopped changing (the VM's "sleep"/klog pauses).
 */
import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { BlockDevice } from '../../src/block/block-device.js';
import { FaultyBlockDevice } from '../../src/block/faulty-block-device.js';
import { MemoryBlockDevice } from '../../src/block/memory-block-device.js';
import { targetBuilder } from '../../src/control/build-target.js';
import { TableError } from '../../src/errors.js';
import { MirrorSet } from '../../src/mirror/mirror-set.js';
import { MappedDevice } from '../../src/target/mapped-device.js';
import { kernelTableLogLines } from '../../src/target/table-lines.js';
import { shared, waitInSync } from './mirror-fixture.js';

interface DmEntry {
  readonly md: MappedDevice;
  readonly minor: number;
}

export interface DdHandle {
  readonly done: Promise<string[]>;
  settled: boolean;
}

/** Splits a command line with single and double quotes, as the shell would. */
export function shellWords(line: string): string[] {
  const words: string[] = [];
  let current = '';
  let quote: string | null = null;
  let inWord = false;
  for (const ch of line) {
    if (quote !== null) {
      if (ch === quote) quote = null;
      else current += ch;
    } else if (ch === "'" || ch === '"') {
      quote = ch;
      inWord = true;
    } else if (ch === ' ') {
      if (inWord) words.push(current);
      current = '';
      inWord = false;
    } else {
      current += ch;
      inWord = true;
    }
  }
  if (inWord) words.push(current);
  return words;
}

export class DmsetupEmulator {
  readonly transcript: string[] = [];
  readonly kmsg: string[] = [];
  readonly disks = new Map<string, MemoryBlockDevice>();
  /**
   * Every disk is opened through a pass-through FaultyBlockDevice, so a scenario can make a disk fail
   * only flushes (what the oracle builds from dm-delay + dm-flakey, which are not emulated).
   */
  readonly faults = new Map<string, FaultyBlockDevice>();
  readonly dm = new Map<string, DmEntry>();
  /** Files a scenario wrote (`dmsetup create NAME FILE` reads its table from one). */
  readonly files = new Map<string, string>();

  /**
   * `disks`: sizes of vda, vdb, ... (any byte count, 0 and 100 too); `loops`: sizes of the files behind
   * loop0, loop1, ... (7:0, 7:1, ...), which behave as disks of that size.
   */
  constructor(options: { disks: readonly number[]; loops?: readonly number[] }) {
    const add = (name: string, sizeBytes: number): void => {
      const disk = new MemoryBlockDevice({ sizeBytes, name });
      this.disks.set(name, disk);
      this.faults.set(name, new FaultyBlockDevice(disk, { name, closeInner: false }));
    };
    options.disks.forEach((sizeBytes, i) => add(`vd${String.fromCharCode(97 + i)}`, sizeBytes));
    (options.loops ?? []).forEach((sizeBytes, i) => add(`loop${i}`, sizeBytes));
  }

  displayName(path: string): string {
    const disk = /^\/dev\/(vd[a-z])$/.exec(path);
    if (disk?.[1] !== undefined && this.disks.has(disk[1])) return `254:${(disk[1].charCodeAt(2) - 97) * 16}`;
    const loop = /^\/dev\/loop([0-9]+)$/.exec(path);
    if (loop?.[1] !== undefined && this.disks.has(`loop${loop[1]}`)) return `7:${loop[1]}`;
    const mapper = /^\/dev\/mapper\/(.+)$/.exec(path);
    const entry = mapper?.[1] === undefined ? undefined : this.dm.get(mapper[1]);
    if (entry !== undefined) return `253:${entry.minor}`;
    return path;
  }

  open(path: string): Promise<BlockDevice> {
    const disk = /^\/dev\/(vd[a-z]|loop[0-9]+)$/.exec(path);
    const device = disk?.[1] === undefined ? undefined : this.faults.get(disk[1]);
    if (device !== undefined) return Promise.resolve(shared(device));
    const mapper = /^\/dev\/mapper\/(.+)$/.exec(path);
    const entry = mapper?.[1] === undefined ? undefined : this.dm.get(mapper[1]);
    if (entry !== undefined) return Promise.resolve(shared(entry.md));
    return Promise.reject(new Error(`no such device ${path}`));
  }

  device(name: string): MappedDevice {
    const entry = this.dm.get(name);
    if (entry === undefined) throw new Error(`no dm device ${name}`);
    return entry.md;
  }

  /** The mirror target of a device's live table. */
  mirror(name: string): MirrorSet {
    const target = this.device(name).segments()[0]?.target;
    if (!(target instanceof MirrorSet)) throw new Error(`${name} is not a mirror`);
    return target;
  }

  echo(line: string): void {
    this.transcript.push(line);
  }

  events(name: string): void {
    this.echo(`event_nr(${name})=${this.device(name).eventNr}`);
  }

  /** `run CMD`: echoes the command, its output and a non-zero exit; then settles. */
  async run(command: string): Promise<void> {
    this.echo(`$ ${command}`);
    const { output, exit } = await this.exec(command);
    this.transcript.push(...output);
    if (exit !== 0) this.echo(`[exit ${exit}]`);
    await this.settle();
  }

  /** A command the scenario runs without `run` (not echoed); throws if it fails. */
  async quiet(command: string): Promise<void> {
    const { output, exit } = await this.exec(command);
    if (exit !== 0) throw new Error(`${command} failed: ${output.join('\n')}`);
    await this.settle();
  }

  /** `dd ... &`: starts a dd in the background; waitDd() prints its output and exit status. */
  startDd(command: string): DdHandle {
    const handle: DdHandle = {
      settled: false,
      done: this.exec(command).then(({ output, exit }) => {
        handle.settled = true;
        return [...output, `dd exit status: ${exit}`];
      }),
    };
    return handle;
  }

  async waitDd(handle: DdHandle): Promise<void> {
    this.transcript.push(...(await handle.done));
  }

  /** guest-lib hexdump_dev: the first `lengthBytes` of a disk as xxd prints them, zero runs folded to `*`. */
  async hexdump(disk: string, lengthBytes: number): Promise<void> {
    let zeroRun = 0;
    for (const line of await this.#xxd(disk, lengthBytes)) {
      if (!/ 0000 0000 0000 0000 0000 0000 0000 0000  /.test(line)) {
        zeroRun = 0;
        this.echo(line);
      } else if (zeroRun++ === 0) {
        this.echo(line);
      } else if (zeroRun === 2) {
        this.echo('*');
      }
    }
  }

  /** make-reference's host dump: `xxd -l LEN DISK.img`, nothing folded. */
  async hostDump(disk: string, lengthBytes: number): Promise<string[]> {
    return this.#xxd(disk, lengthBytes);
  }

  /** disklog-resize's poke: overwrites bytes of a disk directly (no page cache to drop here). */
  async poke(disk: string, offsetBytes: number, bytes: Uint8Array): Promise<void> {
    const device = this.disks.get(disk);
    if (device === undefined) throw new Error(`no disk ${disk}`);
    const block = Math.floor(offsetBytes / 512) * 512;
    const data = await device.read(block, 512);
    data.set(bytes, offsetBytes - block);
    await device.write(block, data);
  }

  async #xxd(disk: string, lengthBytes: number): Promise<string[]> {
    const device = this.disks.get(disk);
    if (device === undefined) throw new Error(`no disk ${disk}`);
    const data = await device.read(0, lengthBytes);
    const lines: string[] = [];
    for (let at = 0; at < lengthBytes; at += 16) {
      const row = data.subarray(at, Math.min(at + 16, lengthBytes));
      const groups: string[] = [];
      for (let i = 0; i < row.length; i += 2) groups.push(row.subarray(i, i + 2).toString('hex'));
      const ascii = [...row].map((b) => (b >= 0x20 && b <= 0x7e ? String.fromCharCode(b) : '.')).join('');
      lines.push(`${at.toString(16).padStart(8, '0')}: ${groups.join(' ').padEnd(39, ' ')}  ${ascii}`);
    }
    return lines;
  }

  /** guest-lib gate: a linear device over all of DEV, left suspended. */
  async gate(name: string, path: string): Promise<void> {
    const sectors = (await this.open(path)).sizeBytes / 512;
    await this.quiet(`dmsetup create ${name} --table '0 ${sectors} linear ${path} 0'`);
    await this.quiet(`dmsetup suspend ${name}`);
  }

  /** guest-lib fail_dev: swap a dm device to the error target. */
  async failDev(name: string): Promise<void> {
    const len = this.device(name).sizeBytes / 512;
    await this.quiet(`dmsetup suspend ${name}`);
    await this.quiet(`dmsetup load ${name} --table '0 ${len} error'`);
    await this.quiet(`dmsetup resume ${name}`);
  }

  /** guest-lib wait_sync: until the mirror's sync count equals its region count. */
  async waitSync(name: string, timeoutMs = 10_000): Promise<void> {
    await waitInSync(this.mirror(name), timeoutMs);
    await this.settle();
  }

  /** Waits until every device's status and event counter held still for `quietMs`. */
  async settle(quietMs = 30, timeoutMs = 5000): Promise<void> {
    const snapshot = (): string =>
      [...this.dm.values()].map((e) => `${e.md.status()}|${e.md.eventNr}|${e.md.inFlightCount}`).join(';') + `#${this.kmsg.length}`;
    const deadline = Date.now() + timeoutMs;
    let last = snapshot();
    let stableSince = Date.now();
    while (Date.now() - stableSince < quietMs && Date.now() < deadline) {
      await sleep(3);
      const now = snapshot();
      if (now !== last) {
        last = now;
        stableSince = Date.now();
      }
    }
  }

  /** Removes every dm device (in reverse creation order). */
  async cleanup(): Promise<void> {
    const entries = [...this.dm.entries()].sort((a, b) => b[1].minor - a[1].minor);
    for (const [name, entry] of entries) {
      if (entry.md.suspended) await entry.md.resume().catch(() => undefined);
      await entry.md.close();
      this.dm.delete(name);
    }
  }

  async exec(command: string): Promise<{ output: string[]; exit: number }> {
    const words = shellWords(command);
    if (words[0] === 'dd') return this.#dd(words.slice(1));
    if (words[0] !== 'dmsetup') throw new Error(`cannot emulate ${command}`);
    const verb = words[1];
    const inactive = words.includes('--inactive');
    const noflush = words.includes('--noflush');
    const rest = words.slice(2).filter((w) => w !== '--inactive' && w !== '--noflush');
    const name = rest[0] ?? '';
    const tableIndex = rest.indexOf('--table');
    const file = verb === 'create' && tableIndex < 0 && rest[1] !== undefined ? this.files.get(rest[1]) : undefined;
    const table = tableIndex >= 0 ? rest[tableIndex + 1] : file;
    switch (verb) {
      case 'create': {
        if (this.dm.has(name)) return { output: [`device-mapper: create ioctl on ${name}  failed: Device or resource busy`, 'Command failed.'], exit: 1 };
        const minor = this.#freeMinor();
        const md = new MappedDevice({
          name,
          buildTarget: targetBuilder({
            resolver: { open: (p) => this.open(p), displayName: (p) => this.displayName(p) },
            onMessage: (_device, level, message) => {
              if (level !== 'info') this.kmsg.push(`device-mapper: raid1: ${message}`);
            },
            onLogWarning: (_device, line) => this.kmsg.push(`device-mapper: dirty region log: ${line}`),
          }),
        });
        this.dm.set(name, { md, minor });
        if (table === undefined) return { output: [], exit: 0 };
        const loaded = await this.#load(name, table);
        if (loaded.exit !== 0) {
          this.dm.delete(name);
          await md.close();
          return loaded;
        }
        await md.resume();
        return { output: [], exit: 0 };
      }
      case 'load':
        if (table === undefined) throw new Error('load needs --table');
        return this.#load(name, table);
      case 'status':
        return { output: this.#lines(this.device(name).status({ inactive })), exit: 0 };
      case 'table':
        return { output: this.#lines(this.device(name).table({ inactive })), exit: 0 };
      case 'measure': {
        const md = this.device(name);
        const lines = md.segments().map((s) => {
          const params = s.target instanceof MirrorSet ? s.target.statusMeasure() : '';
          return `${s.line.startSectors} ${s.line.lengthSectors} ${s.target.type} ${params}`;
        });
        return { output: lines, exit: 0 };
      }
      case 'info': {
        const entry = this.dm.get(name);
        if (entry === undefined) return { output: [`Device does not exist.`, 'Command failed.'], exit: 1 };
        const info = entry.md.info();
        return {
          output: [
            `Name:              ${info.name}`,
            `State:             ${info.state}`,
            `Read Ahead:        256`,
            `Tables present:    ${info.tablesPresent}`,
            `Open count:        ${info.openCount}`,
            `Event number:      ${info.eventNr}`,
            `Major, minor:      253, ${entry.minor}`,
            `Number of targets: ${info.targetCount}`,
            '',
          ],
          exit: 0,
        };
      }
      case 'suspend':
        await this.device(name).suspend({ noflush });
        return { output: [], exit: 0 };
      case 'resume':
        await this.device(name).resume();
        return { output: [], exit: 0 };
      case 'deps':
        // Not emulated (the comparison leaves it out); echoed so transcripts stay aligned.
        return { output: [], exit: 0 };
      case 'remove': {
        await this.device(name).remove();
        this.dm.delete(name);
        return { output: [], exit: 0 };
      }
      default:
        throw new Error(`cannot emulate dmsetup ${verb ?? ''}`);
    }
  }

  async #load(name: string, table: string): Promise<{ output: string[]; exit: number }> {
    const entry = this.dm.get(name);
    if (entry === undefined) throw new Error(`no dm device ${name}`);
    try {
      await entry.md.load(table);
      return { output: [], exit: 0 };
    } catch (err) {
      if (!(err instanceof TableError)) throw err;
      const type = /^\s*\d+\s+\d+\s+(\S+)/.exec(table)?.[1] ?? '';
      this.kmsg.push(...kernelTableLogLines(err, { deviceNumber: `253:${entry.minor}`, targetType: type }));
      const reason = err.code === 'ENODEV' ? 'No such device' : err.code === 'ENXIO' ? 'No such device or address' : 'Invalid argument';
      return { output: [`device-mapper: reload ioctl on ${name} (253:${entry.minor}) failed: ${reason}`, 'Command failed.'], exit: 1 };
    }
  }

  async #dd(args: readonly string[]): Promise<{ output: string[]; exit: number }> {
    const opts = new Map<string, string>();
    for (const arg of args) {
      const at = arg.indexOf('=');
      if (at > 0) opts.set(arg.slice(0, at), arg.slice(at + 1));
    }
    const bs = Number(opts.get('bs') ?? '512');
    const count = Number(opts.get('count') ?? '1');
    const input = opts.get('if') ?? '';
    const output = opts.get('of') ?? '';
    try {
      if (output.startsWith('/dev/mapper/')) {
        const md = this.device(output.slice('/dev/mapper/'.length));
        const seek = Number(opts.get('seek') ?? '0');
        await md.write(seek * bs, Buffer.alloc(bs * count));
        if (opts.get('conv') === 'fsync') await md.flush();
        return { output: [`${count}+0 records in`, `${count}+0 records out`], exit: 0 };
      }
      const md = this.device(input.slice('/dev/mapper/'.length));
      const skip = Number(opts.get('skip') ?? '0');
      await md.read(skip * bs, bs * count);
      return { output: [`${count}+0 records in`, `${count}+0 records out`], exit: 0 };
    } catch (err) {
      const target = output.startsWith('/dev/mapper/') ? output : input;
      const code = typeof err === 'object' && err !== null && 'code' in err ? String(err.code) : '';
      if (code !== 'EIO') throw err;
      // A direct write fails in write() itself (busybox dd's "error writing"); a buffered one at fsync.
      if (target === output && opts.get('oflag') === 'direct') {
        return { output: [`dd: error writing '${output}': Input/output error`, `${count}+0 records in`, '0+0 records out'], exit: 1 };
      }
      return { output: [`dd: ${target}: Input/output error`], exit: 1 };
    }
  }

  #lines(text: string): string[] {
    const lines = text.split('\n');
    if (lines.at(-1) === '') lines.pop();
    return lines;
  }

  #freeMinor(): number {
    const used = new Set([...this.dm.values()].map((e) => e.minor));
    let minor = 0;
    while (used.has(minor)) minor++;
    return minor;
  }
}

/** Where the oracle's recorded answers live: ../shared beside the repository (as in CI), or the env. */
export const oracleReferenceDir = process.env['UMIRROR_ORACLE_REFERENCE'] ?? resolve('..', 'shared', 'oracle', 'reference');

/**
 * The text of reference/NAME.out. Locally a checkout without ../shared gets undefined (and a printed
 * reason, so the caller skips); CI always has it, so there a missing file throws.
 */
export function oracleReference(name: string): string | undefined {
  const path = `${oracleReferenceDir}/${name}.out`;
  if (!existsSync(path)) {
    if (process.env['CI'] === 'true') throw new Error(`oracle reference ${path} is missing`);
    console.log(`skipping kernel reference ${name}: ${path} not found`);
    return undefined;
  }
  return readFileSync(path, 'utf8');
}

/** Sections of a reference file: `### title` -> its lines (without the title). */
export function referenceSections(text: string): Map<string, string[]> {
  const sections = new Map<string, string[]>();
  let current: string[] | undefined;
  for (const line of text.split('\n')) {
    if (line.startsWith('### ')) {
      current = [];
      sections.set(line.slice(4), current);
    } else if (line.startsWith('# ')) {
      continue;
    } else if (current !== undefined) {
      current.push(line);
    }
  }
  for (const lines of sections.values()) {
    while (lines.at(-1) === '') lines.pop();
  }
  return sections;
}

/**
 * The lines of a reference section that the emulator reproduces: kmsg lines go; so do commands we do
 * not emulate (md5sum, deps, ...) with their output.
 */
export function comparableLines(lines: readonly string[], skipCommands: readonly RegExp[]): string[] {
  const out: string[] = [];
  let skipping = false;
  for (const line of lines) {
    if (line.startsWith('kmsg: ')) continue;
    if (line.startsWith('$ ')) skipping = skipCommands.some((re) => re.test(line.slice(2)));
    else if (line.startsWith('event_nr(') || line.startsWith('-- ') || line.startsWith('dd exit status')) skipping = false;
    if (!skipping) out.push(line);
  }
  return out;
}

/** The raid1 kernel lines of a section, distinct, in order of first appearance. */
export function raid1Lines(lines: readonly string[]): string[] {
  const out: string[] = [];
  for (const line of lines) {
    const m = /^(?:kmsg: )?(device-mapper: raid1: .*)$/.exec(line);
    if (m?.[1] !== undefined && !out.includes(m[1])) out.push(m[1]);
  }
  return out;
}

/**
 * The text of one of this repository's own oracle recordings, test/scenario/oracle/NAME.out (recorded
 * with test/scenario/oracle/record.sh; unlike oracleReference they are always there).
 */
export function localOracleReference(name: string): string {
  return readFileSync(new URL(`../../../test/scenario/oracle/${name}.out`, import.meta.url), 'utf8');
}
