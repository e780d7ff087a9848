/**
 * umirror's version, read from package.json at run time (dist/cli/ -> ../../package.json), as
 * `umirror --version`, `umirror version` and the daemon's umirror_build_info print it.
 */
import { readFileSync } from 'node:fs';
import { ControlError } from '../errors.js';

export function packageVersion(): string {
  const parsed: unknown = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8'));
  const version = typeof parsed === 'object' && parsed !== null && 'version' in parsed ? parsed.version : undefined;
  if (typeof version !== 'string') throw new ControlError('EIO', 'package.json has no version');
  return version;
}
