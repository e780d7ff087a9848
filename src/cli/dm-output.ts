/**
 * What the dmsetup-style verbs print: `info` blocks, and dmsetup's failure lines for each verb
 * ("Device does not exist.", "device-mapper: <ioctl> ioctl on NAME  failed: <strerror>", the kernel's
 * log lines as `kmsg: ...`, then "Command failed."). dmsetup prints the name, a space and the device
 * number; umirror devices have no number, so there are two spaces, as dmsetup prints for a device it
 * has no number for.
 */
import { ControlError } from '../errors.js';
import { KernelControlError } from '../control/control-protocol.js';
import type { DeviceInfo } from '../control/device-registry.js';
import { errnoMessage } from './output.js';

/** The dm ioctl each verb issues (dmsetup names it in failure messages). */
const ioctlOf: Record<string, string> = {
  create: 'create',
  load: 'reload',
  clear: 'clear',
  suspend: 'suspend',
  resume: 'resume',
  remove: 'remove',
  message: 'message',
  wait: 'waitevent',
};

/** Verbs for which dmsetup says "Device does not exist." about an unknown name. */
const lookupVerbs = new Set(['status', 'table', 'info', 'wait', 'ls']);

/** `info`'s lines; `resyncStatus` adds mdadm --detail's "Resync Status" line while out of sync. */
export function infoLines(info: DeviceInfo, options: { resyncStatus?: string | undefined; scrubStatus?: string | undefined } = {}): string[] {
  return [
    `Name:              ${info.name}`,
    `State:             ${info.state}`,
    `Tables present:    ${info.tablesPresent}`,
    `Open count:        ${info.openCount}`,
    `Event number:      ${info.eventNr}`,
    `Number of targets: ${info.targetCount}`,
    ...(options.resyncStatus === undefined ? [] : [`Resync Status:     ${options.resyncStatus}`]),
    ...(options.scrubStatus === undefined ? [] : [`Scrub Status:      ${options.scrubStatus}`]),
    ...(info.lastScrub === undefined ? [] : [`Last scrub:        ${info.lastScrub}`]),
    ...(info.nbdUri === undefined ? [] : [`NBD URI:           ${info.nbdUri}`]),
    '',
  ];
}

/** The stderr lines of a failed verb. */
export function failureLines(options: { verb: string; name: string; error: ControlError }): string[] {
  const { verb, name, error } = options;
  if (error.code === 'ENOENT' && lookupVerbs.has(verb)) return ['Device does not exist.', 'Command failed.'];
  const kernel = error instanceof KernelControlError ? error.kernel : [];
  // The kernel returns ENXIO for a device that does not exist, EBUSY for a name already taken.
  const errno = error.code === 'ENOENT' ? 'ENXIO' : error.code === 'EEXIST' ? 'EBUSY' : error.code;
  const ioctl = kernel.length > 0 && verb === 'create' ? 'reload' : (ioctlOf[verb] ?? verb);
  const reason = kernel.length > 0 || error.code === 'ENOENT' || error.code === 'EEXIST' ? [] : [`umirror: ${error.message}`];
  return [
    `device-mapper: ${ioctl} ioctl on ${name}  failed: ${errnoMessage(errno)}`,
    ...reason,
    ...kernel.map((line) => `kmsg: ${line}`),
    'Command failed.',
  ];
}
