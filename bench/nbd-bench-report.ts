/**
 * The NBD benchmark's data and its tables, with no I/O: the jobs, the server kinds, the JSON a run
 * writes (`--json FILE`, every sample of every round), medians, the console table, and the README's
 * performance block regenerated from that JSON (nbd-bench-table.ts). Kept pure so that npm test can
 * check it on a fixture (test/unit/bench-report.test.ts) without running fio.
 */

export type ImagesKind = 'sparse' | 'filled';
export const imagesKinds: readonly ImagesKind[] = ['filled', 'sparse'];

export type ServerKind = 'serve-core' | 'serve-disk' | 'daemon-core' | 'daemon-disk' | 'serve-tls' | 'nbdkit' | 'qemu-nbd';
export const serverKinds: readonly ServerKind[] = ['serve-core', 'serve-disk', 'daemon-core', 'daemon-disk', 'serve-tls', 'nbdkit', 'qemu-nbd'];

/** How the README names each server. */
export const serverLabels: Readonly<Record<ServerKind, string>> = {
  'serve-core': '`umirror serve`, core log',
  'serve-disk': '`umirror serve`, disk log',
  'daemon-core': '`umirror daemon` + `create`, core log',
  'daemon-disk': '`umirror daemon` + `create`, disk log',
  'serve-tls': '`umirror serve`, core log, TLS',
  nbdkit: '`nbdkit file`',
  'qemu-nbd': 'qemu-nbd',
};

/** The umirror paths the goal applies to (issue 12): every CLI path with its default options, in plaintext. */
export function hasGoal(kind: ServerKind): boolean {
  return kind === 'serve-core' || kind === 'serve-disk' || kind === 'daemon-core' || kind === 'daemon-disk';
}

export interface Job {
  readonly name: string;
  readonly rw: 'read' | 'write' | 'randread' | 'randwrite';
  readonly bs: '1M' | '4k';
  readonly iodepth: number;
  /** throughput: ratio of IOPS to qemu-nbd's, goal >= 1.0; latency: ratio of fio's clat p50 and p99, goal <= 1.2. */
  readonly kind: 'throughput' | 'latency';
}

export const jobs: readonly Job[] = [
  { name: 'seq read 1M', rw: 'read', bs: '1M', iodepth: 16, kind: 'throughput' },
  { name: 'seq write 1M', rw: 'write', bs: '1M', iodepth: 16, kind: 'throughput' },
  { name: 'rand read 4k', rw: 'randread', bs: '4k', iodepth: 16, kind: 'throughput' },
  { name: 'rand write 4k', rw: 'randwrite', bs: '4k', iodepth: 16, kind: 'throughput' },
  { name: 'QD1 read 4k', rw: 'randread', bs: '4k', iodepth: 1, kind: 'latency' },
  { name: 'QD1 write 4k', rw: 'randwrite', bs: '4k', iodepth: 1, kind: 'latency' },
];

export const throughputGoal = 1.0;
export const latencyGoal = 1.2;
export const resyncGoal = 0.95;

/** One fio run of one job against one server. */
export interface Sample {
  readonly round: number;
  readonly server: ServerKind;
  readonly job: string;
  readonly mibPerSecond: number;
  readonly iops: number;
  /** fio's completion latency percentiles, microseconds. */
  readonly clatP50Us: number;
  readonly clatP99Us: number;
}

/** One round of the resync job: an idle mirror resyncing every region vs `dd conv=fdatasync` of the same bytes. */
export interface ResyncSample {
  readonly round: number;
  readonly umirrorMiBps: number;
  readonly ddMiBps: number;
}

export interface Machine {
  readonly nproc: number;
  readonly cpu: string;
  readonly kernel: string;
  readonly node: string;
  readonly fio: string;
}

