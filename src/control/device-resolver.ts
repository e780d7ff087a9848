/**
 * Device resolvers: how a table's device names become BlockDevices. A name is a path (an image file or
 * a block device) or an NBD URI (a remote leg, log or linear segment: nbd://, nbd+unix://, nbds://,
 * nbds+unix://); the daemon adds names of its own devices on top (stacking). Every open returns a new
 * handle, so closing it never closes a device someone else holds.
 *
 * Every path is opened with the image lock of its device (`lockHolder`, the device name; see
 * src/block/image-lock.ts): a second process on the same images, or a second device of this one, is
 * refused at table load, before anything is resumed or served. A URI has no image lock (the remote
 * server owns its image; nbdkit and qemu-nbd lock it there).
 *
 * A URI opens as a ReconnectingNbdBlockDevice with `legTimeoutMs` as its request timeout (`--leg-timeout`)
 * and as the limit of the first connection. The first connection must succeed: the export's size comes
 * from it, and dm core checks every leg's area against its size when the table is built, before any I/O.
 * A URI unreachable at table load fails the load as a missing path does ("Device lookup failure"), and
 * the reason (refused, timed out, TLS) is kept as the TableError's cause: `findRemoteOpenError()` finds
 * it for the one line the CLI prints. A read-only export is refused the same way: a leg must be written.
 * After the first connection the device reconnects on its own (docs/remote-legs.md); `onConnectionEvent`
 * sees its detached / attached / reattach-refused events.
 */
import { unreachable } from '../assert.js';
import { FileBlockDevice } from '../block/file-block-device.js';
import type { BlockDevice } from '../block/block-device.js';
import { type NbdConnectionEvent, ReconnectingNbdBlockDevice } from '../block/reconnecting-block-device.js';
import { BlockError, type Errno } from '../errors.js';
import { rethrowProgrammerError } from '../fail-fast.js';
import { legTimeoutMsDefault } from '../limits.js';
import { isNbdUri } from '../nbd/client-uri.js';
import type { DeviceResolver } from './build-target.js';

export interface DeviceResolverOptions {
  readonly displayName?: (name: string) => string;
  /** The device the table belongs to: paths are image-locked for it. */
  readonly lockHolder?: string;
  /** Open paths with O_DIRECT. */
  readonly direct?: boolean;
  /** URIs: a request unanswered this long drops the connection (`--leg-timeout`); default 30 s. */
  readonly legTimeoutMs?: number;
  /** URIs: the connection events of every remote device this resolver opened. */
  readonly onConnectionEvent?: (event: NbdConnectionEvent) => void;
}

/** A URI that could not be opened at table load: the reason, for the operator. */
export class RemoteOpenError extends BlockError {
  constructor(code: Errno, message: string, options: { cause?: unknown } = {}) {
    super(code, message, options);
    this.name = 'RemoteOpenError';
  }
}

/** The RemoteOpenError in `err`'s cause chain (a TableError wraps it), or undefined. */
export function findRemoteOpenError(err: unknown): RemoteOpenError | undefined {
  let current: unknown = err;
  for (let depth = 0; depth < 8 && current !== undefined && current !== null; depth += 1) {
    if (current instanceof RemoteOpenError) return current;
    current = current instanceof Error ? current.cause : undefined;
  }
  return undefined;
}

/** The log line of a remote device's connection event: what serve prints and the daemon logs. */
export function connectionEventLine(event: NbdConnectionEvent): { level: 'info' | 'warn'; message: string } {
  switch (event.type) {
    case 'detached':
      return { level: 'warn', message: `remote device ${event.name} detached: ${event.reason.message}` };
    case 'attached':
      return { level: 'info', message: `remote device ${event.name} attached again (reconnect ${event.reconnectCount})` };
    case 'reattach-refused':
      return { level: 'warn', message: `remote device ${event.name}: ${event.reason.message}` };
    default:
      return unreachable(event);
  }
}

/** Opens an NBD URI as a reconnecting remote device. @throws RemoteOpenError. */
export async function openRemoteDevice(uri: string, options: DeviceResolverOptions = {}): Promise<BlockDevice> {
  const timeoutMs = options.legTimeoutMs ?? legTimeoutMsDefault;
  let device: ReconnectingNbdBlockDevice;
  try {
    device = await ReconnectingNbdBlockDevice.open(uri, { requestTimeoutMs: timeoutMs, connectTimeoutMs: timeoutMs });
  } catch (err) {
    rethrowProgrammerError(err);
    const code = err instanceof BlockError ? err.code : 'EIO';
    const reason = err instanceof Error ? err.message : String(err);
    const message = reason.includes(uri) ? reason : `Cannot open remote device ${uri}: ${reason}`;
    throw new RemoteOpenError(code, message, { cause: err });
  }
  if (device.readOnly) {
    await device.close();
    throw new RemoteOpenError('EPERM', `Cannot open remote device ${uri}: the export is read-only`);
  }
  const listener = options.onConnectionEvent;
  if (listener !== undefined) device.onEvent(listener);
  return device;
}

/** Opens table names as NBD URIs or paths; paths locked for `lockHolder` (the device the table belongs to). */
export function deviceResolver(options: DeviceResolverOptions = {}): DeviceResolver {
  const openOptions = {
    ...(options.lockHolder === undefined ? {} : { lockHolder: options.lockHolder }),
    ...(options.direct === true ? { direct: true } : {}),
  };
  return {
    open: (name: string): Promise<BlockDevice> => (isNbdUri(name) ? openRemoteDevice(name, options) : FileBlockDevice.open(name, openOptions)),
    ...(options.displayName === undefined ? {} : { displayName: options.displayName }),
  };
}

/** The resolver of paths and URIs (the old name, kept for callers of the library). */
export const fileResolver = deviceResolver;
