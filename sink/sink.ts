import { DuckDBInstance } from '@duckdb/node-api';
import mqtt from 'mqtt';
import type { Logger } from 'pino';
import { readTlsFiles } from '../deploy/runtime/files';
import { checkLakeRoot } from './lake-root';
import type { ParsedOptions } from '../deploy/runtime/options';
import { MICROS_PER_HOUR, nowMicros } from '../proto/time';
import { DRONE_COLUMN, isPresent, pointAt, SEQ_COLUMN, STREAM_COLUMN, TS_COLUMN } from '../proto/columnar';
import { TELEMETRY_WILDCARD } from '../proto/topics';
import { invalidReasonAt, suspectPoints, validDroneIds } from '../proto/validate';
import { publishAcks } from './acks';
import { commitTag, writeCommit } from './commit';
import { compactLake, type CompactionSettings } from './compact';
import { COMPACTED_ROW_GROUP_ROWS } from './compactor';
import { healthRoute, metricsRoute, send, serveHttp } from '../deploy/runtime/http';
import { PACKAGE_VERSION } from '../deploy/runtime/version';
import { startCatalog, type Catalog } from './catalog/publisher';
import { decodeTelemetry } from './decode';
import { sinkMetrics } from './metrics';
import { ownsTopic, shardFilters } from './shard';
import { subscribeTelemetry } from './subscribe';
import { sloTargets } from './slo';
import { BatchLedger, PointLedger, takeSeq, type StreamRun } from './dedupe';
import { LatencyHistogram } from './latency';
import { createLivePort, mqttLiveLink } from './live';
import { checkpointKey, commitRecord, positionValue, putCheckpoint, restoreCheckpoints, STATE_EVERY, stateKey, stateRecord, writerPositions, writerProperty } from './checkpoint';
import { adoptLegacyManifest } from './migrate';
import { newManifestCache } from './table/manifests';
import { createTable, loadTable, type TableVersion } from './table/metadata';
import { tableWriter } from './table/transaction';
import { refuseSecondWriter } from './table/writers';
import { openLake } from './open-storage';
import { quarantineBatch, quarantinePoint, writeQuarantine } from './quarantine';
import { createRejectMemory } from './rejects';
import { isDiskFull, stagingGate } from './staging-space';
import { createStoreHealth } from './store-health';
import { checkSinkOptions, type sinkOptions } from './options';
import { closeStageBuffer, createStageBuffer, recordBatch, stageDictIds, stagedBytes, stageRows, type StageBuffer } from './stage';
import { emptySinkStats, type SinkSnapshot } from './stats';

export type SinkConfig = ParsedOptions<typeof sinkOptions>;

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

