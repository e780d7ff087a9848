/**
 * One fio run (nbd engine, libnbd) of one benchmark job against one NBD URI, and the figures taken from
 * fio's JSON report: bandwidth, IOPS and the completion latency (clat) p50 and p99.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { Job } from './nbd-bench-report.js';

const execFileAsync = promisify(execFile);
const MiB = 2 ** 20;

export interface FioFigures {
  readonly mibPerSecond: number;
  readonly iops: number;
  readonly clatP50Us: number;
  readonly clatP99Us: number;
}

interface FioSide {
  readonly bw_bytes: number;
  readonly iops: number;
  readonly clat_ns?: { readonly percentile?: Readonly<Record<string, number>> };
}

/** The figures of fio's `--output-format=json` report (text before the JSON, fio's warnings, is skipped). */
export function parseFioReport(stdout: string, job: Job): FioFigures {
  const report = JSON.parse(stdout.slice(stdout.indexOf('{'))) as { jobs?: { error: number; read: FioSide; write: FioSide }[] };
  const first = report.jobs?.[0];
  if (first === undefined || first.error !== 0) throw new Error(`fio ${job.name} failed: ${stdout.slice(0, 2000)}`);
  const side = job.rw.endsWith('read') ? first.read : first.write;
  const percentile = side.clat_ns?.percentile ?? {};
  const at = (key: string): number => {
    const ns = percentile[key];
    if (typeof ns !== 'number') throw new Error(`fio ${job.name}: no clat percentile ${key} in its report`);
    return ns / 1000;
  };
  return { mibPerSecond: side.bw_bytes / MiB, iops: side.iops, clatP50Us: at('50.000000'), clatP99Us: at('99.000000') };
}

export async function runFio(uri: string, job: Job, options: { sizeBytes: number; runtimeSeconds: number; env: NodeJS.ProcessEnv }): Promise<FioFigures> {
  const args = [
    `--name=${job.rw}`,
    '--ioengine=nbd',
    `--uri=${uri}`,
    `--rw=${job.rw}`,
    `--bs=${job.bs}`,
    `--iodepth=${job.iodepth}`,
    `--size=${options.sizeBytes}`,
    `--runtime=${options.runtimeSeconds}`,
    '--time_based',
    '--ramp_time=1',
    '--randrepeat=0',
    '--output-format=json',
  ];
  const { stdout } = await execFileAsync('fio', args, { maxBuffer: 16 * MiB, timeout: (options.runtimeSeconds + 120) * 1000, env: options.env });
  return parseFioReport(stdout, job);
}

export async function fioVersion(): Promise<string> {
  const { stdout } = await execFileAsync('fio', ['--version']);
  return stdout.trim();
}
