/**
 * The NBD servers the NBD benchmark compares, each started as a child process on a Unix socket and
 * ready once `nbdinfo --size` answers: `umirror serve` over two legs (core or disk log; and core log with
 * TLS required, for the cost of TLS), and the reference servers `nbdkit file` and `qemu-nbd` over one
 * leg's file.
 *
 * TLS: fio's nbd engine will not let a URI name a local file (libnbd's uri_allow_local_file is off), so
 * neither tls-psk-file nor tls-certificates can be given to it; libnbd then verifies the server against
 * its default folder, $HOME/.pki/libnbd/ca-cert.pem. umirror-tls therefore serves with certificates and
 * its clients run with HOME pointing at such a folder (`env`). The data path is the one a PSK connection
 * takes: TLS 1.3 with AES-128-GCM either way (server-tls.ts); only the handshake differs. stop() sends SIGINT (umirror's
 * clean Ctrl-C path) or SIGTERM and waits for the exit, SIGKILL after 30 s.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { execFile } from 'node:child_process';
import { copyFile, mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { umirrorMain } from '../test/helpers/serve-process.js';
import { makePki } from '../test/helpers/tls-files.js';

const execFileAsync = promisify(execFile);

export type ServerKind = 'umirror-core' | 'umirror-disk' | 'umirror-tls' | 'nbdkit' | 'qemu-nbd';
export const serverKinds: readonly ServerKind[] = ['umirror-core', 'umirror-disk', 'umirror-tls', 'nbdkit', 'qemu-nbd'];

export interface BenchServer {
  readonly kind: ServerKind;
  readonly uri: string;
  /** Environment for its clients (umirror-tls: HOME with libnbd's default CA folder). */
  readonly env: NodeJS.ProcessEnv;
  stop(): Promise<void>;
}

export interface BenchImages {
  readonly dataDir: string;
  /** The legs nbdkit and qemu-nbd serve (leg0; they write it, leg1 is its twin). */
  readonly legPaths: readonly [string, string];
  /**
   * Each umirror kind's own copy of the legs: serve locks its images (qemu's lock bytes), so two umirror
   * servers, or umirror and qemu-nbd, cannot hold the same file at once.
   */
  readonly umirrorLegPaths: ReadonlyMap<ServerKind, readonly [string, string]>;
  readonly logPath: string;
  readonly sizeBytes: number;
}

/**
 * The command line of a server kind. The umirror tables say nosync: the legs were filled identically.
 * umirror-tls is umirror-core with TLS required (certificates; see the banner), so plaintext and TLS
 * differ only in TLS.
 */
function commandOf(kind: ServerKind, images: BenchImages, socket: string): { file: string; args: string[]; uri: string } {
  const [leg0, leg1] = images.umirrorLegPaths.get(kind) ?? images.legPaths;
  const sectors = images.sizeBytes / 512;
  const uri = `nbd+unix:///bench?socket=${socket}`;
  switch (kind) {
    case 'umirror-core':
    case 'umirror-disk':
    case 'umirror-tls': {
      const log = kind === 'umirror-disk' ? `disk 3 ${images.logPath} 1024 nosync` : 'core 2 1024 nosync';
      const table = `0 ${sectors} mirror ${log} 2 ${leg0} 0 ${leg1} 0 1 handle_errors`;
      const args = [umirrorMain, 'serve', '--table', table, '--name', 'bench', '--nbd', `unix:${socket}`, '--quiet'];
      if (kind !== 'umirror-tls') return { file: process.execPath, args, uri };
      return { file: process.execPath, args: [...args, '--tls-certificates', pkiPath(images)], uri: `nbds+unix:///bench?socket=${socket}` };
    }
    case 'nbdkit':
      return { file: 'nbdkit', args: ['-U', socket, '-f', '--exit-with-parent', 'file', leg0], uri };
    case 'qemu-nbd':
      return { file: 'qemu-nbd', args: ['-f', 'raw', '-t', '-k', socket, '-x', 'bench', leg0], uri };
  }
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

export async function startServer(kind: ServerKind, images: BenchImages): Promise<BenchServer> {
  const socket = join(images.dataDir, `${kind}.sock`);
  await rm(socket, { force: true });
  const env = kind === 'umirror-tls' ? await prepareTls(images) : process.env;
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
    if (await answers(uri, env)) return { kind, uri, env, stop };
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
