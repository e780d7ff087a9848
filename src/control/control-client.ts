/**
 * ControlClient: the CLI's side of the control socket. One connection, requests with increasing ids,
 * responses matched by id (so a blocking `wait` and other requests can share it).
 *
 * Errors: a daemon that is not running (no socket, or nobody listening) is ControlError ENXIO; a daemon
 * that went away mid-request is ControlError EIO; the daemon's own errors come back as responses.
 */
import { connect, type Socket } from 'node:net';
import { assert } from '../assert.js';
import { ControlError } from '../errors.js';
import { rethrowProgrammerError } from '../fail-fast.js';
import { KernelControlError, LineDecoder, encodeLine, parseResponse, type ControlRequest, type ControlResponse } from './control-protocol.js';

/** A request without its id: the client numbers them. */
export type ControlCall = ControlRequest extends infer R ? (R extends ControlRequest ? Omit<R, 'id'> : never) : never;

export class ControlClient {
  readonly #socket: Socket;
  readonly #pending = new Map<number, { resolve: (response: ControlResponse) => void; reject: (error: Error) => void }>();
  #nextId = 1;
  #closedError: Error | undefined;

  private constructor(socket: Socket) {
    this.#socket = socket;
    const decoder = new LineDecoder();
    socket.on('data', (chunk: Buffer) => {
      for (const item of decoder.push(chunk)) {
        if (item.kind === 'overflow') {
          this.#fail(new ControlError('EIO', 'The daemon sent an overlong line'));
          return;
        }
        let response: ControlResponse;
        try {
          response = parseResponse(item.text);
        } catch (err) {
          rethrowProgrammerError(err);
          this.#fail(err instanceof Error ? err : new Error(String(err)));
          return;
        }
        const id = typeof response.id === 'number' ? response.id : undefined;
        const waiter = id === undefined ? undefined : this.#pending.get(id);
        if (id === undefined || waiter === undefined) {
          if (!response.ok) this.#fail(new ControlError(response.error.code, response.error.message));
          continue;
        }
        this.#pending.delete(id);
        waiter.resolve(response);
      }
    });
    socket.on('error', (err) => this.#fail(new ControlError('EIO', `Control connection failed: ${err.message}`, { cause: err })));
    socket.on('close', () => this.#fail(new ControlError('EIO', 'The daemon closed the control connection')));
  }

  /** Connects to the daemon's socket. @throws ControlError ENXIO when no daemon listens there. */
  static async connect(path: string): Promise<ControlClient> {
    const socket = connect(path);
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', (err: Error & { code?: string }) =>
        reject(new ControlError('ENXIO', `Cannot reach the umirror daemon at ${path}: ${err.code ?? err.message} (is \`umirror daemon\` running?)`, { cause: err })),
      );
    });
    return new ControlClient(socket);
  }

  /** Sends one request and waits for its response (ok or error). */
  call(request: ControlCall): Promise<ControlResponse> {
    if (this.#closedError !== undefined) return Promise.reject(this.#closedError);
    const id = this.#nextId++;
    assert(!this.#pending.has(id), 'request ids are unique');
    return new Promise<ControlResponse>((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      const message: ControlRequest = { ...request, id };
      this.#socket.write(encodeLine(message));
    });
  }

  /** Sends one request; returns its result or throws its error as a ControlError. */
  async request(request: ControlCall): Promise<unknown> {
    const response = await this.call(request);
    if (response.ok) return response.result;
    throw new KernelControlError(response.error.code, response.error.message, { kernel: response.error.kernel ?? [] });
  }

  close(): void {
    this.#socket.end();
    this.#socket.destroy();
  }

  #fail(error: Error): void {
    this.#closedError ??= error;
    for (const waiter of this.#pending.values()) waiter.reject(error);
    this.#pending.clear();
    this.#socket.destroy();
  }
}
