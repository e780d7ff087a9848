/**
 * Stacking as dmsetup shows it: `deps` (the devices a table holds open) and `ls --tree` (every device
 * with the devices below it), computed from the devices' live tables. Pure functions: dm-verbs.ts
 * fetches the tables and prints the lines.
 *
 * The kernel lists a table's devices newest first (dm_get_device adds each new one at the head of the
 * table's list, and DM_TABLE_DEPS walks that list), so `deps` of `mirror core ... 2 a 0 b 0` prints b,
 * then a; a disk log's device is taken before the legs. umirror prints device names where dmsetup
 * prints `(major, minor)`, in dmsetup's `-o devname` form: `2 dependencies\t: (b) (a)`.
 *
 * The tree is dmsetup's (libdm/dm-tools/dmsetup.c, drawn as pstree does): top-level devices (those no
 * other device holds) at the left in creation order, each device's dependencies below it in `deps`
 * order, a path (a leaf: image file, block device) as ` (PATH)` where dmsetup prints ` (8:16)`:
 *
 *   top
 *    |-mid
 *    |  `- (/d/b.img)
 *    `- (/d/a.img)
 *
 * ASCII by default; UTF-8 line drawing (├─ │ └─) when the locale says UTF-8, as dmsetup chooses.
 */
import { parseTable } from '../control/parse-table.js';

/** The devices `table` (kernel syntax, as `umirror table` prints it) holds open, in the kernel's order. */
export function tableDependencies(table: string): string[] {
  const taken: string[] = [];
  const take = (device: string): void => {
    if (device !== '' && !taken.includes(device)) taken.push(device);
  };
  for (const line of parseTable(table)) {
    if (line.mirror !== undefined) {
      if (line.mirror.log.type === 'disk') take(line.mirror.log.args[0] ?? '');
      for (const leg of line.mirror.legs) take(leg.device);
    } else if (line.type === 'linear') {
      take(line.args[0] ?? '');
    }
  }
  return taken.reverse();
}

/** `deps`' line: `2 dependencies\t: (b) (a)`, prefixed by `NAME: ` when listing every device. */
export function depsLine(options: { dependencies: readonly string[]; name?: string }): string {
  const prefix = options.name === undefined ? '' : `${options.name}: `;
  return `${prefix}${options.dependencies.length} dependencies\t:${options.dependencies.map((d) => ` (${d})`).join('')}`;
}

interface TreeSymbols {
  readonly vertical: string;
  readonly empty: string;
  readonly branch: string;
  readonly last: string;
}

const ascii: TreeSymbols = { vertical: '| ', empty: '  ', branch: '|-', last: '`-' };
const utf8: TreeSymbols = { vertical: '\u2502 ', empty: '  ', branch: '\u251c\u2500', last: '\u2514\u2500' };

/** True when the locale's character set is UTF-8 (LC_ALL, then LC_CTYPE, then LANG, as setlocale reads them). */
export function utf8Locale(env: NodeJS.ProcessEnv = process.env): boolean {
  const locale = [env['LC_ALL'], env['LC_CTYPE'], env['LANG']].find((value) => value !== undefined && value !== '') ?? '';
  return /utf-?8/i.test(locale);
}

/**
 * `ls --tree`'s lines. `devices` are the daemon's devices in creation order, each with its
 * dependencies (tableDependencies); a dependency that is not a device is a path, drawn as a leaf.
 */
export function treeLines(devices: ReadonlyMap<string, readonly string[]>, options: { utf8?: boolean } = {}): string[] {
  const symbols = options.utf8 === true ? utf8 : ascii;
  const held = new Set<string>();
  for (const dependencies of devices.values()) for (const dependency of dependencies) if (devices.has(dependency)) held.add(dependency);
  const lines: string[] = [];
  // more[d]: the node drawn at depth d has siblings after it (dmsetup's _tree_more).
  const more: boolean[] = [];
  const walk = (names: readonly string[], depth: number, path: readonly string[]): void => {
    names.forEach((name, index) => {
      more[depth] = index < names.length - 1;
      let prefix = '';
      for (let d = 0; d < depth; d++) {
        prefix += ' ';
        if (d === depth - 1) prefix += more[depth] === true ? symbols.branch : symbols.last;
        else prefix += more[d + 1] === true ? symbols.vertical : symbols.empty;
      }
      const isDevice = devices.has(name);
      lines.push(`${prefix}${isDevice ? name : ` (${name})`}`);
      // A cycle cannot be loaded (the daemon refuses it); the path check only keeps a bad input finite.
      const children = isDevice && !path.includes(name) ? (devices.get(name) ?? []) : [];
      if (children.length > 0) walk(children, depth + 1, [...path, name]);
    });
  };
  walk(
    [...devices.keys()].filter((name) => !held.has(name)),
    0,
    [],
  );
  return lines;
}
