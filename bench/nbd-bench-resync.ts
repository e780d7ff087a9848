/**
 * The resync job of the NBD benchmark: how fast an idle mirror resynchronises, against copying the same
 * bytes with `dd bs=1M conv=notrunc,fdatasync` (the goal: >= 0.95x dd). A `umirror daemon` with default
 * options holds the mirror: `create` with a fresh (zeroed) disk log, so every region is out of sync and
 * copied from leg 0 (random data) to leg 1; the time runs from the create request until the status says
 * every region is in sync (the daemon's `wait` verb, no polling) and the device is removed (its suspend
 * flushes both legs: the copy is durable, as dd's fdatasync makes its copy). dd copies leg 0 onto the
 * same leg-1 file. Sparse runs punch leg 1 out before each copy, filled runs leave it allocated (it
 * holds the previous copy). The disk's write speed dominates both and moves a lot on a shared machine,
 * so each sample is a pair run back to back, and the ratio is taken per pair. Leg 0 is read into the
 * page cache before each pair (the fio jobs before it may have pushed it out): otherwise whichever runs
 * first reads it from the disk and the second from memory.
 */
import { spawn, execFile } from 'node:child_process';
import { rm, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { ControlClient } from '../src/control/control-client.js';
import { umirrorMain } from '../test/helpers/serve-process.js';
import type { ImagesKind } from './nbd-bench-report.js';

const execFileAsync = promisify(execFile);
const MiB = 2 ** 20;

export interface ResyncBench {
  /** One resync through the daemon: MiB/s from create to in sync. */
  umirror(): Promise<number>;
  /** One dd of the same bytes: MiB/s. */
  dd(): Promise<number>;
  /** Reads leg 0 into the page cache. */
  warm(): Promise<void>;
  stop(): Promise<void>;
}

interface MirrorView {
  readonly mirrors: readonly { readonly regionCount: number; readonly syncRegions: number }[];
}

export async function startResyncBench(options: { dataDir: string; source: string; target: string; sizeBytes: number; images: ImagesKind }): Promise<ResyncBench> {
  const { dataDir, source, target, sizeBytes } = options;
  const control = join(dataDir, 'resync.ctl');
  const log = join(dataDir, 'resync-log.img');
  const child = spawn(process.execPath, [umirrorMain, 'daemon', '--socket', control], { stdio: ['ignore', 'ignore', 'ignore'] });
  const exited = new Promise<void>((resolve) => child.once('close', () => resolve()));
  let client: ControlClient | undefined;
  for (let attempt = 0; client === undefined; attempt++) {
    try {
      client = await ControlClient.connect(control);
    } catch (err) {
      if (child.exitCode !== null || attempt >= 300) throw err;
      await sleep(100); // Not listening yet.
    }
  }
  const daemon = client;
  const resetTarget = async (): Promise<void> => {
    if (options.images === 'sparse') await execFileAsync('fallocate', ['--punch-hole', '--offset', '0', '--length', String(sizeBytes), target]);
  };
  const table = `0 ${sizeBytes / 512} mirror disk 2 ${log} 1024 2 ${source} 0 ${target} 0 1 handle_errors`;
  return {
    umirror: async () => {
      await resetTarget();
      await writeFile(log, '');
      await truncate(log, MiB);
      const started = performance.now();
      await daemon.request({ verb: 'create', name: 'resync', table, readOnly: false });
      let eventNr = 0;
      let first = true;
      for (;;) {
        const view = (await daemon.request({ verb: 'status', name: 'resync', inactive: false })) as MirrorView;
        const mirror = view.mirrors[0];
        if (mirror === undefined) throw new Error('the resync device has no mirror');
        if (first && mirror.syncRegions === mirror.regionCount) throw new Error('a fresh disk log left nothing to resync');
        first = false;
        if (mirror.syncRegions === mirror.regionCount) break;
        const waited = (await daemon.request({ verb: 'wait', name: 'resync', eventNr })) as { eventNr: number };
        eventNr = waited.eventNr;
      }
      await daemon.request({ verb: 'remove', name: 'resync' });
      return sizeBytes / MiB / ((performance.now() - started) / 1000);
    },
    dd: async () => {
      await resetTarget();
      const started = performance.now();
      await execFileAsync('dd', [`if=${source}`, `of=${target}`, 'bs=1M', 'conv=notrunc,fdatasync', 'status=none']);
      return sizeBytes / MiB / ((performance.now() - started) / 1000);
    },
    warm: async () => {
      await execFileAsync('dd', [`if=${source}`, 'of=/dev/null', 'bs=1M', 'status=none']);
    },
    stop: async () => {
      daemon.close();
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
      await rm(control, { force: true });
    },
  };
}
