import { PACKAGE_VERSION } from '../runtime/version';
import { commands, TOP_HELP } from './commands';
import { runCli } from './run';

/** `dronelake ARGV`, every command. */
export async function main(argv: string[]): Promise<void> {
  if (argv[0] === '--version' || argv[0] === '-v') {
    process.stdout.write(`${PACKAGE_VERSION}\n`);
    return;
  }
  await runCli(argv, commands, TOP_HELP);
}
