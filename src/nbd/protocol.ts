/**
 * NBD protocol constants (NetworkBlockDevice/nbd doc/proto.md), as `as const` objects so that the codec,
 * the server and a future client share one spelling. No logic lives here.
 *
 * Wire layout reminders (all big-endian):
 *   greeting       NBDMAGIC(8) IHAVEOPT(8) handshakeFlags(2)
 *   client flags   u32
 *   option         IHAVEOPT(8) option(4) length(4) payload(length)
 *   option reply   optionReplyMagic(8) option(4) replyType(4) length(4) payload(length)
 *   request        requestMagic(4) cmdFlags(2) type(2) cookie(8) offset(8) length(4) [write payload]
 *   simple reply   simpleReplyMagic(4) error(4) cookie(8) [read payload]
 *   chunk          structuredReplyMagic(4) flags(2) type(2) cookie(8) length(4) payload(length)
 */

export const magic = {
  /** "NBDMAGIC" as a 64-bit number, split into two u32 halves. */
  nbdMagicHi: 0x4e42444d,
  nbdMagicLo: 0x41474943,
  /** "IHAVEOPT". */
  iHaveOptHi: 0x49484156,
  iHaveOptLo: 0x454f5054,
  /** 0x0003e889045565a9: option reply magic. */
  optionReplyHi: 0x0003e889,
  optionReplyLo: 0x045565a9,
  request: 0x25609513,
  simpleReply: 0x67446698,
  structuredReply: 0x668e33ef,
} as const;

/** Server handshake flags (sent in the greeting). */
export const handshakeFlag = {
  fixedNewstyle: 1 << 0,
  noZeroes: 1 << 1,
} as const;

/** Client flags (the u32 the client answers the greeting with). */
export const clientFlag = {
  fixedNewstyle: 1 << 0,
  noZeroes: 1 << 1,
} as const;
export const clientFlagsKnown = clientFlag.fixedNewstyle | clientFlag.noZeroes;

export const option = {
  exportName: 1,
  abort: 2,
  list: 3,
  peekExport: 4,
  startTls: 5,
  info: 6,
  go: 7,
  structuredReply: 8,
  listMetaContext: 9,
  setMetaContext: 10,
  extendedHeaders: 11,
} as const;

const errBit = 0x80000000;
export const optionReply = {
  ack: 1,
  server: 2,
  info: 3,
  metaContext: 4,
  errUnsup: errBit + 1,
  errPolicy: errBit + 2,
  errInvalid: errBit + 3,
  errPlatform: errBit + 4,
  errTlsReqd: errBit + 5,
  errUnknown: errBit + 6,
  errShutdown: errBit + 7,
  errBlockSizeReqd: errBit + 8,
  errTooBig: errBit + 9,
  errExtHeaderReqd: errBit + 10,
} as const;
export type OptionReplyType = (typeof optionReply)[keyof typeof optionReply];

export function isOptionReplyError(replyType: number): boolean {
  return replyType >= errBit;
}

/** NBD_INFO_* types in NBD_REP_INFO replies and in INFO/GO requests. */
export const info = {
  export: 0,
  name: 1,
  description: 2,
  blockSize: 3,
} as const;

/** Transmission flags (u16, sent with the export size). */
export const transmissionFlag = {
  hasFlags: 1 << 0,
  readOnly: 1 << 1,
  sendFlush: 1 << 2,
  sendFua: 1 << 3,
  rotational: 1 << 4,
  sendTrim: 1 << 5,
  sendWriteZeroes: 1 << 6,
  sendDf: 1 << 7,
  canMultiConn: 1 << 8,
  sendResize: 1 << 9,
  sendCache: 1 << 10,
  sendFastZero: 1 << 11,
} as const;

export const command = {
  read: 0,
  write: 1,
  disc: 2,
  flush: 3,
  trim: 4,
  cache: 5,
  writeZeroes: 6,
  blockStatus: 7,
} as const;
export type CommandType = (typeof command)[keyof typeof command];

export const commandName: Readonly<Record<number, string>> = {
  0: 'READ',
  1: 'WRITE',
  2: 'DISC',
  3: 'FLUSH',
  4: 'TRIM',
  5: 'CACHE',
  6: 'WRITE_ZEROES',
  7: 'BLOCK_STATUS',
};

export const commandFlag = {
  fua: 1 << 0,
  noHole: 1 << 1,
  df: 1 << 2,
  reqOne: 1 << 3,
  fastZero: 1 << 4,
} as const;
export const commandFlagsKnown =
  commandFlag.fua | commandFlag.noHole | commandFlag.df | commandFlag.reqOne | commandFlag.fastZero;

export const replyFlag = {
  done: 1 << 0,
} as const;

export const replyType = {
  none: 0,
  offsetData: 1,
  offsetHole: 2,
  blockStatus: 5,
  error: 0x8000 + 1,
  errorOffset: 0x8000 + 2,
} as const;

/** NBD error values: fixed numbers on the wire whatever the host's errno values are. */
export const nbdErrno = {
  success: 0,
  EPERM: 1,
  EIO: 5,
  ENOMEM: 12,
  EINVAL: 22,
  ENOSPC: 28,
  EOVERFLOW: 75,
  ENOTSUP: 95,
  ESHUTDOWN: 108,
} as const;
export type NbdErrno = (typeof nbdErrno)[keyof typeof nbdErrno];

/** base:allocation status flags. */
export const allocationFlag = {
  hole: 1 << 0,
  zero: 1 << 1,
} as const;

export const baseAllocation = 'base:allocation';

/** Sizes of fixed wire structures, in bytes. */
export const wireBytes = {
  greeting: 18,
  clientFlags: 4,
  optionHeader: 16,
  optionReplyHeader: 20,
  request: 28,
  simpleReply: 16,
  chunkHeader: 20,
  /** EXPORT_NAME reply: size(8) + flags(2), followed by 124 zero bytes unless NO_ZEROES. */
  exportNameReply: 10,
  exportNameZeroes: 124,
} as const;

/** The handshake limits (the spec caps strings at 4096 bytes). */
export const stringBytesMax = 4096;
/** Largest option payload we read; SET_META_CONTEXT with a few queries fits easily. */
export const optionBytesMax = 64 * 1024;
/** Options one connection may send before we give up on it (nbdkit uses 32). */
export const optionsPerConnectionMax = 64;
/** Meta context queries in one LIST/SET_META_CONTEXT. */
export const metaQueriesMax = 64;
/** INFO/GO information requests in one option. */
export const infoRequestsMax = 64;
