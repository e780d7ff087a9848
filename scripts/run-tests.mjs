#!/usr/bin/env node
// Runs the compiled tests under build/test with node's test runner.
// Usage: node scripts/run-tests.mjs [folder ...]   (default: every folder under build/test)
// Node 20's runner does not expand globs, so the file list is built here.
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';

const root = 'build/test';
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
// they do not slow down timing-sensitive tests.
const isOracle = (path) => path.startsWith(join(root, 'oracle'));
const phases = [files.filter((f) => !isOracle(f)), files.filter(isOracle)].filter((list) => list.length > 0);
let status = 0;
for (const list of phases) {
  const result = spawnSync(process.execPath, ['--test', '--test-concurrency=2', ...list], { stdio: 'inherit' });
  if (result.status !== 0) status = result.status ?? 1;
}
process.exit(status);
