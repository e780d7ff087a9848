// Mirror table parsing and re-emission against the kernel's recorded answers (oracle invalid.out and
// core.out, kernel 6.1.0-56): every case decided by the mirror target or dm core, with the exact
// ti->error string, and every accepted table re-emitted byte for byte.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { TableError } from '../../src/errors.js';
import type { LogSpec } from '../../src/dirty-log/dirty-log.js';
import {
  checkLegFits,
  deviceLookupFailure,
  formatMeasure,
  formatMirrorStatus,
  formatMirrorTable,
  parseMirrorArgs,
} from '../../src/mirror/table.js';
import { formatTableLine, kernelTableLogLines, parseTableText } from '../../src/target/table-lines.js';

const devices = new Map([
  ['/dev/vda', { number: '254:0', short: 'vda', sectors: 32768 }],
  ['/dev/vdb', { number: '254:16', short: 'vdb', sectors: 32768 }],
  ['/dev/vdc', { number: '254:32', short: 'vdc', sectors: 2048 }],
]);

const logFailure = new TableError({ source: 'log', kernelError: 'Error creating mirror dirty log', logLines: ['stand-in'] });

/** Runs a dmsetup table the way the kernel does: dm core, mirror_ctr, then the device-area check. */
function load(text: string, options: { logFails?: boolean } = {}): { output: string; logCalls: LogSpec[] } {
  const logCalls: LogSpec[] = [];
  const [line] = parseTableText(text);
  assert.ok(line !== undefined);
  const args = parseMirrorArgs(line.args, {
    lengthSectors: line.lengthSectors,
    validateLog: (log) => {
      logCalls.push(log);
      if (options.logFails === true) throw logFailure;
    },
    lookupLeg: (device) => {
      if (!devices.has(device)) throw deviceLookupFailure(new Error(`${device}: not found`));
    },
  });
  for (const leg of args.legs) {
    const device = devices.get(leg.device);
    assert.ok(device !== undefined);
    checkLegFits({
      deviceName: device.short,
      deviceSectors: device.sectors,
      offsetSectors: leg.offsetSectors,
      lengthSectors: line.lengthSectors,
    });
  }
  const logTable = [args.log.type, String(args.log.args.length), ...args.log.args].join(' ');
  const params = formatMirrorTable(args, {
    logTable,
    displayName: (device) => devices.get(device)?.number ?? device,
  });
  const output = formatTableLine({
    startSectors: line.startSectors,
    lengthSectors: line.lengthSectors,
    type: line.type,
    params,
  });
  return { output, logCalls };
}

function rejection(text: string, options: { logFails?: boolean } = {}): TableError {
  try {
    load(text, options);
  } catch (error) {
    assert.ok(error instanceof TableError, `expected a TableError, got ${String(error)}`);
    return error;
  }
  assert.fail(`table was accepted: ${text}`);
}

const legs2 = '2 /dev/vda 0 /dev/vdb 0';
const legs10 = '10' + ' /dev/vda 0 /dev/vdb 0'.repeat(5);
const legs9 = '9' + ' /dev/vda 0 /dev/vdb 0'.repeat(4) + ' /dev/vda 0';

