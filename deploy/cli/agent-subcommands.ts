import { UsageError } from '../runtime/options';
import { untilShutdown } from '../runtime/signals';
import { command } from './command';
import type { AGENT_SUBCOMMANDS } from './agent-subcommand-names';

/**
 * `dronelake agent token` and `dronelake agent replay`: run by the main build, not by the
 * agent's own (cli.ts), so the agent's build holds only what a running agent loads.
 */
export const agentSubcommands = {
  token: command({
    summary: 'Manage the tokens of the ingest API (agent --http-tokens FILE): each may post the points of the drones it names.',
    usage:
      "dronelake agent token add ID --drones 'PATTERN,...' --http-tokens FILE\n" +
      '       dronelake agent token remove ID --http-tokens FILE\n' +
      '       dronelake agent token list --http-tokens FILE',
    // Optional here, so that a missing command is reported as such.
    options: async () => {
      const { tokenOptions } = await import('../../agent/options');
      return { httpTokens: { ...tokenOptions.httpTokens, schema: tokenOptions.httpTokens.schema.optional() } };
    },
    positionals: 1,
    async run(_, [sub]) {
      const what = sub === undefined ? 'needs a command' : `has no command "${sub}"`;
      throw new UsageError(`agent token ${what}: add, remove or list; run 'dronelake agent token --help'`);
    },
    subcommands: {
      add: command({
        summary: 'Add a token with a new random secret for the drones named; the token is printed once, as the last line, and only its hash is kept.',
        usage: "dronelake agent token add ID --drones 'PATTERN,...' --http-tokens FILE",
        options: async () => (await import('../../agent/options')).tokenAddOptions,
        positionals: 1,
        async run(options, [id]) {
          const { tokenAdd } = await import('../../agent/token-cli');
          process.stdout.write(await tokenAdd(options.httpTokens, id, options.drones));
          return 0;
        },
      }),
      remove: command({
        summary: 'Remove a token; a running agent stops taking it within a second or two.',
        usage: 'dronelake agent token remove ID --http-tokens FILE',
        options: async () => (await import('../../agent/options')).tokenOptions,
        positionals: 1,
        async run(options, [id]) {
          const { tokenRemove } = await import('../../agent/token-cli');
          process.stdout.write(await tokenRemove(options.httpTokens, id));
          return 0;
        },
      }),
      list: command({
        summary: 'List the tokens and the drones each may write.',
        usage: 'dronelake agent token list --http-tokens FILE',
        options: async () => (await import('../../agent/options')).tokenOptions,
        async run(options) {
          const { tokenList } = await import('../../agent/token-cli');
          process.stdout.write(await tokenList(options.httpTokens));
          return 0;
        },
      }),
    },
  }),
  replay: command({
    summary: 'Import a MAVLink .tlog or raw stream through the agent, keeping its event times; exits once the sink has committed every point.',
    usage: 'dronelake agent replay FILE --gateway ID --spool DIR [--broker URL] [--start TIME] [--realtime] [--mavlink-drones SYSID=ID,...] [--json]',
    options: async () => (await import('../../agent/options')).replayOptions,
    positionals: 1,
    async run(options, [file]) {
      if (!file) throw new UsageError('agent replay needs the file to import, e.g. dronelake agent replay flight.tlog --gateway gw-1 --spool ./spool');
      const { formatSummary, replay } = await import('../../agent/replay');
      const summary = await replay(file, options, untilShutdown());
      process.stdout.write(options.json ? `${JSON.stringify(summary)}\n` : formatSummary(summary));
      return summary.interrupted ? 130 : summary.drained ? 0 : 1;
    },
  }),
} satisfies Record<(typeof AGENT_SUBCOMMANDS)[number], unknown>;
