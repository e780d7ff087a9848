/**
 * NBD throughput: fio's nbd engine (libnbd) against `umirror serve` (two legs; core log, disk log, and
 * core log over TLS) and, in the same run on the same files, against `nbdkit file`
 * and `qemu-nbd` serving one leg. The TLS cost is printed as umirror-tls against umirror-core. Four jobs
 * at queue depth 16: sequential 1 MiB read and write, random 4 KiB read and write. Prints MiB/s and IOPS
 * per server and the ratio to qemu-nbd (targets: seq read, seq write, rand read >= 1.0x; rand write
 * >= 0.75x). A mirror writes every byte twice (two legs) while the references write once.
 *
 *   npm run bench:nbd                       1 GiB images, 10 s per job
 *   npm run bench:nbd -- --quick            256 MiB images, 3 s per job
 *   npm run bench:nbd -- --size 2G --runtime 20 --rounds 3 --servers umirror-disk,qemu-nbd
 *
 * All servers run at once and each job interleaves them, round after round (--rounds, default 1), so
 * background load on a shared machine hits every server alike; the table shows the median round.
 *
 * Images live under bench/.data (git-ignored) and are reused when their size matches; they are filled
 * with random data once, so reads never hit holes.
 */
import { execFile } from 'node:child_process';
import { copyFile, mkdir, stat, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs, promisify } from 'node:util';
import { parseSize } from '../src/control/images.js';
import { type BenchImages, type BenchServer, type ServerKind, serverKinds, startServer } from './nbd-bench-servers.js';

const execFileAsync = promisify(execFile);
const MiB = 2 ** 20;

interface Job {
  readonly name: string;
  readonly rw: 'read' | 'write' | 'randread' | 'randwrite';
  readonly bs: string;
  /** Ratio to qemu-nbd this job should reach. */
  readonly targetRatio: number;
}

const jobs: readonly Job[] = [
  { name: 'seq write 1M', rw: 'write', bs: '1M', targetRatio: 1.0 },
  { name: 'seq read 1M', rw: 'read', bs: '1M', targetRatio: 1.0 },
  { name: 'rand write 4k', rw: 'randwrite', bs: '4k', targetRatio: 0.75 },
  { name: 'rand read 4k', rw: 'randread', bs: '4k', targetRatio: 1.0 },
];
const iodepth = 16;

interface Result {
  readonly mibPerSecond: number;
  readonly iops: number;
}

async function runFio(uri: string, job: Job, options: { sizeBytes: number; runtimeSeconds: number; env: NodeJS.ProcessEnv }): Promise<Result> {
  const args = [
    `--name=${job.rw}`,
    '--ioengine=nbd',
    `--uri=${uri}`,
    `--rw=${job.rw}`,
    `--bs=${job.bs}`,
    `--iodepth=${iodepth}`,
    `--size=${options.sizeBytes}`,
    `--runtime=${options.runtimeSeconds}`,
    '--time_based',
    '--ramp_time=1',
    '--randrepeat=0',
    '--output-format=json',
  ];
  const { stdout } = await execFileAsync('fio', args, { maxBuffer: 16 * MiB, timeout: (options.runtimeSeconds + 120) * 1000, env: options.env });
  const report = JSON.parse(stdout.slice(stdout.indexOf('{'))) as { jobs: { error: number; read: FioSide; write: FioSide }[] };
  const first = report.jobs[0];
  if (first === undefined || first.error !== 0) throw new Error(`fio ${job.name} against ${uri} failed: ${stdout}`);
  const side = job.rw.endsWith('read') ? first.read : first.write;
  return { mibPerSecond: side.bw_bytes / MiB, iops: side.iops };
}

interface FioSide {
  readonly bw_bytes: number;
  readonly iops: number;
}

/**
 * Two legs and a log under bench/.data, filled with the same random bytes (reused when sizes match), and
 * a copy of the legs for each umirror server (image locks: see BenchImages).
 */
async function prepareImages(dataDir: string, sizeBytes: number, servers: readonly ServerKind[]): Promise<BenchImages> {
  await mkdir(dataDir, { recursive: true });
  const legPaths = [join(dataDir, 'leg0.img'), join(dataDir, 'leg1.img')] as const;
  const logPath = join(dataDir, 'log.img');
  const sizeOf = (path: string): Promise<number> => stat(path).then((s) => s.size, () => -1);
  const sizes = await Promise.all(legPaths.map(sizeOf));
  const refill = sizes.some((size) => size !== sizeBytes);
  if (refill) {
    console.log(`filling ${legPaths[0]} with ${sizeBytes / MiB} MiB of random data ...`);
    await execFileAsync('dd', ['if=/dev/urandom', `of=${legPaths[0]}`, 'bs=1M', `count=${sizeBytes / MiB}`, 'conv=fsync', 'status=none']);
    await copyFile(legPaths[0], legPaths[1]);
  }
  const umirrorLegPaths = new Map<ServerKind, readonly [string, string]>();
  for (const kind of servers.filter((k) => k.startsWith('umirror'))) {
    const copies = [join(dataDir, `${kind}-leg0.img`), join(dataDir, `${kind}-leg1.img`)] as const;
    for (const copy of copies) if (refill || (await sizeOf(copy)) !== sizeBytes) await copyFile(legPaths[0], copy);
    umirrorLegPaths.set(kind, copies);
  }
  // A fresh (zeroed) disk log every run; the table says nosync.
  await writeFile(logPath, '');
  await truncate(logPath, MiB);
  return { dataDir, legPaths, umirrorLegPaths, logPath, sizeBytes };
}

