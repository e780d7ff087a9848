/**
 * `umirror create-images`: creates sparse leg and log images under a folder and prints the mirror table
 * that uses them (existing images are kept).
 */
import { parseArgs } from 'node:util';
import { parseSize, prepareImages } from '../control/images.js';

export const createImagesHelp = `Usage: umirror create-images --data DIR [--size SIZE] [--legs N] [--log disk|core]
                            [--region-size SECTORS] [--no-handle-errors]

Creates DIR/leg0.img ... (sparse, SIZE each, default 1G) and DIR/log.img for a disk log, then prints
the mirror table for them. Existing images are kept as they are.`;

export async function createImagesCommand(argv: readonly string[]): Promise<number> {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      data: { type: 'string' },
      size: { type: 'string', default: '1G' },
      legs: { type: 'string', default: '2' },
      log: { type: 'string', default: 'disk' },
      'region-size': { type: 'string', default: '1024' },
      'no-handle-errors': { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    console.log(createImagesHelp);
    return 0;
  }
  if (values.data === undefined) throw new RangeError('create-images needs --data DIR');
  if (values.log !== 'disk' && values.log !== 'core') throw new RangeError('--log must be disk or core');
  const images = await prepareImages({
    dataDir: values.data,
    sizeBytes: parseSize(values.size),
    legCount: Number(values.legs),
    regionSectors: Number(values['region-size']),
    log: values.log,
    handleErrors: !values['no-handle-errors'],
  });
  for (const path of images.created) console.error(`created ${path}`);
  console.log(images.table);
  return 0;
}