export interface BenchReport {
  readonly version: 1;
  /** ISO 8601 time the run started. */
  readonly date: string;
  readonly machine: Machine;
  readonly options: {
    readonly sizeBytes: number;
    readonly runtimeSeconds: number;
    readonly rounds: number;
    readonly images: ImagesKind;
    readonly servers: readonly ServerKind[];
  };
  readonly samples: readonly Sample[];
  readonly resync: readonly ResyncSample[];
}

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  if (sorted.length === 0) throw new RangeError('median of no values');
  const middle = sorted.length >> 1;
  const upper = sorted[middle] ?? 0;
  return sorted.length % 2 === 1 ? upper : ((sorted[middle - 1] ?? 0) + upper) / 2;
}

/** The median of each figure over the rounds of one server and job (each figure its own median). */
export interface Summary {
  readonly mibPerSecond: number;
  readonly iops: number;
  readonly clatP50Us: number;
  readonly clatP99Us: number;
  readonly rounds: number;
}

export function summarize(report: BenchReport, server: ServerKind, job: string): Summary | undefined {
  const mine = report.samples.filter((s) => s.server === server && s.job === job);
  if (mine.length === 0) return undefined;
  return {
    mibPerSecond: median(mine.map((s) => s.mibPerSecond)),
    iops: median(mine.map((s) => s.iops)),
    clatP50Us: median(mine.map((s) => s.clatP50Us)),
    clatP99Us: median(mine.map((s) => s.clatP99Us)),
    rounds: mine.length,
  };
}

/** Ratios to qemu-nbd: IOPS for throughput jobs (higher is better), latency for QD1 jobs (lower is better). */
export interface Ratio {
  readonly throughput?: number;
  readonly p50?: number;
  readonly p99?: number;
}

export function ratioToQemu(report: BenchReport, server: ServerKind, job: Job): Ratio | undefined {
  const mine = summarize(report, server, job.name);
  const base = summarize(report, 'qemu-nbd', job.name);
  if (mine === undefined || base === undefined) return undefined;
  if (job.kind === 'throughput') return base.iops > 0 ? { throughput: mine.iops / base.iops } : undefined;
  if (base.clatP50Us <= 0 || base.clatP99Us <= 0) return undefined;
  return { p50: mine.clatP50Us / base.clatP50Us, p99: mine.clatP99Us / base.clatP99Us };
}

/** `1.23×`, bold when `miss` says the shown (rounded) figure misses its goal. */
function times(value: number, miss: (shown: number) => boolean): string {
  const shown = Number(value.toFixed(2));
  const text = `${shown.toFixed(2)}×`;
  return miss(shown) ? `**${text}**` : text;
}

/** A cell of the README table: the ratio(s), bold where a path with a goal misses it. */
function ratioCell(report: BenchReport, server: ServerKind, job: Job): string {
  const ratio = ratioToQemu(report, server, job);
  if (ratio === undefined) return '-';
  const goal = hasGoal(server);
  if (ratio.throughput !== undefined) return times(ratio.throughput, (shown) => goal && shown < throughputGoal);
  const slower = (shown: number): boolean => goal && shown > latencyGoal;
  return `${times(ratio.p50 ?? 0, slower)} / ${times(ratio.p99 ?? 0, slower)}`;
}

/** A cell of qemu-nbd's row: its own figures, for scale. */
function scaleCell(summary: Summary | undefined, job: Job): string {
  if (summary === undefined) return '-';
  if (job.kind === 'latency') return `${summary.clatP50Us.toFixed(0)} / ${summary.clatP99Us.toFixed(0)} µs`;
  if (job.bs === '1M') return `${summary.mibPerSecond.toFixed(0)} MiB/s`;
  return `${(summary.iops / 1000).toFixed(1)}k IOPS`;
}

function jobHeader(job: Job): string {
  return job.kind === 'latency' ? `${job.name} p50 / p99` : `${job.name}${job.iodepth === 1 ? '' : ` QD${job.iodepth}`}`;
}

/** "2026-12-01" from the report's ISO date. */
function day(report: BenchReport): string {
  return report.date.slice(0, 10);
}

export function machineLine(machine: Machine): string {
  return `nproc ${machine.nproc}, ${machine.cpu}, Linux ${machine.kernel}, Node ${machine.node}, ${machine.fio}`;
}

