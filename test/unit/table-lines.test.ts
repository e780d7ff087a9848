// dm core's table text handling: dmsetup's line format, dm_split_args, dm_table_add_target's checks.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { TableError } from '../../src/errors.js';
import { formatTableLine, kernelTableLogLines, parseTableText, splitArgs } from '../../src/target/table-lines.js';

function coreError(text: string): TableError {
  try {
    parseTableText(text);
  } catch (error) {
    assert.ok(error instanceof TableError);
    assert.equal(error.source, 'core');
    return error;
  }
  assert.fail(`accepted: ${JSON.stringify(text)}`);
}

describe('parseTableText', () => {
  test('parses one line into start, length, type and whitespace-split args', () => {
    assert.deepEqual(parseTableText('0 32768 mirror core 1 1024  2 /dev/vda 0\t/dev/vdb 0'), [
      {
        startSectors: 0,
        lengthSectors: 32768,
        type: 'mirror',
        args: ['core', '1', '1024', '2', '/dev/vda', '0', '/dev/vdb', '0'],
      },
    ]);
  });

  test('parses several lines, skipping blank lines and # comments', () => {
    const lines = parseTableText('# a comment\n0 100 linear /dev/a 0\n\n  \n100 50 zero\r\n150 10 error\n');
    assert.deepEqual(
      lines.map((l) => [l.startSectors, l.lengthSectors, l.type, l.args]),
      [
        [0, 100, 'linear', ['/dev/a', '0']],
        [100, 50, 'zero', []],
        [150, 10, 'error', []],
      ],
    );
  });

  test('rejects a zero-length target', () => {
    assert.equal(coreError('0 0 mirror core 1 1024 2 /dev/vda 0 /dev/vdb 0').kernelError, 'zero-length target');
  });

  test('rejects a first line not at sector 0 with "Gap in table"', () => {
    const error = coreError('8 100 zero');
    assert.equal(error.kernelError, 'Gap in table');
    assert.deepEqual(kernelTableLogLines(error, { deviceNumber: '253:0', targetType: 'zero' }), [
      'device-mapper: table: 253:0: zero: Gap in table (-EINVAL)',
      'device-mapper: ioctl: error adding target to table',
    ]);
  });

  test('rejects gaps and overlaps between lines with "Gap in table"', () => {
    assert.equal(coreError('0 100 zero\n101 10 zero').kernelError, 'Gap in table');
    assert.equal(coreError('0 100 zero\n99 10 zero').kernelError, 'Gap in table');
  });

  test('rejects an unknown target type as dm core logs it', () => {
    const error = coreError('0 100 striped 2 8 /dev/a 0 /dev/b 0');
    assert.equal(error.kernelError, 'striped: unknown target type');
    assert.deepEqual(kernelTableLogLines(error, { deviceNumber: '253:0', targetType: 'striped' }), [
      'device-mapper: table: 253:0: striped: unknown target type',
      'device-mapper: ioctl: error adding target to table',
    ]);
  });

  test('checks zero length before the type, and the type before adjacency (dm_table_add_target order)', () => {
    assert.equal(coreError('5 0 bogus').kernelError, 'zero-length target');
    assert.equal(coreError('5 10 bogus').kernelError, 'bogus: unknown target type');
  });

  test('rejects malformed lines and empty tables', () => {
    assert.equal(coreError('0 100').kernelError, 'Invalid format on line 1 of table');
    assert.equal(coreError('\nx 100 zero').kernelError, 'Invalid format on line 2 of table');
    assert.equal(coreError('0 -5 zero').kernelError, 'Invalid format on line 1 of table');
    assert.equal(coreError('').kernelError, 'no targets specified');
    assert.equal(coreError('# only a comment\n').kernelError, 'no targets specified');
  });

  test('rejects a table beyond what byte offsets can address', () => {
    assert.equal(coreError(`0 ${2 ** 50} zero`).kernelError, 'too large device');
  });

  test('accepts only the known types, or the ones given', () => {
    assert.equal(parseTableText('0 8 delay x', { knownTypes: ['delay'] })[0]?.type, 'delay');
  });
});

describe('splitArgs (dm_split_args)', () => {
  test('a backslash quotes the next character', () => {
    assert.deepEqual(splitArgs('a\\ b  c\\\\d e'), ['a b', 'c\\d', 'e']);
  });
  test('empty and blank params give no args', () => {
    assert.deepEqual(splitArgs(''), []);
    assert.deepEqual(splitArgs('   '), []);
  });
});

describe('formatTableLine', () => {
  test('prints dmsetup\'s "%llu %llu %s %s", keeping the space before empty params', () => {
    assert.equal(formatTableLine({ startSectors: 0, lengthSectors: 32768, type: 'error', params: '' }), '0 32768 error ');
    assert.equal(
      formatTableLine({ startSectors: 0, lengthSectors: 32768, type: 'linear', params: '253:0 0' }),
      '0 32768 linear 253:0 0',
    );
  });
});
