/**
 * NbdBlockDevice: a BlockDevice on an export of any NBD server (nbdkit, qemu-nbd, nbd-server, umirror's
 * own), the remote leg of issue 11. It turns BlockDevice calls into wire requests that obey what the
 * server advertised, and sends them through one NbdClientConnection (nbd/client-connection.ts), which
 * owns the socket, the pipelining bound and the request timeout.
 *
 *   NbdBlockDevice.open('nbd://host:10809/leg0', { requestTimeoutMs: 30_000 })
 *   NbdBlockDevice.open('nbd+unix:///leg0?socket=/run/leg0.sock')
 *   NbdBlockDevice.open('nbds://alice@host/leg0?tls-psk-file=/etc/umirror/keys.psk')
 *
 * What the server advertised, and what we do with it:
 *
 *   NBD_INFO_BLOCK_SIZE maximum   reads and writes are split into pieces of at most min(maximum, 32 MiB)
 *                                 (rounded down to the minimum), sent in parallel (the connection bounds
 *                                 how many are in flight); WRITE_ZEROES too; TRIM at 1 GiB (as qemu).
 *   NBD_INFO_BLOCK_SIZE minimum   BlockDevice promises byte-granular I/O, so when the minimum is above 1
 *                                 we do not refuse unaligned requests with EINVAL: reads are widened to
 *                                 whole blocks and trimmed back; writes and zeroes read-modify-write their
 *                                 partial head and tail blocks under a RangeLock on the widened range (so
 *                                 two patches of one block cannot lose each other's bytes); trims shrink to
 *                                 the whole blocks inside the range (a trim is a hint). An export whose
 *                                 size is not a multiple of its minimum is refused with ENOTSUP at open.
 *   READ_ONLY                     write, trim and writeZeroes fail with EPERM without a request.
 *   SEND_FLUSH                    flush() sends FLUSH; without it flush() is a no-op (the spec forbids
 *                                 the command; such a server has no volatile cache to flush).
 *   SEND_FUA                      FUA is sent on each piece; without it a FUA write is followed by FLUSH.
 *   SEND_TRIM                     trim() sends TRIM; without it trim() is a no-op (BlockDeviceBase).
 *   SEND_WRITE_ZEROES             writeZeroes() sends WRITE_ZEROES (NO_HOLE when asked); without it zero
 *                                 buffers are written (BlockDeviceBase).
 *
 * Errors: a server's error reply fails that call with the mapped errno (fromNbdError). A lost
 * connection, a protocol violation or a request timeout fails the connection: every call in flight and
 * every later call fails with EIO (state 'failed' in `connectionState`). After close(), ESHUTDOWN.
 *
 * Reconnect and re-attach: one object is one connection. ReconnectingNbdBlockDevice
 * (reconnecting-block-device.ts) watches `connection.ended`, builds a new NbdBlockDevice on a new
 * connection to the same target, and swaps it in when the size still matches; the geometry stays fixed
 * for the life of that wrapper, as BlockDevice requires, which is why a changed size refuses the re-attach.
 */
import { assert } from '../assert.js';
import { BlockError } from '../errors.js';
import { rethrowProgrammerError } from '../fail-fast.js';
import { nbdClientTrimBytesMax, requestBytesMax, sectorBytes } from '../limits.js';
import { NbdClientConnection, type NbdClientConnectionState } from '../nbd/client-connection.js';
import { parseNbdUri } from '../nbd/client-uri.js';
import { command, commandFlag, transmissionFlag } from '../nbd/protocol.js';
import type { BlockCapabilities, ReadOptions, WriteOptions, ZeroOptions } from './block-device.js';
import { BlockDeviceBase } from './block-device-base.js';
import { RangeLock } from './range-lock.js';

export interface NbdBlockDeviceOptions {
  /** A request unanswered this long fails the connection with EIO (the leg timeout). Absent or 0: none. */
  readonly requestTimeoutMs?: number;
  /** Connect plus handshake limit (default 30 s). */
  readonly connectTimeoutMs?: number;
  /** Requests in flight on the connection (default nbdClientInFlightMax). */
  readonly inFlightMax?: number;
  /** Name for messages and status lines (default: the URI). */
  readonly name?: string;
}

interface Piece {
  readonly offsetBytes: number;
  readonly lengthBytes: number;
}

