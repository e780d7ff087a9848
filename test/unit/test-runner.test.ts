/**
 * scripts/run-tests.mjs fails the run when any test process sees an unhandled rejection. The fixtures
 * are written to a temp dir (UMIRROR_TEST_ROOT), never under build/test, so the real run never picks
 * up the failing ones:
 *   during/  a test leaves a rejection unhandled while it runs
 *   after/   a rejection surfaces after its test ended
 *   clean/   passes; it checks that a node process a test spawns dies on an unhandled rejection even
 *            when it listens for 'unhandledRejection' (strict mode, through NODE_OPTIONS)
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));
const runTests = join(repoRoot, 'scripts', 'run-tests.mjs');

const fixtures: Readonly<Record<string, string>> = {
  during: `import { test } from 'node:test';
test('leaves a rejection unhandled while it runs', async () => {
  void Promise.reject(new Error('fixture: unhandled during the test'));
  await new Promise((resolve) => setTimeout(resolve, 20));
});
`,
  after: `import { test } from 'node:test';
test('ends before its rejection surfaces', () => {
  setTimeout(() => void Promise.reject(new Error('fixture: unhandled after the test')), 10);
});
`,
  clean: `import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
test('a spawned node dies on an unhandled rejection it listens for', () => {
  const code = "process.on('unhandledRejection', () => undefined); void Promise.reject(new Error('child'));";
  const child = spawnSync(process.execPath, ['-e', code], { encoding: 'utf8' });
  assert.equal(child.status, 1, child.stderr);
});
`,
};

function run(folder: string, root: string): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    // Without NODE_TEST_CONTEXT: the runner inside must not think it is nested in this test file.
    const { NODE_TEST_CONTEXT: _nested, ...env } = process.env;
    const child = spawn(process.execPath, [runTests, folder], {
      cwd: repoRoot,
      env: { ...env, UMIRROR_TEST_ROOT: root },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
    child.on('error', reject);
    child.on('exit', (code) => resolve({ code, output }));
  });
}

describe('scripts/run-tests.mjs', () => {
  let root = '';
  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'umirror-runner-'));
    for (const [folder, text] of Object.entries(fixtures)) {
      await mkdir(join(root, folder));
      await writeFile(join(root, folder, `${folder}.test.js`), text);
    }
  });
  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  test('run-tests fails the run when a test leaves a rejection unhandled while it runs', async () => {
    const { code, output } = await run('during', root);
    assert.notEqual(code, 0, output);
    assert.match(output, /fixture: unhandled during the test/);
  });

  test('run-tests fails the run when a rejection surfaces after its test ended', async () => {
    const { code, output } = await run('after', root);
    assert.notEqual(code, 0, output);
    assert.match(output, /fixture: unhandled after the test/);
  });

  test('run-tests passes a clean run, whose spawned node processes run with strict unhandled rejections', async () => {
    const { code, output } = await run('clean', root);
    assert.equal(code, 0, output);
  });
});
