/**
 * The daemon's control protocol: JSON lines over a Unix socket (docs/control-protocol.md). Pure: no I/O.
 *
 *   client -> daemon   {"id":1,"verb":"status","name":"m"}\n
 *   daemon -> client   {"id":1,"ok":true,"result":{...}}\n
 *                      {"id":1,"ok":false,"error":{"code":"ENOENT","message":"...","kernel":["..."]}}\n
 *
 * One request per line, one response per request, carrying the request's id (a number or a string
 * chosen by the client; null when the line could not be read at all). Requests on one connection may be
 * answered out of order (`wait` blocks; others do not wait for it).
 *
 * LineDecoder splits a byte stream into lines, bounded by `lineBytesMax`: a longer line is reported
 * once as an overflow and then discarded up to its newline, so one huge line costs at most
 * `lineBytesMax` bytes of memory. parseRequest() validates every field; anything malformed is a
 * ControlError EINVAL, never an exception of another kind.
 */
import { assert } from '../assert.js';
import { ControlError, isControlErrno, type ControlErrno } from '../errors.js';
import { controlLineBytesMax, deviceNameBytesMax, lazyCleanMsMax, quotedInputCharsMax, rateMiBPerSecondMax, rateMiBPerSecondMin } from '../limits.js';
import type { NbdServeOptionsText } from './nbd-serve-options.js';

export const CONTROL_VERBS = [
  'create',
  'load',
  'clear',
  'suspend',
  'resume',
  'remove',
  'status',
  'table',
  'info',
  'ls',
  'wait',
  'message',
  'scrub',
] as const;
export type ControlVerb = (typeof CONTROL_VERBS)[number];

export type RequestId = number | string | null;

/**
 * `create --nbd`'s security options, as the user typed them (paths made absolute by the CLI): the text
 * nbd-serve-options.ts checks, the same fields as `serve`'s options.
 */
export type CreateNbdOptions = NbdServeOptionsText;

export type ControlRequest =
  | {
      readonly id: RequestId;
      readonly verb: 'create';
      readonly name: string;
      readonly table: string;
      readonly nbd?: string;
      readonly nbdOptions?: CreateNbdOptions;
      readonly readOnly: boolean;
      /** The disk log's lazy clean delay for this device (`create --lazy-clean`); else the daemon's default. */
      readonly lazyCleanMs?: number;
      /** `create --read-repair`: md's read repair for this device's mirror segments. */
      readonly readRepair?: boolean;
    }
  | { readonly id: RequestId; readonly verb: 'load'; readonly name: string; readonly table: string }
  | { readonly id: RequestId; readonly verb: 'clear' | 'resume' | 'remove' | 'info'; readonly name: string }
  | { readonly id: RequestId; readonly verb: 'suspend'; readonly name: string; readonly noflush: boolean }
  | { readonly id: RequestId; readonly verb: 'status' | 'table'; readonly name: string; readonly inactive: boolean }
  | { readonly id: RequestId; readonly verb: 'ls' }
  | { readonly id: RequestId; readonly verb: 'wait'; readonly name: string; readonly eventNr: number }
  | { readonly id: RequestId; readonly verb: 'message'; readonly name: string; readonly sector: number; readonly message: string }
  | { readonly id: RequestId; readonly verb: 'scrub'; readonly name: string; readonly repair: boolean; readonly rateMiBPerSecond?: number };

export interface ControlErrorBody {
  readonly code: ControlErrno;
  readonly message: string;
  /** The kernel log lines the failure would have produced (table errors, messages). */
  readonly kernel?: readonly string[];
}

export type ControlResponse =
  | { readonly id: RequestId; readonly ok: true; readonly result: unknown }
  | { readonly id: RequestId; readonly ok: false; readonly error: ControlErrorBody };

