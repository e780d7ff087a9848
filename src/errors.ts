/**
 * Typed operating errors. Every I/O failure in umirror is a BlockError whose `code` is one of the
 * errno strings Node's fs errors carry, so errors from the file system pass through untouched and the
 * NBD layer maps them to the wire in one place (nbd/ toNbdError). Programmer errors are TypeError,
 * RangeError or AssertionError and are never caught.
 */
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

/** The errno of any error: a BlockError's code, a Node fs error's code when it is one of ours, else EIO. */
export function errnoOf(err: unknown): Errno {
  if (err instanceof BlockError) return err.code;
  if (typeof err === 'object' && err !== null && 'code' in err) {
    const code = (err as { code: unknown }).code;
    if (isErrno(code)) return code;
  }
  return 'EIO';
}

/**
 * Wraps any I/O failure as a BlockError, keeping the cause and an errno we understand. A programmer
 * error (src/fail-fast.ts) is never wrapped: it is rethrown, so no catch turns a bug into an EIO.
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
 */
export const TABLE_ERRNOS = ['EINVAL', 'ENODEV', 'ENXIO'] as const;
export type TableErrno = (typeof TABLE_ERRNOS)[number];
export class TableError extends Error {
  readonly code: TableErrno;
  readonly kernelError: string;
  readonly logLines: readonly string[];
  readonly source: 'target' | 'log' | 'core';
  constructor(options: {
    code?: TableErrno;
    kernelError: string;
    logLines?: readonly string[];
    source?: 'target' | 'log' | 'core';
    cause?: unknown;
  }) {
    super(options.kernelError, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'TableError';
    this.code = options.code ?? 'EINVAL';
    this.kernelError = options.kernelError;
    this.logLines = options.logLines ?? [];
    this.source = options.source ?? 'target';
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
