import { startAgent } from '../../agent/agent';
import { agentOptions } from '../../agent/options';
import { agentCommandWith } from './agent-command';
import { runCli } from './run';

/**
 * `dronelake agent`, the gateway's running agent: the entry of a build of its own
 * (tsup.config.ts), its parts imported up front, so its code loads from a few chunks, not
 * from the dozens split among every command's. Resolving and loading each made V8 optimise
 * node's path code at start, and the optimising compiler's pages then stay resident: about
 * 4 MB of an idle agent's peak (invariant 6).
 */
export async function main(argv: string[]): Promise<void> {
  await runCli(argv, { agent: agentCommandWith(async () => ({ agentOptions, startAgent })) }, '');
}
