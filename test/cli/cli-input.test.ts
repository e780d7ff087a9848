/**
 * Bad command lines against the real `umirror` (node dist/cli/main.js), one row per option or number:
 * every one ends in one line on stderr (dmsetup's verbs add their "Command failed."), no stack trace, the
 * documented exit status (1 for a bad value, 2 when umirror's own commands cannot parse the command line;
 * docs/cli.md "Exit status"), and nothing created: the data folder, sockets and images stay as they were.
 *
 * Regression (issue 9, item 13): `serve --legs 10`, `--legs abc`, `--region-size 0` and
 * `--recovery-parallel 0` ended in AssertionError stack traces and left images behind, `--lazy-clean
 * 3000000000` overflowed Node's timer, and a core log of 2^43 regions answered "Invalid typed array length".
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, readdir, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { umirrorBin, type CliResult } from '../helpers/daemon-process.js';

interface Row {
  /** The command line after `umirror`; `D` is replaced by the case's temp folder. */
  readonly args: readonly string[];
  readonly status: 1 | 2;
  /** What the message line says. */
  readonly message: RegExp;
}

const longPath = `D/${'s'.repeat(120)}`;
const serve = (...args: string[]): string[] => ['serve', '--data', 'D/data', '--size', '1M', '--nbd', 'unix:D/nbd.sock', ...args];