/** The sample with the median IOPS (the upper one of an even count). */
function median(samples: readonly Result[]): Result {
  const sorted = [...samples].sort((a, b) => a.iops - b.iops);
  const middle = sorted[Math.floor(sorted.length / 2)];
  if (middle === undefined) throw new RangeError('no samples');
  return middle;
}

function pad(text: string, width: number): string {
  return text.padStart(width);
}

function printTable(results: Map<ServerKind, Map<string, Result>>, servers: readonly ServerKind[]): void {
  const reference = results.get('qemu-nbd');
  const header = ['job'.padEnd(14), ...servers.map((s) => pad(s, 26))].join(' ');
  console.log(`\n${header}`);
  console.log(`${''.padEnd(14)} ${servers.map(() => pad('MiB/s     IOPS   vs qemu', 26)).join(' ')}`);
  for (const job of jobs) {
    const cells = servers.map((server) => {
      const result = results.get(server)?.get(job.name);
      if (result === undefined) return pad('-', 26);
      const base = reference?.get(job.name);
      const ratio = base === undefined || base.iops === 0 ? '' : `${(result.iops / base.iops).toFixed(2)}x`;
      const miss = server.startsWith('umirror') && base !== undefined && result.iops / base.iops < job.targetRatio ? '!' : ' ';
      return `${pad(result.mibPerSecond.toFixed(1), 8)} ${pad(result.iops.toFixed(0), 8)} ${pad(ratio, 7)}${miss}`;
    });
    console.log([job.name.padEnd(14), ...cells].join(' '));
  }
  console.log(`\nqueue depth ${iodepth}; targets vs qemu-nbd: ${jobs.map((j) => `${j.name} >= ${j.targetRatio}x`).join(', ')}; ! = below target`);
  const plain = results.get('umirror-core');
  const tls = results.get('umirror-tls');
  if (plain === undefined || tls === undefined) return;
  console.log('\nTLS cost (umirror-tls: TLS 1.3 AES-128-GCM, the data path of PSK and certificates alike; vs umirror-core in plaintext):');
  for (const job of jobs) {
    const [a, b] = [plain.get(job.name), tls.get(job.name)];
    if (a === undefined || b === undefined || a.iops === 0) continue;
    console.log(`  ${job.name.padEnd(14)} ${pad(b.mibPerSecond.toFixed(1), 8)} vs ${pad(a.mibPerSecond.toFixed(1), 8)} MiB/s  ${(b.iops / a.iops).toFixed(2)}x`);
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      size: { type: 'string' },
      runtime: { type: 'string' },
      quick: { type: 'boolean', default: false },
      rounds: { type: 'string', default: '1' },
      servers: { type: 'string', default: serverKinds.join(',') },
      data: { type: 'string', default: fileURLToPath(new URL('../../bench/.data', import.meta.url)) },
    },
  });
  const sizeBytes = parseSize(values.size ?? (values.quick ? '256M' : '1G'));
  const runtimeSeconds = Number(values.runtime ?? (values.quick ? 3 : 10));
  const rounds = Number(values.rounds);
  if (!Number.isInteger(rounds) || rounds < 1) throw new RangeError('--rounds must be a whole number >= 1');
  if (sizeBytes % MiB !== 0) throw new RangeError('--size must be a multiple of 1 MiB');
  if (!Number.isInteger(runtimeSeconds) || runtimeSeconds < 1) throw new RangeError('--runtime must be whole seconds >= 1');
  const servers = values.servers.split(',').map((name) => {
    const kind = serverKinds.find((k) => k === name);
    if (kind === undefined) throw new RangeError(`unknown server "${name}" (${serverKinds.join(', ')})`);
    return kind;
  });
  const images = await prepareImages(values.data, sizeBytes, servers);
  console.log(`fio nbd engine, ${sizeBytes / MiB} MiB images, ${runtimeSeconds} s per job, ${rounds} round(s), servers: ${servers.join(', ')}`);
  const results = new Map<ServerKind, Map<string, Result>>(servers.map((kind) => [kind, new Map<string, Result>()]));
  // Every server runs at once (idle but for its turn) and the jobs interleave the servers, round after
  // round, so a change in background load hits every server alike; the table shows each median.
  const running: BenchServer[] = [];
  try {
    for (const kind of servers) running.push(await startServer(kind, images));
    const samples = new Map<string, Result[]>();
    for (let round = 1; round <= rounds; round++) {
      for (const job of jobs) {
        for (const server of running) {
          const result = await runFio(server.uri, job, { sizeBytes, runtimeSeconds, env: server.env });
          const key = `${server.kind} ${job.name}`;
          samples.set(key, [...(samples.get(key) ?? []), result]);
          results.get(server.kind)?.set(job.name, median(samples.get(key) ?? []));
          console.log(`round ${round} ${server.kind.padEnd(13)} ${job.name.padEnd(14)} ${result.mibPerSecond.toFixed(1).padStart(8)} MiB/s ${result.iops.toFixed(0).padStart(8)} IOPS`);
        }
      }
    }
  } finally {
    for (const server of running) await server.stop();
  }
  printTable(results, servers);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