describe('parseMirrorArgs rejects what mirror_ctr rejects (invalid.out)', () => {
  const cases: [string, string][] = [
    // mirror count
    ['0 32768 mirror core 1 1024 1 /dev/vda 0', 'Invalid number of mirrors'],
    ['0 32768 mirror core 1 1024 0', 'Invalid number of mirrors'],
    [`0 32768 mirror core 1 1024 ${legs10}`, 'Invalid number of mirrors'],
    ['0 32768 mirror core 1 1024 two /dev/vda 0 /dev/vdb 0', 'Invalid number of mirrors'],
    ['0 32768 mirror core 1 1024 -2 /dev/vda 0 /dev/vdb 0', 'Invalid number of mirrors'],
    ['0 32768 mirror core 1 1024', 'Invalid number of mirrors'],
    ['0 32768 mirror core 1 1024 2 /dev/vda 0', 'Too few mirror arguments'],
    ['0 32768 mirror core 1 1024 2 /dev/vda 0 /dev/vdb', 'Too few mirror arguments'],
    ['0 32768 mirror core 1 1024 3 /dev/vda 0 /dev/vdb 0', 'Too few mirror arguments'],
    // leg offsets
    ['0 32768 mirror core 1 1024 2 /dev/vda x /dev/vdb 0', 'Invalid offset'],
    ['0 32768 mirror core 1 1024 2 /dev/vda 0 /dev/vdb 12abc', 'Invalid offset'],
    ['0 32768 mirror core 1 1024 2 /dev/vda 0 /dev/vdb -1', 'Invalid offset'],
    // log argument count (decided by mirror_ctr before the log is created)
    ['0 32768 mirror', 'Insufficient mirror log arguments'],
    ['0 32768 mirror core', 'Insufficient mirror log arguments'],
    [`0 32768 mirror core x 1024 ${legs2}`, 'Invalid mirror log argument count'],
    // the log accepts `disk 2 /dev/vdc 2`; the mirror count is then "/dev/vda"
    ['0 32768 mirror disk 2 /dev/vdc 2 /dev/vda 0 /dev/vdb 0', 'Invalid number of mirrors'],
    // features
    [`0 32768 mirror core 1 1024 ${legs2} 1 foo`, 'Unrecognised feature requested'],
    [`0 32768 mirror core 1 1024 ${legs2} 1`, 'Not enough arguments to support feature count'],
    [`0 32768 mirror core 1 1024 ${legs2} 2 handle_errors`, 'Not enough arguments to support feature count'],
    [`0 32768 mirror core 1 1024 ${legs2} x handle_errors`, 'Invalid number of features'],
    [`0 32768 mirror core 1 1024 ${legs2} 1 keep_log`, 'keep_log feature requires the handle_errors feature'],
    [`0 32768 mirror core 1 1024 ${legs2} 1 handle_errors extra`, 'Too many mirror arguments'],
    [`0 32768 mirror core 1 1024 ${legs2} 3 handle_errors keep_log foo`, 'Unrecognised feature requested'],
    [`0 32768 mirror core 1 1024 ${legs2} handle_errors`, 'Invalid number of features'],
  ];
  for (const [text, kernelError] of cases) {
    test(`"${text.slice(14)}" -> ${kernelError}`, () => {
      const error = rejection(text);
      assert.equal(error.kernelError, kernelError);
      assert.equal(error.code, 'EINVAL');
      assert.equal(error.source, 'target');
      assert.deepEqual(kernelTableLogLines(error, { deviceNumber: '253:0', targetType: 'mirror' }), [
        `device-mapper: table: 253:0: mirror: ${kernelError} (-EINVAL)`,
        'device-mapper: ioctl: error adding target to table',
      ]);
    });
  }

  test('a leg that does not exist -> Device lookup failure (ENODEV)', () => {
    const error = rejection('0 32768 mirror core 1 1024 2 /dev/vda 0 /dev/nonexistent 0');
    assert.equal(error.kernelError, 'Device lookup failure');
    assert.equal(error.code, 'ENODEV');
    assert.deepEqual(kernelTableLogLines(error, { deviceNumber: '253:0', targetType: 'mirror' }), [
      'device-mapper: table: 253:0: mirror: Device lookup failure (-ENODEV)',
      'device-mapper: ioctl: error adding target to table',
    ]);
  });

  test('%u wraps modulo 2^32 as the kernel stores it: 4294967298 legs is 2', () => {
    const { output } = load('0 32768 mirror core 1 1024 4294967298 /dev/vda 0 /dev/vdb 0');
    assert.equal(output, '0 32768 mirror core 1 1024 2 254:0 0 254:16 0');
  });
});

