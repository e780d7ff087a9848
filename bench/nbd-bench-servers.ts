/**
 * The NBD servers the NBD benchmark compares, each started as a child process on a Unix socket and
 * ready once `nbdinfo --size` answers, all with their default options:
 *
 *   serve-core, serve-disk   `umirror serve --table` over two legs (core log; disk log, lazy clean 1 s)
 *   daemon-core, daemon-disk `umirror daemon` + `umirror create bench --table ... --nbd unix:SOCK`
 *   serve-tls                serve-core with TLS required (certificates), for the cost of TLS
 *   nbdkit, qemu-nbd         the references, over one leg's file (`nbdkit file`, `qemu-nbd -f raw -t`)
 *
 * TLS: fio's nbd engine will not let a URI name a local file (libnbd's uri_allow_local_file is off), so
 * neither tls-psk-file nor tls-certificates can be given to it; libnbd then verifies the server against
 * its default folder, $HOME/.pki/libnbd/ca-cert.pem. serve-tls therefore serves with certificates and
 * its clients run with HOME pointing at such a folder (`env`). The data path is the one a PSK connection
 * takes: TLS 1.3 with AES-128-GCM either way (server-tls.ts); only the handshake differs. stop() sends
 * SIGINT to serve (its clean Ctrl-C path), SIGTERM to the others, and waits for the exit, SIGKILL after 30 s.
 *
 * UMIRROR_BENCH_NODE_FLAGS (space-separated) are given to node for the umirror servers, e.g.
 * `--cpu-prof --cpu-prof-dir=/tmp/prof` for a CPU profile written when the server exits.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { execFile } from 'node:child_process';
import { copyFile, mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { umirrorMain } from '../test/helpers/serve-process.js';
import { makePki } from '../test/helpers/tls-files.js';
import type { ServerKind } from './nbd-bench-report.js';

const execFileAsync = promisify(execFile);

export interface BenchServer {
  readonly kind: ServerKind;
  readonly uri: string;
  /** Environment for its clients (serve-tls: HOME with libnbd's default CA folder). */
  readonly env: NodeJS.ProcessEnv;
  /** The child process (for a CPU profile or its pid). */
  readonly pid: number | undefined;
  stop(): Promise<void>;
}

export interface BenchImages {
  readonly dataDir: string;
  /** The file nbdkit and qemu-nbd serve. */
  readonly referencePath: string;
  /**
   * Each umirror kind's own legs and log: umirror locks its images (qemu's lock bytes), so two umirror
   * servers, or umirror and qemu-nbd, cannot hold the same file at once.
   */
  readonly umirror: ReadonlyMap<ServerKind, { readonly legs: readonly [string, string]; readonly log: string }>;
  readonly sizeBytes: number;
}

/** The data files a server writes (what a sparse run punches out before each job). */
export function dataFilesOf(kind: ServerKind, images: BenchImages): readonly string[] {
  return images.umirror.get(kind)?.legs ?? [images.referencePath];
}

export function isUmirror(kind: ServerKind): boolean {
  return kind !== 'nbdkit' && kind !== 'qemu-nbd';
}

/** The mirror table of a umirror kind. The tables say nosync: the legs were made identical. */
function tableOf(kind: ServerKind, images: BenchImages): string {
  const files = images.umirror.get(kind);
  if (files === undefined) throw new RangeError(`no images for ${kind}`);
  const log = kind.endsWith('-disk') ? `disk 3 ${files.log} 1024 nosync` : 'core 2 1024 nosync';
  return `0 ${images.sizeBytes / 512} mirror ${log} 2 ${files.legs[0]} 0 ${files.legs[1]} 0 1 handle_errors`;
}

const nodeFlags = (process.env['UMIRROR_BENCH_NODE_FLAGS'] ?? '').split(' ').filter((flag) => flag !== '');

