/**
 * NBD benchmark (issue 12): fio's nbd engine (libnbd) against every umirror CLI path with its default
 * options (`umirror serve` and `umirror daemon` + `create`, each with a core and a disk log; serve with
 * TLS for its cost) and, in the same run on the same kind of files, `nbdkit file` and `qemu-nbd` serving
 * one leg. Jobs: sequential 1 MiB read and write and random 4 KiB read and write at queue depth 16, and
 * random 4 KiB read and write at queue depth 1 for latency (fio's clat p50 and p99). Then the resync job:
 * an idle mirror's resync against `dd conv=fdatasync` of the same bytes (nbd-bench-resync.ts).
 *
 *   npm run bench:nbd                                    1 GiB filled images, 10 s per job, 3 rounds
 *   npm run bench:nbd -- --quick                         256 MiB, 3 s per job, 1 round
 *   npm run bench:nbd -- --rounds 3 --runtime 5 --images filled --json bench.json
 *   npm run bench:table -- bench.json --readme README.md (regenerates the README's table)
 *
 * Options: nbd-bench-args.ts. All servers run at once (idle but for their turn) and each job interleaves
 * them, round after round, so a change of background load hits every server alike; the tables show the
 * median of the rounds (nbd-bench-report.ts). Images live under bench/.data (git-ignored): the legs of
 * a filled run hold random data (made once, reused while their size matches), each umirror server has
 * its own copies (umirror locks its images), and every disk log is fresh each run. A sparse run makes
 * every image sparse and punches its blocks out before each job.
 */
import { execFile } from 'node:child_process';
import { copyFile, mkdir, stat, truncate, writeFile } from 'node:fs/promises';
import { availableParallelism, cpus, release } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { parseBenchArgs, type BenchOptions } from './nbd-bench-args.js';
import { fioVersion, runFio } from './nbd-bench-fio.js';
import { consoleTable, type BenchReport, type Machine, type ResyncSample, type Sample, type ServerKind } from './nbd-bench-report.js';
import { startResyncBench, type ResyncBench } from './nbd-bench-resync.js';
import { dataFilesOf, isUmirror, startServer, type BenchImages, type BenchServer } from './nbd-bench-servers.js';

const execFileAsync = promisify(execFile);
const MiB = 2 ** 20;

async function sizeOf(path: string): Promise<{ bytes: number; allocated: number }> {
  return stat(path).then(
    (s) => ({ bytes: s.size, allocated: s.blocks * 512 }),
    () => ({ bytes: -1, allocated: -1 }),
  );
}

async function punch(path: string, sizeBytes: number): Promise<void> {
  await execFileAsync('fallocate', ['--punch-hole', '--offset', '0', '--length', String(sizeBytes), path]);
}

/** A file of `sizeBytes` holding `source`'s bytes (filled), or all holes (sparse); reused when it already is one. */
async function prepareImage(path: string, options: { sizeBytes: number; images: BenchOptions['images']; source: string }): Promise<void> {
  const { bytes, allocated } = await sizeOf(path);
  if (options.images === 'sparse') {
    if (bytes !== options.sizeBytes) {
      await writeFile(path, '');
      await truncate(path, options.sizeBytes);
    }
    await punch(path, options.sizeBytes);
    return;
  }
  if (bytes === options.sizeBytes && allocated >= options.sizeBytes) return;
  await copyFile(options.source, path);
}

/**
 * The random-data source (made once per size), the reference file, each umirror server's legs and a
 * fresh zeroed disk log each (the tables say nosync), and the resync job's two files.
 */
