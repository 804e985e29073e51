import { DuckDBInstance } from '@duckdb/node-api';
import mqtt from 'mqtt';
import type { Logger } from 'pino';
import { brokerConnectOptions } from '../deploy/runtime/broker-url';
import { readTlsFiles } from '../deploy/runtime/files';
import { serveHttp } from '../deploy/runtime/http';
import { watchLink } from '../deploy/runtime/link-log';
import { TELEMETRY_WILDCARD } from '../proto/topics';
import { startCatalog, type Catalog } from './catalog/publisher';
import { sinkCatalogConfig } from './catalog-config';
import { restoreCheckpoints, writerPositions } from './checkpoint';
import { createCommitter } from './commit';
import { scheduleCompaction, type CompactionSettings } from './compact';
import { COMPACTED_ROW_GROUP_ROWS } from './compactor';
import { BatchLedger, PointLedger } from './dedupe';
import { checkLakeRoot } from './lake-root';
import { LatencyHistogram } from './latency';
import { createLivePort, mqttLiveLink } from './live';
import { DAY_MS, HOUR_MS } from './layout';
import { adoptLegacyManifest } from './migrate';
import { openLake } from './open-storage';
import { checkSinkOptions, type SinkConfig } from './options';
import { createRejectMemory } from './rejects';
import { sinkRoutes } from './routes';
import { ownsTopic, shardFilters } from './shard';
import { closeStageBuffer, createStageBuffer, heldBytes, keepStageBlocks, type StageBuffers } from './stage';
import { registerStageScan } from './stage-scan';
import { stagingGate } from './staging-space';
import { emptySinkStats, type SinkSnapshot } from './stats';
import { createStoreHealth } from './store-health';
import { subscribeTelemetry } from './subscribe';
import { newManifestCache } from './table/manifests';
import { createTable, loadTable, type TableVersion } from './table/metadata';
import { tableWriter } from './table/transaction';
import { refuseSecondWriter } from './table/writers';
import { createTake } from './take';

const MIB = 1024 * 1024;

export interface Sink {
  readonly lake: string;
  /** The HTTP endpoint's URL, when --http is set. */
  readonly http: string | null;
  readonly catalog: Catalog;
  stats(): SinkSnapshot;
  /** Commits whatever is staged now; resolves when its acks are out. */
  flush(): Promise<void>;
  /** Runs a compaction pass now, or waits for the one running. */
  compact(): Promise<void>;
  /** Stops taking messages, commits what was taken, acks it, disconnects. */
  close(): Promise<void>;
}

/**
 * Starts a sink. `signal` stops a start that waits for the broker (a shutdown signal before
 * the sink is subscribed): it then rejects with StartAborted, having closed what it opened.
 */
