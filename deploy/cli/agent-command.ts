import type { agentOptions } from '../../agent/options';
import type { startAgent } from '../../agent/agent';
import { createLogger } from '../runtime/log';
import { untilShutdown } from '../runtime/signals';
import { command } from './command';

/** What `dronelake agent` runs: its option table and the agent. */
export interface AgentParts {
  agentOptions: typeof agentOptions;
  startAgent: typeof startAgent;
}

/**
 * `dronelake agent`, its parts loaded by `load`: on demand in the table of every command
 * (commands.ts), up front in the agent's own build (agent-main.ts). Its subcommands are in
 * agent-subcommands.ts.
 */
export const agentCommandWith = (load: () => Promise<AgentParts>) =>
  command({
    summary: 'Run a gateway agent: batch telemetry, publish it, and hold each batch until the sink commits it.',
    usage:
      'dronelake agent --gateway ID --spool DIR [--broker URL] [--http HOST:PORT] [--mavlink udp:HOST:PORT] [--simulate N --hz H] [--config FILE]\n' +
      '       dronelake agent replay FILE --gateway ID --spool DIR ...   (import a MAVLink log; see its --help)\n' +
      '       dronelake agent token add|remove|list ...   (manage the ingest API tokens; see its --help)',
    options: async () => (await load()).agentOptions,
    async run(options) {
      const stop = untilShutdown();
      const log = createLogger(options.logLevel, 'agent', options.logFormat);
      const agent = await (await load()).startAgent(options, log);
      await stop;
      // Ctrl-C while the broker is away ends at once: the spool keeps what is unacked.
      const drained = await agent.drain(10_000, true);
      if (!drained) log.warn({ pendingBatches: agent.stats().pendingBatches }, 'stopped before every batch was committed');
      await agent.close();
      return drained ? 0 : 1;
    },
  });
