/**
 * ReconnectingNbdBlockDevice: a remote leg that survives its server going away and coming back (issue
 * 11). It owns one NbdBlockDevice at a time (one socket); when that connection is lost it fails fast,
 * reconnects in the background with a bounded backoff, and swaps a new connection in once the export
 * still has the geometry this object promised. It is a BlockDevice with a fixed size, as BlockDevice
 * requires, so a server that returns with another size is refused, never adopted.
 *
 *   connected --(connection lost: socket error or end, protocol error, request timeout)--> detached
 *        ^         emit 'detached' {reason}; every request in flight has failed with EIO; attempt 1
 *        |         is scheduled after reconnectDelayMsMin
 *        |     detached --(timer)--> connecting --(connect or handshake fails)--> detached, next attempt
 *        |                                         after twice the delay (at most reconnectDelayMsMax)
 *        +----(connected, size and writability unchanged)-- connecting     emit 'attached'
 *              connecting --(size changed, or the export became read-only)--> detached, refused:
 *                            emit 'reattach-refused' {reason}; no more attempts until reconnect()
 *   any state --close()--> closed: the timer is cancelled, an attempt under way is dropped when it ends
 *
 * While not connected every request fails at once with EIO: nothing is queued, so a mirror fails the
 * leg immediately rather than wait for a server that may not come back (the mirror recovers the leg
 * after 'attached'; this class knows nothing of mirrors). `requestTimeoutMs` (default 30 s, the future
 * --leg-timeout) bounds every request: a request unanswered that long drops the connection, which is
 * how a network partition becomes a 'detached' event instead of a wait without end.
 *
 * Delays: attempt n waits min(max, min * 2^(n-1)), jittered by up to ±20 % and kept within [min, max],
 * so a fleet of clients does not reconnect in lockstep. The timer and the random source are injectable
 * (unit tests drive time by hand). Credentials and the address are read again on every attempt (a
 * rotated PSK file takes effect at the next reconnect).
 *
 * Counters for status and metrics: `reconnectCount` (successful re-attaches), `reconnectAttemptCount`,
 * `detachCount`, `lastError` (the last loss or failed attempt), and `connectionState`.
 */
import { assert, assertCount } from '../assert.js';
import { BlockError } from '../errors.js';
import { detach, rethrowProgrammerError } from '../fail-fast.js';
import { nbdClientReconnectDelayMsMax, nbdClientReconnectDelayMsMin, nbdClientRequestTimeoutMsDefault } from '../limits.js';
import { NbdClientConnection } from '../nbd/client-connection.js';
import { type NbdTarget, parseNbdUri } from '../nbd/client-uri.js';
import type { BlockCapabilities, ReadOptions, WriteOptions, ZeroOptions } from './block-device.js';
import { BlockDeviceBase } from './block-device-base.js';
import { NbdBlockDevice } from './nbd-block-device.js';

export type NbdConnectionState = 'connected' | 'connecting' | 'detached';

export type NbdConnectionEvent =
  | { readonly type: 'detached'; readonly name: string; readonly reason: BlockError }
  | { readonly type: 'attached'; readonly name: string; readonly reconnectCount: number }
  | { readonly type: 'reattach-refused'; readonly name: string; readonly reason: BlockError };

/** Schedules `callback` after `delayMs`; returns a function that cancels it. */
export type ScheduleTimer = (callback: () => void, delayMs: number) => () => void;

export interface ReconnectingNbdBlockDeviceOptions {
  /** A request unanswered this long drops the connection (default 30 s; 0: no limit). */
  readonly requestTimeoutMs?: number;
  /** Connect plus handshake limit of each attempt (default 30 s). */
  readonly connectTimeoutMs?: number;
  readonly inFlightMax?: number;
  /** Name for messages and events (default: the URI). */
  readonly name?: string;
  readonly reconnectDelayMsMin?: number;
  readonly reconnectDelayMsMax?: number;
  /** Injectable time (default: setTimeout). */
  readonly scheduleTimer?: ScheduleTimer;
  /** Injectable jitter source in [0, 1) (default: Math.random). */
  readonly random?: () => number;
}