export class NbdBlockDevice extends BlockDeviceBase {
  readonly sizeBytes: number;
  readonly logicalBlockBytes: number;
  readonly capabilities: BlockCapabilities;
  readonly name: string;
  readonly uri: string;
  readonly readOnly: boolean;
  /** The server's minimum block size (1 when it sent none): requests on the wire are aligned to it. */
  readonly minimumBlockBytes: number;
  /** The server's preferred block size, or undefined when it sent none. */
  readonly preferredBlockBytes: number | undefined;
  /** The largest READ/WRITE/WRITE_ZEROES we send. */
  readonly maximumPayloadBytes: number;
  readonly connection: NbdClientConnection;
  readonly #trimBytesMax: number;
  readonly #lock = new RangeLock();

  private constructor(options: { connection: NbdClientConnection; name: string }) {
    super();
    const { connection } = options;
    const { negotiated } = connection;
    const flags = negotiated.transmissionFlags;
    this.connection = connection;
    this.uri = connection.target.uri;
    this.name = options.name;
    this.sizeBytes = negotiated.sizeBytes;
    this.minimumBlockBytes = negotiated.blockSizes?.minimumBytes ?? 1;
    this.preferredBlockBytes = negotiated.blockSizes?.preferredBytes;
    const maximumBytes = Math.min(negotiated.blockSizes?.maximumBytes ?? requestBytesMax, requestBytesMax);
    this.maximumPayloadBytes = alignDown(maximumBytes, this.minimumBlockBytes);
    this.#trimBytesMax = alignDown(nbdClientTrimBytesMax, this.minimumBlockBytes);
    this.logicalBlockBytes = Math.max(sectorBytes, this.minimumBlockBytes);
    this.readOnly = (flags & transmissionFlag.readOnly) !== 0;
    this.capabilities = {
      flush: (flags & transmissionFlag.sendFlush) !== 0,
      fua: (flags & transmissionFlag.sendFua) !== 0,
      trim: !this.readOnly && (flags & transmissionFlag.sendTrim) !== 0,
      writeZeroes: !this.readOnly && (flags & transmissionFlag.sendWriteZeroes) !== 0,
    };
    assert(this.maximumPayloadBytes >= this.minimumBlockBytes, 'the handshake checked maximum >= minimum');
    assert(this.maximumPayloadBytes % this.minimumBlockBytes === 0 && this.#trimBytesMax % this.minimumBlockBytes === 0);
    assert(this.sizeBytes % this.minimumBlockBytes === 0, 'open() refuses sizes off the minimum block size');
    this.checkGeometry();
  }

  /**
   * Connects to an NBD URI and negotiates (over TLS for nbds://, see nbd/client-tls.ts). @throws
   * BlockError: EINVAL (bad URI, unknown export, a bad TLS file), ENOTSUP (a server we cannot talk to: it
   * requires TLS or refuses it; tls-type=anon; a size off its minimum block size), EIO (unreachable,
   * handshake violation, TLS handshake failure, timeout), EPERM (refused by policy, a key file others can read).
   */
  static async open(uri: string, options: NbdBlockDeviceOptions = {}): Promise<NbdBlockDevice> {
    const target = parseNbdUri(uri);
    const connection = await NbdClientConnection.connect({
      target,
      ...(options.requestTimeoutMs !== undefined && { requestTimeoutMs: options.requestTimeoutMs }),
      ...(options.connectTimeoutMs !== undefined && { connectTimeoutMs: options.connectTimeoutMs }),
      ...(options.inFlightMax !== undefined && { inFlightMax: options.inFlightMax }),
    });
    try {
      return NbdBlockDevice.attach(connection, { name: options.name ?? uri });
    } catch (err) {
      rethrowProgrammerError(err);
      connection.destroy('refused at open');
      throw err;
    }
  }

  /** A device over a connection that is already negotiated (what a reconnecting wrapper builds on). */
  static attach(connection: NbdClientConnection, options: { name?: string } = {}): NbdBlockDevice {
    const { negotiated } = connection;
    const minimumBytes = negotiated.blockSizes?.minimumBytes ?? 1;
    if (negotiated.sizeBytes % minimumBytes !== 0) {
      throw new BlockError(
        'ENOTSUP',
        `Cannot use ${connection.target.uri}: its size ${negotiated.sizeBytes} is not a multiple of its minimum block size ${minimumBytes}`,
      );
    }
    return new NbdBlockDevice({ connection, name: options.name ?? connection.target.uri });
  }

  get connectionState(): NbdClientConnectionState {
    return this.connection.state;
  }

  protected async doRead(offsetBytes: number, lengthBytes: number, options: ReadOptions): Promise<Buffer> {
    void options;
    const wide = this.#widen(offsetBytes, lengthBytes);
    const parts = await Promise.all(
      split(wide, this.maximumPayloadBytes).map((piece) => this.connection.read(piece)),
    );
    const whole = parts.length === 1 && parts[0] !== undefined ? parts[0] : Buffer.concat(parts, wide.lengthBytes);
    assert(whole.length === wide.lengthBytes, 'the pieces add up to the widened read');
    const skip = offsetBytes - wide.offsetBytes;
    return skip === 0 && whole.length === lengthBytes ? whole : whole.subarray(skip, skip + lengthBytes);
  }

  protected async doWrite(offsetBytes: number, data: Uint8Array, options: WriteOptions): Promise<void> {
    this.#checkWritable('write');
    const fua = options.fua === true;
    if (this.minimumBlockBytes === 1) {
      await this.#writeAligned(offsetBytes, data, fua);
      return;
    }
    const wide = this.#widen(offsetBytes, data.length);
    const release = await this.#lock.acquire(wide.offsetBytes, wide.offsetBytes + wide.lengthBytes);
    try {
      await this.#patchWrite(offsetBytes, data, fua);
    } finally {
      release();
    }
  }

  protected async doFlush(): Promise<void> {
    if (this.capabilities.flush) await this.connection.command({ type: command.flush, offsetBytes: 0, lengthBytes: 0 });
  }

  protected override async doTrim(offsetBytes: number, lengthBytes: number, options: WriteOptions): Promise<void> {
    this.#checkWritable('trim');
    if (!this.capabilities.trim) {
      await super.doTrim(offsetBytes, lengthBytes, options);
      return;
    }
    const fua = options.fua === true;
    const inner = this.#shrink(offsetBytes, lengthBytes);
    if (inner.lengthBytes > 0) {
      const release = this.minimumBlockBytes === 1 ? undefined : await this.#lock.acquire(inner.offsetBytes, inner.offsetBytes + inner.lengthBytes);
      try {
        await Promise.all(
          split(inner, this.#trimBytesMax).map((piece) => this.connection.command({ type: command.trim, ...piece, flags: this.#fuaFlag(fua) })),
        );
      } finally {
        release?.();
      }
    }
    await this.#emulateFua(fua);
  }

  protected override async doWriteZeroes(offsetBytes: number, lengthBytes: number, options: ZeroOptions): Promise<void> {
    this.#checkWritable('writeZeroes');
    if (!this.capabilities.writeZeroes) {
      await super.doWriteZeroes(offsetBytes, lengthBytes, options);
      return;
    }
    const fua = options.fua === true;
    const flags = this.#fuaFlag(fua) | (options.noHole === true ? commandFlag.noHole : 0);
    const zero = (piece: Piece): Promise<void> => this.connection.command({ type: command.writeZeroes, ...piece, flags });
    if (this.minimumBlockBytes === 1) {
      await Promise.all(split({ offsetBytes, lengthBytes }, this.maximumPayloadBytes).map(zero));
      await this.#emulateFua(fua);
      return;
    }
    const wide = this.#widen(offsetBytes, lengthBytes);
    const inner = this.#shrink(offsetBytes, lengthBytes);
    const release = await this.#lock.acquire(wide.offsetBytes, wide.offsetBytes + wide.lengthBytes);
    try {
      if (inner.lengthBytes === 0) {
        await this.#patchWrite(offsetBytes, Buffer.alloc(lengthBytes), fua);
        return;
      }
      // Partial edge blocks are patched with zeroes; the whole blocks between get WRITE_ZEROES.
      const headBytes = inner.offsetBytes - offsetBytes;
      const tailBytes = offsetBytes + lengthBytes - (inner.offsetBytes + inner.lengthBytes);
      const work: Promise<void>[] = split(inner, this.maximumPayloadBytes).map(zero);
      if (headBytes > 0) work.push(this.#patchWrite(offsetBytes, Buffer.alloc(headBytes), fua));
      if (tailBytes > 0) work.push(this.#patchWrite(inner.offsetBytes + inner.lengthBytes, Buffer.alloc(tailBytes), fua));
      await Promise.all(work);
      await this.#emulateFua(fua);
    } finally {
      release();
    }
  }

  protected doClose(): Promise<void> {
    return this.connection.close();
  }

  /**
   * Writes `data` at any offset: partial head and tail blocks are read, patched and written whole.
   * The caller holds the RangeLock on the widened range.
   */
  async #patchWrite(offsetBytes: number, data: Uint8Array, fua: boolean): Promise<void> {
    const blockBytes = this.minimumBlockBytes;
    const endBytes = offsetBytes + data.length;
    const headStart = alignDown(offsetBytes, blockBytes);
    const tailStart = alignDown(endBytes, blockBytes);
    const headPartial = offsetBytes % blockBytes !== 0;
    const tailPartial = endBytes % blockBytes !== 0;
    const src = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    if (!headPartial && !tailPartial) {
      await this.#writeAligned(offsetBytes, data, fua);
      return;
    }
    if (headPartial && tailPartial && headStart === tailStart) {
      const block = await this.connection.read({ offsetBytes: headStart, lengthBytes: blockBytes });
      src.copy(block, offsetBytes - headStart);
      await this.#writeAligned(headStart, block, fua);
      return;
    }
    const [head, tail] = await Promise.all([
      headPartial ? this.connection.read({ offsetBytes: headStart, lengthBytes: blockBytes }) : undefined,
      tailPartial ? this.connection.read({ offsetBytes: tailStart, lengthBytes: blockBytes }) : undefined,
    ]);
    const middleStart = headPartial ? headStart + blockBytes : offsetBytes;
    const middleEnd = tailPartial ? tailStart : endBytes;
    const work: Promise<void>[] = [];
    if (head !== undefined) {
      src.copy(head, offsetBytes - headStart, 0, middleStart - offsetBytes);
      work.push(this.#writeAligned(headStart, head, fua));
    }
    if (tail !== undefined) {
      src.copy(tail, 0, tailStart - offsetBytes);
      work.push(this.#writeAligned(tailStart, tail, fua));
    }
    if (middleEnd > middleStart) work.push(this.#writeAligned(middleStart, src.subarray(middleStart - offsetBytes, middleEnd - offsetBytes), fua));
    await Promise.all(work);
  }

  /** Writes an aligned range in pieces of at most maximumPayloadBytes; FUA native or by a flush after. */
  async #writeAligned(offsetBytes: number, data: Uint8Array, fua: boolean): Promise<void> {
    assert(offsetBytes % this.minimumBlockBytes === 0 && data.length % this.minimumBlockBytes === 0, 'wire writes are aligned');
    const flags = this.#fuaFlag(fua);
    await Promise.all(
      split({ offsetBytes, lengthBytes: data.length }, this.maximumPayloadBytes).map((piece) =>
        this.connection.write({
          offsetBytes: piece.offsetBytes,
          data: data.subarray(piece.offsetBytes - offsetBytes, piece.offsetBytes - offsetBytes + piece.lengthBytes),
          flags,
        }),
      ),
    );
    await this.#emulateFua(fua);
  }

  #fuaFlag(fua: boolean): number {
    return fua && this.capabilities.fua ? commandFlag.fua : 0;
  }

  /** Without native FUA, a FUA request is made durable by a flush after it. */
  async #emulateFua(fua: boolean): Promise<void> {
    if (fua && !this.capabilities.fua) await this.doFlush();
  }

  #checkWritable(op: string): void {
    if (this.readOnly) throw new BlockError('EPERM', `Cannot ${op} ${this.name}: the export is read-only`);
  }

  /** The smallest aligned range holding [offset, offset+length). */
  #widen(offsetBytes: number, lengthBytes: number): Piece {
    const start = alignDown(offsetBytes, this.minimumBlockBytes);
    const end = alignUp(offsetBytes + lengthBytes, this.minimumBlockBytes);
    assert(end <= this.sizeBytes, 'a widened range stays inside the device (its size is aligned)');
    return { offsetBytes: start, lengthBytes: end - start };
  }

  /** The largest aligned range inside [offset, offset+length); may be empty. */
  #shrink(offsetBytes: number, lengthBytes: number): Piece {
    const start = alignUp(offsetBytes, this.minimumBlockBytes);
    const end = alignDown(offsetBytes + lengthBytes, this.minimumBlockBytes);
    return { offsetBytes: start, lengthBytes: Math.max(0, end - start) };
  }
}

/** Cuts a range into consecutive pieces of at most `pieceBytesMax`. */
function split(range: Piece, pieceBytesMax: number): Piece[] {
  assert(pieceBytesMax > 0);
  const pieces: Piece[] = [];
  for (let done = 0; done < range.lengthBytes; done += pieceBytesMax) {
    pieces.push({ offsetBytes: range.offsetBytes + done, lengthBytes: Math.min(pieceBytesMax, range.lengthBytes - done) });
  }
  return pieces;
}

function alignDown(value: number, blockBytes: number): number {
  return value - (value % blockBytes);
}

function alignUp(value: number, blockBytes: number): number {
  const rest = value % blockBytes;
  return rest === 0 ? value : value + blockBytes - rest;
}
