#!/usr/bin/env node
// Runs the compiled tests under build/test with node's test runner.
// Usage: node scripts/run-tests.mjs [folder ...]   (default: every folder under build/test)
// Node 20's runner does not expand globs, so the file list is built here. UMIRROR_TEST_ROOT replaces
// build/test (test/unit/test-runner.test.ts runs this script on fixtures in a temp dir).
//
// An unhandled rejection anywhere fails the run: every test process runs with
// --unhandled-rejections=strict (node --test passes it on to each test file's process, where the
// runner reports the rejection as a failure), and so does every node process a test spawns (the
// daemon, serve, crash children), through NODE_OPTIONS: none of them may swallow one.
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';

const root = process.env.UMIRROR_TEST_ROOT ?? 'build/test';
const strict = '--unhandled-rejections=strict';
const env = { ...process.env, NODE_OPTIONS: [process.env.NODE_OPTIONS, strict].filter(Boolean).join(' ') };
const folders = process.argv.slice(2);
const starts = folders.length > 0 ? folders.map((f) => join(root, f)) : [root];
const files = [];
const walk = (dir) => {
  for (const name of readdirSync(dir).sort()) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) walk(path);
    else if (name.endsWith('.test.js')) files.push(path);
  }
};
for (const start of starts) if (existsSync(start)) walk(start);
if (files.length === 0) {
  console.error(`run-tests: no test files under ${starts.join(', ')}`);
  process.exit(1);
}
// The oracle tests boot a VM that keeps a core busy for a minute: they run after the rest, alone, so
// the rest does not wait for a core.
const isOracle = (path) => path.startsWith(join(root, 'oracle'));
const phases = [files.filter((f) => !isOracle(f)), files.filter(isOracle)].filter((list) => list.length > 0);
let status = 0;
for (const list of phases) {
  const result = spawnSync(process.execPath, [strict, '--test', '--test-concurrency=2', ...list], { stdio: 'inherit', env });
  if (result.status !== 0) status = result.status ?? 1;
}
process.exit(status);
