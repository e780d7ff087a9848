/**
 * The logs of `umirror serve` and `umirror daemon` (src/cli/logger.ts): one pino logger, JSON lines on
 * stderr when it is not a terminal (the default here, where stderr is a pipe) or text with
 * `--log-format text`; `--log-level debug` adds detail; an NBD client connecting and disconnecting is
 * logged with its peer and export. Serve's stdout lines that scripts read stay where they were.
 * Real processes, and nbdinfo as the NBD client.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startDaemon, until } from '../helpers/daemon-process.js';
import { requireTools, run, runOk } from '../helpers/nbd-tools.js';
import { assertCleanExit, startServe, umirrorMain } from '../helpers/serve-process.js';

async function tempDir(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'umirror-logs-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

interface JsonLine {
  readonly level: number;
  readonly msg: string;
  readonly [key: string]: unknown;
}

function jsonLines(stderr: string): JsonLine[] {
  return stderr
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => JSON.parse(line) as JsonLine);
}

test('serve logs NBD clients connecting and disconnecting as JSON lines, with peer and export; stdout keeps its lines', async (t) => {
  if (!requireTools(t, 'nbdinfo')) return;
  const dir = await tempDir(t);
  const serve = await startServe(['--data', join(dir, 'data'), '--size', '16M', '--quiet', '--nbd', `unix:${join(dir, 'nbd.sock')}`]);
  t.after(() => serve.stop().then(() => undefined));
  await runOk('nbdinfo', ['--size', serve.uri]);
  await until('the disconnect logged', () => serve.stderr().includes('nbd client disconnected'), 10_000);
  const exit = await serve.stop();
  assertCleanExit(exit);
  assert.match(exit.stdout, /^nbd uri: nbd\+unix:\/\/\/umirror\?socket=.+$/m);
  assert.match(exit.stdout, /^table: {2}0 32768 mirror disk [23] .+ 1 handle_errors$/m);
  const lines = jsonLines(exit.stderr);
  const connect = lines.find((line) => line.msg === 'nbd client connected');
  assert.deepEqual([connect?.level, connect?.['device'], connect?.['peer'], connect?.['export']], [30, 'umirror', 'unix', 'umirror']);
  assert.ok(lines.some((line) => line.msg === 'nbd client disconnected' && line['export'] === 'umirror'));
  assert.ok(!lines.some((line) => line.msg === 'loading table'), 'no debug lines at the default level');
});

test('serve --log-format text --log-level debug: text lines, and the debug detail (table, client options)', async (t) => {
  if (!requireTools(t, 'nbdinfo')) return;
  const dir = await tempDir(t);
  const args = ['--data', join(dir, 'data'), '--size', '16M', '--quiet', '--nbd', `unix:${join(dir, 'nbd.sock')}`];
  const serve = await startServe([...args, '--log-format', 'text', '--log-level', 'debug']);
  t.after(() => serve.stop().then(() => undefined));
  await runOk('nbdinfo', ['--size', serve.uri]);
  await until('the disconnect logged', () => serve.stderr().includes('nbd client disconnected'), 10_000);
  const exit = await serve.stop();
  assertCleanExit(exit);
  const time = '\\d\\d:\\d\\d:\\d\\d\\.\\d{3}';
  assert.match(exit.stderr, new RegExp(`^${time} DEBUG loading table device=umirror table="0 32768 mirror disk [23] .+"$`, 'm'));
  assert.match(exit.stderr, new RegExp(`^${time} INFO  nbd client connected device=umirror peer=unix export=umirror$`, 'm'));
  assert.match(exit.stderr, new RegExp(`^${time} DEBUG nbd client options device=umirror peer=unix export=umirror structuredReplies=true$`, 'm'));
  assert.doesNotMatch(exit.stderr, /^\{/m, 'no JSON');

  const bad = await run(process.execPath, [umirrorMain, 'serve', ...args, '--log-format', 'xml'], { timeoutMs: 20_000 });
  assert.deepEqual([bad.code, bad.stderr], [1, 'umirror serve: --log-format must be text or json, got "xml"\n']);
});

test('daemon: one logger with serve; --log-level debug logs each control request; NBD clients with peer and export', async (t) => {
  if (!requireTools(t, 'nbdinfo')) return;
  const daemon = await startDaemon({ args: ['--log-level', 'debug'] });
  t.after(() => daemon.dispose());
  const created = await daemon.cli(['create', 'z', '--table', '0 2048 zero', '--nbd', `unix:${join(daemon.dir, 'z.sock')}`]);
  assert.equal(created.code, 0, created.stderr);
  assert.equal((await daemon.cli(['status', 'nope'])).code, 1);
  await runOk('nbdinfo', ['--size', created.stdout.trim()]);
  await until('the disconnect logged', () => daemon.logs().some((line) => line.msg === 'nbd client disconnected'), 10_000);
  const logs = daemon.logs();
  assert.ok(logs.some((line) => line.msg === 'loading table' && line.device === 'z' && line['table'] === '0 2048 zero'));
  assert.ok(logs.some((line) => line.msg === 'control request done' && line['verb'] === 'create' && line.device === 'z' && typeof line['ms'] === 'number'));
  assert.ok(logs.some((line) => line.msg === 'control request failed' && line['verb'] === 'status' && line['code'] === 'ENOENT'));
  const connect = logs.find((line) => line.msg === 'nbd client connected');
  assert.deepEqual([connect?.level, connect?.device, connect?.['peer'], connect?.['export']], [30, 'z', 'unix', 'z']);
});
