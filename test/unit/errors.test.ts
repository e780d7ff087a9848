/**
 * The errno rules, table-driven: every system code we may see goes through errnoOf (the one
 * normalisation, src/errors.ts) and toNbdError (the wire mapping, a total switch over Errno), and the two
 * agree because the second only sees what the first made.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AssertionError } from 'node:assert';
import { constants as osConstants } from 'node:os';
import { getSystemErrorName } from 'node:util';
import { BlockError, ERRNOS, type Errno, errnoOf, recognisedErrnoOf, toBlockError } from '../../src/errors.js';
import { isUnexpectedError, toNbdError, wireError } from '../../src/nbd/errors.js';
import { commandFlag, nbdErrno } from '../../src/nbd/protocol.js';

/** A system error as Node's fs builds it: `code` is libuv's name, `errno` the negative number. */
function systemError(code: string, errno?: number): Error {
  return Object.assign(new Error(`${code}: injected, write`), { code, syscall: 'write', ...(errno === undefined ? {} : { errno }) });
}

/** As Node reports an errno by number: the name it gives (EDQUOT is "Unknown system error -122" on Node 20). */
function nodeSystemError(name: keyof typeof osConstants.errno): Error {
  const number = osConstants.errno[name];
  return systemError(getSystemErrorName(-number), -number);
}

const flags = commandFlag.fastZero | commandFlag.df;

// [system code, our Errno, wire value without flags, wire value with FAST_ZERO and DF]
const cases: readonly [string, Errno, number, number][] = [
  ['EIO', 'EIO', nbdErrno.EIO, nbdErrno.EIO],
  ['EPERM', 'EPERM', nbdErrno.EPERM, nbdErrno.EPERM],
  ['EROFS', 'EPERM', nbdErrno.EPERM, nbdErrno.EPERM],
  ['EACCES', 'EPERM', nbdErrno.EPERM, nbdErrno.EPERM],
  ['ENOSPC', 'ENOSPC', nbdErrno.ENOSPC, nbdErrno.ENOSPC],
  ['EDQUOT', 'ENOSPC', nbdErrno.ENOSPC, nbdErrno.ENOSPC],
  ['EFBIG', 'ENOSPC', nbdErrno.ENOSPC, nbdErrno.ENOSPC],
  ['EINVAL', 'EINVAL', nbdErrno.EINVAL, nbdErrno.EINVAL],
  ['ENOTSUP', 'ENOTSUP', nbdErrno.EINVAL, nbdErrno.ENOTSUP],
  ['EOPNOTSUPP', 'ENOTSUP', nbdErrno.EINVAL, nbdErrno.ENOTSUP],
  ['EOVERFLOW', 'EOVERFLOW', nbdErrno.EINVAL, nbdErrno.EOVERFLOW],
  ['ESHUTDOWN', 'ESHUTDOWN', nbdErrno.ESHUTDOWN, nbdErrno.ESHUTDOWN],
  ['ENOMEM', 'ENOMEM', nbdErrno.ENOMEM, nbdErrno.ENOMEM],
  ['EBUSY', 'EBUSY', nbdErrno.EINVAL, nbdErrno.EINVAL],
  // Codes we do not recognise are device failures: EIO, as the block layer's errno_to_blk_status.
  ['ENODEV', 'EIO', nbdErrno.EIO, nbdErrno.EIO],
  ['ENXIO', 'EIO', nbdErrno.EIO, nbdErrno.EIO],
  ['ENOENT', 'EIO', nbdErrno.EIO, nbdErrno.EIO],
  ['EISDIR', 'EIO', nbdErrno.EIO, nbdErrno.EIO],
  ['EBADF', 'EIO', nbdErrno.EIO, nbdErrno.EIO],
  ['EAGAIN', 'EIO', nbdErrno.EIO, nbdErrno.EIO],
  ['ETIMEDOUT', 'EIO', nbdErrno.EIO, nbdErrno.EIO],
  ['ECONNRESET', 'EIO', nbdErrno.EIO, nbdErrno.EIO],
  ['EPIPE', 'EIO', nbdErrno.EIO, nbdErrno.EIO],
];

test('errnoOf and toNbdError map every system code by one rule set', () => {
  for (const [code, errno, wire, wireWithFlags] of cases) {
    const err = systemError(code);
    assert.equal(errnoOf(err), errno, `errnoOf ${code}`);
    assert.equal(toBlockError(err, 'Cannot write leg').code, errno, `toBlockError ${code}`);
    assert.equal(toNbdError(err), wire, `toNbdError ${code}`);
    assert.equal(toNbdError(err, flags), wireWithFlags, `toNbdError ${code} with flags`);
    // A BlockError that carries the normalised code goes to the same wire value: the maps agree.
    assert.equal(toNbdError(new BlockError(errno, 'x'), flags), wireWithFlags, `BlockError ${errno}`);
    assert.equal(isUnexpectedError(err), errno === 'EIO' && code !== 'EIO', `isUnexpectedError ${code}`);
  }
});

test('errnoOf names a system error by its number when Node cannot name it (EDQUOT on Node 20)', () => {
  // Node 20's libuv has no name for EDQUOT: a leg over quota reports code "Unknown system error -122".
  // Regression: that error was EIO on the wire and failed the request as a device failure.
  const quota = nodeSystemError('EDQUOT');
  assert.equal(errnoOf(quota), 'ENOSPC');
  assert.equal(toBlockError(quota, 'Cannot write leg').code, 'ENOSPC');
  assert.equal(toNbdError(quota), nbdErrno.ENOSPC);
  assert.equal(isUnexpectedError(quota), false);
  for (const name of ['EROFS', 'EFBIG', 'ENOSPC', 'EOPNOTSUPP', 'ENODEV'] as const) {
    assert.equal(errnoOf(nodeSystemError(name)), errnoOf(systemError(name)), name);
  }
  // A number no platform name fits is EIO, and unexpected.
  const odd = systemError('Unknown system error -4242', -4242);
  assert.equal(errnoOf(odd), 'EIO');
  assert.equal(isUnexpectedError(odd), true);
});

test('errnoOf keeps a BlockError code and makes anything without a code EIO', () => {
  for (const code of ERRNOS) assert.equal(errnoOf(new BlockError(code, 'x')), code);
  for (const value of [new Error('plain'), 'a string', undefined, null, 42, { code: 5 }, { code: 'ERR_SOMETHING' }]) {
    assert.equal(errnoOf(value), 'EIO', String(value));
    assert.equal(recognisedErrnoOf(value), undefined, String(value));
    assert.equal(toNbdError(value), nbdErrno.EIO, String(value));
    assert.equal(isUnexpectedError(value), true, String(value));
  }
});

test('wireError is total over Errno and sends only values the NBD spec defines', () => {
  const defined = new Set<number>(Object.values(nbdErrno).filter((v) => v !== 0));
  for (const code of ERRNOS) {
    for (const f of [0, commandFlag.fastZero, commandFlag.df, flags]) assert.ok(defined.has(wireError(code, f)), `${code} flags ${f}`);
  }
});

test('toBlockError and toNbdError rethrow programmer errors instead of mapping them', () => {
  for (const bug of [new AssertionError({ message: 'broken' }), new TypeError('broken'), new RangeError('broken')]) {
    assert.throws(() => toNbdError(bug), (err: unknown) => err === bug);
    assert.throws(() => toBlockError(bug, 'Cannot write'), (err: unknown) => err === bug);
  }
});