export async function startSink(config: SinkConfig, log: Logger): Promise<Sink> {
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

  const stats = emptySinkStats();
  const latency = new LatencyHistogram();
  const ledger = new BatchLedger();
  const pointLedger = new PointLedger();
  const rejected = createRejectMemory();
  const storeHealth = createStoreHealth();
  const staging = stagingGate(storage.stagingDir, log);
  let committingBuffer: StageBuffer | null = null;
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
    conn.closeSync();
    db.closeSync();
    await storage.close();
    throw err;
  }
  // Invariant 6: streams idle past the horizon stay out of memory after a restart too.
  const streamIdleMs = config.streamIdle * 3_600_000;
  pointLedger.evictIdle(Date.now() - streamIdleMs);
  // Commit numbers go on from the last one the table holds, so file names follow from the
  // sink's history; what a crashed commit left under the next number is replaced.
  const own = writerPositions(table.metadata.properties).get(writer) ?? { commit: 0, state: 0 };
  let commitNumber = own.commit + 1;
  let stateNumber = own.state;
  const manifestCache = newManifestCache();
  const snapshotRetentionMs = config.snapshotRetention * 3_600_000;
  const tableCounters = { commits: 0, retries: 0 };
  const lakeTable = tableWriter(storage, writer, { snapshotRetentionMs }, manifestCache, tableCounters);
  log.info({ tableVersion: table.version, objectsRead: startupReads, nextCommit: commitNumber, createOnly }, 'dedupe state restored from the table');
  let bufferNumber = 0;
  const nextBuffer = () => createStageBuffer(db, `stage_${bufferNumber++}`);
  let open: StageBuffer = await nextBuffer();
  let spare: Promise<StageBuffer> = nextBuffer();
  let committing: Promise<void> = Promise.resolve();
  let closing = false;
  const maxFutureSkewUs = config.maxFutureSkew * 1e6;
  const latenessUs = config.lateness * 1e6;
  const maxStagedBytes = config.maxStagedMib * MIB;

  // Both connections speak for the sink's one identity: `{client-id}-acks` belongs to it too.
  const credentials = {
    ...(config.username ? { username: config.username } : {}),
    ...(config.password ? { password: config.password } : {}),
    ...brokerTls,
  };
  // Every connection speaks for the sink's one identity, under a client id of its own.
  const connect = (id: string, options: mqtt.IClientOptions) => mqtt.connect(config.broker, { ...credentials, clientId: id, reconnectPeriod: 1000, connectTimeout: 10_000, ...options });
  // A persistent session: the broker queues telemetry while the sink restarts.
  const client = connect(clientId, { clean: false });
  client.on('connect', () => log.info({ broker: config.broker }, 'sink connected'));
  client.on('error', (err) => log.warn({ err: err.message }, 'mqtt error'));
  // Acks go out on a connection of their own. MQTT.js reads nothing on a connection
  // while a message handler holds its callback, PUBACKs included, so a commit that
  // waited for its acks' PUBACKs on the telemetry connection, while that connection was
  // held for backpressure, would wait forever.
  const ackClient = connect(`${clientId}-acks`, { clean: true });
  ackClient.on('error', (err) => log.warn({ err: err.message }, 'mqtt error on the ack connection'));
  // The live port has a connection of its own, so that nothing it carries can delay an ack.
  // Invariant 6: the port queues for it at most --live-queue-mib and never makes a commit wait (sink/live.ts).
  const liveClient = config.live ? connect(`${clientId}-live`, { clean: true, queueQoSZero: false }) : null;
  liveClient?.on('error', (err) => log.warn({ err: err.message }, 'mqtt error on the live connection'));
  const liveSettings = { after: config.liveAfter, format: config.liveFormat, alertBatteryPct: config.alertBatteryPct, alertSilenceSeconds: config.alertSilence };
  const live = liveClient ? createLivePort(liveSettings, mqttLiveLink(liveClient), config.liveQueueMib * MIB) : null;
  const liveAfterCommit = live?.settings.after === 'commit';

  async function commitOnce(): Promise<void> {
    if (open.points === 0 && open.batches.size === 0 && open.quarantine.bytes === 0) return;
    const buffer = open;
    committingBuffer = buffer;
    open = await spare;
    spare = nextBuffer();
    const number = commitNumber++;
    const tag = commitTag(writer, number);
    log.debug({ tag, points: buffer.points }, 'commit started');
    try {
      // Quarantine first: if it fails, nothing of this commit is visible yet.
      const quarantined = await writeQuarantine(buffer.quarantine, storage, tag, nowMicros());
      stats.quarantineFiles += quarantined.length;
      const commitLatency = new LatencyHistogram();
      const { files, dataFiles } = await writeCommit(conn, buffer, storage, tag, commitLatency);
      commitLatency.counts.forEach((n, bucket) => {
        if (n > 0) buffer.counts.latency_buckets[bucket] = n;
      });
      // The checkpoint first, then the table commit that names it: the commit point
      // (invariant 4). A crash before it leaves files and a checkpoint no snapshot names;
      // nothing was acked, the agents re-send, and this writer's next run reuses the names.
      const checkpoint = checkpointKey(writer, number);
      try {
        await putCheckpoint(storage, checkpoint, commitRecord(writer, number, files, quarantined, buffer.batches, buffer.pointKeys, buffer.counts));
        await lakeTable.append(
          dataFiles,
          { 'dronelake.commit': String(number), 'dronelake.checkpoint': checkpoint },
          { [writerProperty(writer)]: positionValue({ commit: number, state: stateNumber }) },
        );
      } catch (err) {
        // An error may come after the store took the version (a timeout on the reply):
        // only a commit the table does not hold may have its files removed (invariant 1),
        // and only one it holds may be acked (invariant 2). Until the table can be read,
        // neither is known; at close it stays unknown, the files stay, nothing is acked,
        // and the next start reads the answer from the table.
        let landed: boolean;
        try {
          landed = await commitLanded(number);
        } catch {
          throw err;
        }
        if (!landed) {
          await Promise.allSettled([...files.map((f) => f.key), ...quarantined, checkpoint].map((key) => storage.remove(key)));
          throw err;
        }
        log.warn({ tag, err: (err as Error).message }, 'the table commit reported an error but landed');
      }
      commitLatency.counts.forEach((n, bucket) => latency.add(bucket, n));
      for (const [gatewayId, seqs] of buffer.batches) for (const seq of seqs) ledger.markCommitted(gatewayId, seq);
      const committedAt = Date.now();
      pointLedger.commit(buffer.pointKeys, committedAt);
      stats.streamsEvicted += pointLedger.evictIdle(committedAt - streamIdleMs);
      stats.commits++;
      stats.files += files.length;
      // A full state now and then, so a start reads at most STATE_EVERY commits per writer;
      // the next commit's properties name it.
      if (number - stateNumber >= STATE_EVERY) {
        await putCheckpoint(storage, stateKey(writer, number), stateRecord(writer, number, ledger, pointLedger))
          .then(() => {
            stateNumber = number;
          })
          .catch((err: Error) => log.warn({ err: err.message }, 'writing a state checkpoint failed; the next commit tries again'));
      }
      stats.pointsCommitted += buffer.points;
      stats.pointsStaged -= buffer.points;
      for (const seqs of buffer.batches.values()) stats.batchesCommitted += seqs.length;
      log.debug({ tag, files: files.length, points: buffer.points }, 'committed');
      storeHealth.succeeded();
      staging.committed();
      stats.acksPublished += await publishAcks(ackClient, buffer.batches);
      if (liveAfterCommit) live!.send(buffer.live);
    } catch (err) {
      // Nothing of this commit is visible and nothing was acked: the agents re-send.
      stats.commitErrors++;
      storeHealth.failed(err as Error);
      if (isDiskFull(err)) staging.filled(err as Error);
      stats.pointsStaged -= buffer.points;
      for (const [gatewayId, seqs] of buffer.batches) for (const seq of seqs) ledger.unstage(gatewayId, seq);
      rejected.forget(buffer.table);
      log.error({ tag, err: (err as Error).message }, 'commit failed; its batches will be taken again when re-sent');
    } finally {
      committingBuffer = null;
    }
  }

  /** Whether the table holds this sink's commit `number`: asked until the store answers, or the sink closes. */
  async function commitLanded(number: number): Promise<boolean> {
    for (let attempt = 0; ; attempt++) {
      try {
        const table = await loadTable(storage);
        return (writerPositions(table?.metadata.properties ?? {}).get(writer)?.commit ?? 0) >= number;
      } catch (err) {
        if (closing) throw err;
        await new Promise((r) => setTimeout(r, Math.min(5_000, 200 * 2 ** attempt)));
      }
    }
  }

  function commit(): Promise<void> {
    committing = committing.then(commitOnce);
    return committing;
  }

  /** The indexes of a batch's points to stage, reused from batch to batch (invariant 6: as long as the largest batch, which the packet size bounds). */
  let rows = new Uint32Array(1024);

  function take(topic: string, payload: Buffer): void {
    stats.batchesReceived++;
    const decoded = decodeTelemetry(topic, payload);
    if (!decoded.ok) {
      // Invariant 5: a copy of a message already quarantined is counted as a repeat only.
      if (!rejected.first(topic, payload, Date.now(), open.table)) {
        stats.batchesRejectedRepeats++;
        open.counts.repeated_rejected_batches++;
        return;
      }
      stats.batchesRejected[decoded.reason]++;
      open.counts.rejected_batches[decoded.reason]++;
      quarantineBatch(open.quarantine, nowMicros(), topic, decoded.gatewayId, decoded.reason, decoded.detail, payload);
      log.warn({ topic, reason: decoded.reason, detail: decoded.detail, bytes: payload.length }, 'batch rejected into quarantine');
      return;
    }
    const { batch } = decoded;
    const state = ledger.state(batch.gateway_id, batch.batch_seq);
    if (state !== 'new') {
      stats.batchesDuplicate++;
      open.counts.duplicate_batches++;
      // The first ack may have been lost: say again that the batch is in the lake.
      if (state === 'committed') void publishAcks(ackClient, new Map([[batch.gateway_id, [batch.batch_seq]]])).catch(() => undefined);
      return;
    }
    const { points } = batch;
    const n = points.count;
    if (n === 0) stats.batchesEmpty++;
    const dropped = batch.dropped_points;
    if (dropped > (stats.gatewayDroppedPoints[batch.gateway_id] ?? 0)) stats.gatewayDroppedPoints[batch.gateway_id] = dropped;
    if (dropped > (open.counts.dropped_reported[batch.gateway_id] ?? 0)) open.counts.dropped_reported[batch.gateway_id] = dropped;
    const now = nowMicros();
    // Points of hours whose partition closed are late: they go in, and are counted.
    const closedBefore = Math.floor((now - latenessUs) / MICROS_PER_HOUR) * MICROS_PER_HOUR;
    const counts = open.counts;
    counts.received_points += n;
    stats.pointsReceived += n;
    // The live port's rows of this batch: held for the commit, or sent once the batch is taken.
    const liveRows = live === null ? null : liveAfterCommit ? open.live : [];
    // The batch is taken as columns, in place: no object per point. Rules are checked a
    // column at a time, and only the suspects point by point; the rows to stage are
    // collected by index and staged column by column.
    const drones = points.columns[DRONE_COLUMN]!;
    const seqs = points.columns[SEQ_COLUMN]!.values;
    const times = points.columns[TS_COLUMN]!.values;
    const streams = points.columns[STREAM_COLUMN] ?? null;
    const dronesOk = validDroneIds(points);
    const suspects = suspectPoints(points, batch.stream, dronesOk, now, maxFutureSkewUs);
    if (rows.length < n) rows = new Uint32Array(n);
    let kept = 0;
    let run: StreamRun | null = null;
    let runDrone = -1;
    for (let i = 0; i < n; i++) {
      // Invariant 3: a point's identity is (drone_id, stream, seq); a point that names no
      // stream of its own counts in its batch's (0 for producers that name none).
      const stream = streams !== null && isPresent(streams.present, i) ? streams.values[i]! : batch.stream;
      const reason = suspects !== null && suspects[i] === 1 ? invalidReasonAt(points, i, stream, dronesOk, now, maxFutureSkewUs) : null;
      if (reason) {
        stats.pointsInvalid[reason]++;
        counts.rejected_points[reason]++;
        quarantinePoint(open.quarantine, now, batch.gateway_id, batch.batch_seq, { ...pointAt(points, i), stream }, reason);
        continue;
      }
      // A v2 batch comes grouped by drone: the dedupe sets are looked up once per run.
      const drone = drones.values[i]!;
      if (run === null || drone !== runDrone || stream !== run.stream) {
        run = pointLedger.run(drones.dictionary![drone]!, stream, open.pointKeys, committingBuffer?.pointKeys ?? null);
        runDrone = drone;
      }
      if (!takeSeq(run, seqs[i]!)) {
        stats.pointsDuplicate++;
        counts.duplicate_points++;
        continue;
      }
      rows[kept++] = i;
      liveRows?.push({ point: { ...pointAt(points, i), stream }, gatewayId: batch.gateway_id, ingestedAtUs: now });
      if (times[i]! < closedBefore) {
        counts.late_points++;
        stats.pointsLate++;
      }
    }
    stageRows(open, points, rows, kept, stageDictIds(points), batch.stream, batch.gateway_id, now);
    stats.pointsStaged += kept;
    ledger.markStaged(batch.gateway_id, batch.batch_seq);
    recordBatch(open, batch.gateway_id, batch.batch_seq);
    if (liveRows && !liveAfterCommit) live!.send(liveRows);
    // Half the bound: the commit starts while there is still room to take messages.
    if (open.points >= config.commitPoints || stagedBytes(open) >= maxStagedBytes / 2) void commit();
  }

  const heldBytes = () => stagedBytes(open) + (committingBuffer ? stagedBytes(committingBuffer) : 0);

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
      if (heldBytes() >= maxStagedBytes) void commit().then(() => done());
      else done();
    });
  };

  const telemetryFilters = [...shardFilters(config.shard), TELEMETRY_WILDCARD];
  await subscribeTelemetry(client, telemetryFilters, log);
  const timer = setInterval(() => void commit(), config.flushInterval * 1000);

  const compaction: CompactionSettings = {
    targetBytes: config.compactTargetMib * MIB,
    latenessUs,
    graceMs: config.compactGrace * 1000,
    snapshotRetentionMs,
    rowGroupRows: COMPACTED_ROW_GROUP_ROWS,
  };
  const compactConn = await db.connect();
  let compacting: Promise<void> | null = null;
  const compactNow = (): Promise<void> => {
    compacting ??= compactLake(lakeTable, compactConn, compaction, log, manifestCache)
      .then((result) => {
        // A pass that went through shows the store works, when there is nothing to commit too.
        storeHealth.succeeded();
        stats.compactions += result.compactions;
        stats.compactionsStale += result.stale;
        stats.filesCompacted += result.inputFiles;
        stats.filesDeleted += result.deleted;
      })
      .catch((err: Error) => {
        // A compaction that fails part way leaves at most an orphan output, which a later
        // pass sweeps; one interrupted by close() is no error.
        if (closing) return;
        stats.compactionErrors++;
        storeHealth.failed(err);
        log.error({ err: err.message }, 'compaction failed; the next pass tries again');
      })
      .finally(() => {
        compacting = null;
      });
    return compacting;
  };
  const compactTimer = config.compactInterval > 0 ? setInterval(() => void compactNow(), config.compactInterval * 1000) : null;

  // The routes read the catalog once it exists; it starts after them, to know their URL.
  let catalogOrNull: Catalog | null = null;
  const snapshotStats = () => ({
    ...structuredClone(stats),
    tableCommits: tableCounters.commits,
    tableCommitRetries: tableCounters.retries,
    startupReads,
    store: storeHealth.state(),
    staging: staging.state(),
    stagedBytes: heldBytes(),
    streams: pointLedger.streams,
    live: live?.stats() ?? null,
    latencyMs: { p50: latency.quantile(0.5), p99: latency.quantile(0.99), points: latency.total, counts: [...latency.counts] },
  });
  const json = (body: () => unknown) => (_req: unknown, res: Parameters<typeof send>[0]) => send(res, 200, body());
  // The product page, the Iceberg REST catalog and the documents, as `catalog serve` has them.
  // Loaded only with --http: the page, its DuckDB and the token checks are of no use without it.
  const catalogHttp = config.http ? await (await import('./catalog/serve')).catalogRoutes(storage, log, { live: live?.sse }) : null;
  const http =
    config.http && catalogHttp
      ? await serveHttp(config.http, [
          // Degraded, not unhealthy: a restart would bring back neither the store nor disk space,
          // and the sink retries by itself.
          healthRoute(() => {
            const store = storeHealth.state();
            const healthy = client.connected && !closing;
            const status = !healthy ? 'unhealthy' : staging.full ? 'staging_full' : store.status;
            return { healthy, body: { status, connected: client.connected, store, staging: staging.state(), staged_bytes: heldBytes(), commits: stats.commits, create_only: createOnly } };
          }),
          metricsRoute(sinkMetrics(snapshotStats)),
          { method: 'GET', path: '/quality/latest', handle: json(() => catalogOrNull?.status() ?? { window: null, quality: null, slos: [] }) },
          ...catalogHttp.routes,
        ])
      : null;
  if (http) log.info({ http: http.url }, 'sink http listening');
  const catalogConn = await db.connect();
  const catalog = await startCatalog(
    storage,
    catalogConn,
    {
      writer,
      version: PACKAGE_VERSION,
      location: { lake: storage.root, s3Endpoint: config.s3Endpoint },
      ownership: { team: config.productTeam, owner: config.productOwner, support: config.productSupport },
      slos: sloTargets({
        availabilityPct: config.sloAvailability,
        minThroughput: config.sloThroughput,
        maxErrorRate: config.sloErrorRate,
        maxCommitIntervalSeconds: config.sloFrequency,
        maxFreshnessSeconds: config.sloFreshness,
        retentionDays: config.sloRetention,
      }),
      windowMs: config.qualityWindow * 1000,
      settleMs: config.missingAfter * 1000,
      flushIntervalSeconds: config.flushInterval,
      latenessSeconds: config.lateness,
      maxFutureSkewSeconds: config.maxFutureSkew,
      broker: config.broker,
      httpUrl: http?.url,
      openLineageUrl: config.openlineageUrl,
      live: live ? { ...liveSettings, broker: config.broker } : undefined,
    },
    log,
    new Map(),
  );
  catalogOrNull = catalog;
  log.info({ lake: storage.root, topics: telemetryFilters }, 'sink started');

  return {
    lake: storage.root,
    http: http?.url ?? null,
    stats: snapshotStats,
    catalog,
    flush: commit,
    compact: compactNow,
    async close() {
      closing = true;
      clearInterval(timer);
      staging.close();
      if (compactTimer) clearInterval(compactTimer);
      if (compacting) {
        // A merge can take minutes; what it leaves half done is swept by a later pass.
        compactConn.interrupt();
        await compacting;
      }
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
      closeStageBuffer(await spare);
      closeStageBuffer(open);
      conn.closeSync();
      db.closeSync();
      await storage.close();
      log.info({ committed: stats.pointsCommitted, files: stats.files }, 'sink stopped');
    },
  };
}
