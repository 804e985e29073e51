/** The subcommands of `dronelake agent`, which cli.ts runs from the main build. */
export const AGENT_SUBCOMMANDS = ['token', 'replay'] as const;
