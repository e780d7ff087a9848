/**
 * Every shell example in README.md and docs/*.md runs, as pasted, so the docs stay true. The ```sh
 * (or bash/shell) blocks of one document run in order in one bash (`set -euo pipefail`), in a fresh
 * temp folder, with `umirror` on PATH (this checkout's dist/cli/main.js), `dist` linked there (for the
 * README's `node dist/cli/main.js`, run from the repository root) and UMIRROR_SOCKET in that folder; background jobs (a daemon started with `&`) get SIGTERM afterwards, as an operator's Ctrl-C.
 *
 * A block that cannot run here says so right before its fence: `<!-- not-run: REASON -->` (installs
 * packages, needs a second host, runs in the foreground forever). Blocks without a language, or
 * `text`/`json`/`ts`, are output or other languages and are not run.
 *
 * What the test changes, so that tests never share fixed names: the example ports 9477 (metrics) and
 * 10809 (NBD; `:10809` and qemu's `port=10809`) become free ephemeral ports, and `/tmp/` becomes the temp folder.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';

const root = fileURLToPath(new URL('../../../', import.meta.url));
const umirrorMain = join(root, 'dist/cli/main.js');
const runnableLanguages = new Set(['sh', 'bash', 'shell']);

interface DocBlock {
  readonly file: string;
  /** 1-based line of the opening fence. */
  readonly line: number;
  readonly language: string;
  readonly code: string;
  /** The not-run reason, when the block is marked. */
  readonly notRun: string | undefined;
}

/** The fenced blocks of a Markdown text, with the not-run marker that precedes each (if any). */
function fencedBlocks(file: string, markdown: string): DocBlock[] {
  const lines = markdown.split('\n');
  const blocks: DocBlock[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^```(\S*)\s*$/.exec(lines[i] ?? '');
    if (open === null) continue;
    const start = i;
    let end = i + 1;
    while (end < lines.length && !/^```\s*$/.test(lines[end] ?? '')) end++;
    assert.ok(end < lines.length, `${file}:${start + 1}: a fence that is never closed`);
    let before = start - 1;
    while (before >= 0 && (lines[before] ?? '').trim() === '') before--;
    const marker = /^<!-- not-run: (.*\S.*) -->$/.exec((lines[before] ?? '').trim());
    blocks.push({ file, line: start + 1, language: open[1] ?? '', code: lines.slice(start + 1, end).join('\n'), notRun: marker?.[1] });
    i = end;
  }
  return blocks;
}

function documents(): string[] {
  return ['README.md', ...readdirSync(join(root, 'docs')).filter((name) => name.endsWith('.md')).sort().map((name) => `docs/${name}`)];
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  assert.ok(address !== null && typeof address === 'object');
  return address.port;
}

/** Runs a document's blocks; resolves with bash's exit code and output. */
async function runBlocks(blocks: readonly DocBlock[]): Promise<{ code: number | null; output: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'umirror-doc-'));
  try {
    const bin = join(dir, '.bin');
    await mkdir(bin);
    await writeFile(join(bin, 'umirror'), `#!/bin/sh\nexec '${process.execPath}' '${umirrorMain}' "$@"\n`);
    await chmod(join(bin, 'umirror'), 0o755);
    await symlink(join(root, 'dist'), join(dir, 'dist'));
    const [metricsPort, nbdPort] = [await freePort(), await freePort()];
    const script = [
      'set -euo pipefail',
      ...blocks.map((block) =>
        [`echo "--- ${block.file}:${block.line}" >&2`, block.code.replaceAll(':9477', `:${metricsPort}`).replaceAll(':10809', `:${nbdPort}`).replaceAll('port=10809', `port=${nbdPort}`).replaceAll('/tmp/', `${dir}/`)].join('\n'),
      ),
    ].join('\n');
    const child = spawn('bash', ['-c', script], {
      cwd: dir,
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, PATH: `${bin}:${process.env['PATH'] ?? ''}`, UMIRROR_SOCKET: join(dir, 'control.sock'), LC_ALL: 'C' },
    });
    let output = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
    const timer = setTimeout(() => child.pid !== undefined && process.kill(-child.pid, 'SIGKILL'), 240_000);
    const code = await new Promise<number | null>((resolve) => child.once('exit', (exitCode) => resolve(exitCode)));
    clearTimeout(timer);
    // Background jobs (a daemon) stop as on Ctrl-C; then whatever is left is killed.
    const group = child.pid ?? 0;
    const alive = (): boolean => {
      try {
        process.kill(-group, 0);
        return true;
      } catch {
        return false; // ESRCH: every process of the group has exited.
      }
    };
    if (alive()) process.kill(-group, 'SIGTERM');
    for (let i = 0; i < 300 && alive(); i++) await sleep(100);
    if (alive()) process.kill(-group, 'SIGKILL');
    return { code, output };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

test('every not-run marker names its reason and stands right before a shell block', () => {
  let marked = 0;
  for (const file of documents()) {
    const text = readFileSync(join(root, file), 'utf8');
    const blocks = fencedBlocks(file, text);
    marked += blocks.filter((block) => block.notRun !== undefined).length;
    for (const block of blocks) {
      if (block.notRun !== undefined) assert.ok(runnableLanguages.has(block.language), `${file}:${block.line}: not-run marks a ${block.language || 'plain'} block`);
    }
    const markers = (text.match(/<!-- not-run/g) ?? []).length;
    assert.equal(markers, blocks.filter((block) => block.notRun !== undefined).length, `${file}: a not-run marker without its block, or without a reason`);
  }
  // Today 9: Debian packages (two), a serve in another terminal, a second host (four), systemd,
  // qemu's group kvm.
  assert.ok(marked <= 10, `${marked} blocks are not run: keep that list short`);
});

/**
 * Lines some documents' runs must print, beyond running without error. The cli.md quick session must
 * start in sync: it once called create-images twice, and the second call (on existing images) printed a
 * table without nosync, so the new device resynced every region.
 */
const expectedOutput: Readonly<Record<string, readonly RegExp[]>> = {
  'docs/cli.md': [/^0 524288 mirror 2 \S+leg0\.img \S+leg1\.img 512\/512 1 AA 3 disk \S+log\.img A$/m],
  'docs/operating.md': [/^0 32768 mirror 2 \S+a\.img disk1 31\/32 1 AD 1 core$/m, /^c\.img holds every byte of a\.img$/m],
};

for (const file of documents()) {
  const blocks = fencedBlocks(file, readFileSync(join(root, file), 'utf8')).filter((block) => runnableLanguages.has(block.language) && block.notRun === undefined);
  if (blocks.length === 0) continue;
  test(`the shell examples of ${file} run as written (${blocks.map((block) => `line ${block.line}`).join(', ')})`, async () => {
    const { code, output } = await runBlocks(blocks);
    assert.equal(code, 0, `the examples of ${file} failed (the last "---" line names the block):\n${output}`);
    for (const pattern of expectedOutput[file] ?? []) assert.match(output, pattern, `${file}: expected in the output`);
  });
}
