/**
 * Transmission-phase request checks and execution, with no socket: `validateRequest` gives the wire
 * error for a request that must not reach the device (nbdkit's validate_request), `executeRequest` runs
 * a valid one against the export and resolves with what to send. The connection owns ordering,
 * backpressure and the socket.
 *
 * Checks, in order (the first that fails decides the error):
 *   1. write, trim or zero on a read-only export        EPERM
 *   2. unknown command                                   EINVAL
 *   3. unknown flag, or a flag on a command it is not for EINVAL (DF also needs structured replies)
 *   4. READ over the maximum payload, oversized WRITE    EOVERFLOW (the spec's hint; its payload was skipped)
 *   5. FLUSH with nonzero offset or length               EINVAL
 *   6. offset or length not a multiple of the minimum    EINVAL
 *   7. range past the end: WRITE, WRITE_ZEROES           ENOSPC; READ, TRIM, CACHE, BLOCK_STATUS EINVAL
 *   8. BLOCK_STATUS without a selected context, or empty EINVAL
 */
import { AssertionError } from 'node:assert';
import { assert } from '../assert.js';
import { BlockError } from '../errors.js';
import { rethrowProgrammerError } from '../fail-fast.js';
import { requestBytesMax } from '../limits.js';
import {
  type BlockStatusDescriptor,
  type Cookie,
  encodeChunkBlockStatus,
  encodeChunkError,
  encodeChunkNone,
  encodeChunkOffsetDataHeader,
  encodeSimpleReply,
  type NbdRequest,
} from './codec.js';
import { isUnexpectedError, nbdErrorName, toNbdError } from './errors.js';
import type { Negotiated } from './handshake.js';
import type { NbdExtent } from './nbd-export.js';
import { command, commandFlag, commandFlagsKnown, commandName, nbdErrno } from './protocol.js';

/** Descriptors per context in one BLOCK_STATUS reply (the spec lets us send fewer than the range needs). */
export const blockStatusDescriptorsMax = 1024;

export interface Failure {
  readonly error: number;
  readonly message: string;
}

export function validateRequest(request: NbdRequest, negotiated: Negotiated): Failure | undefined {
  const { type, flags, offsetBytes, lengthBytes } = request;
  const name = commandName[type] ?? `command ${type}`;
  const fail = (error: number, why: string): Failure => ({ error, message: `${name}: ${why}` });
  const writes = type === command.write || type === command.trim || type === command.writeZeroes;
  if (writes && negotiated.nbdExport.readOnly === true) return fail(nbdErrno.EPERM, 'export is read-only');
  if (commandName[type] === undefined || type === command.disc) return fail(nbdErrno.EINVAL, 'unknown command');

  if ((flags & ~commandFlagsKnown) !== 0) return fail(nbdErrno.EINVAL, `unknown flags 0x${flags.toString(16)}`);
  if ((flags & (commandFlag.noHole | commandFlag.fastZero)) !== 0 && type !== command.writeZeroes) {
    return fail(nbdErrno.EINVAL, 'NO_HOLE and FAST_ZERO are for WRITE_ZEROES');
  }
  if ((flags & commandFlag.df) !== 0 && (type !== command.read || !negotiated.structuredReplies)) {
    return fail(nbdErrno.EINVAL, 'DF is for READ with structured replies');
  }
  if ((flags & commandFlag.reqOne) !== 0 && type !== command.blockStatus) {
    return fail(nbdErrno.EINVAL, 'REQ_ONE is for BLOCK_STATUS');
  }

  if (request.payloadSkipped || (type === command.read && lengthBytes > requestBytesMax)) {
    return fail(nbdErrno.EOVERFLOW, `${lengthBytes} bytes is over the maximum payload of ${requestBytesMax}`);
  }
  if (type === command.flush) {
    if (offsetBytes !== 0 || lengthBytes !== 0) return fail(nbdErrno.EINVAL, 'offset and length must be zero');
    return undefined;
  }
  const minimumBytes = negotiated.blockSizes.minimumBytes;
  if (offsetBytes % minimumBytes !== 0 || lengthBytes % minimumBytes !== 0) {
    return fail(nbdErrno.EINVAL, `offset ${offsetBytes} or length ${lengthBytes} not aligned to ${minimumBytes}`);
  }
  const sizeBytes = negotiated.nbdExport.device.sizeBytes;
  if (offsetBytes + lengthBytes > sizeBytes) {
    const error = type === command.write || type === command.writeZeroes ? nbdErrno.ENOSPC : nbdErrno.EINVAL;
    return fail(error, `${lengthBytes} bytes at ${offsetBytes} pass the end (${sizeBytes} bytes)`);
  }
  if (type === command.blockStatus) {
    if (negotiated.contexts.length === 0) return fail(nbdErrno.EINVAL, 'no meta context was selected');
    if (lengthBytes === 0) return fail(nbdErrno.EINVAL, 'length must not be zero');
  }
  return undefined;
}

/** The reply to one request: buffers written back to back (header, then the data, never copied). */
export type ReplyBuffers = readonly Buffer[];

