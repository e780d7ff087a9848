/**
 * The one mapping from a thrown error to an NBD wire error (nbdkit's nbd_errno). Callers: the
 * transmission code, for every failed request. Rules:
 *
 *   BlockError / fs error code      wire value
 *   EPERM, EROFS                    EPERM
 *   EIO                             EIO
 *   ENOMEM                          ENOMEM
 *   ENOSPC, EDQUOT, EFBIG           ENOSPC
 *   ESHUTDOWN                       ESHUTDOWN
 *   ENOTSUP, EOPNOTSUPP             ENOTSUP with FAST_ZERO set, else EINVAL (older clients know no ENOTSUP)
 *   EOVERFLOW                       EOVERFLOW with DF set, else EINVAL
 *   EINVAL and any other code       EINVAL
 *   anything without a code         EIO (the caller logs it: `isUnexpectedError`)
 *   programmer errors               rethrown (fail-fast.ts: AssertionError, TypeError, RangeError, ...): a
 *                                   broken invariant stops the process instead of becoming a wire error
 *
 * `fromNbdError` (at the end) is the inverse, for the NBD client: wire value -> errno, unknown -> EIO.
 */
import { BlockError, type Errno } from '../errors.js';
import { rethrowProgrammerError } from '../fail-fast.js';
import { commandFlag, nbdErrno } from './protocol.js';

export function toNbdError(err: unknown, cmdFlags = 0): number {
  rethrowProgrammerError(err);
  const code = codeOf(err);
  switch (code) {
    case undefined:
      return nbdErrno.EIO;
    case 'EPERM':
    case 'EROFS':
      return nbdErrno.EPERM;
    case 'EIO':
      return nbdErrno.EIO;
    case 'ENOMEM':
      return nbdErrno.ENOMEM;
    case 'ENOSPC':
    case 'EDQUOT':
    case 'EFBIG':
      return nbdErrno.ENOSPC;
    case 'ESHUTDOWN':
      return nbdErrno.ESHUTDOWN;
    case 'ENOTSUP':
    case 'EOPNOTSUPP':
      return (cmdFlags & commandFlag.fastZero) !== 0 ? nbdErrno.ENOTSUP : nbdErrno.EINVAL;
    case 'EOVERFLOW':
      return (cmdFlags & commandFlag.df) !== 0 ? nbdErrno.EOVERFLOW : nbdErrno.EINVAL;
    default:
      return nbdErrno.EINVAL;
  }
}

/** True when the error is not an operating error with a code: the caller logs it before replying EIO. */
export function isUnexpectedError(err: unknown): boolean {
  return codeOf(err) === undefined;
}

function codeOf(err: unknown): string | undefined {
  if (err instanceof BlockError) return err.code;
  if (err instanceof Error && 'code' in err) {
    const code = (err as Error & { code: unknown }).code;
    if (typeof code === 'string' && /^E[A-Z0-9]+$/.test(code)) return code;
  }
  return undefined;
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
