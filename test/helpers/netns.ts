/**
 * Two "hosts" for remote-leg tests (issue 11): two network namespaces joined by a veth pair.
 *
 *   local  um<pid>l<n>   veth um<pid>a<n>  10.200.0.1/30  <--->  10.200.0.2/30  veth um<pid>b<n>  um<pid>r<n>  remote
 *
 * Addresses exist only inside namespaces this helper creates (each namespace has its own stack, so the
 * same /30 in every pair never meets another), and nothing is added to the caller's namespace: the veth
 * ends are created directly inside the two namespaces. `exec(host, cmd, args)` is the argv that runs a
 * program on a host (`ip netns exec NAME cmd args`, which execs it: the child's pid is the program's,
 * so signals reach it). Unix sockets and files are shared (only the network is separate), so clients
 * may talk to a umirror in the local namespace over a Unix socket from anywhere.
 *
 * partition() sets the remote veth end down (packets are dropped, no reset is sent: a request simply
 * goes unanswered); heal() sets it up again.
 *
 * Cleanup: close() deletes both namespaces (their veth ends go with them); an exit handler does the
 * same if the test process ends without close(); and every new pair first deletes pairs left by dead
 * processes (the pid in the name), so a crashed run leaves nothing for long.
 *
 * Needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN) and iproute2: checkNetns() says why not; the tests skip
 * with that reason locally and fail under CI=true (which runs as root).
 */
import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';
import type { TestContext } from 'node:test';
import { findTool } from './tools.js';

const execFileAsync = promisify(execFile);

export const localAddress = '10.200.0.1';
export const remoteAddress = '10.200.0.2';
const prefixLength = 30;

export interface Host {
  /** The namespace name. */
  readonly name: string;
  readonly address: string;
  /** The interface of this host's veth end. */
  readonly device: string;
}

export interface TwoHosts {
  readonly local: Host;
  readonly remote: Host;
  /** argv to run `command args` on `host`. */
  exec(host: Host, command: string, args: readonly string[]): { command: string; args: string[] };
  /** Runs a command on `host` to completion; rejects on a nonzero exit. */
  run(host: Host, command: string, args: readonly string[]): Promise<string>;
  partition(): Promise<void>;
  heal(): Promise<void>;
  /** Deletes both namespaces. Idempotent. */
  close(): Promise<void>;
}

let pairCount = 0;
const live = new Set<string>();
let exitHandler = false;

/** Why network namespaces cannot be made here, or undefined when they can. */
export function netnsUnavailable(): string | undefined {
  if (findTool('ip') === undefined) return 'iproute2 (ip) is not installed';
  if (typeof process.getuid === 'function' && process.getuid() !== 0) return 'network namespaces need root (CI runs as root)';
  return undefined;
}

/**
 * True when namespaces can be made; otherwise skips `t` with the reason (printed), or throws under
 * CI=true, where these tests must run.
 */
export function requireNetns(t: Pick<TestContext, 'name' | 'skip'>): boolean {
  const reason = netnsUnavailable();
  if (reason === undefined) return true;
  if (process.env['CI'] === 'true') throw new Error(`${reason} (required under CI=true)`);
  console.log(`skipping "${t.name}": ${reason}`);
  t.skip(reason);
  return false;
}

async function ip(args: readonly string[]): Promise<string> {
  const { stdout } = await execFileAsync('ip', [...args], { encoding: 'utf8' });
  return stdout;
}

/** Deletes namespaces named by this helper whose process is gone. */
async function removeLeftovers(): Promise<void> {
  const listed = await ip(['netns', 'list']);
  for (const line of listed.split('\n')) {
    const match = /^(um(\d+)[lr]\d+)\b/.exec(line.trim());
    const name = match?.[1];
    const pid = Number(match?.[2]);
    if (name === undefined || pid === process.pid || processAlive(pid)) continue;
    await ip(['netns', 'del', name]).catch(() => undefined); // Another run may be deleting it too.
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Makes the two hosts (see the banner). */
export async function makeTwoHosts(): Promise<TwoHosts> {
  await removeLeftovers();
  const n = pairCount++;
  const id = `um${process.pid}`;
  const local: Host = { name: `${id}l${n}`, address: localAddress, device: `${id}a${n}` };
  const remote: Host = { name: `${id}r${n}`, address: remoteAddress, device: `${id}b${n}` };
  if (!exitHandler) {
    exitHandler = true;
    process.on('exit', () => {
      for (const name of live) {
        try {
          execFileSync('ip', ['netns', 'del', name], { stdio: 'ignore' });
        } catch {
          // Already gone: nothing to clean.
        }
      }
    });
  }
  let closed: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closed ??= (async () => {
      for (const host of [local, remote]) {
        if (!live.has(host.name)) continue;
        await ip(['netns', 'del', host.name]).catch(() => undefined); // Gone already: fine.
        live.delete(host.name);
      }
    })();
    return closed;
  };
  try {
    for (const host of [local, remote]) {
      await ip(['netns', 'add', host.name]);
      live.add(host.name);
      await ip(['-n', host.name, 'link', 'set', 'lo', 'up']);
    }
    await ip(['link', 'add', local.device, 'netns', local.name, 'type', 'veth', 'peer', 'name', remote.device, 'netns', remote.name]);
    for (const host of [local, remote]) {
      await ip(['-n', host.name, 'addr', 'add', `${host.address}/${prefixLength}`, 'dev', host.device]);
      await ip(['-n', host.name, 'link', 'set', host.device, 'up']);
    }
  } catch (err) {
    await close();
    throw err;
  }
  const exec = (host: Host, command: string, args: readonly string[]): { command: string; args: string[] } => ({
    command: 'ip',
    args: ['netns', 'exec', host.name, command, ...args],
  });
  return {
    local,
    remote,
    exec,
    run: async (host, command, args) => {
      const argv = exec(host, command, args);
      const { stdout } = await execFileAsync(argv.command, argv.args, { encoding: 'utf8', timeout: 60_000 });
      return stdout;
    },
    partition: async () => {
      await ip(['-n', remote.name, 'link', 'set', remote.device, 'down']);
    },
    heal: async () => {
      await ip(['-n', remote.name, 'link', 'set', remote.device, 'up']);
    },
    close,
  };
}