/** The resync sentence, or undefined when the run had no resync job. */
export function resyncLine(report: BenchReport): string | undefined {
  if (report.resync.length === 0) return undefined;
  const umirror = median(report.resync.map((r) => r.umirrorMiBps));
  const dd = median(report.resync.map((r) => r.ddMiBps));
  // Each pair ran back to back: its ratio is the fair one when the disk's speed drifts between pairs.
  const ratio = median(report.resync.map((r) => (r.ddMiBps > 0 ? r.umirrorMiBps / r.ddMiBps : 0)));
  return (
    `Resync of an idle mirror (\`umirror daemon\`, disk log, every region out of sync, ${report.options.sizeBytes / 2 ** 20} MiB, ` +
    `until removed, so flushed): ${umirror.toFixed(0)} MiB/s against ${dd.toFixed(0)} MiB/s for \`dd bs=1M conv=notrunc,fdatasync\` ` +
    `of the same bytes (medians of ${report.resync.length} pairs run back to back); median ratio of the pairs ` +
    `${times(ratio, (shown) => shown < resyncGoal)} (goal ≥ ${resyncGoal}×).`
  );
}

/** The README's performance table (markdown), with the date and the machine. */
export function readmeTable(report: BenchReport): string {
  const servers = report.options.servers.filter((s) => s !== 'qemu-nbd');
  const shown = jobs.filter((job) => report.samples.some((s) => s.job === job.name));
  const o = report.options;
  const lines = [
    `Measured ${day(report)} on ${machineLine(report.machine)}; fio's nbd engine, ${o.sizeBytes / 2 ** 20} MiB ${o.images} images, ` +
      `${o.runtimeSeconds} s per job after a 1 s ramp, ${o.rounds === 1 ? 'one round' : `${o.rounds} interleaved rounds, medians`}. ` +
      `Ratios to qemu-nbd serving one leg's file: throughput for the QD16 jobs (goal ≥ ${throughputGoal.toFixed(1)}×), ` +
      `completion latency p50 / p99 at QD1 (goal ≤ ${latencyGoal.toFixed(1)}×); ` +
      '**bold** misses the goal.',
    '',
    `| path | ${shown.map(jobHeader).join(' | ')} |`,
    `| --- |${shown.map(() => ' --- |').join('')}`,
    ...servers.map((server) => `| ${serverLabels[server]} | ${shown.map((job) => ratioCell(report, server, job)).join(' | ')} |`),
  ];
  if (report.options.servers.includes('qemu-nbd')) {
    lines.push(`| qemu-nbd, for scale | ${shown.map((job) => scaleCell(summarize(report, 'qemu-nbd', job.name), job)).join(' | ')} |`);
  }
  const resync = resyncLine(report);
  if (resync !== undefined) lines.push('', resync);
  return lines.join('\n');
}

export const readmeBegin = '<!-- bench:nbd:begin (generated by `npm run bench:table -- FILE.json --readme README.md`) -->';
export const readmeEnd = '<!-- bench:nbd:end -->';

/** Replaces the generated block of a README with `block`. */
export function replaceReadmeBlock(readme: string, block: string): string {
  const begin = readme.indexOf(readmeBegin);
  const end = readme.indexOf(readmeEnd);
  if (begin < 0 || end < begin) throw new RangeError(`the README has no "${readmeBegin}" ... "${readmeEnd}" block`);
  return `${readme.slice(0, begin + readmeBegin.length)}\n${block}\n${readme.slice(end)}`;
}

function pad(text: string, width: number): string {
  return text.padStart(width);
}

