/**
 * umirror's version, read from package.json at run time (dist/cli/ -> ../../package.json), as
 * `umirror --version`, `umirror version` and the daemon's umirror_build_info print it, and the versions
 * of the targets umirror implements, as the kernel reports them (`dmsetup targets`).
 */
import { readFileSync } from 'node:fs';
import { ControlError } from '../errors.js';
import { mirrorTargetVersion } from '../mirror/table.js';

export function packageVersion(): string {
  const parsed: unknown = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8'));
  const version = typeof parsed === 'object' && parsed !== null && 'version' in parsed ? parsed.version : undefined;
  if (typeof version !== 'string') throw new ControlError('EIO', 'package.json has no version');
  return version;
}

/**
 * The kernel's versions of the targets umirror implements (Linux 6.1, the oracle's kernel: `dmsetup
 * targets` there prints mirror v1.14.0, linear v1.4.0, error v1.5.0; zero is v1.2.0 in dm-zero.c).
 */
export const targetVersions: readonly (readonly [string, string])[] = [
  ['mirror', mirrorTargetVersion],
  ['linear', '1.4.0'],
  ['zero', '1.2.0'],
  ['error', '1.5.0'],
];

/** `umirror version`: dmsetup version's first line with umirror's version, then dmsetup targets' lines. */
export function versionLines(version: string): string[] {
  return [`umirror version:  ${version}`, ...targetVersions.map(([name, v]) => `${name.padEnd(16)} v${v}`)];
}