const ownCommandRows: readonly Row[] = [
  { args: serve('--legs', '10'), status: 1, message: /--legs must be an integer from 2 to 9, got "10"/ },
  { args: serve('--legs', 'abc'), status: 1, message: /--legs must be an integer from 2 to 9/ },
  { args: serve('--legs', '1'), status: 1, message: /--legs must be an integer from 2 to 9/ },
  { args: serve('--legs', '2x'), status: 1, message: /--legs must be an integer/ },
  { args: serve('--region-size', '0'), status: 1, message: /--region-size must be a power of two from 2 to 2147483648 sectors/ },
  { args: serve('--region-size', '3'), status: 1, message: /--region-size must be a power of two/ },
  { args: serve('--region-size', '4294967296'), status: 1, message: /--region-size must be a power of two/ },
  { args: serve('--region-size', '4096'), status: 1, message: /--region-size 4096 is larger than the device \(2048 sectors\)/ },
  { args: serve('--size', '8000T', '--region-size', '2'), status: 1, message: /more than a dirty log holds \(536870912\): use --region-size 32768 or more/ },
  { args: serve('--recovery-parallel', '0'), status: 1, message: /--recovery-parallel must be an integer from 1 to 64/ },
  { args: serve('--recovery-parallel', '65'), status: 1, message: /--recovery-parallel must be an integer from 1 to 64/ },
  { args: serve('--lazy-clean', '3000000000'), status: 1, message: /--lazy-clean must be an integer from 0 to 3600000 milliseconds/ },
  { args: serve('--lazy-clean=-1'), status: 1, message: /--lazy-clean must be an integer/ },
  { args: serve('--lazy-clean', '1e3'), status: 1, message: /--lazy-clean must be an integer/ },
  { args: serve('--handshake-limit', 'abc'), status: 1, message: /--handshake-limit must be a number of seconds/ },
  { args: serve('--handshake-limit', '99999999'), status: 1, message: /--handshake-limit must be a number of seconds from 0 to 3600/ },
  { args: serve('--leg-timeout', '0'), status: 1, message: /--leg-timeout must be a number of seconds from 0.1 to 3600, got "0"/ },
  { args: serve('--leg-timeout', '3601'), status: 1, message: /--leg-timeout must be a number of seconds from 0.1 to 3600/ },
  { args: serve('--leg-timeout', '1e3'), status: 1, message: /--leg-timeout must be a number of seconds/ },
  { args: serve('--size', '0'), status: 1, message: /--size: size "0" must be a positive multiple of 512 bytes/ },
  { args: serve('--size', '100'), status: 1, message: /--size: size "100" must be a positive multiple of 512 bytes/ },
  { args: serve('--size', 'lots'), status: 1, message: /--size: invalid size "lots"/ },
  { args: serve('--size', '9000T'), status: 1, message: /--size: size "9000T" is larger than umirror can address/ },
  { args: serve('--log', 'foo'), status: 1, message: /--log must be disk or core, got "foo"/ },
  { args: serve('--name', 'a/b'), status: 1, message: /Invalid device name "a\/b"/ },
  { args: serve('--name', ''), status: 1, message: /Invalid device name ""/ },
  { args: serve('--nbd', '::1:10809'), status: 1, message: /invalid --nbd address "::1:10809": put an IPv6 address in brackets/ },
  { args: serve('--nbd', '[::1]:70000'), status: 1, message: /invalid --nbd address .*the port must be 0 to 65535/ },
  { args: serve('--nbd', '127.0.0.1:'), status: 1, message: /invalid --nbd address .*the port must be 0 to 65535/ },
  { args: serve('--nbd', 'bad_host:80'), status: 1, message: /invalid --nbd address .*not a host name or IPv4 address/ },
  { args: serve('--nbd', '999.1.1.1:80'), status: 1, message: /invalid --nbd address .*not a host name or IPv4 address/ },
  { args: serve('--nbd', 'unix:'), status: 1, message: /--nbd unix: needs a socket path/ },
  { args: serve('--nbd', `unix:${longPath}`), status: 1, message: /--nbd unix: path is \d+ bytes long; a Unix socket path holds at most 107/ },
  { args: ['serve', '--data', '', '--nbd', 'unix:D/nbd.sock'], status: 1, message: /--data needs a folder path/ },
  { args: serve('--bogus'), status: 2, message: /Unknown option '--bogus'/ },
  { args: serve('--legs'), status: 2, message: /Option '--legs <value>' argument missing/ },
  { args: serve('extra'), status: 2, message: /Unexpected argument 'extra'/ },
  { args: ['create-images', '--data', 'D/data', '--legs', '10'], status: 1, message: /--legs must be an integer from 2 to 9/ },
  { args: ['create-images', '--data', 'D/data', '--region-size', '0'], status: 1, message: /--region-size must be a power of two/ },
  { args: ['create-images', '--data', 'D/data', '--size', '1M', '--region-size', '4096'], status: 1, message: /--region-size 4096 is larger than the device/ },
  { args: ['create-images', '--legs', '3'], status: 1, message: /create-images needs --data DIR/ },
  { args: ['create-images', '--data', 'D/data', 'extra'], status: 2, message: /Unexpected argument 'extra'/ },
  { args: ['daemon', '--socket', 'D/ctl.sock', '--log-level', 'loud'], status: 1, message: /--log-level must be one of trace, debug, info, warn, error, fatal, silent/ },
  { args: ['daemon', '--socket', 'D/ctl.sock', '--metrics', 'unix:D/m.sock'], status: 1, message: /--metrics needs HOST:PORT/ },
  { args: ['daemon', '--socket', 'D/ctl.sock', '--metrics', '127.0.0.1:99999'], status: 1, message: /invalid --metrics address .*the port must be 0 to 65535/ },
  { args: ['daemon', '--socket', longPath], status: 1, message: /--socket path is \d+ bytes long/ },
  { args: ['daemon', '--socket', ''], status: 1, message: /--socket needs a socket path/ },
  { args: ['daemon', '--socket', 'D/ctl.sock', '--leg-timeout', 'x'], status: 1, message: /--leg-timeout must be a number of seconds from 0.1 to 3600/ },
  { args: ['daemon', '--socket', 'D/ctl.sock', '--lazy-clean', '3600001'], status: 1, message: /--lazy-clean must be an integer from 0 to 3600000 milliseconds/ },
  { args: ['nope'], status: 2, message: /unknown command "nope"/ },
];

