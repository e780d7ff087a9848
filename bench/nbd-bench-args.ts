/**
 * The NBD benchmark's command line (pure, checked by test/unit/bench-report.test.ts):
 *
 *   --size SIZE        image size (default 1G; --quick 256M), a multiple of 1 MiB
 *   --runtime S        seconds per fio job after a 1 s ramp (default 10; --quick 3)
 *   --rounds N         interleaved rounds; the tables show medians (default 3; --quick 1)
 *   --images KIND      filled: legs pre-allocated with random data (default); sparse: every image's
 *                      blocks are punched out before each job, so reads hit holes and writes allocate
 *   --servers A,B      server kinds (default all; nbd-bench-report.ts serverKinds)
 *   --jobs A,B         job names (default all: "seq read 1M", ..., "QD1 write 4k"); none: the resync job alone
 *   --no-resync        skip the resync job (idle mirror resync vs dd conv=fdatasync)
 *   --json FILE        write every sample (and the date and the machine) there, for nbd-bench-table.ts
 *   --data DIR         where the images live (default bench/.data, git-ignored)
 */
import { parseArgs } from 'node:util';
import { parseSize } from '../src/control/images.js';
import { imagesKinds, jobs, serverKinds, type ImagesKind, type Job, type ServerKind } from './nbd-bench-report.js';

export interface BenchOptions {
  readonly sizeBytes: number;
  readonly runtimeSeconds: number;
  readonly rounds: number;
  readonly images: ImagesKind;
  readonly servers: readonly ServerKind[];
  readonly jobs: readonly Job[];
  readonly resync: boolean;
  readonly json: string | undefined;
  readonly data: string;
}

const MiB = 2 ** 20;

/** @throws RangeError with a one-line reason for a bad value; TypeError (ERR_PARSE_ARGS_*) for an unknown option. */
export function parseBenchArgs(argv: readonly string[], defaults: { data: string }): BenchOptions {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      size: { type: 'string' },
      runtime: { type: 'string' },
      rounds: { type: 'string' },
      quick: { type: 'boolean', default: false },
      images: { type: 'string', default: 'filled' },
      servers: { type: 'string', default: serverKinds.join(',') },
      jobs: { type: 'string' },
      'no-resync': { type: 'boolean', default: false },
      json: { type: 'string' },
      data: { type: 'string', default: defaults.data },
    },
    strict: true,
  });
  const whole = (name: string, text: string, min: number): number => {
    const value = /^[0-9]+$/.test(text) ? Number(text) : Number.NaN;
    if (!Number.isSafeInteger(value) || value < min) throw new RangeError(`--${name} must be a whole number >= ${min}, got "${text}"`);
    return value;
  };
  const sizeBytes = parseSize(values.size ?? (values.quick ? '256M' : '1G'));
  if (sizeBytes % MiB !== 0 || sizeBytes === 0) throw new RangeError('--size must be a positive multiple of 1 MiB');
  const images = imagesKinds.find((kind) => kind === values.images);
  if (images === undefined) throw new RangeError(`--images must be ${imagesKinds.join(' or ')}, got "${values.images}"`);
  const servers = values.servers.split(',').map((name) => {
    const kind = serverKinds.find((k) => k === name);
    if (kind === undefined) throw new RangeError(`unknown server "${name}" (${serverKinds.join(', ')})`);
    return kind;
  });
  const selected =
    values.jobs === undefined
      ? jobs
      : values.jobs === 'none'
        ? []
        : values.jobs.split(',').map((name) => {
          const job = jobs.find((j) => j.name === name.trim());
          if (job === undefined) throw new RangeError(`unknown job "${name}" (${jobs.map((j) => j.name).join(', ')})`);
          return job;
        });
  return {
    sizeBytes,
    runtimeSeconds: whole('runtime', values.runtime ?? (values.quick ? '3' : '10'), 1),
    rounds: whole('rounds', values.rounds ?? (values.quick ? '1' : '3'), 1),
    images,
    servers,
    jobs: selected,
    resync: !values['no-resync'],
    json: values.json,
    data: values.data,
  };
}