/** The console table: every server's medians and ratios to qemu-nbd, and the TLS cost against serve-core. */
export function consoleTable(report: BenchReport): string {
  const servers = report.options.servers;
  const out = [`\n${'job'.padEnd(18)} ${servers.map((s) => pad(s, 24)).join(' ')}`];
  out.push(`${''.padEnd(18)} ${servers.map(() => pad('value     vs qemu', 24)).join(' ')}`);
  for (const job of jobs) {
    if (!report.samples.some((s) => s.job === job.name)) continue;
    const cells = servers.map((server) => {
      const summary = summarize(report, server, job.name);
      if (summary === undefined) return pad('-', 24);
      const ratio = ratioToQemu(report, server, job);
      if (job.kind === 'latency') {
        const r = ratio?.p50 === undefined ? '' : `${ratio.p50.toFixed(2)}/${(ratio.p99 ?? 0).toFixed(2)}x`;
        return pad(`${summary.clatP50Us.toFixed(0)}/${summary.clatP99Us.toFixed(0)}us ${r}`, 24);
      }
      const value = job.bs === '1M' ? `${summary.mibPerSecond.toFixed(0)} MiB/s` : `${summary.iops.toFixed(0)} IOPS`;
      const miss = hasGoal(server) && ratio?.throughput !== undefined && ratio.throughput < throughputGoal ? '!' : ' ';
      return pad(`${value} ${ratio?.throughput === undefined ? '' : `${ratio.throughput.toFixed(2)}x`}${miss}`, 24);
    });
    out.push([jobHeader(job).padEnd(18), ...cells].join(' '));
  }
  out.push(`\nmedians of ${report.options.rounds} round(s); QD1: clat p50/p99 and their ratios; ! = below ${throughputGoal}x qemu-nbd`);
  const tlsRows = jobs.flatMap((job) => {
    const [plain, tls] = [summarize(report, 'serve-core', job.name), summarize(report, 'serve-tls', job.name)];
    if (plain === undefined || tls === undefined || plain.iops === 0 || job.kind === 'latency') return [];
    return [`  ${job.name.padEnd(14)} ${pad(tls.mibPerSecond.toFixed(1), 8)} vs ${pad(plain.mibPerSecond.toFixed(1), 8)} MiB/s  ${(tls.iops / plain.iops).toFixed(2)}x`];
  });
  if (tlsRows.length > 0) out.push('\nTLS cost (serve-tls: TLS 1.3 AES-128-GCM, vs serve-core in plaintext):', ...tlsRows);
  const resync = resyncLine(report);
  if (resync !== undefined) out.push('', resync.replaceAll('`', '').replaceAll('**', ''));
  return out.join('\n');
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isServerKind(value: unknown): value is ServerKind {
  return typeof value === 'string' && (serverKinds as readonly string[]).includes(value);
}

/**
 * Decode boundary: a `--json` file read back. Checks what the tables use and returns it typed.
 * @throws RangeError naming the first field that is not what a bench run writes.
 */
export function parseBenchReport(text: string): BenchReport {
  const value: unknown = JSON.parse(text);
  const bad = (what: string): never => {
    throw new RangeError(`not a bench:nbd report: ${what}`);
  };
  if (!isRecord(value) || value['version'] !== 1) return bad('version is not 1');
  const { date, machine, options, samples, resync } = value;
  if (typeof date !== 'string' || Number.isNaN(Date.parse(date))) return bad('date');
  if (!isRecord(machine) || typeof machine['nproc'] !== 'number' || !['cpu', 'kernel', 'node', 'fio'].every((k) => typeof machine[k] === 'string')) return bad('machine');
  if (!isRecord(options) || !Array.isArray(options['servers']) || !options['servers'].every(isServerKind)) return bad('options.servers');
  if (!['sizeBytes', 'runtimeSeconds', 'rounds'].every((k) => typeof options[k] === 'number')) return bad('options');
  if (options['images'] !== 'sparse' && options['images'] !== 'filled') return bad('options.images');
  const numbers = (record: Record<string, unknown>, keys: readonly string[]): boolean => keys.every((k) => typeof record[k] === 'number' && Number.isFinite(record[k]));
  if (!Array.isArray(samples)) return bad('samples');
  for (const s of samples as unknown[]) {
    if (!isRecord(s) || !isServerKind(s['server']) || typeof s['job'] !== 'string' || !numbers(s, ['round', 'mibPerSecond', 'iops', 'clatP50Us', 'clatP99Us'])) {
      return bad(`sample ${JSON.stringify(s)}`);
    }
  }
  if (!Array.isArray(resync) || !(resync as unknown[]).every((r) => isRecord(r) && numbers(r, ['round', 'umirrorMiBps', 'ddMiBps']))) return bad('resync');
  return value as unknown as BenchReport;
}
