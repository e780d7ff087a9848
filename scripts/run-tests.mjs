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
const result = spawnSync(process.execPath, ['--test', '--test-concurrency=2', ...files], { stdio: 'inherit' });
process.exit(result.status ?? 1);
