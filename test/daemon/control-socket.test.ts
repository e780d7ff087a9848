/**
 * Bad input never takes the daemon down (issue 5): garbage, huge lines, unknown verbs, bad JSON,
 * half-written lines, disconnects mid-request, too many connections, and every verb-level mistake
 * (unknown device, duplicate name, malformed table, device in use, a stacking cycle). After each, the
 * daemon still answers on the same and on new connections, and nothing else changed.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { LineDecoder, encodeLine, parseResponse, type ControlRequest, type ControlResponse } from '../../src/control/control-protocol.js';
import { startDaemon, until, type Daemon } from '../helpers/daemon-process.js';
import { RawNbdClient } from '../helpers/nbd-raw-client.js';

interface Raw {
  readonly socket: Socket;
  send(data: string | Buffer): void;
  next(): Promise<ControlResponse>;
  close(): void;
}

async function raw(path: string): Promise<Raw> {
  const socket = connect(path);
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  const decoder = new LineDecoder();
  const queue: ControlResponse[] = [];
  const waiters: ((r: ControlResponse) => void)[] = [];
  socket.on('data', (chunk: Buffer) => {
    for (const item of decoder.push(chunk)) {
      assert.equal(item.kind, 'line');
      if (item.kind !== 'line') continue;
      const response = parseResponse(item.text);
      const waiter = waiters.shift();
      if (waiter === undefined) queue.push(response);
      else waiter(response);
    }
  });
  socket.on('error', () => undefined);
  return {
    socket,
    send: (data) => void socket.write(data),
    next: () => {
      const ready = queue.shift();
      if (ready !== undefined) return Promise.resolve(ready);
      return new Promise((resolve) => waiters.push(resolve));
    },
    close: () => socket.destroy(),
  };
}

let daemon: Daemon;
const keepTable = '0 2048 zero';

before(async () => {
  daemon = await startDaemon();
  const created = await daemon.cli(['create', 'keep', '--table', keepTable]);
  assert.equal(created.code, 0, created.stderr);
});

after(async () => {
  assert.equal(await daemon.dispose(), 0, 'the daemon exits cleanly on SIGTERM');
});

/** The daemon answers a fresh connection, and holds exactly the devices it held before. */
async function stillHealthy(devices: readonly string[] = ['keep']): Promise<void> {
  const conn = await raw(daemon.socketPath);
  conn.send(encodeLine({ id: 99, verb: 'ls' }));
  const response = await conn.next();
  conn.close();
  assert.ok(response.ok, JSON.stringify(response));
  const result = response.result as { devices: { name: string; state: string }[] };
  assert.deepEqual(result.devices.map((d) => d.name), devices);
  assert.ok(result.devices.every((d) => d.state === 'ACTIVE'));
  const table = await daemon.cli(['table', 'keep']);
  assert.equal(table.stdout, `${keepTable} \n`);
}

function request(r: ControlRequest): string {
  return encodeLine(r);
}

test('control socket: garbage bytes get an EINVAL answer and the connection keeps working', async () => {
  const conn = await raw(daemon.socketPath);
  conn.send(Buffer.from([0x00, 0xff, 0xfe, 0x13, 0x37, 0x0a]));
  const answer = await conn.next();
  assert.equal(answer.ok, false);
  assert.equal(answer.ok ? '' : answer.error.code, 'EINVAL');
  assert.equal(answer.id, null);
  conn.send(request({ id: 2, verb: 'ls' }));
  const ls = await conn.next();
  assert.equal(ls.id, 2);
  assert.ok(ls.ok);
  conn.close();
  await stillHealthy();
});

test('control socket: a 3 MiB line is refused once (EINVAL) and the next request on the connection is answered', async () => {
  const conn = await raw(daemon.socketPath);
  const huge = Buffer.alloc(3 * 1024 * 1024, 0x61);
  conn.send(huge.subarray(0, 1024 * 1024));
  conn.send(huge.subarray(1024 * 1024));
  conn.send('\n');
  const answer = await conn.next();
  assert.ok(!answer.ok && answer.error.code === 'EINVAL' && /longer than/.test(answer.error.message), JSON.stringify(answer));
  conn.send(request({ id: 3, verb: 'info', name: 'keep' }));
  const info = await conn.next();
  assert.ok(info.ok && info.id === 3);
  conn.close();
  await stillHealthy();
});

