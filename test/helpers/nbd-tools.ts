/**
 * External NBD tools for interop tests: finding them (a missing tool skips locally with a printed reason
 * and fails under CI=true) and running them without blocking the event loop (the server under test runs
 * in this process, so spawnSync would deadlock it).
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { MemoryBlockDevice } from '../../src/block/memory-block-device.js';
import type { NbdExport } from '../../src/nbd/nbd-export.js';
import { type NbdListener, NbdServer } from '../../src/nbd/server.js';
import { findTool, requireTools as requireToolList } from './tools.js';

export function hasTool(name: string): boolean {
  return findTool(name) !== undefined;
}

/** True when every tool is there; otherwise skips the test (or fails it under CI=true): see tools.ts. */
export function requireTools(t: TestContext, ...names: string[]): boolean {
  return requireToolList(t, names);
}

export interface RunResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs a tool asynchronously; never rejects on a nonzero exit (tests assert `code`). */
export function run(file: string, args: readonly string[], options: { timeoutMs?: number } = {}): Promise<RunResult> {
  return new Promise((resolve) => {
    execFile(
      file,
      [...args],
      { timeout: options.timeoutMs ?? 60_000, maxBuffer: 64 * 1024 * 1024, encoding: 'utf8' },
      (err, stdout, stderr) => {
        const code = err === null ? 0 : typeof err.code === 'number' ? err.code : 1;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

/** Runs and asserts success, returning stdout. */
export async function runOk(file: string, args: readonly string[], options: { timeoutMs?: number } = {}): Promise<string> {
  const result = await run(file, args, options);
  if (result.code !== 0) {
    throw new Error(`${file} ${args.join(' ')} exited ${result.code}\n${result.stdout}\n${result.stderr}`);
  }
  return result.stdout;
}

export interface NbdFixture {
  readonly dir: string;
  readonly device: MemoryBlockDevice;
  readonly server: NbdServer;
  readonly unix: NbdListener;
  readonly tcp: NbdListener;
  readonly logLines: string[];
  close(): Promise<void>;
}

/** A server exporting a fresh MemoryBlockDevice on a Unix socket and a random TCP port. */
export async function startNbdFixture(
  options: { sizeBytes?: number; name?: string; exportOptions?: Partial<NbdExport> } = {},
): Promise<NbdFixture> {
  const dir = await mkdtemp(join(tmpdir(), 'umirror-nbd-'));
  const device = new MemoryBlockDevice({ sizeBytes: options.sizeBytes ?? 64 * 1024 * 1024 });
  const logLines: string[] = [];
  const nbdExport: NbdExport = { name: options.name ?? 'vol0', description: 'umirror test volume', device, ...options.exportOptions };
  const server = new NbdServer({ exports: [nbdExport], log: (line) => logLines.push(line) });
  const unix = await server.listen({ path: join(dir, 'nbd.sock') });
  const tcp = await server.listen({ host: '127.0.0.1', port: 0 });
  return {
    dir,
    device,
    server,
    unix,
    tcp,
    logLines,
    async close() {
      await server.close({ graceful: false });
      await device.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
