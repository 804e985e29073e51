import type { Logger } from 'pino';
import { createLogger, type LogFormat } from '../runtime/log';
import { UsageError } from '../runtime/options';
import { untilShutdown } from '../runtime/signals';
import { agentCommandWith } from './agent-command';
import { agentSubcommands } from './agent-subcommands';
import { command } from './command';

// Each command loads its option table and its component only when it runs, so the agent on
// a small gateway never loads DuckDB, the broker, or the sink's and broker's option tables
// (those pull in zod schemas and node's http, https and tls: 2.5 MB of peak RSS idle, 5 MB
// at 1,000 points/s; invariant 6), nor the sink's check of a lake root.

/** sink/lake-root's checkLakeRoot, loaded by the commands that take a --lake. */
const checkLakeRoot = async (lake: string, use: 'write' | 'read'): Promise<void> => (await import('../../sink/lake-root')).checkLakeRoot(lake, use);

/**
 * The run of a one-shot job over a lake: the lake must exist (a typo must not act on an
 * empty directory made for it), and the job's result is printed as one JSON line.
 */
const lakeJob =
  <O extends { lake: string; logLevel: string; logFormat: LogFormat }>(name: string, job: (options: O, log: Logger) => Promise<unknown>) =>
  async (options: O): Promise<number> => {
    await checkLakeRoot(options.lake, 'read');
    const result = await job(options, createLogger(options.logLevel, name, options.logFormat));
    process.stdout.write(`${JSON.stringify(result)}\n`);
    return 0;
  };

