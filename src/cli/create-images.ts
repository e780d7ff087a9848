/**
 * `umirror create-images`: creates sparse leg and log images under a folder and prints the mirror table
 * that uses them (existing images are kept).
 */
import { parseArgs } from 'node:util';
import { prepareImages } from '../control/images.js';
import { ControlError } from '../errors.js';
import { legsMax, legsMin, regionSizeSectorsDefault, regionSizeSectorsMin } from '../limits.js';
import { folderOption, legCountOption, logTypeOption, regionSizeOption, sizeOption } from './option-values.js';

export const createImagesHelp = `Usage: umirror create-images --data DIR [--size SIZE] [--legs N] [--log disk|core]
                            [--region-size SECTORS] [--no-handle-errors]

Creates DIR/leg0.img ... (sparse, SIZE each, default 1G) and DIR/log.img for a disk log, then prints
the mirror table for them. Existing images are kept as they are.

  --legs N                legs, ${legsMin}..${legsMax} (default 2)
  --log disk|core         dirty log (default disk)
  --region-size SECTORS   region size in 512-byte sectors, a power of two from ${regionSizeSectorsMin} (default ${regionSizeSectorsDefault})
  --no-handle-errors      leave handle_errors out of the table`;

export async function createImagesCommand(argv: readonly string[]): Promise<number> {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      data: { type: 'string' },
      size: { type: 'string', default: '1G' },
      legs: { type: 'string', default: '2' },
      log: { type: 'string', default: 'disk' },
      'region-size': { type: 'string', default: String(regionSizeSectorsDefault) },
      'no-handle-errors': { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
  });
  if (values.help) {
    console.log(createImagesHelp);
    return 0;
  }
  // Every value is checked before anything is created.
  if (values.data === undefined) throw new ControlError('EINVAL', 'create-images needs --data DIR');
  const images = await prepareImages({
    dataDir: folderOption('--data', values.data),
    sizeBytes: sizeOption(values.size),
    legCount: legCountOption(values.legs),
    regionSectors: regionSizeOption(values['region-size']),
    log: logTypeOption(values.log),
    handleErrors: !values['no-handle-errors'],
  });
  for (const path of images.created) console.error(`created ${path}`);
  console.log(images.table);
  return 0;
}