export async function startSink(config: SinkConfig, log: Logger, signal?: AbortSignal): Promise<Sink> {
  checkSinkOptions(config);
  // Read before anything is opened, so a missing PEM file is one line and exit 2.
  const brokerTls = readTlsFiles(config);
  // Only then is a local lake's directory created: a refused start leaves nothing behind.
  await checkLakeRoot(config.lake, 'write');
  // The sink's MQTT client id names its commits: the broker lets one connection hold a
  // client id at a time, so one process writes under it.
  // Each shard is a sink of its own: its own session at the broker and its own commits.
  const clientId = config.shard ? `${config.clientId}-${config.shard.index}of${config.shard.count}` : config.clientId;
  const writer = clientId;
  const storage = await openLake(config, writer);
  const db = await DuckDBInstance.create(':memory:', {
    threads: String(config.duckdbThreads),
    memory_limit: config.duckdbMemory,
    // A compaction sorts up to its target size of rows; beyond memory it spills here.
    temp_directory: storage.stagingDir,
  });
  const conn = await db.connect();
  await conn.run("SET TimeZone = 'UTC'");
  /** Closes what holds the lake open: the last step of close(), and of a start that fails. */
  const closeLake = async (): Promise<void> => {
    conn.closeSync();
    db.closeSync();
    await storage.close();
  };

  const stats = emptySinkStats();
  const latency = new LatencyHistogram();
  const ledger = new BatchLedger();
  const pointLedger = new PointLedger();
  const rejected = createRejectMemory();
  const storeHealth = createStoreHealth();
  const staging = stagingGate(storage.stagingDir, log);
  // What a start reads is counted: it must not grow with the table's history.
  let startupReads = 0;
  const counted: typeof storage = {
    ...storage,
    read: (key) => {
      startupReads++;
      return storage.read(key);
    },
  };
  let createOnly: boolean;
  let table: TableVersion;
  try {
    // The table's commit needs a store that refuses a second create of a name, or one writer.
    createOnly = await refuseSecondWriter(counted, writer, config.shard !== undefined && config.shard.count > 1, log);
    // A lake of an earlier version, with its JSON manifest, becomes a table first.
    await adoptLegacyManifest(storage, log);
    table = (await loadTable(counted)) ?? (await createTable(counted));
    // Invariant 3 across restarts: what earlier runs committed, from each writer's last
    // full state and the commits after it, as the table's properties name them.
    await restoreCheckpoints(counted, table.metadata.properties, ledger, pointLedger);
  } catch (err) {
    // A sink that cannot start leaves nothing open behind it.
    staging.close();
    await closeLake();
    throw err;
  }
  // Invariant 6: streams idle past the horizon stay out of memory after a restart too.
  const streamIdleMs = config.streamIdle * HOUR_MS;
  pointLedger.evictIdle(Date.now() - streamIdleMs);
  // This writer's last commit and full state, as the table's properties name them: commits go on from there.
  const own = writerPositions(table.metadata.properties).get(writer) ?? { commit: 0, state: 0 };
  const manifestCache = newManifestCache();
  const snapshotRetentionMs = config.snapshotRetention * HOUR_MS;
  const tableCounters = { commits: 0, retries: 0 };
  const lakeTable = tableWriter(storage, writer, { snapshotRetentionMs }, manifestCache, tableCounters);
  log.info({ tableVersion: table.version, objectsRead: startupReads, nextCommit: own.commit + 1, createOnly }, 'dedupe state restored from the table');
  await registerStageScan(db);
  let bufferNumber = 0;
  const newBuffer = () => createStageBuffer(`stage_${bufferNumber++}`);
  const buffers: StageBuffers = { open: newBuffer(), committing: null };
  let closing = false;
  const latenessUs = config.lateness * 1e6;
  const maxStagedBytes = config.maxStagedMib * MIB;
  keepStageBlocks(maxStagedBytes);

  const credentials = {
    ...(config.username ? { username: config.username } : {}),
    ...(config.password ? { password: config.password } : {}),
    ...brokerTls,
  };
  // Every connection speaks for the sink's one identity, under a client id of its own.
  const connect = (id: string, options: mqtt.IClientOptions) => mqtt.connect({ ...brokerConnectOptions(config.broker), ...credentials, clientId: id, reconnectPeriod: 1000, connectTimeout: 10_000, ...options });
  // A persistent session: the broker queues telemetry while the sink restarts.
  const client = connect(clientId, { clean: false });
  // Once: a reconnect is logged as the end of its outage (deploy/runtime/link-log.ts).
  client.once('connect', () => log.info({ broker: config.broker }, 'sink connected'));
  // One line per outage, not per attempt (deploy/runtime/link-log.ts).
  watchLink(client, log, 'telemetry');
  // Acks go out on a connection of their own. MQTT.js reads nothing on a connection
  // while a message handler holds its callback, PUBACKs included, so a commit that
  // waited for its acks' PUBACKs on the telemetry connection, while that connection was
  // held for backpressure, would wait forever.
  const ackClient = connect(`${clientId}-acks`, { clean: true });
  watchLink(ackClient, log, 'acks');
  // The live port has a connection of its own, so that nothing it carries can delay an ack.
  // Invariant 6: the port queues for it at most --live-queue-mib and never makes a commit wait (sink/live.ts).
  const liveClient = config.live ? connect(`${clientId}-live`, { clean: true, queueQoSZero: false }) : null;
  if (liveClient) watchLink(liveClient, log, 'live');
  const liveSettings = { after: config.liveAfter, format: config.liveFormat, alertBatteryPct: config.alertBatteryPct, alertSilenceSeconds: config.alertSilence };
  const live = liveClient ? createLivePort(liveSettings, mqttLiveLink(liveClient), config.liveQueueMib * MIB) : null;

  const commit = createCommitter(
    { writer, storage, conn, lakeTable, ackClient, stats, latency, ledger, pointLedger, rejected, storeHealth, staging, live, streamIdleMs, log, newBuffer, closing: () => closing },
    buffers,
    own,
  );
  const take = createTake(
    { stats, ledger, pointLedger, rejected, ackClient, live, log, commit, maxFutureSkewUs: config.maxFutureSkew * 1e6, latenessUs, commitPoints: config.commitPoints, maxStagedBytes },
    buffers,
  );

  // MQTT.js takes the next inbound message only after this callback: holding it is the
  // sink's backpressure (invariant 6), and messages held at shutdown are never PUBACKed,
  // so the broker delivers them again to this session.
  client.handleMessage = (packet, done) => {
    if (closing) return;
    // On wire v1 (deprecated) every sink hears every gateway (Aedes has no shared
    // subscriptions): a message of another shard's gateway is left to that shard, before
    // any decoding. On v2 a shard subscribes to its own buckets only.
    if (config.shard && !ownsTopic(config.shard, packet.topic)) {
      stats.batchesOtherShards++;
      done();
      return;
    }
    // Invariant 1: with the staging directory full, the message waits unacknowledged.
    staging.whenRoom(() => {
      try {
        take(packet.topic, packet.payload as Buffer);
      } catch (err) {
        log.error({ topic: packet.topic, err: (err as Error).message }, 'message handling failed');
      }
      if (heldBytes(buffers) >= maxStagedBytes) void commit().then(() => done());
      // While a commit is written, DuckDB's scan of its rows asks this thread for each
      // vector (sink/stage-scan.ts): the next message waits a turn of the event loop, so
      // that the scan is answered between messages, not after the socket's whole backlog.
      else if (buffers.committing !== null) setImmediate(done);
      else done();
    });
  };

  const telemetryFilters = [...shardFilters(config.shard), TELEMETRY_WILDCARD];
  try {
    await subscribeTelemetry(client, telemetryFilters, log, signal);
  } catch (err) {
    // A sink that cannot start leaves nothing open behind it: with a client still
    // reconnecting, the process would not even exit.
    closing = true;
    await live?.close();
    staging.close();
    await Promise.all([client.endAsync(true), ackClient.endAsync(true), liveClient?.endAsync(true)]);
    closeStageBuffer(buffers.open);
    await closeLake();
    throw err;
  }
  const timer = setInterval(() => void commit(), config.flushInterval * 1000);

  const compactionSettings: CompactionSettings = {
    targetBytes: config.compactTargetMib * MIB,
    latenessUs,
    graceMs: config.compactGrace * 1000,
    snapshotRetentionMs,
    historyRetentionMs: config.historyRetention * DAY_MS,
    rowGroupRows: COMPACTED_ROW_GROUP_ROWS,
  };
  const compactConn = await db.connect();
  const compaction = scheduleCompaction(lakeTable, compactConn, compactionSettings, config.compactInterval * 1000, {
    stats,
    storeHealth,
    closing: () => closing,
    log,
    cache: manifestCache,
  });

  // The routes read the catalog once it exists; it starts after them, to know their URL.
  let catalogOrNull: Catalog | null = null;
  const snapshotStats = (): SinkSnapshot => ({
    ...structuredClone(stats),
    tableCommits: tableCounters.commits,
    tableCommitRetries: tableCounters.retries,
    startupReads,
    store: storeHealth.state(),
    staging: staging.state(),
    stagedBytes: heldBytes(buffers),
    streams: pointLedger.streams,
    live: live?.stats() ?? null,
    latencyMs: { p50: latency.quantile(0.5), p99: latency.quantile(0.99), points: latency.total, counts: [...latency.counts] },
  });
  // The product page, the Iceberg REST catalog and the documents, as `catalog serve` has them.
  // Loaded only with --http: the page, its DuckDB and the token checks are of no use without it.
  const catalogHttp = config.http ? await (await import('./catalog/serve')).catalogRoutes(storage, log, { live: live?.sse }) : null;
  const http =
    config.http && catalogHttp
      ? await serveHttp(config.http, [
          ...sinkRoutes({ client, closing: () => closing, stats, snapshot: snapshotStats, storeHealth, staging, buffers, createOnly, catalog: () => catalogOrNull }),
          ...catalogHttp.routes,
        ])
      : null;
  if (http) log.info({ http: http.url }, 'sink http listening');
  const catalogConn = await db.connect();
  const catalog = await startCatalog(
    storage,
    catalogConn,
    sinkCatalogConfig(config, { writer, lake: storage.root, httpUrl: http?.url, live: live ? { ...liveSettings, broker: config.broker } : undefined }),
    log,
  );
  catalogOrNull = catalog;
  log.info({ lake: storage.root, topics: telemetryFilters }, 'sink started');

  return {
    lake: storage.root,
    http: http?.url ?? null,
    stats: snapshotStats,
    catalog,
    flush: commit,
    compact: compaction.now,
    async close() {
      closing = true;
      clearInterval(timer);
      staging.close();
      await compaction.stop();
      compactConn.closeSync();
      await commit();
      await live?.close();
      await catalog.close().catch((err: Error) => log.warn({ err: err.message }, 'closing the catalog failed'));
      catalogConn.closeSync();
      await http?.close();
      catalogHttp?.close();
      // Forced: a graceful end would wait for the messages held above, which stay
      // unacknowledged on purpose so that the broker delivers them to this session again.
      await client.endAsync(true);
      await ackClient.endAsync(!ackClient.connected);
      await liveClient?.endAsync(true);
      closeStageBuffer(buffers.open);
      await closeLake();
      log.info({ committed: stats.pointsCommitted, files: stats.files }, 'sink stopped');
    },
  };
}
