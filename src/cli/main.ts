#!/usr/bin/env node
/**
 * The `umirror` command: dispatches a verb. `serve` runs one device in the foreground (the main job);
 * `create-images` makes image files; the dmsetup-style verbs talk to a daemon (see control/).
 */
import { serveCommand, serveHelp } from './serve.js';
import { createImagesCommand, createImagesHelp } from './create-images.js';

const usage = `Usage: umirror <command> [options]

Commands:
  serve          serve one mirrored device over NBD in the foreground (the main job)
  create-images  create sparse leg and log image files and print a mirror table for them
  help [COMMAND] show help

Run 'umirror COMMAND --help' for a command's options.`;

const commands: Record<string, { run: (argv: readonly string[]) => Promise<number>; help: string }> = {
  serve: { run: serveCommand, help: serveHelp },
  'create-images': { run: createImagesCommand, help: createImagesHelp },
};

async function main(argv: readonly string[]): Promise<number> {
  const [verb, ...rest] = argv;
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
