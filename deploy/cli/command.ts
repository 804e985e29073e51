import type { OptionSpecs, ParsedOptions } from '../runtime/options';

/** A command of `dronelake`: its help, its option table, and what it runs. */
export interface Command<S extends OptionSpecs> {
  summary: string;
  usage: string;
  /** The command's option table, loaded when the command runs or prints its help. */
  options: () => Promise<S>;
  /** Arguments after the options, at most. */
  positionals?: number;
  run(options: ParsedOptions<S>, positionals: string[]): Promise<number>;
  /** Commands named by the next argument, e.g. `broker identity add`. */
  subcommands?: Record<string, Command<OptionSpecs>>;
}

/** A command, typed by its option table. */
export const command = <S extends OptionSpecs>(c: Command<S>): Command<S> => c;
