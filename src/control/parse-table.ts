/**
 * parseTable: validates a whole kernel-syntax table without opening any device, as far as the kernel
 * could without devices: dm core's line checks, then each mirror line's arguments (log first, with
 * dm-log's messages), linear/zero argument checks. @throws TableError with the kernel's message.
 */
import { parseLogSpec } from '../dirty-log/create-dirty-log.js';
import { parseMirrorArgs, type MirrorTableArgs } from '../mirror/table.js';
import { parseLinearArgs } from '../target/linear-target.js';
import { parseTableText, type TableLine } from '../target/table-lines.js';
import { parseZeroArgs } from '../target/zero-target.js';

export interface ParsedTableLine extends TableLine {
  /** The mirror arguments, for mirror lines. */
  readonly mirror?: MirrorTableArgs;
}

export function parseTable(text: string): ParsedTableLine[] {
  return parseTableText(text).map((line) => {
    switch (line.type) {
      case 'mirror': {
        const mirror = parseMirrorArgs(line.args, {
          lengthSectors: line.lengthSectors,
          validateLog: (log) => {
            parseLogSpec(log, { targetLengthSectors: line.lengthSectors }); // Only its TableError matters here.
          },
        });
        return { ...line, mirror };
      }
      case 'linear':
        parseLinearArgs(line.args, { lengthSectors: line.lengthSectors });
        return line;
      case 'zero':
        parseZeroArgs(line.args);
        return line;
      default:
        return line;
    }
  });
}