describe('dm core rejections around the mirror target (invalid.out)', () => {
  test('a leg too small for the area -> "vdb too small for target" and the queue-limit lines', () => {
    const error = rejection('0 32768 mirror core 1 1024 2 /dev/vda 0 /dev/vdb 1024');
    assert.equal(error.kernelError, 'vdb too small for target: start=1024, len=32768, dev_size=32768');
    assert.equal(error.source, 'core');
    assert.deepEqual(kernelTableLogLines(error, { deviceNumber: '253:0', targetType: 'mirror' }), [
      'device-mapper: table: 253:0: vdb too small for target: start=1024, len=32768, dev_size=32768',
      'device-mapper: core: Cannot calculate initial queue limits',
      'device-mapper: ioctl: unable to set up device queue for new table.',
    ]);
  });

  test('a segment longer than the first leg -> "vda too small for target"', () => {
    const error = rejection('0 65536 mirror core 1 1024 2 /dev/vda 0 /dev/vdb 0');
    assert.equal(error.kernelError, 'vda too small for target: start=0, len=65536, dev_size=32768');
  });

  test('checkLegFits refuses an area starting at the device end and accepts an exact fit', () => {
    assert.throws(
      () => checkLegFits({ deviceName: 'vdc', deviceSectors: 2048, offsetSectors: 2048, lengthSectors: 1 }),
      (e: unknown) => e instanceof TableError && e.kernelError === 'vdc too small for target: start=2048, len=1, dev_size=2048',
    );
    assert.doesNotThrow(() => checkLegFits({ deviceName: 'vdc', deviceSectors: 2048, offsetSectors: 1024, lengthSectors: 1024 }));
  });

  test('a zero-length target -> "zero-length target" (dm core, before the mirror runs)', () => {
    const error = rejection('0 0 mirror core 1 1024 2 /dev/vda 0 /dev/vdb 0');
    assert.equal(error.kernelError, 'zero-length target');
    assert.equal(error.source, 'core');
    assert.deepEqual(kernelTableLogLines(error, { deviceNumber: '253:0', targetType: 'mirror' }), [
      'device-mapper: table: 253:0: zero-length target',
      'device-mapper: ioctl: error adding target to table',
    ]);
  });
});

