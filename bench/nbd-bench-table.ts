/**
 * The README's performance table from a `npm run bench:nbd -- --json FILE` report:
 *
 *   npm run bench:table -- FILE.json                      prints the markdown block
 *   npm run bench:table -- FILE.json --readme README.md   replaces the block between the README's
 *                                                         bench:nbd:begin and bench:nbd:end markers
 *
 * The block says when and where it was measured (date, nproc, CPU model, kernel, Node, fio).
 */
import { readFile, writeFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { parseBenchReport, readmeTable, replaceReadmeBlock } from './nbd-bench-report.js';

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({ options: { readme: { type: 'string' } }, allowPositionals: true, strict: true });
  const [file, ...rest] = positionals;
  if (file === undefined || rest.length > 0) throw new RangeError('usage: nbd-bench-table.js FILE.json [--readme README.md]');
  const block = readmeTable(parseBenchReport(await readFile(file, 'utf8')));
  if (values.readme === undefined) {
    console.log(block);
    return;
  }
  await writeFile(values.readme, replaceReadmeBlock(await readFile(values.readme, 'utf8'), block));
  console.log(`updated the performance table in ${values.readme}`);
}

main().catch((err: unknown) => {
  console.error(err instanceof RangeError ? err.message : err);
  process.exitCode = 1;
});
