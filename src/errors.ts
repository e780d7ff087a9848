/**
 * Typed operating errors. Every I/O failure in umirror is a BlockError whose `code` is one of our
 * errno strings (`Errno`). A system error (Node's fs or net error) is normalised into an Errno once, here
 * (`errnoOf`, `toBlockError`), so the NBD layer maps only our codes to the wire (nbd/ toNbdError, a total
 * switch over Errno). Programmer errors are TypeError, RangeError or AssertionError and are never caught.
 */
import { constants as osConstants } from 'node:os';
import { getSystemErrorName } from 'node:util';
import { rethrowProgrammerError } from './fail-fast.js';

export const ERRNOS = ['EIO', 'EPERM', 'ENOSPC', 'EINVAL', 'ENOTSUP', 'EOVERFLOW', 'ESHUTDOWN', 'ENOMEM', 'EBUSY'] as const;
export type Errno = (typeof ERRNOS)[number];

export class BlockError extends Error {
  readonly code: Errno;
  constructor(code: Errno, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'BlockError';
    this.code = code;
  }
}

export function isErrno(value: unknown): value is Errno {
  return typeof value === 'string' && (ERRNOS as readonly string[]).includes(value);
}

/**
 * The system error codes we recognise and the Errno each becomes: nbdkit's nbd_errno groups, applied
 * once, when the error enters umirror. docs/errors.md lists the same table (a test keeps them in line).
 *
 *   system code                 Errno       why
 *   EPERM, EROFS, EACCES        EPERM       the operation is not permitted (a read-only file system)
 *   ENOSPC, EDQUOT, EFBIG       ENOSPC      no room: the disk, the user's quota, the file size limit
 *   ENOTSUP, EOPNOTSUPP         ENOTSUP     one number on Linux; Node names it ENOTSUP
 *   EIO, EINVAL, ENOMEM,        the same
 *   EOVERFLOW, ESHUTDOWN, EBUSY
 *   any other code, or none     EIO         the block layer's rule (errno_to_blk_status: BLK_STS_IOERR):
 *                                           ENODEV and ENXIO (a device gone), ECONNRESET, ETIMEDOUT, ...
 */
export const SYSTEM_ERRNOS: ReadonlyMap<string, Errno> = new Map<string, Errno>([
  ['EIO', 'EIO'],
  ['EPERM', 'EPERM'],
  ['EROFS', 'EPERM'],
  ['EACCES', 'EPERM'],
  ['ENOSPC', 'ENOSPC'],
  ['EDQUOT', 'ENOSPC'],
  ['EFBIG', 'ENOSPC'],
  ['EINVAL', 'EINVAL'],
  ['ENOTSUP', 'ENOTSUP'],
  ['EOPNOTSUPP', 'ENOTSUP'],
  ['EOVERFLOW', 'EOVERFLOW'],
  ['ESHUTDOWN', 'ESHUTDOWN'],
  ['ENOMEM', 'ENOMEM'],
  ['EBUSY', 'EBUSY'],
]);

/** errno numbers of this platform by name, for errors whose `code` Node could not name. */
const errnoNames: ReadonlyMap<number, string> = new Map(Object.entries(osConstants.errno).map(([name, number]) => [number, name]));

/**
 * The system code of an error, by name. Node names an errno libuv does not know "Unknown system error
 * -122" (EDQUOT on Node 20): then the name comes from the number in `errno`, so a quota error on a leg
 * is ENOSPC like any other full disk, not EIO.
 */
function systemCodeOf(err: object): string | undefined {
  const code = 'code' in err ? err.code : undefined;
  if (typeof code === 'string' && /^E[A-Z0-9]+$/.test(code)) return code;
  const errno = 'errno' in err ? err.errno : undefined;
  if (typeof errno !== 'number' || !Number.isSafeInteger(errno) || errno === 0) return undefined;
  const name = errnoNames.get(Math.abs(errno));
  if (name !== undefined) return name;
  const nodeName = getSystemErrorName(-Math.abs(errno));
  return /^E[A-Z0-9]+$/.test(nodeName) ? nodeName : undefined;
}

/**
 * The Errno of an error when it is one we recognise: a BlockError's code, or a system error whose code
 * is in SYSTEM_ERRNOS. undefined for anything else (a plain Error, an unknown code): `errnoOf` makes
 * that EIO, and the NBD layer logs it as unexpected.
 */
export function recognisedErrnoOf(err: unknown): Errno | undefined {
  if (err instanceof BlockError) return err.code;
  if (typeof err !== 'object' || err === null) return undefined;
  const code = systemCodeOf(err);
  return code === undefined ? undefined : SYSTEM_ERRNOS.get(code);
}