describe('parseMirrorArgs creates the log before it looks at the legs', () => {
  // Cases dm-log decides: the stand-in validateLog fails on demand; the lead tests the real messages.
  const logDecided: [string, LogSpec][] = [
    [`0 32768 mirror core 1 1000 ${legs2}`, { type: 'core', args: ['1000'] }],
    [`0 32768 mirror core 1 0 ${legs2}`, { type: 'core', args: ['0'] }],
    [`0 32768 mirror core 1 65536 ${legs2}`, { type: 'core', args: ['65536'] }],
    [`0 32768 mirror core 1 -1024 ${legs2}`, { type: 'core', args: ['-1024'] }],
    [`0 32768 mirror foo 1 1024 ${legs2}`, { type: 'foo', args: ['1024'] }],
    [`0 32768 mirror core 0 ${legs2}`, { type: 'core', args: [] }],
    [`0 32768 mirror core 3 1024 nosync extra ${legs2}`, { type: 'core', args: ['1024', 'nosync', 'extra'] }],
    [`0 32768 mirror core 2 1024 bogus ${legs2}`, { type: 'core', args: ['1024', 'bogus'] }],
    [`0 32768 mirror core 2 1024 ${legs2}`, { type: 'core', args: ['1024', '2'] }],
    [`0 32768 mirror core 5 1024 ${legs2}`, { type: 'core', args: ['1024', '2', '/dev/vda', '0', '/dev/vdb'] }],
    [`0 32768 mirror disk 1 /dev/vdc ${legs2}`, { type: 'disk', args: ['/dev/vdc'] }],
    [`0 32768 mirror disk 2 /dev/nonexistent 1024 ${legs2}`, { type: 'disk', args: ['/dev/nonexistent', '1024'] }],
    [`0 32768 mirror disk 3 /dev/vdc 1024 bogus ${legs2}`, { type: 'disk', args: ['/dev/vdc', '1024', 'bogus'] }],
  ];
  for (const [text, log] of logDecided) {
    test(`"${text.slice(14)}" hands the log ${JSON.stringify(log)} to validateLog, whose error wins`, () => {
      const error = rejection(text, { logFails: true });
      assert.equal(error, logFailure);
    });
    test(`"${text.slice(14)}" passes exactly that log spec`, () => {
      const calls: LogSpec[] = [];
      const [line] = parseTableText(text);
      assert.ok(line !== undefined);
      try {
        parseMirrorArgs(line.args, {
          lengthSectors: line.lengthSectors,
          validateLog: (spec) => {
            calls.push(spec);
            throw logFailure;
          },
        });
      } catch (error) {
        assert.equal(error, logFailure);
      }
      assert.deepEqual(calls, [log]);
    });
  }

  test('the log error wins over a bad mirror count; a good log lets the mirror count fail', () => {
    const text = `0 32768 mirror core 5 1024 ${legs2}`;
    assert.equal(rejection(text, { logFails: true }), logFailure);
    assert.equal(rejection(text).kernelError, 'Invalid number of mirrors');
  });

  test('log argument count errors come before validateLog is called', () => {
    const calls: LogSpec[] = [];
    assert.throws(
      () => parseMirrorArgs(['core', 'x', '1024'], { lengthSectors: 32768, validateLog: (spec) => void calls.push(spec) }),
      (e: unknown) => e instanceof TableError && e.kernelError === 'Invalid mirror log argument count',
    );
    assert.throws(
      () => parseMirrorArgs(['core', '3', '1024'], { lengthSectors: 32768, validateLog: (spec) => void calls.push(spec) }),
      (e: unknown) => e instanceof TableError && e.kernelError === 'Insufficient mirror log arguments',
    );
    assert.deepEqual(calls, []);
  });

  test('the offset of a leg is checked before its device is looked up, leg by leg', () => {
    const looked: string[] = [];
    assert.throws(
      () =>
        parseMirrorArgs(['core', '1', '1024', '2', '/dev/vda', '0', '/dev/vdb', 'x'], {
          lengthSectors: 32768,
          lookupLeg: (device) => void looked.push(device),
        }),
      (e: unknown) => e instanceof TableError && e.kernelError === 'Invalid offset',
    );
    assert.deepEqual(looked, ['/dev/vda']);
  });
});