/** A ControlError that also carries kernel log lines for the client to print. */
export class KernelControlError extends ControlError {
  readonly kernel: readonly string[];
  constructor(code: ControlErrno, message: string, options: { kernel: readonly string[]; cause?: unknown }) {
    super(code, message, options.cause === undefined ? undefined : { cause: options.cause });
    this.kernel = options.kernel;
  }
}

export type DecodedLine = { readonly kind: 'line'; readonly text: string } | { readonly kind: 'overflow'; readonly bytes: number };

/** Splits a byte stream into lines (see the banner). */
export class LineDecoder {
  readonly #lineBytesMax: number;
  #pending: Buffer[] = [];
  #pendingBytes = 0;
  /** Discarding the rest of an overlong line. */
  #skipping = false;

  constructor(options: { lineBytesMax?: number } = {}) {
    this.#lineBytesMax = options.lineBytesMax ?? controlLineBytesMax;
    assert(Number.isSafeInteger(this.#lineBytesMax) && this.#lineBytesMax > 0, 'lineBytesMax > 0');
  }

  /** Bytes buffered for an incomplete line; never more than lineBytesMax. */
  get pendingBytes(): number {
    return this.#pendingBytes;
  }

  push(chunk: Uint8Array): DecodedLine[] {
    const out: DecodedLine[] = [];
    let start = 0;
    while (start < chunk.length) {
      const newline = chunk.indexOf(0x0a, start);
      const end = newline < 0 ? chunk.length : newline;
      if (this.#skipping) {
        if (newline >= 0) this.#skipping = false;
      } else if (this.#pendingBytes + (end - start) > this.#lineBytesMax) {
        out.push({ kind: 'overflow', bytes: this.#pendingBytes + (end - start) });
        this.#reset();
        this.#skipping = newline < 0;
      } else if (newline < 0) {
        this.#pending.push(Buffer.from(chunk.subarray(start, end)));
        this.#pendingBytes += end - start;
      } else {
        const line = Buffer.concat([...this.#pending, chunk.subarray(start, end)]).toString('utf8');
        this.#reset();
        out.push({ kind: 'line', text: line.endsWith('\r') ? line.slice(0, -1) : line });
      }
      if (newline < 0) break;
      start = newline + 1;
    }
    assert(this.#pendingBytes <= this.#lineBytesMax, 'a pending line stays within its bound');
    return out;
  }

  #reset(): void {
    this.#pending = [];
    this.#pendingBytes = 0;
  }
}

/** One line of JSON, newline included. */
export function encodeLine(message: ControlRequest | ControlResponse): string {
  const text = JSON.stringify(message);
  assert(!text.includes('\n'), 'JSON.stringify never emits a raw newline');
  return `${text}\n`;
}

export function okResponse(id: RequestId, result: unknown): ControlResponse {
  return { id, ok: true, result };
}

export function errorResponse(id: RequestId, err: ControlError): ControlResponse {
  const kernel = err instanceof KernelControlError ? { kernel: err.kernel } : {};
  return { id, ok: false, error: { code: err.code, message: err.message, ...kernel } };
}

/** The id of a request line, if one can be found, so even a rejected request is answered by id. */
export function requestIdOf(value: unknown): RequestId {
  if (!isRecord(value)) return null;
  const id = value['id'];
  return typeof id === 'number' || typeof id === 'string' ? id : null;
}

/**
 * JSON.parse at a decode boundary. Its SyntaxError is the input's fault, not ours, so it is returned as
 * the result rather than thrown (a programmer error's class, which no catch may swallow). Anything else
 * JSON.parse throws is rethrown.
 */
export function decodeJson(line: string): { readonly value: unknown } | { readonly error: SyntaxError } {
  try {
    return { value: JSON.parse(line) as unknown };
  } catch (err) {
    if (err instanceof SyntaxError) return { error: err };
    throw err;
  }
}

/**
 * The JSON value of one request line. @throws ControlError EINVAL when the line is not JSON.
 */
export function decodeRequestLine(line: string): unknown {
  const decoded = decodeJson(line);
  if ('error' in decoded) throw new ControlError('EINVAL', `Request is not valid JSON: ${decoded.error.message}`, { cause: decoded.error });
  return decoded.value;
}

/**
 * Parses and validates one request line.
 * @throws ControlError EINVAL (bad JSON, unknown verb, missing or mistyped fields).
 */
export function parseRequest(line: string): ControlRequest {
  return parseRequestValue(decodeRequestLine(line));
}

/**
 * Validates one decoded request (decodeRequestLine).
 * @throws ControlError EINVAL (unknown verb, missing or mistyped fields).
 */
export function parseRequestValue(value: unknown): ControlRequest {
  if (!isRecord(value)) throw new ControlError('EINVAL', 'Request must be a JSON object');
  const id = requestIdOf(value);
  const rawId = value['id'];
  if (rawId !== undefined && rawId !== null && typeof rawId !== 'number' && typeof rawId !== 'string') {
    throw new ControlError('EINVAL', 'Request id must be a number, a string or null');
  }
  const verb = value['verb'];
  if (typeof verb !== 'string') throw new ControlError('EINVAL', 'Request has no verb');
  if (!isVerb(verb)) throw new ControlError('EINVAL', `Unknown verb "${verb.slice(0, quotedInputCharsMax)}"`);
  const fields = new Fields(value);
  switch (verb) {
    case 'ls':
      return { id, verb };
    case 'create': {
      const nbd = fields.optionalString('nbd');
      const nbdOptions = fields.createNbdOptions();
      const lazyCleanMs = fields.optionalCount('lazyCleanMs');
      if (lazyCleanMs !== undefined && lazyCleanMs > lazyCleanMsMax) {
        throw new ControlError('EINVAL', `Request field "lazyCleanMs" must be at most ${lazyCleanMsMax}`);
      }
      return {
        id,
        verb,
        name: fields.name(),
        table: fields.string('table'),
        ...(nbd === undefined ? {} : { nbd }),
        ...(nbdOptions !== undefined && { nbdOptions }),
        readOnly: fields.flag('readOnly'),
        ...(lazyCleanMs !== undefined && { lazyCleanMs }),
        ...(fields.flag('readRepair') && { readRepair: true }),
      };
    }
    case 'load':
      return { id, verb, name: fields.name(), table: fields.string('table') };
    case 'clear':
    case 'resume':
    case 'remove':
    case 'info':
      return { id, verb, name: fields.name() };
    case 'suspend':
      return { id, verb, name: fields.name(), noflush: fields.flag('noflush') };
    case 'status':
    case 'table':
      return { id, verb, name: fields.name(), inactive: fields.flag('inactive') };
    case 'wait':
      return { id, verb, name: fields.name(), eventNr: fields.optionalCount('eventNr') ?? 0 };
    case 'message':
      return { id, verb, name: fields.name(), sector: fields.optionalCount('sector') ?? 0, message: fields.string('message') };
    case 'scrub': {
      const rate = fields.optionalRate('rateMiBPerSecond');
      return { id, verb, name: fields.name(), repair: fields.flag('repair'), ...(rate === undefined ? {} : { rateMiBPerSecond: rate }) };
    }
  }
}

/**
 * Parses one response line (the client side).
 * @throws ControlError EIO when the daemon's answer is not a response.
 */
export function parseResponse(line: string): ControlResponse {
  const decoded = decodeJson(line);
  if ('error' in decoded) {
    throw new ControlError('EIO', `The daemon sent a line that is not JSON: ${line.slice(0, quotedInputCharsMax)}`, { cause: decoded.error });
  }
  const value = decoded.value;
  if (!isRecord(value) || typeof value['ok'] !== 'boolean') throw new ControlError('EIO', 'The daemon sent a malformed response');
  const id = requestIdOf(value);
  if (value['ok']) return { id, ok: true, result: value['result'] };
  const error = value['error'];
  if (!isRecord(error) || !isControlErrno(error['code']) || typeof error['message'] !== 'string') {
    throw new ControlError('EIO', 'The daemon sent a malformed error response');
  }
  const kernel = error['kernel'];
  const lines = Array.isArray(kernel) ? kernel.filter((l): l is string => typeof l === 'string') : undefined;
  return { id, ok: false, error: { code: error['code'], message: error['message'], ...(lines === undefined ? {} : { kernel: lines }) } };
}

/** Device names: what dmsetup accepts (no slash, not "." or ".."), at most deviceNameBytesMax bytes (DM_NAME_LEN - 1). */
export function checkDeviceName(name: string): void {
  if (name === '' || name === '.' || name === '..' || name.includes('/') || /[\s\0]/.test(name) || Buffer.byteLength(name) > deviceNameBytesMax) {
    throw new ControlError('EINVAL', `Invalid device name "${name.slice(0, quotedInputCharsMax)}"`);
  }
}

function isVerb(value: string): value is ControlVerb {
  return (CONTROL_VERBS as readonly string[]).includes(value);
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Typed field access on a request object; every failure is ControlError EINVAL. */
class Fields {
  readonly #value: Record<string, unknown>;
  constructor(value: Record<string, unknown>) {
    this.#value = value;
  }

  name(): string {
    const name = this.string('name');
    checkDeviceName(name);
    return name;
  }

  string(key: string): string {
    const value = this.#value[key];
    if (typeof value !== 'string') throw new ControlError('EINVAL', `Request field "${key}" must be a string`);
    return value;
  }

  optionalString(key: string): string | undefined {
    return this.#value[key] === undefined ? undefined : this.string(key);
  }

  /** The optional `nbdOptions` object of a create: the known string fields and one boolean, nothing else. */
  createNbdOptions(): CreateNbdOptions | undefined {
    const value = this.#value['nbdOptions'];
    if (value === undefined) return undefined;
    if (!isRecord(value)) throw new ControlError('EINVAL', 'Request field "nbdOptions" must be an object');
    const known = ['tls', 'tlsPsk', 'tlsCertificates', 'tlsVerifyPeer', 'maxConnections', 'socketMode', 'socketGroup'];
    const unknown = Object.keys(value).find((key) => !known.includes(key));
    if (unknown !== undefined) throw new ControlError('EINVAL', `Unknown nbdOptions field "${unknown.slice(0, 64)}"`);
    const inner = new Fields(value);
    const text = (key: Exclude<keyof CreateNbdOptions, 'tlsVerifyPeer'>): Partial<Record<typeof key, string>> => {
      const field = inner.optionalString(key);
      return field === undefined ? {} : { [key]: field };
    };
    return {
      ...text('tls'),
      ...text('tlsPsk'),
      ...text('tlsCertificates'),
      ...(inner.flag('tlsVerifyPeer') && { tlsVerifyPeer: true }),
      ...text('maxConnections'),
      ...text('socketMode'),
      ...text('socketGroup'),
    };
  }

  flag(key: string): boolean {
    const value = this.#value[key];
    if (value === undefined) return false;
    if (typeof value !== 'boolean') throw new ControlError('EINVAL', `Request field "${key}" must be a boolean`);
    return value;
  }

  /** A rate in MiB/s: a finite number from rateMiBPerSecondMin to rateMiBPerSecondMax. */
  optionalRate(key: string): number | undefined {
    const value = this.#value[key];
    if (value === undefined) return undefined;
    if (typeof value !== 'number' || !Number.isFinite(value) || value < rateMiBPerSecondMin || value > rateMiBPerSecondMax) {
      throw new ControlError('EINVAL', `Request field "${key}" must be a number from ${rateMiBPerSecondMin} to ${rateMiBPerSecondMax}`);
    }
    return value;
  }

  optionalCount(key: string): number | undefined {
    const value = this.#value[key];
    if (value === undefined) return undefined;
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
      throw new ControlError('EINVAL', `Request field "${key}" must be a non-negative integer`);
    }
    return value;
  }
}
