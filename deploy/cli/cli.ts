#!/usr/bin/env node
import { AGENT_SUBCOMMANDS } from './agent-subcommand-names';

// `dronelake agent` runs from a build of its own (agent-main.ts); its subcommands and every
// other command from main.ts. Nothing else loads here, so the agent loads no other command.
const argv = process.argv.slice(2);
const agent = argv[0] === 'agent' && !AGENT_SUBCOMMANDS.some((name) => name === argv[1]);
void (agent ? import('./agent-main') : import('./main')).then(({ main }) => main(argv));