/** Every command of `dronelake`, by name; test/cli-help.test.ts walks it, subcommands included. */
export const commands = {
  up: command({
    summary: 'Run broker, sink and a simulated fleet on loopback, writing Parquet to a local lake.',
    usage: 'dronelake up [--lake DIR] [--drones N] [--hz H] [--duration S] [--json]',
    options: async () => (await import('./up-options')).upOptions,
    async run(options) {
      // Listening before anything starts: the first signal stops start-up in order, at any stage.
      const stop = untilShutdown();
      await checkLakeRoot(options.lake, 'write');
      const { formatUpSummary, runUp } = await import('./up');
      const summary = await runUp(options, stop);
      process.stdout.write(options.json ? `${JSON.stringify(summary)}\n` : formatUpSummary(summary, options.lake));
      return summary.generated === summary.committed ? 0 : 1;
    },
  }),
  broker: command({
    summary: 'Run the MQTT broker (Aedes) that gateways publish to and the sink reads from.',
    usage:
      'dronelake broker [--host ADDR] [--port N] [--registry FILE] [--tls-port N --tls-cert FILE --tls-key FILE [--tls-ca FILE]] [--http HOST:PORT]\n' +
      '       dronelake broker identity add|remove|list ...   (manage the registry; see its --help)',
    options: async () => (await import('../../broker/options')).brokerOptions,
    async run(options) {
      // Listening from the start: a signal during start-up stops the broker once it is up.
      const stop = untilShutdown();
      const { startBroker } = await import('../../broker/server');
      const broker = await startBroker(options, createLogger(options.logLevel, 'broker', options.logFormat));
      await stop;
      await broker.close();
      return 0;
    },
    subcommands: {
      identity: command({
        summary: 'Manage the registry of identities the broker accepts (broker --registry FILE): gateways and sinks, each with a secret.',
        usage:
          'dronelake broker identity add ID --role gateway|sink|consumer --registry FILE\n' +
          '       dronelake broker identity remove ID --registry FILE\n' +
          '       dronelake broker identity list --registry FILE',
        // Optional here, so that a missing command is reported as such.
        options: async () => {
          const { identityOptions } = await import('../../broker/options');
          return { registry: { ...identityOptions.registry, schema: identityOptions.registry.schema.optional() } };
        },
        positionals: 1,
        async run(_, [sub]) {
          const what = sub === undefined ? 'needs a command' : `has no command "${sub}"`;
          throw new UsageError(`broker identity ${what}: add, remove or list; run 'dronelake broker identity --help'`);
        },
        subcommands: {
          add: command({
            summary: 'Add an identity with a new random secret; the secret is printed once, as the last line, and only its hash is kept.',
            usage: 'dronelake broker identity add ID --role gateway|sink|consumer --registry FILE',
            options: async () => (await import('../../broker/options')).identityAddOptions,
            positionals: 1,
            async run(options, [id]) {
              const { identityAdd } = await import('../../broker/identity-cli');
              process.stdout.write(await identityAdd(options.registry, id, options.role));
              return 0;
            },
          }),
          remove: command({
            summary: 'Remove an identity; a broker watching the registry closes its connections.',
            usage: 'dronelake broker identity remove ID --registry FILE',
            options: async () => (await import('../../broker/options')).identityOptions,
            positionals: 1,
            async run(options, [id]) {
              const { identityRemove } = await import('../../broker/identity-cli');
              process.stdout.write(await identityRemove(options.registry, id));
              return 0;
            },
          }),
          list: command({
            summary: 'List the identities of the registry and their roles.',
            usage: 'dronelake broker identity list --registry FILE',
            options: async () => (await import('../../broker/options')).identityOptions,
            async run(options) {
              const { identityList } = await import('../../broker/identity-cli');
              process.stdout.write(await identityList(options.registry));
              return 0;
            },
          }),
        },
      }),
    },
  }),
  sink: command({
    summary: 'Run the sink: telemetry from the broker into partitioned Parquet under the lake, with commit acks back.',
    usage: 'dronelake sink [--broker URL] [--lake DIR|s3://BUCKET/PREFIX] [--client-id ID]',
    options: async () => (await import('../../sink/options')).sinkOptions,
    async run(options) {
      const stop = untilShutdown();
      // A signal while the sink waits for the broker ends the start; once started, the drain.
      const starting = new AbortController();
      void stop.then(() => starting.abort());
      const { startSink } = await import('../../sink/sink');
      const { StartAborted } = await import('../../sink/subscribe');
      const sink = await startSink(options, createLogger(options.logLevel, 'sink', options.logFormat), starting.signal).catch((err: unknown) => {
        if (err instanceof StartAborted) return null;
        throw err;
      });
      if (sink === null) return 0;
      await stop;
      await sink.close();
      return 0;
    },
  }),
  query: command({
    summary: 'Run SQL on the lake: a `telemetry` view over one snapshot of the Iceberg table, the current one unless --as-of or --snapshot names another.',
    usage: 'dronelake query [--lake DIR|s3://BUCKET/PREFIX] [--as-of TIME | --snapshot ID] [--format table|csv|ndjson] "SQL"',
    options: async () => (await import('../../sink/query-options')).queryOptions,
    positionals: 1,
    async run(options, [sql]) {
      if (!sql) throw new UsageError('query needs the SQL to run, e.g. dronelake query "SELECT count(*) FROM telemetry"');
      if (options.asOf !== undefined && options.snapshot !== undefined) throw new UsageError('give --as-of or --snapshot, not both');
      await checkLakeRoot(options.lake, 'read');
      const { formatRows, queryLake } = await import('../../sink/query');
      let result: Awaited<ReturnType<typeof queryLake>>;
      try {
        result = await queryLake(options, sql, (key, err) => process.stderr.write(`dronelake: skipped ${key}: ${err.message}\n`), {
          ...(options.asOf !== undefined && { asOfMs: Date.parse(options.asOf) }),
          ...(options.snapshot !== undefined && { snapshotId: options.snapshot }),
        });
      } catch (err) {
        // DuckDB's hints (candidate columns, "Did you mean", the caret under the error) follow the first line.
        process.stderr.write(`dronelake: query failed: ${indentedMessage(err)}\n`);
        return 1;
      }
      process.stdout.write(formatRows(result.columns, result.rows, options.format));
      return 0;
    },
  }),
  catalog: command({
    summary: 'Print the drones data product: its contract, its objectives met or breached, and its quality, from the lake.',
    usage:
      'dronelake catalog [--lake DIR|s3://BUCKET/PREFIX] [--json]\n' +
      '       dronelake catalog serve --lake DIR|s3://BUCKET/PREFIX [--http HOST:PORT] ...   (the page and the Iceberg REST catalog; see its --help)',
    options: async () => (await import('../../sink/catalog-options')).catalogOptions,
    async run(options) {
      await checkLakeRoot(options.lake, 'read');
      const { formatCatalog, readCatalog } = await import('../../sink/catalog/read');
      let report: Awaited<ReturnType<typeof readCatalog>>;
      try {
        report = await readCatalog(options, (key, err) => process.stderr.write(`dronelake: skipped ${key}: ${err.message}\n`));
      } catch (err) {
        process.stderr.write(`dronelake: catalog: ${(err as Error).message.split('\n')[0]}\n`);
        return 1;
      }
      process.stdout.write(options.json ? `${JSON.stringify(report)}\n` : formatCatalog(report));
      return 0;
    },
    subcommands: {
      serve: command({
        summary: "Serve the product's home over HTTP: a page for people, the Iceberg REST catalog for engines (/iceberg) and the documents for programs.",
        usage: 'dronelake catalog serve [--lake DIR|s3://BUCKET/PREFIX] [--http HOST:PORT] [--http-tokens FILE] [--json]',
        options: async () => (await import('../../sink/catalog-options')).catalogServeOptions,
        async run(options) {
          (await import('../../sink/catalog-options')).checkCatalogServeOptions(options);
          await checkLakeRoot(options.lake, 'read');
          const stop = untilShutdown();
          const { startCatalogServer } = await import('../../sink/catalog/serve');
          let server: Awaited<ReturnType<typeof startCatalogServer>>;
          try {
            server = await startCatalogServer(options, createLogger(options.logLevel, 'catalog', options.logFormat));
          } catch (err) {
            // A bad token file is the user's to fix (exit 2); a port taken or a store down is one line too.
            if (err instanceof UsageError) throw err;
            process.stderr.write(`dronelake: catalog serve: ${(err as Error).message.split('\n')[0]}\n`);
            return 1;
          }
          process.stdout.write(options.json ? `${JSON.stringify({ url: server.url })}\n` : `the drones product's page is at ${server.url}/ and its Iceberg REST catalog at ${server.url}/iceberg\n`);
          await stop;
          await server.close();
          return 0;
        },
      }),
    },
  }),
  compact: command({
    summary: 'Merge the small files of closed partitions into large sorted ones as replace snapshots, once, then maintain the table (see maintain).',
    usage: 'dronelake compact [--lake DIR|s3://BUCKET/PREFIX] [--lateness S] [--compact-target-mib N] [--compact-grace S] [--snapshot-retention H]',
    options: async () => (await import('../../sink/compact-options')).compactOptions,
    run: lakeJob('compact', async (options, log) => (await import('../../sink/compactor')).compactOnce(options, log)),
  }),
  maintain: command({
    summary: 'Expire table snapshots past the retention, then delete the files, metadata and checkpoints no retained snapshot needs, and the quality and lineage history past its retention.',
    usage: 'dronelake maintain [--lake DIR|s3://BUCKET/PREFIX] [--snapshot-retention H] [--compact-grace S] [--history-retention D]',
    options: async () => (await import('../../sink/compact-options')).compactOptions,
    run: lakeJob('maintain', async (options, log) => (await import('../../sink/compactor')).maintainOnce(options, log)),
  }),
  migrate: command({
    summary: 'Adopt a lake written with the JSON manifest of earlier versions as an Iceberg table (a sink does this on its first start too).',
    usage: 'dronelake migrate [--lake DIR|s3://BUCKET/PREFIX]',
    options: async () => (await import('../../sink/compact-options')).migrateOptions,
    run: lakeJob(
      'migrate',
      async (options, log) => (await (await import('../../sink/migrate')).migrateLake(options, log)) ?? { records: 0, files: 0, rows: 0, writers: 0, note: 'nothing to adopt: the lake has no JSON manifest' },
    ),
  }),
  agent: {
    ...agentCommandWith(async () => ({ ...(await import('../../agent/options')), ...(await import('../../agent/agent')) })),
    subcommands: agentSubcommands,
  },
};

// Two spaces past the longest name, so that every name stands apart from its summary.
const COMMAND_WIDTH = Math.max(...Object.keys(commands).map((name) => name.length)) + 2;

export const TOP_HELP = `Usage: dronelake <command> [options]

Edge-to-cloud ingestion of drone telemetry: agent -> MQTT broker -> sink -> Parquet lake.

Commands:
${Object.entries(commands)
  .map(([name, c]) => `  ${name.padEnd(COMMAND_WIDTH)}${c.summary}`)
  .join('\n')}

Run 'dronelake <command> --help' for a command's options.
`;

/** A multi-line error message with its later lines indented under the first. */
const indentedMessage = (err: unknown): string =>
  (err instanceof Error ? err.message : String(err))
    .trimEnd()
    .split('\n')
    .map((line, i) => (i === 0 || line.trim() === '' ? line.trimEnd() : `  ${line.trimEnd()}`))
    .join('\n');
