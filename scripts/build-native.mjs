#!/usr/bin/env node
/**
 * Builds umirror's one native addon (native/umirror-native.c: OFD image locks and direct I/O alignment, see src/block/native.ts) with
 * node-gyp against the headers of the Node that runs this script. It is the package's `install` script, so
 * `npm ci` builds it; `npm run build:native` rebuilds it.
 *
 * No network: node-gyp downloads the Node headers unless --nodedir names a local copy, so this script
 * finds the headers that ship with Node (<prefix>/include/node, checked against this Node's version) and
 * passes --nodedir. It needs python3, make and a C compiler (Debian: python3 make g++), and fails with a
 * one-line reason when the headers or node-gyp are missing.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');

function fail(message) {
  console.error(`umirror: cannot build the native addon: ${message}`);
  process.exit(1);
}

/** The Node version a headers directory holds, from include/node/node_version.h. */
function headersVersion(nodedir) {
  try {
    const text = readFileSync(join(nodedir, 'include', 'node', 'node_version.h'), 'utf8');
    const part = (name) => new RegExp(`#define\\s+NODE_${name}_VERSION\\s+(\\d+)`).exec(text)?.[1];
    return `v${part('MAJOR')}.${part('MINOR')}.${part('PATCH')}`;
  } catch {
    return undefined;
  }
}

function findNodedir() {
  const candidates = [process.env.npm_config_nodedir, resolve(dirname(process.execPath), '..')].filter((dir) => dir !== undefined && dir !== '');
  for (const dir of candidates) {
    if (headersVersion(dir) === process.version) return dir;
  }
  return fail(`no Node ${process.version} headers in ${candidates.map((dir) => join(dir, 'include', 'node')).join(' or ')} (install the headers of this Node, e.g. Debian's libnode-dev, or set npm_config_nodedir)`);
}

function findNodeGyp() {
  const candidates = [
    process.env.npm_config_node_gyp,
    join(dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
    join(dirname(process.execPath), 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
  ].filter((path) => path !== undefined && path !== '');
  const found = candidates.find((path) => existsSync(path));
  return found ?? fail(`node-gyp not found (looked at ${candidates.join(', ')}); it comes with npm`);
}

const nodedir = findNodedir();
const nodeGyp = findNodeGyp();
const result = spawnSync(process.execPath, [nodeGyp, 'rebuild', `--nodedir=${nodedir}`, '--directory', join(root, 'native')], {
  stdio: 'inherit',
});
if (result.error !== undefined) fail(result.error.message);
if (result.status !== 0) fail(`node-gyp exited with ${result.status ?? result.signal}`);