describe('formatMirrorTable re-emits as the kernel does (invalid.out, core.out)', () => {
  const cases: [string, string][] = [
    [`0 32768 mirror core 1 1024 ${legs2}`, '0 32768 mirror core 1 1024 2 254:0 0 254:16 0'],
    [
      `0 32768 mirror core 2 1024 nosync ${legs9}`,
      '0 32768 mirror core 2 1024 nosync 9 254:0 0 254:16 0 254:0 0 254:16 0 254:0 0 254:16 0 254:0 0 254:16 0 254:0 0',
    ],
    ['0 32768 mirror core 2 1024 nosync 2 /dev/vda 0 /dev/vda 0', '0 32768 mirror core 2 1024 nosync 2 254:0 0 254:0 0'],
    [
      `0 32768 mirror core 1 1024 ${legs2} 2 handle_errors handle_errors`,
      '0 32768 mirror core 1 1024 2 254:0 0 254:16 0 1 handle_errors',
    ],
    [
      `0 32768 mirror core 1 1024 ${legs2} 2 keep_log handle_errors`,
      '0 32768 mirror core 1 1024 2 254:0 0 254:16 0 2 handle_errors keep_log',
    ],
    [`0 30000 mirror core 1 1024 ${legs2}`, '0 30000 mirror core 1 1024 2 254:0 0 254:16 0'],
    [`0 32767 mirror core 1 1024 ${legs2}`, '0 32767 mirror core 1 1024 2 254:0 0 254:16 0'],
    [`0 32768 mirror core 1 1024 ${legs2} 0`, '0 32768 mirror core 1 1024 2 254:0 0 254:16 0'],
    [`0 32768 mirror core 1 1024 ${legs2} 1 handle_errors`, '0 32768 mirror core 1 1024 2 254:0 0 254:16 0 1 handle_errors'],
    [
      `0 32768 mirror core 1 1024 ${legs2} 2 handle_errors keep_log`,
      '0 32768 mirror core 1 1024 2 254:0 0 254:16 0 2 handle_errors keep_log',
    ],
    [
      '0 32768 mirror core 2 1024 nosync 3 /dev/vda 0 /dev/vdb 0 /dev/vdc 0 1 handle_errors',
      '0 32768 mirror core 2 1024 nosync 3 254:0 0 254:16 0 254:32 0 1 handle_errors',
    ],
    ['0 16384 mirror core 1 1024 2 /dev/vda 2048 /dev/vdb 8192', '0 16384 mirror core 1 1024 2 254:0 2048 254:16 8192'],
  ];
  for (const [text, expected] of cases) {
    test(`"${text.slice(14)}" -> "${expected.slice(14)}"`, () => {
      // /dev/vdc is small in this fixture: give the 3-leg case a device map that fits.
      if (text.includes('/dev/vdc 0')) devices.set('/dev/vdc', { number: '254:32', short: 'vdc', sectors: 32768 });
      try {
        assert.equal(load(text).output, expected);
      } finally {
        devices.set('/dev/vdc', { number: '254:32', short: 'vdc', sectors: 2048 });
      }
    });
  }

  test('parsed features are flags: duplicates merge, keep_log implies handle_errors', () => {
    const args = parseMirrorArgs(['core', '1', '1024', '2', 'a', '0', 'b', '0', '3', 'keep_log', 'handle_errors', 'keep_log'], {
      lengthSectors: 1024,
    });
    assert.deepEqual(args.features, { handleErrors: true, keepLog: true });
    assert.deepEqual(args.legs, [
      { device: 'a', offsetSectors: 0 },
      { device: 'b', offsetSectors: 0 },
    ]);
  });
});

describe('formatMirrorStatus and formatMeasure (core.out, fail-write.out)', () => {
  test('status info line', () => {
    assert.equal(
      formatMirrorStatus({ legs: ['254:0', '254:16'], syncCount: 32, regionCount: 32, health: 'AA', logInfo: '1 core' }),
      '2 254:0 254:16 32/32 1 AA 1 core',
    );
    assert.equal(
      formatMirrorStatus({
        legs: ['254:0', '253:0'],
        syncCount: 0,
        regionCount: 32,
        health: 'AA',
        logInfo: '3 disk 254:32 A',
      }),
      '2 254:0 253:0 0/32 1 AA 3 disk 254:32 A',
    );
  });

  test('status rejects a health string of the wrong length', () => {
    assert.throws(() =>
      formatMirrorStatus({ legs: ['a', 'b'], syncCount: 0, regionCount: 1, health: 'A', logInfo: '1 core' }),
    );
  });

  test('measure (IMA) string', () => {
    assert.equal(
      formatMeasure({ legs: ['254:0', '254:16'], health: 'AA', features: { handleErrors: false, keepLog: false } }),
      'target_name=mirror,target_version=1.14.0,nr_mirrors=2,mirror_device_0=254:0,mirror_device_0_status=A,' +
        'mirror_device_1=254:16,mirror_device_1_status=A,handle_errors=n,keep_log=n,log_type_status=;',
    );
    assert.equal(
      formatMeasure({ legs: ['253:0', '253:1'], health: 'AD', features: { handleErrors: true, keepLog: false } }),
      'target_name=mirror,target_version=1.14.0,nr_mirrors=2,mirror_device_0=253:0,mirror_device_0_status=A,' +
        'mirror_device_1=253:1,mirror_device_1_status=D,handle_errors=y,keep_log=n,log_type_status=;',
    );
  });
});