/** The options with every default filled in. */
interface Settings {
  readonly name: string;
  readonly requestTimeoutMs: number;
  readonly connectTimeoutMs: number | undefined;
  readonly inFlightMax: number | undefined;
  readonly reconnectDelayMsMin: number;
  readonly reconnectDelayMsMax: number;
  readonly scheduleTimer: ScheduleTimer;
  readonly random: () => number;
}

const jitterFraction = 0.2;

const realTimer: ScheduleTimer = (callback, delayMs) => {
  const handle = setTimeout(callback, delayMs);
  return () => clearTimeout(handle);
};

export class ReconnectingNbdBlockDevice extends BlockDeviceBase {
  readonly sizeBytes: number;
  readonly logicalBlockBytes: number;
  readonly capabilities: BlockCapabilities;
  readonly name: string;
  readonly uri: string;
  readonly readOnly: boolean;
  readonly #target: NbdTarget;
  readonly #settings: Settings;
  readonly #listeners = new Set<(event: NbdConnectionEvent) => void>();
  /** The device in use; undefined unless connected. */
  #device: NbdBlockDevice | undefined;
  #state: NbdConnectionState = 'connected';
  #refused = false;
  #failedAttempts = 0;
  #cancelTimer: (() => void) | undefined;
  #reconnectCount = 0;
  #reconnectAttemptCount = 0;
  #detachCount = 0;
  #lastError: BlockError | undefined;

  private constructor(options: { device: NbdBlockDevice; target: NbdTarget; settings: Settings }) {
    super();
    const { device, settings } = options;
    this.#target = options.target;
    this.#settings = settings;
    this.#device = device;
    this.uri = device.uri;
    this.name = settings.name;
    this.sizeBytes = device.sizeBytes;
    this.logicalBlockBytes = device.logicalBlockBytes;
    this.capabilities = device.capabilities;
    this.readOnly = device.readOnly;
    this.checkGeometry();
    this.#watch(device);
  }

  /**
   * Connects to an NBD URI; the first connection must succeed, since the export's size comes from it.
   * @throws BlockError as NbdBlockDevice.open.
   */
  static async open(uri: string, options: ReconnectingNbdBlockDeviceOptions = {}): Promise<ReconnectingNbdBlockDevice> {
    const target = parseNbdUri(uri);
    const settings: Settings = {
      name: options.name ?? uri,
      requestTimeoutMs: options.requestTimeoutMs ?? nbdClientRequestTimeoutMsDefault,
      connectTimeoutMs: options.connectTimeoutMs,
      inFlightMax: options.inFlightMax,
      reconnectDelayMsMin: options.reconnectDelayMsMin ?? nbdClientReconnectDelayMsMin,
      reconnectDelayMsMax: options.reconnectDelayMsMax ?? nbdClientReconnectDelayMsMax,
      scheduleTimer: options.scheduleTimer ?? realTimer,
      random: options.random ?? Math.random,
    };
    assertCount(settings.requestTimeoutMs, 'requestTimeoutMs');
    assert(settings.reconnectDelayMsMin > 0, 'reconnectDelayMsMin is positive');
    assert(settings.reconnectDelayMsMin <= settings.reconnectDelayMsMax, 'reconnectDelayMsMin <= reconnectDelayMsMax');
    assert(settings.reconnectDelayMsMax <= nbdClientReconnectDelayMsMax, `reconnectDelayMsMax is at most ${nbdClientReconnectDelayMsMax}`);
    const device = await connectDevice(target, settings);
    return new ReconnectingNbdBlockDevice({ device, target, settings });
  }

  get connectionState(): NbdConnectionState {
    return this.#state;
  }

  /** Successful re-attaches since open. */
  get reconnectCount(): number {
    return this.#reconnectCount;
  }

  /** Connection attempts after a loss, successful or not. */
  get reconnectAttemptCount(): number {
    return this.#reconnectAttemptCount;
  }

  /** Connections lost since open. */
  get detachCount(): number {
    return this.#detachCount;
  }

  /** Why the last connection was lost or the last attempt failed; undefined before any. */
  get lastError(): BlockError | undefined {
    return this.#lastError;
  }

