/**
 * The one logger of `serve` and `daemon`: pino, writing to stderr, as JSON lines (one object a line,
 * for journald, Loki or jq) or as text for a person at a terminal. `--log-format text|json` chooses;
 * the default is text when stderr is a terminal and JSON otherwise. `--log-level` is pino's level;
 * `debug` adds what an operator needs to follow a problem (each control request and its answer, NBD
 * clients' handshake details, table loads), `trace` more.
 *
 * Text lines read like a kernel log with fields after the message, values quoted only when they need it:
 *
 *   12:04:31.207 WARN  device-mapper: raid1: Mirror read failed. device=vol
 *   12:04:31.951 INFO  nbd client connected device=vol peer=127.0.0.1:51834 export=vol
 *
 * A text line is formatted from the same object pino would write as JSON (pino's serializers and
 * redaction apply to both), and written synchronously: a line logged just before an exit is not lost.
 * Who calls it: serve.ts and daemon.ts, once at start-up; everything else gets the logger (or a sink
 * built on it) passed in.
 */
import { writeSync } from 'node:fs';
import { destination, pino, type DestinationStream, type Logger } from 'pino';
import { ControlError } from '../errors.js';
import { rethrowProgrammerError } from '../fail-fast.js';

export type LogFormat = 'text' | 'json';
export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
export type { Logger } from 'pino';

/** `--log-level LEVEL`. @throws ControlError EINVAL. */
export function logLevelOption(text: string): LogLevel {
  const level = LOG_LEVELS.find((known) => known === text);
  if (level === undefined) throw new ControlError('EINVAL', `--log-level must be one of ${LOG_LEVELS.join(', ')}, got ${JSON.stringify(text)}`);
  return level;
}

/** `--log-format text|json`; without it, text on a terminal and JSON elsewhere. @throws ControlError EINVAL. */
export function logFormatOption(text: string | undefined, stderr: { readonly isTTY?: boolean | undefined } = process.stderr): LogFormat {
  if (text === undefined) return stderr.isTTY === true ? 'text' : 'json';
  if (text !== 'text' && text !== 'json') throw new ControlError('EINVAL', `--log-format must be text or json, got ${JSON.stringify(text)}`);
  return text;
}

/** The logger for a command: pino at `level`, to file descriptor `fd` (stderr) in `format`. */
export function createLogger(options: { level: LogLevel; format: LogFormat; fd?: number }): Logger {
  const fd = options.fd ?? 2;
  const stream: DestinationStream = options.format === 'json' ? destination({ dest: fd, sync: true }) : { write: (line: string) => writeText(fd, line) };
  return pino({ level: options.level, base: { pid: process.pid } }, stream);
}

function writeText(fd: number, json: string): void {
  let record: unknown;
  try {
    record = JSON.parse(json);
  } catch (err) {
    rethrowProgrammerError(err);
    // pino writes one JSON object a line; anything else is passed through rather than lost.
    writeSync(fd, json);
    return;
  }
  writeSync(fd, `${formatTextLine(isRecord(record) ? record : { msg: String(record) })}\n`);
}

const levelNames: Readonly<Record<number, string>> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' };
/** Fields every record has, shown in the line's head or not at all. */
const headFields = new Set(['level', 'time', 'msg', 'pid', 'hostname']);

/** One pino record as a text line: local time, level, message, then `key=value` fields. */
export function formatTextLine(record: Readonly<Record<string, unknown>>): string {
  const time = typeof record['time'] === 'number' ? new Date(record['time']) : new Date();
  const clock = `${pad(time.getHours(), 2)}:${pad(time.getMinutes(), 2)}:${pad(time.getSeconds(), 2)}.${pad(time.getMilliseconds(), 3)}`;
  const level = typeof record['level'] === 'number' ? (levelNames[record['level']] ?? String(record['level'])) : 'INFO';
  const message = typeof record['msg'] === 'string' ? record['msg'] : '';
  const fields = Object.entries(record)
    .filter(([key, value]) => !headFields.has(key) && value !== undefined)
    .map(([key, value]) => `${key}=${fieldText(value)}`);
  return [clock, level.padEnd(5), message, ...fields].filter((part) => part !== '').join(' ');
}

function pad(value: number, width: number): string {
  return String(value).padStart(width, '0');
}

/** A field value: bare when it is one plain word, JSON-quoted otherwise; an error shows its message. */
function fieldText(value: unknown): string {
  if (isRecord(value) && typeof value['message'] === 'string') return fieldText(value['message']);
  const text = typeof value === 'string' ? value : JSON.stringify(value);
  return /^[\w.:/@+,[\]-]+$/.test(text) ? text : JSON.stringify(text);
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