/** The dmsetup verbs: checked before the daemon is asked (there is none at D/ctl.sock). */
const verb = (...args: string[]): string[] => [...args, '--socket', 'D/ctl.sock'];
const dmVerbRows: readonly Row[] = [
  { args: verb('wait', 'm', 'abc'), status: 1, message: /EVENT_NR must be an integer from 0 to 4294967295, got "abc"/ },
  { args: verb('wait', 'm', '4294967296'), status: 1, message: /EVENT_NR must be an integer from 0 to 4294967295/ },
  { args: verb('wait', 'm', '-1'), status: 1, message: /Unknown option '-1'/ },
  { args: verb('wait', '--progress', 'm', '3'), status: 1, message: /wait --progress takes no EVENT_NR/ },
  { args: verb('message', 'm', 'abc', 'hello'), status: 1, message: /^Invalid sector\.$/ },
  { args: verb('message', 'm', '1x', 'hello'), status: 1, message: /^Invalid sector\.$/ },
  { args: verb('message', 'm', '', 'hello'), status: 1, message: /^Invalid sector\.$/ },
  { args: verb('message', 'm', '18446744073709551616', 'hello'), status: 1, message: /^Invalid sector\.$/ },
  { args: verb('status', 'a/b'), status: 1, message: /Invalid device name "a\/b"/ },
  { args: verb('create', 'x', '--table', '0 8 zero', '--nbd', '::1:5'), status: 1, message: /put an IPv6 address in brackets/ },
  { args: verb('create', 'x', '--table', '0 8 zero', '--nbd', 'unix:'), status: 1, message: /--nbd unix: needs a socket path/ },
  { args: verb('create', 'x', '--table', '0 8 zero', '--lazy-clean', '1e3'), status: 1, message: /--lazy-clean must be an integer from 0 to 3600000/ },
  { args: verb('load', 'x', '--table', '0 8 zero', '--lazy-clean', '0'), status: 1, message: /option --lazy-clean is not valid for load/ },
  { args: ['status', '--socket', longPath], status: 1, message: /--socket path is \d+ bytes long/ },
  { args: verb('wait'), status: 1, message: /Please specify device\./ },
  { args: verb('status', '--bogus'), status: 1, message: /Unknown option '--bogus'/ },
  { args: verb('table', '--watch'), status: 1, message: /option --watch is not valid for table/ },
];