/** The errno of any error: a BlockError's code, a system error's code normalised (SYSTEM_ERRNOS), else EIO. */
export function errnoOf(err: unknown): Errno {
  return recognisedErrnoOf(err) ?? 'EIO';
}

/**
 * Wraps any I/O failure as a BlockError, keeping the cause and its normalised errno (`errnoOf`). A
 * programmer error (src/fail-fast.ts) is never wrapped: it is rethrown, so no catch turns a bug into an
 * EIO.
 */
export function toBlockError(err: unknown, message: string): BlockError {
  rethrowProgrammerError(err);
  if (err instanceof BlockError) return err;
  return new BlockError(errnoOf(err), message, { cause: err });
}

/**
 * A table was rejected. `kernelError` is the kernel's ti->error string verbatim ("Invalid number of
 * mirrors"); `logLines` are the extra kernel log lines that precede it (dm-log's "invalid region size
 * 1000"), without the "device-mapper: dirty region log: " prefix. `errno` is what the ioctl returned.
 * `targetType` is the type of the table line whose constructor failed (set by the mapped device), for
 * the kernel's "table: 253:0: <type>: <error>" line.
 */
export const TABLE_ERRNOS = ['EINVAL', 'ENODEV', 'ENXIO'] as const;
export type TableErrno = (typeof TABLE_ERRNOS)[number];
export class TableError extends Error {
  readonly code: TableErrno;
  readonly kernelError: string;
  readonly logLines: readonly string[];
  readonly source: 'target' | 'log' | 'core';
  readonly targetType: string | undefined;
  constructor(options: {
    code?: TableErrno;
    kernelError: string;
    logLines?: readonly string[];
    source?: 'target' | 'log' | 'core';
    targetType?: string;
    cause?: unknown;
  }) {
    super(options.kernelError, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'TableError';
    this.code = options.code ?? 'EINVAL';
    this.kernelError = options.kernelError;
    this.logLines = options.logLines ?? [];
    this.source = options.source ?? 'target';
    this.targetType = options.targetType;
  }
}

/** Errors of the daemon's control protocol; codes become {code, message} on the socket and exit status. */
export const CONTROL_ERRNOS = ['ENOENT', 'EEXIST', 'EBUSY', 'EINVAL', 'ENXIO', 'ENODEV', 'EIO'] as const;
export type ControlErrno = (typeof CONTROL_ERRNOS)[number];
export function isControlErrno(value: unknown): value is ControlErrno {
  return typeof value === 'string' && (CONTROL_ERRNOS as readonly string[]).includes(value);
}
export class ControlError extends Error {
  readonly code: ControlErrno;
  constructor(code: ControlErrno, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ControlError';
    this.code = code;
  }
}

/**
 * A listener (NBD, control socket, metrics) could not be bound. Raised at start-up, before anything is
 * accepted or resumed, so the caller prints `message` (one line) and stops. `code` is stable; the
 * message names the address and the system's own error code.
 */
export const LISTEN_ERRNOS = ['EADDRINUSE', 'EADDRNOTAVAIL', 'EACCES', 'ENOTSOCK', 'EINVAL'] as const;
export type ListenErrno = (typeof LISTEN_ERRNOS)[number];
export class ListenError extends Error {
  readonly code: ListenErrno;
  /** The address as the user wrote it: `HOST:PORT` or `unix:PATH`. */
  readonly address: string;
  constructor(code: ListenErrno, options: { address: string; reason: string; cause?: unknown }) {
    super(`cannot listen on ${options.address}: ${options.reason}`, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'ListenError';
    this.code = code;
    this.address = options.address;
  }
}

/**
 * A TLS key, certificate or PSK file cannot be used: EINVAL (missing, unreadable, malformed, too large),
 * EPERM (a secret, a PSK file or a private key, that group or others may read: refused as ssh refuses a
 * readable private key). Raised at start-up (`serve`, `create --nbd`) or when a client leg opens; the
 * message is one line naming the file.
 */
export const TLS_KEY_ERRNOS = ['EINVAL', 'EPERM'] as const;
export type TlsKeyErrno = (typeof TLS_KEY_ERRNOS)[number];
export class TlsKeyError extends Error {
  readonly code: TlsKeyErrno;
  /** The file (or folder) at fault. */
  readonly path: string;
  constructor(code: TlsKeyErrno, options: { path: string; message: string; cause?: unknown }) {
    super(options.message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'TlsKeyError';
    this.code = code;
    this.path = options.path;
  }
}