  /** True after a re-attach was refused (changed geometry): no attempts until reconnect(). */
  get reattachRefused(): boolean {
    return this.#refused;
  }

  /** The NBD device in use, when connected (tests and status look through it). */
  get device(): NbdBlockDevice | undefined {
    return this.#device;
  }

  onEvent(listener: (event: NbdConnectionEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * Tries to connect now, with a fresh backoff: after a refused re-attach (the operator fixed the
   * server) or to skip a long wait. A no-op when connected, connecting or closed.
   */
  reconnect(): void {
    if (this.closed || this.#state !== 'detached') return;
    this.#cancelTimer?.();
    this.#cancelTimer = undefined;
    this.#refused = false;
    this.#failedAttempts = 0;
    this.#attempt();
  }

  protected doRead(offsetBytes: number, lengthBytes: number, options: ReadOptions): Promise<Buffer> {
    return this.#usable('read').read(offsetBytes, lengthBytes, options);
  }

  protected doWrite(offsetBytes: number, data: Uint8Array, options: WriteOptions): Promise<void> {
    return this.#usable('write').write(offsetBytes, data, options);
  }

  protected doFlush(): Promise<void> {
    return this.#usable('flush').flush();
  }

  protected override doTrim(offsetBytes: number, lengthBytes: number, options: WriteOptions): Promise<void> {
    return this.#usable('trim').trim(offsetBytes, lengthBytes, options);
  }

  protected override doWriteZeroes(offsetBytes: number, lengthBytes: number, options: ZeroOptions): Promise<void> {
    return this.#usable('writeZeroes').writeZeroes(offsetBytes, lengthBytes, options);
  }

  protected async doClose(): Promise<void> {
    this.#cancelTimer?.();
    this.#cancelTimer = undefined;
    const device = this.#device;
    this.#device = undefined;
    this.#state = 'detached';
    await device?.close();
  }

  /** The device to send a request to; EIO at once when there is none (no queueing while detached). */
  #usable(op: string): NbdBlockDevice {
    const device = this.#device;
    if (this.#state === 'connected' && device !== undefined) return device;
    assert(device === undefined, 'a device is held only while connected');
    const why = this.#refused ? 're-attach was refused' : this.#state === 'connecting' ? 'reconnecting' : 'detached, reconnecting';
    const last = this.#lastError === undefined ? '' : `: ${this.#lastError.message}`;
    throw new BlockError('EIO', `Cannot ${op} ${this.name}: the NBD connection is lost (${why})${last}`, { cause: this.#lastError });
  }

  /** Detaches when `device`'s connection ends with a failure (a graceful close ends with undefined). */
  #watch(device: NbdBlockDevice): void {
    detach(
      device.connection.ended.then((cause) => {
        if (cause !== undefined && device === this.#device) this.#lost(device, cause);
      }),
      () => undefined, // `ended` never rejects; only a programmer error gets here, and detach stops on it.
    );
  }

  #lost(device: NbdBlockDevice, cause: BlockError): void {
    assert(this.#state === 'connected' && this.#device === device, 'only the device in use can be lost');
    this.#device = undefined;
    this.#state = 'detached';
    this.#detachCount += 1;
    this.#lastError = cause;
    this.#failedAttempts = 0;
    // The connection has failed every request and holds no socket; close() only marks the object
    // closed and cannot fail with an operating error (a programmer error still stops the process).
    detach(device.close(), () => undefined);
    this.#emit({ type: 'detached', name: this.name, reason: cause });
    if (!this.closed) this.#schedule();
  }

  /** Schedules the next attempt after the backoff delay for the attempts failed so far. */
  #schedule(): void {
    assert(this.#state === 'detached' && this.#cancelTimer === undefined, 'one timer at a time, only while detached');
    assert(!this.#refused, 'no attempts after a refusal');
    const delayMs = this.nextDelayMs(this.#failedAttempts);
    this.#cancelTimer = this.#settings.scheduleTimer(() => {
      this.#cancelTimer = undefined;
      if (!this.closed && this.#state === 'detached') this.#attempt();
    }, delayMs);
  }

  /** The delay before attempt `failedAttempts + 1`: doubling from the minimum, jittered, bounded. */
  nextDelayMs(failedAttempts: number): number {
    assertCount(failedAttempts, 'failedAttempts');
    const { reconnectDelayMsMin: minMs, reconnectDelayMsMax: maxMs, random } = this.#settings;
    const doublings = Math.min(failedAttempts, 32);
    const baseMs = Math.min(maxMs, minMs * 2 ** doublings);
    const jitter = 1 + jitterFraction * (2 * random() - 1);
    const delayMs = Math.round(Math.min(maxMs, Math.max(minMs, baseMs * jitter)));
    assert(delayMs >= minMs, 'the delay is at least the minimum');
    assert(delayMs <= maxMs, 'the delay is at most the maximum');
    return delayMs;
  }

  #attempt(): void {
    assert(this.#state === 'detached' && this.#device === undefined, 'attempts start detached');
    this.#state = 'connecting';
    this.#reconnectAttemptCount += 1;
    detach(
      connectDevice(this.#target, this.#settings).then(
        (device) => this.#connected(device),
        (err: unknown) => {
          rethrowProgrammerError(err);
          this.#attemptFailed(err instanceof BlockError ? err : new BlockError('EIO', `Cannot connect to ${this.uri}: ${String(err)}`, { cause: err }));
        },
      ),
      () => undefined, // Both handlers above handle every operating error; only programmer errors get out.
    );
  }

  #connected(device: NbdBlockDevice): void {
    assert(this.#state === 'connecting' || this.closed, 'an attempt ends in the connecting state');
    if (this.closed) {
      // Closed while the attempt ran: a graceful close of the new connection; a failure of it has
      // nobody left to tell.
      detach(device.close(), () => undefined);
      return;
    }
    const problem = this.#geometryProblem(device);
    if (problem !== undefined) {
      detach(device.close(), () => undefined); // As above: the refusal below is what gets reported.
      const reason = new BlockError('EIO', `Cannot re-attach ${this.name}: ${problem}; the leg stays detached`);
      this.#state = 'detached';
      this.#refused = true;
      this.#lastError = reason;
      this.#emit({ type: 'reattach-refused', name: this.name, reason });
      return;
    }
    this.#device = device;
    this.#state = 'connected';
    this.#failedAttempts = 0;
    this.#reconnectCount += 1;
    this.#watch(device);
    this.#emit({ type: 'attached', name: this.name, reconnectCount: this.#reconnectCount });
  }

  #attemptFailed(err: BlockError): void {
    if (this.closed) return;
    assert(this.#state === 'connecting', 'an attempt ends in the connecting state');
    this.#state = 'detached';
    this.#lastError = err;
    this.#failedAttempts += 1;
    this.#schedule();
  }

  /** Why `device` cannot stand in for the export this object was opened on, or undefined. */
  #geometryProblem(device: NbdBlockDevice): string | undefined {
    if (device.sizeBytes !== this.sizeBytes) {
      return `the export's size changed from ${this.sizeBytes} to ${device.sizeBytes} bytes`;
    }
    if (device.readOnly && !this.readOnly) return 'the export became read-only';
    return undefined;
  }

  #emit(event: NbdConnectionEvent): void {
    for (const listener of this.#listeners) listener(event);
  }
}

/** One connection attempt: connect, negotiate, build the device. @throws BlockError. */
async function connectDevice(target: NbdTarget, settings: Settings): Promise<NbdBlockDevice> {
  const connection = await NbdClientConnection.connect({
    target,
    requestTimeoutMs: settings.requestTimeoutMs,
    ...(settings.connectTimeoutMs !== undefined && { connectTimeoutMs: settings.connectTimeoutMs }),
    ...(settings.inFlightMax !== undefined && { inFlightMax: settings.inFlightMax }),
  });
  try {
    return NbdBlockDevice.attach(connection, { name: settings.name });
  } catch (err) {
    rethrowProgrammerError(err);
    connection.destroy('refused at attach');
    throw err;
  }
}