async function runUmirror(args: readonly string[], timeoutMs = 30_000): Promise<CliResult> {
  const child = spawn(process.execPath, [umirrorBin, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const code = await new Promise<number | null>((resolve) => child.once('close', (exitCode) => resolve(exitCode)));
  clearTimeout(timer);
  return { code, stdout, stderr };
}

/** Runs one row in a fresh temp folder; returns what it printed and the folder's entries afterwards. */
async function runRow(args: readonly string[], prepare?: (dir: string) => Promise<void>): Promise<CliResult & { entries: string[]; before: string[] }> {
  const dir = await mkdtemp(join(tmpdir(), 'umirror-cli-'));
  try {
    await prepare?.(dir);
    const before = (await readdir(dir, { recursive: true })).sort();
    const result = await runUmirror(args.map((arg) => arg.replaceAll('D/', `${dir}/`)));
    const entries = (await readdir(dir, { recursive: true })).sort();
    return { ...result, entries, before };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

function assertNoStack(stderr: string): void {
  assert.doesNotMatch(stderr, /AssertionError|TypeError|RangeError|TimeoutOverflowWarning|Invalid typed array length/);
  assert.doesNotMatch(stderr, /^\s+at /m, 'no stack trace');
}

describe('umirror serve, create-images and daemon refuse bad options with one line, before creating anything', () => {
  for (const row of ownCommandRows) {
    test(`umirror ${row.args.join(' ').slice(0, 90)}`, async () => {
      const result = await runRow(row.args);
      const context = `stderr: ${result.stderr}\nstdout: ${result.stdout}`;
      assert.equal(result.code, row.status, context);
      assertNoStack(result.stderr);
      const lines = result.stderr.trimEnd().split('\n');
      assert.equal(lines.length, 1, `one line on stderr\n${context}`);
      const command = row.args[0] === 'nope' ? '' : ` ${row.args[0] ?? ''}`;
      assert.ok(lines[0]?.startsWith(`umirror${command}: `), context);
      assert.match(lines[0] ?? '', row.message);
      assert.equal(result.stdout, '');
      assert.deepEqual(result.entries, result.before, 'nothing created');
    });
  }
});

describe('the dmsetup verbs refuse bad arguments with one line and "Command failed.", before asking the daemon', () => {
  for (const row of dmVerbRows) {
    test(`umirror ${row.args.join(' ').slice(0, 90)}`, async () => {
      const result = await runRow(row.args);
      const context = `stderr: ${result.stderr}\nstdout: ${result.stdout}`;
      assert.equal(result.code, row.status, context);
      assertNoStack(result.stderr);
      const lines = result.stderr.trimEnd().split('\n');
      assert.equal(lines.length, 2, `one line and "Command failed."\n${context}`);
      assert.match(lines[0] ?? '', row.message);
      assert.equal(lines[1], 'Command failed.');
      assert.doesNotMatch(result.stderr, /daemon is not running|ENOENT/, 'refused before connecting');
      assert.deepEqual(result.entries, result.before, 'nothing created');
    });
  }
});

describe('table numbers no dirty log can hold get the kernel\'s dm-log line (oracle: test/scenario/oracle/cli-numbers.out)', () => {
  const rows: readonly { table: string; log: string }[] = [
    // 2^43 - 1 and 2^32 regions: above the kernel's unsigned int region count, refused by the kernel.
    { table: '0 17592186044414 mirror core 1 2 2 D/a 0 D/b 0', log: 'region count exceeds limit of 4294967295' },
    { table: '0 8589934592 mirror core 1 2 2 D/a 0 D/b 0', log: 'region count exceeds limit of 4294967295' },
    { table: '0 17592186044414 mirror disk 2 D/a 2 2 D/a 0 D/b 0', log: 'region count exceeds limit of 4294967295' },
    // 2^31 regions: the kernel tries to allocate the bitsets; we refuse past limits.ts regionCountMax.
    { table: '0 4294967296 mirror core 1 2 2 D/a 0 D/b 0', log: "couldn't allocate clean bitset" },
    { table: '0 4294967296 mirror disk 2 D/a 2 2 D/a 0 D/b 0', log: 'too small: need 268436480 bytes' },
    { table: '0 4294967296 mirror disk 2 D/big 2 2 D/a 0 D/b 0', log: "couldn't allocate disk log buffer" },
  ];
  for (const row of rows) {
    test(`umirror serve --table "${row.table}"`, async () => {
      const result = await runRow(['serve', '--nbd', 'unix:D/nbd.sock', '--table', row.table], async (dir) => {
        for (const [name, bytes] of [['a', 2 ** 20], ['b', 2 ** 20], ['big', 2 ** 30]] as const) {
          await writeFile(join(dir, name), '');
          await truncate(join(dir, name), bytes);
        }
      });
      assert.equal(result.code, 1, result.stderr);
      assertNoStack(result.stderr);
      const lines = result.stderr.trimEnd().split('\n');
      assert.match(lines[0] ?? '', /^device-mapper: reload ioctl on umirror failed: Invalid argument$/);
      assert.ok(lines[1]?.startsWith('kmsg: device-mapper: dirty region log: ') && lines[1].endsWith(row.log), result.stderr);
      assert.equal(lines[2], 'kmsg: device-mapper: table: umirror: mirror: Error creating mirror dirty log (-EINVAL)');
      assert.equal(lines.at(-1), 'Command failed.');
      assert.deepEqual(result.entries, result.before, 'nothing created');
    });
  }
});

test('the kernel and dmsetup print the lines these rows expect (the oracle reference)', () => {
  const reference = readFileSync(new URL('../../../test/scenario/oracle/cli-numbers.out', import.meta.url), 'utf8');
  assert.match(reference, /^kmsg: device-mapper: dirty region log: region count exceeds limit of 4294967295$/m);
  assert.match(reference, /^kmsg: device-mapper: table: 253:0: mirror: Error creating mirror dirty log \(-EINVAL\)$/m);
  assert.match(reference, /^\$ dmsetup message m 18446744073709551616 anything\nInvalid sector\.\nCommand failed\.$/m);
  assert.match(reference, /^\$ dmsetup message m abc anything\nInvalid sector\.\nCommand failed\.$/m);
});

test('umirror --version prints the version in package.json', async () => {
  const version: unknown = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')).version;
  assert.equal(typeof version, 'string');
  for (const flag of ['--version', '-V']) {
    const result = await runUmirror([flag]);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout, `umirror ${String(version)}\n`);
    assert.equal(result.stderr, '');
  }
});
