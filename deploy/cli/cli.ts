#!/usr/bin/env node
import { helpText, parseOptions, UsageError, type OptionSpecs } from '../runtime/options';
import { PACKAGE_VERSION } from '../runtime/version';
import { commands, TOP_HELP, type Command } from './commands';

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(TOP_HELP);
    return 0;
  }
  if (name === undefined) {
    // A missing command is a usage error: the help goes where errors go, and the exit says so.
    process.stderr.write(TOP_HELP);
    return 2;
  }
  if (name === '--version' || name === '-v') {
    process.stdout.write(`${PACKAGE_VERSION}\n`);
    return 0;
  }
  if (!Object.hasOwn(commands, name)) throw new UsageError(`unknown command "${name}"; run 'dronelake --help'`);
  let cmd = commands[name as keyof typeof commands] as Command<OptionSpecs>;
  const path = [name];
  let args = rest;
  for (let sub = args[0]; sub !== undefined && cmd.subcommands && Object.hasOwn(cmd.subcommands, sub); sub = args[0]) {
    cmd = cmd.subcommands[sub]!;
    path.push(sub);
    args = args.slice(1);
  }
  const envPrefix = `DRONELAKE_${path.join('_').toUpperCase()}_`;
  const options = await cmd.options();
  const parsed = await (async () => {
    try {
      return await parseOptions(options, args, cmd.positionals ?? 0, { env: process.env, envPrefix });
    } catch (err) {
      // --help wins over a missing required option.
      if (err instanceof UsageError && (args.includes('--help') || args.includes('-h'))) return null;
      throw err;
    }
  })();
  if (parsed === null || parsed.help) {
    process.stdout.write(helpText(cmd.usage, cmd.summary, options, envPrefix));
    return 0;
  }
  return cmd.run(parsed.options, parsed.positionals);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    if (err instanceof UsageError) {
      process.stderr.write(`dronelake: ${err.message}\n`);
      process.exitCode = 2;
    } else {
      process.stderr.write(`dronelake: ${(err as Error).stack ?? String(err)}\n`);
      process.exitCode = 1;
    }
  },
);