test('control socket: unknown verbs, bad JSON and bad fields are answered by id with EINVAL', async () => {
  const conn = await raw(daemon.socketPath);
  const cases: [string, RequestIdLike, RegExp][] = [
    ['{"id":4,"verb":"format"}\n', 4, /Unknown verb/],
    ['{"id":5,"verb":"status"\n', null, /not valid JSON/],
    ['{"id":6,"verb":"status","name":["keep"]}\n', 6, /must be a string/],
    ['{"id":"seven","verb":"wait","name":"keep","eventNr":"x"}\n', 'seven', /non-negative integer/],
    ['[]\n', null, /JSON object/],
    ['{"id":8,"verb":"create","name":"../x","table":"0 8 zero"}\n', 8, /Invalid device name/],
  ];
  for (const [line, id, reason] of cases) {
    conn.send(line);
    const answer = await conn.next();
    assert.equal(answer.id, id);
    assert.ok(!answer.ok && answer.error.code === 'EINVAL' && reason.test(answer.error.message), `${line}: ${JSON.stringify(answer)}`);
  }
  conn.close();
  await stillHealthy();
});
type RequestIdLike = number | string | null;

test('control socket: half-written lines, disconnects during a wait, and a flood of connections leave the daemon answering', async () => {
  const half = await raw(daemon.socketPath);
  half.send('{"id":1,"verb":"create","name":"half","table":"0 8 ze');
  half.close();
  const waiting = await raw(daemon.socketPath);
  waiting.send(request({ id: 9, verb: 'wait', name: 'keep', eventNr: 1000 }));
  await new Promise((resolve) => setTimeout(resolve, 100));
  waiting.close();
  const flood = await Promise.all(Array.from({ length: 80 }, () => raw(daemon.socketPath)));
  const refused = await Promise.all(
    flood.map(
      (conn) =>
        new Promise<boolean>((resolve) => {
          conn.socket.once('close', () => resolve(true));
          setTimeout(() => resolve(false), 500);
        }),
    ),
  );
  assert.ok(refused.filter(Boolean).length >= 80 - 64, 'connections beyond the bound are refused');
  for (const conn of flood) conn.close();
  await new Promise((resolve) => setTimeout(resolve, 200));
  await stillHealthy();
});

test('umirror verbs: unknown device, duplicate name and malformed table fail as dmsetup does and change nothing', async () => {
  const status = await daemon.cli(['status', 'nope']);
  assert.deepEqual([status.code, status.stderr], [1, 'Device does not exist.\nCommand failed.\n']);
  const info = await daemon.cli(['info', 'nope']);
  assert.deepEqual([info.code, info.stderr], [1, 'Device does not exist.\nCommand failed.\n']);
  const remove = await daemon.cli(['remove', 'nope']);
  assert.deepEqual([remove.code, remove.stderr], [1, 'device-mapper: remove ioctl on nope  failed: No such device or address\nCommand failed.\n']);
  const suspend = await daemon.cli(['suspend', 'nope']);
  assert.equal(suspend.code, 1);
  const duplicate = await daemon.cli(['create', 'keep', '--table', '0 8 zero']);
  assert.deepEqual([duplicate.code, duplicate.stderr], [1, 'device-mapper: create ioctl on keep  failed: Device or resource busy\nCommand failed.\n']);
  const bad = await daemon.cli(['create', 'bad', '--table', '0 32768 mirror core 1 1024 1 /dev/null 0']);
  assert.equal(bad.code, 1);
  assert.equal(
    bad.stderr,
    [
      'device-mapper: reload ioctl on bad  failed: Invalid argument',
      'kmsg: device-mapper: table: bad: mirror: Invalid number of mirrors (-EINVAL)',
      'kmsg: device-mapper: ioctl: error adding target to table',
      'Command failed.',
      '',
    ].join('\n'),
  );
  const load = await daemon.cli(['load', 'keep', '--table', '0 2048 zero\n4096 8 zero']);
  assert.equal(load.code, 1);
  assert.match(load.stderr, /kmsg: device-mapper: table: keep: zero: Gap in table \(-EINVAL\)/);
  const self = await daemon.cli(['load', 'keep', '--table', '0 2048 linear keep 0']);
  assert.equal(self.code, 1, 'a device cannot stack on itself');
  assert.match(self.stderr, /Device lookup failed/);
  const usage = await daemon.cli(['suspend']);
  assert.deepEqual([usage.code, usage.stderr.split('\n')[0]], [1, 'umirror suspend: Please specify device.']);
  const infoKeep = await daemon.cli(['info', 'keep']);
  assert.match(infoKeep.stdout, /^Tables present: {4}LIVE$/m, 'the failed loads left no inactive table');
  await stillHealthy();
});

