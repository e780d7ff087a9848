/**
 * The one mapping from a thrown error to an NBD wire error (nbdkit's nbd_errno). Callers: the
 * transmission code, for every failed request. The error is first normalised into our Errno
 * (`errnoOf` in src/errors.ts: EROFS is EPERM, EDQUOT and EFBIG are ENOSPC, an unknown code or none is
 * EIO); `wireError` is then a total switch over Errno:
 *
 *   Errno        wire value
 *   EPERM        EPERM
 *   EIO          EIO
 *   ENOMEM       ENOMEM
 *   ENOSPC       ENOSPC
 *   ESHUTDOWN    ESHUTDOWN
 *   ENOTSUP      ENOTSUP with FAST_ZERO set, else EINVAL (older clients know no ENOTSUP)
 *   EOVERFLOW    EOVERFLOW with DF set, else EINVAL
 *   EINVAL       EINVAL
 *   EBUSY        EINVAL (nbdkit's default; only an open fails so, and no request reaches a closed open)
 *
 * Programmer errors are rethrown (fail-fast.ts: AssertionError, TypeError, RangeError, ...): a broken
 * invariant stops the process instead of becoming a wire error.
 *
 * `fromNbdError` (at the end) is the inverse, for the NBD client: wire value -> errno, unknown -> EIO.
 */
import { type Errno, errnoOf, recognisedErrnoOf } from '../errors.js';
import { unreachable } from '../assert.js';
import { rethrowProgrammerError } from '../fail-fast.js';
import { commandFlag, nbdErrno } from './protocol.js';

export function toNbdError(err: unknown, cmdFlags = 0): number {
  rethrowProgrammerError(err);
  return wireError(errnoOf(err), cmdFlags);
}

/** The wire value of one of our errnos, under the request's command flags. */
export function wireError(errno: Errno, cmdFlags: number): number {
  switch (errno) {
    case 'EPERM':
      return nbdErrno.EPERM;
    case 'EIO':
      return nbdErrno.EIO;
    case 'ENOMEM':
      return nbdErrno.ENOMEM;
    case 'ENOSPC':
      return nbdErrno.ENOSPC;
    case 'ESHUTDOWN':
      return nbdErrno.ESHUTDOWN;
    case 'ENOTSUP':
      return (cmdFlags & commandFlag.fastZero) !== 0 ? nbdErrno.ENOTSUP : nbdErrno.EINVAL;
    case 'EOVERFLOW':
      return (cmdFlags & commandFlag.df) !== 0 ? nbdErrno.EOVERFLOW : nbdErrno.EINVAL;
    case 'EINVAL':
    case 'EBUSY':
      return nbdErrno.EINVAL;
    default:
      return unreachable(errno);
  }
}

/**
 * True when the error is not one we recognise (no BlockError, no system code of SYSTEM_ERRNOS): it goes
 * out as EIO, and the caller logs it first.
 */
export function isUnexpectedError(err: unknown): boolean {
  return recognisedErrnoOf(err) === undefined;
}

/** Name of a wire error value, for log lines and test messages. */
export function nbdErrorName(value: number): string {
  for (const [name, number] of Object.entries(nbdErrno)) if (number === value) return name;
  return `error ${value}`;
}

/**
 * The inverse mapping, for the NBD client: a wire error value from a server becomes our errno. The
 * values we know pass through by name (EPERM, EIO, ENOMEM, EINVAL, ENOSPC, EOVERFLOW, ENOTSUP,
 * ESHUTDOWN); any other value (the spec allows servers to send only these, but some send more) is EIO,
 * the one code every caller treats as a device failure.
 */
export function fromNbdError(value: number): Errno {
  switch (value) {
    case nbdErrno.EPERM:
      return 'EPERM';
    case nbdErrno.EIO:
      return 'EIO';
    case nbdErrno.ENOMEM:
      return 'ENOMEM';
    case nbdErrno.EINVAL:
      return 'EINVAL';
    case nbdErrno.ENOSPC:
      return 'ENOSPC';
    case nbdErrno.EOVERFLOW:
      return 'EOVERFLOW';
    case nbdErrno.ENOTSUP:
      return 'ENOTSUP';
    case nbdErrno.ESHUTDOWN:
      return 'ESHUTDOWN';
    default:
      return 'EIO';
  }
}
