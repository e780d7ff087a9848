/**
 * The NBD servers the NBD benchmark compares, each started as a child process on a Unix socket and
 * ready once `nbdinfo --size` answers: `umirror serve` over two legs (core or disk log), and the
 * reference servers `nbdkit file` and `qemu-nbd` over one leg's file. stop() sends SIGINT (umirror's
 * clean Ctrl-C path) or SIGTERM and waits for the exit, SIGKILL after 30 s.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { execFile } from 'node:child_process';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { umirrorMain } from '../test/helpers/serve-process.js';

const execFileAsync = promisify(execFile);

export type ServerKind = 'umirror-core' | 'umirror-disk' | 'nbdkit' | 'qemu-nbd';
export const serverKinds: readonly ServerKind[] = ['umirror-core', 'umirror-disk', 'nbdkit', 'qemu-nbd'];

export interface BenchServer {
  readonly kind: ServerKind;
  readonly uri: string;
  stop(): Promise<void>;
}

export interface BenchImages {
  readonly dataDir: string;
  readonly legPaths: readonly [string, string];
  readonly logPath: string;
  readonly sizeBytes: number;
}

/** The command line of a server kind. Both umirror tables say nosync: the legs were filled identically. */
function commandOf(kind: ServerKind, images: BenchImages, socket: string): { file: string; args: string[]; uri: string } {
  const [leg0, leg1] = images.legPaths;
  const sectors = images.sizeBytes / 512;
  const uri = `nbd+unix:///bench?socket=${socket}`;
  switch (kind) {
    case 'umirror-core':
    case 'umirror-disk': {
      const log = kind === 'umirror-core' ? 'core 2 1024 nosync' : `disk 3 ${images.logPath} 1024 nosync`;
      const table = `0 ${sectors} mirror ${log} 2 ${leg0} 0 ${leg1} 0 1 handle_errors`;
      return { file: process.execPath, args: [umirrorMain, 'serve', '--table', table, '--name', 'bench', '--nbd', `unix:${socket}`, '--quiet'], uri };
    }
    case 'nbdkit':
      return { file: 'nbdkit', args: ['-U', socket, '-f', '--exit-with-parent', 'file', leg0], uri };
    case 'qemu-nbd':
      return { file: 'qemu-nbd', args: ['-f', 'raw', '-t', '-k', socket, '-x', 'bench', leg0], uri };
  }
}

export async function startServer(kind: ServerKind, images: BenchImages): Promise<BenchServer> {
  const socket = join(images.dataDir, `${kind}.sock`);
  await rm(socket, { force: true });
  const { file, args, uri } = commandOf(kind, images, socket);
  const child = spawn(file, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    if (stderr.length < 64 * 1024) stderr += chunk;
  });
  child.on('error', (err) => {
    stderr += `spawn error: ${err.message}`;
  });
  const exited = new Promise<void>((resolve) => child.once('close', () => resolve()));
  const stop = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill(kind.startsWith('umirror') ? 'SIGINT' : 'SIGTERM');
    if ((await Promise.race([exited.then(() => true), sleep(30_000, false, { ref: false })])) === false) child.kill('SIGKILL');
    await exited;
  };
  for (let attempt = 0; ; attempt++) {
    if (await answers(uri)) return { kind, uri, stop };
    if (exitedEarly(child) || attempt >= 300) {
      await stop();
      throw new Error(`${kind} did not start serving ${uri}: ${stderr}`);
    }
    await sleep(100);
  }
}

async function answers(uri: string): Promise<boolean> {
  try {
    await execFileAsync('nbdinfo', ['--size', uri]);
    return true;
  } catch {
    return false; // Not listening yet: the caller polls again.
  }
}

function exitedEarly(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}
