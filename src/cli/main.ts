#!/usr/bin/env node
/**
 * The `umirror` command: dispatches a verb. `serve` runs one device in the foreground (the main job);
 * `create-images` makes image files; the dmsetup-style verbs talk to a daemon (see control/).
 */
import { ControlError } from '../errors.js';
import { serveCommand, serveHelp } from './serve.js';
import { createImagesCommand, createImagesHelp } from './create-images.js';
import { daemonCommand, daemonHelp } from './daemon.js';
import { dmVerbCommand } from './dm-verbs.js';
import { DM_VERBS, dmVerbHelp } from './dm-verbs-help.js';
import { hoistSocketOption } from './socket-path.js';
import { packageVersion, versionLines } from './package-version.js';
import { parseArgsMessage } from './option-values.js';

const usage = `Usage: umirror <command> [options]

Commands:
  serve          serve one mirrored device over NBD in the foreground (the main job)
  create-images  create sparse leg and log image files and print a mirror table for them
  daemon         hold many named devices and answer the verbs below on a control socket

dmsetup-style verbs (talk to the daemon; --socket PATH in any position):
  create NAME [--table TABLE | FILE] [--nbd ADDR]
                                           create, load and resume a device (optionally served over NBD)
  load NAME [--table TABLE | FILE]         load an inactive table
  clear NAME                               drop the inactive table
  suspend [--noflush] NAME                 suspend (hold I/O, flush the dirty log)
  resume NAME                              resume, swapping in a loaded table
  remove [--force] NAME...                 remove devices (--force: error table first, as dmsetup)
  status [--json] [--watch] [NAME]         dmsetup status (--watch: live, with a resync bar)
  table [--json] [NAME]                    dmsetup table
  info [--json] [NAME]                     Name:, State:, Tables present:, Open count:, Event number:
  ls [--json] [--tree]                     list devices (--tree: with what they stack on)
  wait [--progress] NAME [EVENT_NR]        block until the event counter exceeds EVENT_NR
  message NAME SECTOR MESSAGE              dmsetup message
  deps [NAME]                              the devices a table holds open (dmsetup deps)
  scrub [--repair] [--rate MiB/s] NAME     compare the legs online, name the regions that differ
  version        umirror's version and its targets' versions (dmsetup version and targets)
  help [COMMAND] show help
  --version      print umirror's version

Run 'umirror COMMAND --help' for a command's options.`;

const commands: Record<string, { run: (argv: readonly string[]) => Promise<number>; help: string }> = {
  serve: { run: serveCommand, help: serveHelp },
  'create-images': { run: createImagesCommand, help: createImagesHelp },
  daemon: { run: daemonCommand, help: daemonHelp },
  ...Object.fromEntries(DM_VERBS.map((verb) => [verb, { run: (argv: readonly string[]) => dmVerbCommand(verb, argv), help: dmVerbHelp[verb] }])),
};

async function main(argv: readonly string[]): Promise<number> {
  const [verb, ...rest] = hoistSocketOption(argv);
  if (verb === undefined || verb === '--help' || verb === '-h') {
    console.log(usage);
    return verb === undefined ? 2 : 0;
  }
  if (verb === '--version' || verb === '-V') {
    console.log(`umirror ${packageVersion()}`);
    return 0;
  }
  if (verb === 'version') {
    // Needs no daemon; --socket is accepted (and unused) as by every other verb.
    const extra = rest.filter((arg, index) => arg !== '--socket' && rest[index - 1] !== '--socket' && !arg.startsWith('--socket='));
    if (extra.length > 0) {
      console.error(`umirror version: takes no arguments, got ${JSON.stringify(extra[0])}`);
      return 1;
    }
    console.log(versionLines(packageVersion()).join('\n'));
    return 0;
  }
  if (verb === 'help') {
    const topic = rest[0];
    const command = topic === undefined ? undefined : commands[topic];
    console.log(command === undefined ? usage : command.help);
    return 0;
  }
  const command = commands[verb];
  if (command === undefined) {
    console.error(`umirror: unknown command "${verb}" (see 'umirror --help')`);
    return 2;
  }
  try {
    return await command.run(rest);
  } catch (err) {
    const line = usageErrorLine(err);
    if (line === undefined) throw err;
    console.error(`umirror ${verb}: ${line.message}`);
    return line.exitStatus;
  }
}

/**
 * The one line a bad command line gets, and its exit status: 2 when the parser refused it (an unknown
 * option, a missing value, an extra argument: `umirror VERB --help` tells the syntax), 1 when a value is
 * out of range (ControlError EINVAL) or the system refused (a Node system error: EACCES, ENOSPC,
 * EADDRINUSE...). Anything else is a programmer error: its stack is printed and the exit status is 1.
 */
function usageErrorLine(err: unknown): { message: string; exitStatus: 1 | 2 } | undefined {
  if (!(err instanceof Error)) return undefined;
  const code = (err as { code?: unknown }).code;
  if (err instanceof TypeError && typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS_')) {
    return { message: `${parseArgsMessage(err.message)} (see --help)`, exitStatus: 2 };
  }
  if (err instanceof ControlError) return { message: err.message, exitStatus: 1 };
  const syscall = (err as { syscall?: unknown }).syscall;
  if (typeof code === 'string' && typeof syscall === 'string') return { message: err.message, exitStatus: 1 };
  return undefined;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  },
);
