/**
 * The npm package: `npm pack` ships dist/, docs/, README.md and LICENSE (the README links docs/ and the
 * license), and the tarball installs and runs as a user gets it: installed into a temp folder offline
 * (from npm's cache, which `npm ci` filled), its install script builds the native addon, and
 * `npx umirror --help` and `npx umirror version` answer.
 *
 * Offline needs a lockfile: npm resolves version ranges from registry metadata it does not cache, but
 * fetches a locked package by its integrity from the cache. The temp project's lockfile is this
 * repository's, runtime packages only, with the tarball as the umirror entry.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);
const root = fileURLToPath(new URL('../../../', import.meta.url));

interface LockEntry {
  readonly version: string;
  readonly resolved?: string;
  readonly dev?: boolean;
  readonly [key: string]: unknown;
}

/** The temp project's lockfile: the runtime packages of this repository's lock, and the tarball. */
function lockFor(tarball: string): { packageJson: object; lock: object } {
  const lock = JSON.parse(readFileSync(join(root, 'package-lock.json'), 'utf8')) as { packages: Record<string, LockEntry> };
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string; dependencies: object; engines: object; bin: object };
  const rootEntry = { name: 'umirror-pack-test', version: '0.0.0', dependencies: { umirror: `file:${tarball}` } };
  const packages: Record<string, object> = {
    '': rootEntry,
    'node_modules/umirror': { version: pkg.version, resolved: `file:${tarball}`, hasInstallScript: true, license: 'MIT', dependencies: pkg.dependencies, engines: pkg.engines, bin: pkg.bin },
  };
  for (const [path, entry] of Object.entries(lock.packages)) {
    if (!path.startsWith('node_modules/') || entry.dev === true) continue;
    const name = path.slice(path.lastIndexOf('node_modules/') + 'node_modules/'.length);
    const base = name.split('/').at(-1) ?? name;
    packages[path] = { ...entry, resolved: entry.resolved ?? `https://registry.npmjs.org/${name}/-/${base}-${entry.version}.tgz` };
  }
  return { packageJson: rootEntry, lock: { name: rootEntry.name, version: rootEntry.version, lockfileVersion: 3, requires: true, packages } };
}

test('npm pack ships docs and LICENSE, and npx umirror --help works from the tarball installed offline', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'umirror-pack-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const packed = await execFileAsync('npm', ['pack', '--pack-destination', dir], { cwd: root, timeout: 120_000 });
  const tarball = join(dir, packed.stdout.trim().split('\n').at(-1) ?? '');
  const files = (await execFileAsync('tar', ['-tzf', tarball])).stdout.split('\n');
  for (const file of ['package/LICENSE', 'package/README.md', 'package/docs/cli.md', 'package/docs/operating.md', 'package/docs/errors.md', 'package/dist/cli/main.js']) {
    assert.ok(files.includes(file), `${file} is in the tarball`);
  }
  assert.ok(!files.some((file) => file.startsWith('package/test/') || file.startsWith('package/build/')), 'no tests in the tarball');
  assert.match(readFileSync(join(root, 'LICENSE'), 'utf8'), /^MIT License\n/);

  const project = join(dir, 'project');
  await mkdir(project);
  const { packageJson, lock } = lockFor(tarball);
  await writeFile(join(project, 'package.json'), JSON.stringify(packageJson));
  await writeFile(join(project, 'package-lock.json'), JSON.stringify(lock));
  await execFileAsync('npm', ['ci', '--offline', '--no-audit', '--no-fund'], { cwd: project, timeout: 300_000 });
  const help = await execFileAsync('npx', ['--offline', 'umirror', '--help'], { cwd: project, timeout: 60_000 });
  assert.match(help.stdout, /^Usage: umirror <command> \[options\]$/m);
  const version = await execFileAsync('npx', ['--offline', 'umirror', 'version'], { cwd: project, timeout: 60_000 });
  assert.match(version.stdout, /^umirror version: {2}\d+\.\d+\.\d+\nmirror {11}v1\.14\.0$/m);
});