async function prepareImages(options: BenchOptions): Promise<BenchImages & { resyncSource: string; resyncTarget: string }> {
  const { data: dataDir, sizeBytes } = options;
  await mkdir(dataDir, { recursive: true });
  const source = join(dataDir, 'random.img');
  const current = await sizeOf(source);
  if (current.bytes !== sizeBytes || current.allocated < sizeBytes) {
    console.log(`filling ${source} with ${sizeBytes / MiB} MiB of random data ...`);
    await execFileAsync('dd', ['if=/dev/urandom', `of=${source}`, 'bs=1M', `count=${sizeBytes / MiB}`, 'conv=fsync', 'status=none']);
  }
  const each = { sizeBytes, images: options.images, source };
  const referencePath = join(dataDir, 'reference.img');
  if (options.servers.includes('qemu-nbd') || options.servers.includes('nbdkit')) await prepareImage(referencePath, each);
  const umirror = new Map<ServerKind, { legs: readonly [string, string]; log: string }>();
  for (const kind of options.servers.filter(isUmirror)) {
    const legs = [join(dataDir, `${kind}-leg0.img`), join(dataDir, `${kind}-leg1.img`)] as const;
    for (const leg of legs) await prepareImage(leg, each);
    const log = join(dataDir, `${kind}-log.img`);
    await writeFile(log, '');
    await truncate(log, MiB);
    umirror.set(kind, { legs, log });
  }
  const resyncTarget = join(dataDir, 'resync-leg1.img');
  if (options.resync) await prepareImage(resyncTarget, each);
  return { dataDir, referencePath, umirror, sizeBytes, resyncSource: source, resyncTarget };
}

async function machine(): Promise<Machine> {
  return { nproc: availableParallelism(), cpu: cpus()[0]?.model ?? 'unknown CPU', kernel: release(), node: process.version, fio: await fioVersion() };
}

async function main(): Promise<void> {
  const options = parseBenchArgs(process.argv.slice(2), { data: fileURLToPath(new URL('../../bench/.data', import.meta.url)) });
  const date = new Date().toISOString();
  const images = await prepareImages(options);
  const { sizeBytes, runtimeSeconds, rounds } = options;
  console.log(
    `fio nbd engine, ${sizeBytes / MiB} MiB ${options.images} images, ${runtimeSeconds} s per job, ${rounds} round(s), ` +
      `servers: ${options.servers.join(', ')}${options.resync ? ', and the resync job' : ''}`,
  );
  const samples: Sample[] = [];
  const resync: ResyncSample[] = [];
  const running: BenchServer[] = [];
  let resyncBench: ResyncBench | undefined;
  try {
    if (options.jobs.length > 0) for (const kind of options.servers) running.push(await startServer(kind, images));
    if (options.resync) {
      resyncBench = await startResyncBench({ dataDir: options.data, source: images.resyncSource, target: images.resyncTarget, sizeBytes, images: options.images });
    }
    for (let round = 1; round <= rounds; round++) {
      for (const job of options.jobs) {
        for (const server of running) {
          if (options.images === 'sparse') for (const file of dataFilesOf(server.kind, images)) await punch(file, sizeBytes);
          const figures = await runFio(server.uri, job, { sizeBytes, runtimeSeconds, env: server.env });
          samples.push({ round, server: server.kind, job: job.name, ...figures });
          const value = job.kind === 'latency' ? `p50 ${figures.clatP50Us.toFixed(0)} us, p99 ${figures.clatP99Us.toFixed(0)} us` : `${figures.mibPerSecond.toFixed(1)} MiB/s ${figures.iops.toFixed(0)} IOPS`;
          console.log(`round ${round} ${server.kind.padEnd(12)} ${job.name.padEnd(14)} ${value}`);
        }
      }
      // Two resync pairs a round, dd first in one and the mirror first in the other.
      for (let pair = 0; resyncBench !== undefined && pair < 2; pair++) {
        let ddMiBps: number;
        let umirrorMiBps: number;
        await resyncBench.warm();
        if (pair === 0) {
          ddMiBps = await resyncBench.dd();
          umirrorMiBps = await resyncBench.umirror();
        } else {
          umirrorMiBps = await resyncBench.umirror();
          ddMiBps = await resyncBench.dd();
        }
        resync.push({ round, umirrorMiBps, ddMiBps });
        console.log(`round ${round} resync: umirror ${umirrorMiBps.toFixed(0)} MiB/s, dd conv=fdatasync ${ddMiBps.toFixed(0)} MiB/s (${(umirrorMiBps / ddMiBps).toFixed(2)}x)`);
      }
    }
  } finally {
    await resyncBench?.stop();
    for (const server of running) await server.stop();
  }
  const report: BenchReport = {
    version: 1,
    date,
    machine: await machine(),
    options: { sizeBytes, runtimeSeconds, rounds, images: options.images, servers: options.servers },
    samples,
    resync,
  };
  console.log(consoleTable(report));
  if (options.json !== undefined) {
    await writeFile(options.json, `${JSON.stringify(report, null, 1)}\n`);
    console.log(`\nwrote ${options.json} (README table: npm run bench:table -- ${options.json} --readme README.md)`);
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