test('umirror message: the kernel mirror answers, as in reference/message.out', async () => {
  const expected = 'device-mapper: message ioctl on keep  failed: Invalid argument';
  for (const [args, kmsg] of [
    [['0', 'anything'], 'Target type does not support messages'],
    [['0', 'handle_errors'], 'Target type does not support messages'],
    [['100', 'anything'], 'Target type does not support messages'],
    [['99999999', 'anything'], 'Target message sector outside device.'],
  ] as const) {
    const result = await daemon.cli(['message', 'keep', ...args]);
    assert.equal(result.code, 1);
    assert.equal(result.stderr, `${expected}\nkmsg: device-mapper: ioctl: ${kmsg}\nCommand failed.\n`);
  }
  for (const message of ['@stats_list', '@cancel_deferred_remove']) {
    const result = await daemon.cli(['message', 'keep', '0', message]);
    assert.deepEqual([result.code, result.stdout, result.stderr], [0, '', '']);
  }
  await stillHealthy();
});

test('umirror remove: refused while an NBD client is connected or another device stacks on it', async () => {
  const nbdPath = join(daemon.dir, 'busy.sock');
  const created = await daemon.cli(['create', 'busy', '--table', '0 2048 zero', '--nbd', `unix:${nbdPath}`]);
  assert.equal(created.code, 0, created.stderr);
  // A client counts once it finished the handshake (one still in the handshake does not hold the device).
  const client = await RawNbdClient.connect({ path: nbdPath });
  await client.start();
  await client.go();
  const info = await daemon.cli(['info', 'busy']);
  assert.match(info.stdout, /^Open count: {8}1$/m);
  const refused = await daemon.cli(['remove', 'busy']);
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /^device-mapper: remove ioctl on busy {2}failed: Device or resource busy$/m);
  client.destroy();
  await until('the client gone', async () => /^Open count: {8}0$/m.test((await daemon.cli(['info', 'busy'])).stdout));
  const upper = await daemon.cli(['create', 'upper', '--table', '0 2048 linear busy 0']);
  assert.equal(upper.code, 0, upper.stderr);
  const stacked = await daemon.cli(['remove', 'busy']);
  assert.equal(stacked.code, 1);
  assert.match(stacked.stderr, /Device or resource busy\numirror: Cannot remove busy: device is open \(1 stacked, 0 NBD clients\)/);
  assert.equal((await daemon.cli(['remove', 'upper'])).code, 0);
  const removed = await daemon.cli(['remove', 'busy']);
  assert.equal(removed.code, 0, removed.stderr);
  await stillHealthy();
});

test('umirror verbs: --socket before the verb, multi-line tables stacking on another device, --help', async () => {
  const create = await daemon.cli(['--socket', daemon.socketPath, 'create', 'multi', '--table', '0 1024 linear keep 0\n1024 512 zero\n1536 512 error']);
  assert.equal(create.code, 0, create.stderr);
  assert.equal((await daemon.cli(['table', 'multi'])).stdout, '0 1024 linear keep 0\n1024 512 zero \n1536 512 error \n');
  const all = await daemon.cli(['status']);
  assert.equal(all.stdout, 'keep: 0 2048 zero \nmulti: 0 1024 linear \nmulti: 1024 512 zero \nmulti: 1536 512 error \n');
  assert.match((await daemon.cli(['info', 'keep'])).stdout, /^Open count: {8}1$/m);
  assert.equal((await daemon.cli(['remove', 'multi'])).code, 0);
  const help = await daemon.cli(['--help']);
  assert.equal(help.code, 0);
  for (const verb of ['daemon', 'create', 'load', 'suspend', 'resume', 'remove', 'status', 'table', 'info', 'ls', 'wait', 'message']) {
    assert.match(help.stdout, new RegExp(`^  ${verb} `, 'm'), verb);
    const verbHelp = await daemon.cli([verb, '--help']);
    assert.equal(verbHelp.code, 0);
    assert.match(verbHelp.stdout, new RegExp(`^Usage: umirror ${verb} `));
  }
  await stillHealthy();
});
