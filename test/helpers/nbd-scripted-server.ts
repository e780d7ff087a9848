/**
 * A tiny NBD server for client tests that must see exactly the bytes they choose: a net.Server on a
 * Unix socket in a temp dir, with a normal fixed-newstyle handshake (or a scripted deviation) and a
 * per-request `answer` hook. By default it serves an in-memory disk correctly (structured replies when
 * negotiated), so a test overrides only the reply it wants to break: a wrong cookie, an oversized chunk,
 * garbage, a stall. Client frames are parsed with the server codec (NbdServerParser).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  type BlockSizes,
  encodeChunkNone,
  encodeChunkOffsetDataHeader,
  encodeExportNameReply,
  encodeGreeting,
  encodeInfoBlockSize,
  encodeInfoExport,
  encodeOptionReply,
  encodeSimpleReply,
  type NbdRequest,
  NbdServerParser,
} from '../../src/nbd/codec.js';
import { command, handshakeFlag, option, optionReply, transmissionFlag } from '../../src/nbd/protocol.js';

export interface ScriptedRequestContext {
  readonly request: NbdRequest;
  readonly structuredReplies: boolean;
  readonly disk: Buffer;
  readonly socket: Socket;
  /** The correct reply to the request (the default answer). */
  readonly proper: () => Buffer[];
}

export interface ScriptedServerOptions {
  readonly sizeBytes?: number;
  /** Accept NBD_OPT_STRUCTURED_REPLY (default true). */
  readonly structuredReplies?: boolean;
  /** Answer NBD_OPT_GO (default true); false answers ERR_UNSUP, like a server from before GO. */
  readonly go?: boolean;
  readonly blockSizes?: BlockSizes;
  readonly transmissionFlags?: number;
  /** Replaces the greeting (e.g. an oldstyle one). */
  readonly greeting?: Buffer;
  /** Called after the client flags: bytes to send first, 'close' to hang up, 'stall' to answer nothing more. */
  readonly afterClientFlags?: (socket: Socket) => Buffer | 'close' | 'stall' | undefined;
  /** Answers a request: buffers to send, [] to stay silent. Default: `context.proper()`. */
  readonly answer?: (context: ScriptedRequestContext) => Buffer[];
}

export interface ScriptedServer {
  readonly socketPath: string;
  readonly uri: string;
  readonly requests: NbdRequest[];
  readonly disk: Buffer;
  /** Sockets currently open. */
  readonly openConnections: () => number;
  close(): Promise<void>;
}

const defaultFlags =
  transmissionFlag.hasFlags | transmissionFlag.sendFlush | transmissionFlag.sendFua | transmissionFlag.sendTrim | transmissionFlag.sendWriteZeroes;

export async function startScriptedServer(options: ScriptedServerOptions = {}): Promise<ScriptedServer> {
  const dir = await mkdtemp(join(tmpdir(), 'umirror-scripted-'));
  const socketPath = join(dir, 'nbd.sock');
  const sizeBytes = options.sizeBytes ?? 1024 * 1024;
  const disk = Buffer.alloc(sizeBytes);
  const requests: NbdRequest[] = [];
  const sockets = new Set<Socket>();
  const flags = options.transmissionFlags ?? defaultFlags;

  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined); // The client under test may reset us; that is its business.
    const parser = new NbdServerParser({ payloadBytesMax: 64 * 1024 * 1024, skipBytesMax: 64 * 1024 * 1024 });
    let structured = false;
    let stalled = false;
    socket.write(options.greeting ?? encodeGreeting(handshakeFlag.fixedNewstyle | handshakeFlag.noZeroes));
    socket.on('data', (chunk: Buffer) => {
      if (stalled) return;
      parser.push(chunk);
      for (let frame = parser.next(); frame !== undefined; frame = parser.next()) {
        if (frame.kind === 'clientFlags') {
          const deviation = options.afterClientFlags?.(socket);
          if (deviation === 'close') socket.destroy();
          else if (deviation === 'stall') stalled = true;
          else if (deviation !== undefined) socket.write(deviation);
          if (deviation === 'close' || deviation === 'stall') return;
          continue;
        }
        if (frame.kind === 'protocolError') {
          socket.destroy();
          return;
        }
        if (frame.kind === 'option') {
          const reply = (replyType: number, payload?: Buffer): void => {
            socket.write(encodeOptionReply({ option: frame.option, replyType, ...(payload !== undefined && { payload }) }));
          };
          if (frame.option === option.structuredReply && options.structuredReplies !== false) {
            structured = true;
            reply(optionReply.ack);
          } else if (frame.option === option.go && options.go !== false) {
            reply(optionReply.info, encodeInfoExport(sizeBytes, flags));
            if (options.blockSizes !== undefined) reply(optionReply.info, encodeInfoBlockSize(options.blockSizes));
            reply(optionReply.ack);
            parser.enterTransmission();
          } else if (frame.option === option.exportName) {
            socket.write(encodeExportNameReply({ sizeBytes, transmissionFlags: flags, zeroes: false }));
            parser.enterTransmission();
          } else {
            reply(optionReply.errUnsup);
          }
          continue;
        }
        const { request } = frame;
        requests.push(request);
        if (request.type === command.disc) {
          socket.end();
          return;
        }
        const proper = (): Buffer[] => properReply({ request, disk, structured });
        const answer = options.answer?.({ request, structuredReplies: structured, disk, socket, proper }) ?? proper();
        for (const buffer of answer) socket.write(buffer);
      }
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, () => resolve());
  });
  return {
    socketPath,
    uri: `nbd+unix:///?socket=${socketPath}`,
    requests,
    disk,
    openConnections: () => sockets.size,
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** The correct reply to a request against `disk` (reads as one OFFSET_DATA chunk when structured). */
export function properReply(options: { request: NbdRequest; disk: Buffer; structured: boolean }): Buffer[] {
  const { request, disk } = options;
  const end = request.offsetBytes + request.lengthBytes;
  switch (request.type) {
    case command.read: {
      const data = Buffer.from(disk.subarray(request.offsetBytes, end));
      if (!options.structured) return [encodeSimpleReply(request, 0), data];
      return [encodeChunkOffsetDataHeader({ cookie: request, offsetBytes: request.offsetBytes, dataBytes: data.length, done: true }), data];
    }
    case command.write:
      request.payload?.copy(disk, request.offsetBytes);
      break;
    case command.writeZeroes:
    case command.trim:
      disk.fill(0, request.offsetBytes, end);
      break;
    default:
      break;
  }
  return options.structured && request.type !== command.read ? [encodeChunkNone(request)] : [encodeSimpleReply(request, 0)];
}
