#!/usr/bin/env node
/**
 * The `umirror` command: dispatches a verb. `serve` runs one device in the foreground (the main job);
 * `create-images` makes image files; the dmsetup-style verbs talk to a daemon (see control/).
 */
import { serveCommand, serveHelp } from './serve.js';
import { createImagesCommand, createImagesHelp } from './create-images.js';
import { daemonCommand, daemonHelp } from './daemon.js';
import { dmVerbCommand } from './dm-verbs.js';
import { DM_VERBS, dmVerbHelp } from './dm-verbs-help.js';
import { hoistSocketOption } from './socket-path.js';

const usage = `Usage: umirror <command> [options]

Commands:
  serve          serve one mirrored device over NBD in the foreground (the main job)
  create-images  create sparse leg and log image files and print a mirror table for them
  daemon         hold many named devices and answer the verbs below on a control socket

dmsetup-style verbs (talk to the daemon; --socket PATH in any position):
  create NAME --table TABLE [--nbd ADDR]   create, load and resume a device (optionally served over NBD)
  load NAME --table TABLE                  load an inactive table
  clear NAME                               drop the inactive table
  suspend [--noflush] NAME                 suspend (hold I/O, flush the dirty log)
  resume NAME                              resume, swapping in a loaded table
  remove NAME                              remove a device
  status [--json] [--watch] [NAME]         dmsetup status (--watch: live, with a resync bar)
  table [--json] [NAME]                    dmsetup table
  info [--json] [NAME]                     Name:, State:, Tables present:, Open count:, Event number:
  ls [--json]                              list devices
  wait [--progress] NAME [EVENT_NR]        block until the event counter exceeds EVENT_NR
  message NAME SECTOR MESSAGE              dmsetup message
  help [COMMAND] show help

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
  if (verb === 'help') {
    const topic = rest[0];
    const command = topic === undefined ? undefined : commands[topic];
    console.log(command === undefined ? usage : command.help);
    return 0;
  }
  const command = commands[verb];
  if (command === undefined) {
    console.error(`umirror: unknown command "${verb}"\n\n${usage}`);
    return 2;
  }
  return command.run(rest);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    if (err instanceof TypeError || err instanceof RangeError) {
      const code = (err as { code?: unknown }).code;
      if (err instanceof RangeError || code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' || code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' || code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL') {
        console.error(`umirror: ${err.message}`);
        process.exitCode = 2;
        return;
      }
    }
    console.error(err);
    process.exitCode = 1;
  },
);