/** Executes a validated request; device errors become error replies. Rejects only with a programmer error. */
export async function executeRequest(options: {
  request: NbdRequest;
  negotiated: Negotiated;
  log: (message: string) => void;
}): Promise<ReplyBuffers> {
  const { request, negotiated, log } = options;
  const device = negotiated.nbdExport.device;
  const fua = (request.flags & commandFlag.fua) !== 0;
  try {
    switch (request.type) {
      case command.read: {
        const data = await device.read(request.offsetBytes, request.lengthBytes);
        assert(data.length === request.lengthBytes, 'device read returned the requested length');
        return readReply({ request, data, structured: negotiated.structuredReplies });
      }
      case command.write: {
        assert(request.payload !== undefined);
        await device.write(request.offsetBytes, request.payload, { fua });
        return [encodeSimpleReply(request, 0)];
      }
      case command.flush:
        await device.flush();
        return [encodeSimpleReply(request, 0)];
      case command.trim:
        await device.trim(request.offsetBytes, request.lengthBytes, { fua });
        return [encodeSimpleReply(request, 0)];
      case command.cache:
        return [encodeSimpleReply(request, 0)];
      case command.writeZeroes: {
        if ((request.flags & commandFlag.fastZero) !== 0 && !device.capabilities.writeZeroes) {
          throw new BlockError('ENOTSUP', `${device.name} cannot write zeroes fast`);
        }
        const noHole = (request.flags & commandFlag.noHole) !== 0;
        await device.writeZeroes(request.offsetBytes, request.lengthBytes, { fua, noHole });
        return [encodeSimpleReply(request, 0)];
      }
      case command.blockStatus:
        return await blockStatusReply(request, negotiated);
      default:
        throw new AssertionError({ message: `executeRequest: command ${request.type} was not validated` });
    }
  } catch (err) {
    rethrowProgrammerError(err);
    const error = toNbdError(err, request.flags);
    if (isUnexpectedError(err)) log(`nbd: ${commandName[request.type] ?? request.type} failed unexpectedly: ${String(err)}`);
    const message = err instanceof Error ? err.message : String(err);
    return errorReply({ cookie: request, error, message, structured: negotiated.structuredReplies });
  }
}

export function readReply(options: { request: NbdRequest; data: Buffer; structured: boolean }): ReplyBuffers {
  const { request, data } = options;
  if (!options.structured) return [encodeSimpleReply(request, 0), data];
  if (data.length === 0) return [encodeChunkNone(request)];
  const header = encodeChunkOffsetDataHeader({ cookie: request, offsetBytes: request.offsetBytes, dataBytes: data.length, done: true });
  return [header, data];
}

export function errorReply(options: { cookie: Cookie; error: number; message: string; structured: boolean }): ReplyBuffers {
  assert(options.error !== 0);
  if (!options.structured) return [encodeSimpleReply(options.cookie, options.error)];
  const message = `${nbdErrorName(options.error)}: ${options.message}`;
  return [encodeChunkError({ cookie: options.cookie, error: options.error, message, done: true })];
}

async function blockStatusReply(request: NbdRequest, negotiated: Negotiated): Promise<ReplyBuffers> {
  assert(negotiated.structuredReplies && negotiated.contexts.length > 0);
  const reqOne = (request.flags & commandFlag.reqOne) !== 0;
  const query = { offsetBytes: request.offsetBytes, lengthBytes: request.lengthBytes, reqOne };
  const replies: Buffer[] = [];
  for (const [index, { id, context }] of negotiated.contexts.entries()) {
    const extents = await context.extents(query);
    const descriptors = clipExtents({ extents, lengthBytes: request.lengthBytes, reqOne });
    const done = index === negotiated.contexts.length - 1;
    replies.push(encodeChunkBlockStatus({ cookie: request, contextId: id, descriptors, done }));
  }
  return replies;
}

/**
 * Turns a context's extents into descriptors: never past the request's length, at most one with
 * REQ_ONE, at most blockStatusDescriptorsMax, neighbours with equal flags merged.
 */
export function clipExtents(options: { extents: readonly NbdExtent[]; lengthBytes: number; reqOne: boolean }): BlockStatusDescriptor[] {
  assert(options.extents.length > 0, 'a meta context returns at least one extent');
  assert(options.lengthBytes > 0);
  const out: { lengthBytes: number; flags: number }[] = [];
  let coveredBytes = 0;
  for (const extent of options.extents) {
    assert(Number.isSafeInteger(extent.lengthBytes) && extent.lengthBytes > 0, 'extent lengths are positive integers');
    const lengthBytes = Math.min(extent.lengthBytes, options.lengthBytes - coveredBytes);
    const last = out[out.length - 1];
    if (last !== undefined && last.flags === extent.flags) last.lengthBytes += lengthBytes;
    else out.push({ lengthBytes, flags: extent.flags });
    coveredBytes += lengthBytes;
    if (coveredBytes === options.lengthBytes) break;
    // With REQ_ONE, equal-flag neighbours still merge into the one descriptor; the first change ends it.
    if (options.reqOne && out.length > 1) break;
    if (out.length > blockStatusDescriptorsMax) break;
  }
  const result = out.slice(0, options.reqOne ? 1 : blockStatusDescriptorsMax);
  assert(result.length > 0 && result.length <= blockStatusDescriptorsMax);
  assert(result.reduce((sum, d) => sum + d.lengthBytes, 0) <= options.lengthBytes, 'descriptors stay inside the request');
  return result;
}
