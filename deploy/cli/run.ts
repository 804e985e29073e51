import { helpText, parseOptions, UsageError, type OptionSpecs } from '../runtime/options';
import type { Command } from './command';

/** Runs the command `argv` names in `table`, and returns the exit code. */
async function runCommand(argv: string[], table: Record<string, Command<OptionSpecs>>, topHelp: string): Promise<number> {
  const [name, ...rest] = argv;
  if (name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(topHelp);
    return 0;
  }
  if (name === undefined) {
    // A missing command is a usage error: the help goes where errors go, and the exit says so.
    process.stderr.write(topHelp);
    return 2;
  }
  if (!Object.hasOwn(table, name)) throw new UsageError(`unknown command "${name}"; run 'dronelake --help'`);
  let cmd = table[name]!;
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

/**
 * `dronelake ARGV` over the commands of `table`: the exit code is the command's, 2 for a
 * usage error (one line), 1 for any other failure.
 */
export async function runCli(argv: string[], table: Record<string, Command<OptionSpecs>>, topHelp: string): Promise<void> {
  try {
    process.exitCode = await runCommand(argv, table, topHelp);
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`dronelake: ${err.message}\n`);
      process.exitCode = 2;
    } else {
      process.stderr.write(`dronelake: ${(err as Error).stack ?? String(err)}\n`);
      process.exitCode = 1;
    }
  }
}