function commandOf(kind: ServerKind, images: BenchImages, socket: string): { file: string; args: string[]; uri: string } {
  const uri = `nbd+unix:///bench?socket=${socket}`;
  switch (kind) {
    case 'serve-core':
    case 'serve-disk':
    case 'serve-tls': {
      const args = [...nodeFlags, umirrorMain, 'serve', '--table', tableOf(kind, images), '--name', 'bench', '--nbd', `unix:${socket}`, '--quiet'];
      if (kind !== 'serve-tls') return { file: process.execPath, args, uri };
      return { file: process.execPath, args: [...args, '--tls-certificates', pkiPath(images)], uri: `nbds+unix:///bench?socket=${socket}` };
    }
    case 'daemon-core':
    case 'daemon-disk':
      return { file: process.execPath, args: [...nodeFlags, umirrorMain, 'daemon', '--socket', controlSocketOf(kind, images)], uri };
    case 'nbdkit':
      return { file: 'nbdkit', args: ['-U', socket, '-f', '--exit-with-parent', 'file', images.referencePath], uri };
    case 'qemu-nbd':
      return { file: 'qemu-nbd', args: ['-f', 'raw', '-t', '-k', socket, '-x', 'bench', images.referencePath], uri };
  }
}

function controlSocketOf(kind: ServerKind, images: BenchImages): string {
  return join(images.dataDir, `${kind}.ctl`);
}

function pkiPath(images: BenchImages): string {
  return join(images.dataDir, 'tls-pki');
}

/** A fresh CA and server certificate, and a HOME whose .pki/libnbd/ca-cert.pem trusts it. */
async function prepareTls(images: BenchImages): Promise<NodeJS.ProcessEnv> {
  const pki = pkiPath(images);
  const home = join(images.dataDir, 'tls-home');
  await rm(pki, { recursive: true, force: true });
  await makePki(pki);
  await mkdir(join(home, '.pki', 'libnbd'), { recursive: true });
  await copyFile(join(pki, 'ca-cert.pem'), join(home, '.pki', 'libnbd', 'ca-cert.pem'));
  return { ...process.env, HOME: home };
}

/** `umirror create bench --table T --nbd unix:SOCK` against a daemon that may not answer yet (retried). */
async function createDaemonDevice(kind: ServerKind, images: BenchImages, socket: string, child: ChildProcess): Promise<void> {
  const args = [umirrorMain, 'create', 'bench', '--table', tableOf(kind, images), '--nbd', `unix:${socket}`, '--socket', controlSocketOf(kind, images)];
  for (let attempt = 0; ; attempt++) {
    try {
      await execFileAsync(process.execPath, args);
      return;
    } catch (err) {
      if (exitedEarly(child) || attempt >= 300) throw err;
      await sleep(100); // The daemon is not listening yet: try again.
    }
  }
}

export async function startServer(kind: ServerKind, images: BenchImages): Promise<BenchServer> {
  const socket = join(images.dataDir, `${kind}.sock`);
  await rm(socket, { force: true });
  const env = kind === 'serve-tls' ? await prepareTls(images) : process.env;
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
    child.kill(kind.startsWith('serve') ? 'SIGINT' : 'SIGTERM');
    if ((await Promise.race([exited.then(() => true), sleep(30_000, false, { ref: false })])) === false) child.kill('SIGKILL');
    await exited;
  };
  try {
    if (kind.startsWith('daemon')) await createDaemonDevice(kind, images, socket, child);
  } catch (err) {
    await stop();
    throw new Error(`${kind}: umirror create failed: ${String(err)}\n${stderr}`);
  }
  for (let attempt = 0; ; attempt++) {
    if (await answers(uri, env)) return { kind, uri, env, pid: child.pid, stop };
    if (exitedEarly(child) || attempt >= 300) {
      await stop();
      throw new Error(`${kind} did not start serving ${uri}: ${stderr}`);
    }
    await sleep(100);
  }
}

async function answers(uri: string, env: NodeJS.ProcessEnv): Promise<boolean> {
  try {
    await execFileAsync('nbdinfo', ['--size', uri], { env });
    return true;
  } catch {
    return false; // Not listening yet: the caller polls again.
  }
}

function exitedEarly(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}
