/**
 * The crash tests' data stamps and report lines, shared by the child (test/crash/crash-child.ts) and the
 * parent (crash-harness.ts).
 *
 * Every 512-byte sector a write carries is stamped, so any sector read back names the write it came
 * from:
 *
 *   byte 0         4              8                                        512
 *        +---------+--------------+----------------------------------------+
 *        | gen u32 | sector u32   | fill: (gen * 131 + sector * 7 + i) & 0xff |
 *        +---------+--------------+----------------------------------------+
 *
 * gen 0 is never used: an all-zero sector is the image's initial content.
 *
 * Report lines (child -> parent, one per line on the child's stdout, written synchronously so a line is
 * in the pipe before the next step happens):
 *   R <regionCount>            the mirror resumed; the load starts
 *   I <gen> <offset> <length>  a write is about to be issued to the mirror (bytes)
 *   A <gen>                    that write was acknowledged
 *   S <leg> <offset> <length>  a data write to leg <leg> (leg-relative bytes) starts
 *   E <leg> <offset> <length>  that leg write ended (success or failure)
 *   C                          clean shutdown finished (suspend + close)
 */
import { sectorBytes } from '../../src/limits.js';

const stampHeaderBytes = 8;

function fillByte(options: { gen: number; sector: number; index: number }): number {
  return (options.gen * 131 + options.sector * 7 + options.index) & 0xff;
}

/** The data of write `gen` at `offsetBytes` (sector aligned), `lengthBytes` long. */
export function stampedData(options: { gen: number; offsetBytes: number; lengthBytes: number }): Buffer {
  if (options.gen <= 0 || options.offsetBytes % sectorBytes !== 0 || options.lengthBytes % sectorBytes !== 0) {
    throw new RangeError('stamped writes are whole sectors with gen > 0');
  }
  const data = Buffer.alloc(options.lengthBytes);
  for (let at = 0; at < options.lengthBytes; at += sectorBytes) {
    const sector = (options.offsetBytes + at) / sectorBytes;
    data.writeUInt32LE(options.gen, at);
    data.writeUInt32LE(sector, at + 4);
    for (let i = stampHeaderBytes; i < sectorBytes; i++) data[at + i] = fillByte({ gen: options.gen, sector, index: i });
  }
  return data;
}

/**
 * The write a sector came from: its gen, 0 for an untouched (all-zero) sector, or null when the sector
 * is torn or corrupt (stamp of another sector, or a fill that does not match its gen).
 */
export function sectorGen(options: { data: Uint8Array; at: number; sector: number }): number | null {
  const { data, at, sector } = options;
  const view = Buffer.from(data.buffer, data.byteOffset + at, sectorBytes);
  const gen = view.readUInt32LE(0);
  if (gen === 0) return view.every((b) => b === 0) ? 0 : null;
  if (view.readUInt32LE(4) !== sector) return null;
  for (let i = stampHeaderBytes; i < sectorBytes; i++) if (view[i] !== fillByte({ gen, sector, index: i })) return null;
  return gen;
}
