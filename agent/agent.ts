import { hostname } from 'node:os';
import type { Logger } from 'pino';
import { readTlsFiles } from '../deploy/runtime/files';
import { ingestStreamOf } from '../proto/stream';
import { nowMicros } from '../proto/time';
import type { HttpServer } from '../deploy/runtime/http';
import { droneIdOf, parseAllowList, parseDroneTable, parseEndpoints } from './mavlink/config';
import type { MavlinkUdpSource } from './mavlink/udp';
import { checkAgentOptions, type AgentConfig } from './options';
import { createOutput } from './output';
import { Publisher } from './publisher';
import { createSimulatedFleet } from './simulator';
import type { Source } from './source';
import { Spool } from './spool';
import type { AgentStats } from './stats';

/** What a source built by the agent's caller may ask of the agent. */
export interface SourceContext {
  /** The seq of a drone's next point: one past the last the spool holds, so seqs survive restarts. */
  firstSeq: (droneId: string) => number;
}
export type SourceFactory = (ctx: SourceContext) => Source;

export interface Agent {
  stats(): AgentStats;
  /** The agent's HTTP address when --http is set. */
  readonly http: HttpServer | null;
  /** The MAVLink UDP listener when --mavlink is set. */
  readonly mavlink: MavlinkUdpSource | null;
  /**
   * Stops the sources and waits until every batch is acked or the timeout passes; true when
   * all were. With `whileConnected`, it tries the broker at once if the link is down, and
   * stops waiting as soon as the link is down: a stop does not wait for a broker that is
   * away, and the spool keeps the batches for the next start (invariant 2).
   */
  drain(timeoutMs: number, whileConnected?: boolean): Promise<boolean>;
  close(): Promise<void>;
}

/** How often the --http-tokens file is looked at for changes. */
const TOKENS_POLL_MS = 1000;

export async function startAgent(config: AgentConfig, log: Logger, extraSources: Array<Source | SourceFactory> = []): Promise<Agent> {
  checkAgentOptions(config);
  // Files are read before anything is opened, so a bad one is one line and exit 2.
  // Each command loads only what it needs: MAVLink, the HTTP server, the ingest API and
  // Prometheus load only when their options are on, so a plain gateway stays small.
  const brokerTls = readTlsFiles(config);
  const keys = config.mavlinkKeys ? (await import('./mavlink/signing')).readSigningKeys(config.mavlinkKeys) : undefined;
  const httpServer = config.http ? await import('../deploy/runtime/http') : null;
  const httpTls = httpServer && config.httpTlsCert && config.httpTlsKey ? httpServer.readHttpTls(config.httpTlsCert, config.httpTlsKey, '--http-tls-cert', '--http-tls-key') : undefined;
  const auth = config.http
    ? await (await import('./ingest-auth')).openIngestAuth(config.httpTokens, TOKENS_POLL_MS, (err) => log.warn({ err: err.message }, 'token file reload failed; the tokens read before stay in force'))
    : null;
  if (config.mavlinkUnsigned) log.warn({ mavlink: config.mavlink }, 'taking unsigned MAVLink (--mavlink-unsigned): anyone who reaches the port can forge positions');
  // Read when a source first sees a drone, after the spool is open.
  const firstSeq = (droneId: string) => (spool.droneSeq(droneId) ?? -1) + 1;
  // Bound before anything else is opened, so that a port in use fails the start cleanly.
  const mavlink = config.mavlink
    ? await (await import('./mavlink/udp')).openMavlinkUdp({
        endpoints: parseEndpoints(config.mavlink),
        droneId: droneIdOf(config.gateway, parseDroneTable(config.mavlinkDrones ?? '')),
        hz: config.mavlinkHz,
        firstSeq,
        keys,
        allow: config.mavlinkAllow ? parseAllowList(config.mavlinkAllow) : undefined,
      }).catch((err: unknown) => {
        auth?.close();
        throw err;
      })
    : null;
  const spool = await Spool.open({
    dir: config.spool,
    maxBytes: config.spoolMaxBytes,
    memoryBytes: config.spoolMemoryMib * 1024 * 1024,
    whenFull: config.spoolFull,
    fsyncIntervalMs: config.fsyncInterval,
    // Batch numbers never fall below the clock, so even a wiped spool cannot reuse one.
    minBatchSeq: nowMicros(),
    onError: (err) => log.warn({ err: (err as Error).message }, 'spool background work failed; it is retried or repaired at the next open'),
    // Once per episode, not per write: the spool retries with backoff while the disk is full.
    onDiskFull: (full, err) =>
      full
        ? log.error({ spool: config.spool, err: (err as Error).message, policy: config.spoolFull }, config.spoolFull === 'block' ? 'spool disk is full; sources paused until it has room' : 'spool disk is full; dropping the oldest segments, sources paused while none is left to drop')
        : log.info({ spool: config.spool }, 'spool disk has room again; sources resumed'),
  }).catch(async (err: unknown) => {
    auth?.close();
    await mavlink?.stop();
    throw err;
  });
  const recovery = spool.stats().recovery;
  if (recovery.truncatedBytes > 0 || recovery.corruptRecords > 0) log.warn({ recovery }, 'spool recovered from damage');
  log.info({ spool: config.spool, unacked: spool.count, stream: spool.stream, recovery }, 'spool open');

  const publisher = new Publisher(
    {
      broker: config.broker,
      gatewayId: config.gateway,
      clientId: `${config.gateway}-${hostname().replace(/[^A-Za-z0-9]/g, '').slice(0, 16)}-${process.pid}`,
      window: config.window,
      ackTimeoutMs: config.ackTimeout * 1000,
      reconnectMinMs: config.reconnectMin * 1000,
      reconnectMaxMs: config.reconnectMax * 1000,
      username: config.username,
      password: config.password,
      tls: brokerTls,
    },
    spool,
    log,
  );

  const output = createOutput(
    {
      gatewayId: config.gateway,
      maxPoints: config.batchPoints,
      maxBytes: config.batchBytes,
      lingerMs: config.linger * 1000,
      wire: config.wire,
      compression: config.compression,
    },
    spool,
    publisher,
    log,
  );

  const sources = extraSources.map((s) => (typeof s === 'function' ? s({ firstSeq }) : s));
  if (config.simulate > 0) {
    sources.push(createSimulatedFleet({ gatewayId: config.gateway, drones: config.simulate, hz: config.hz, firstSeq }));
  }
  if (mavlink) sources.push(mavlink);
  const ingest = auth ? (await import('./ingest-api')).createIngestSource({ maxBodyBytes: 16 * 1024 * 1024, maxFutureSkewUs: config.maxFutureSkew * 1e6, auth, defaultStream: ingestStreamOf(config.gateway) }) : null;
  if (ingest) sources.push(ingest);

  const oldestAgeSeconds = () => {
    const at = spool.oldestUnackedAppendedAt();
    return at === null ? null : (Date.now() - at) / 1000;
  };
  const stats = (): AgentStats => ({
    ...publisher.stats,
    pointsIn: output.pointsIn,
    batchesClosed: output.batchesClosed,
    pendingBatches: spool.count,
    pendingPoints: spool.points,
    pendingBytes: spool.bytes,
    spool: spool.stats(),
    oldestUnackedAgeSeconds: oldestAgeSeconds(),
    mavlink: mavlink?.stats() ?? null,
    ingest: ingest && auth ? { ...ingest.stats, ...auth.stats } : null,
  });
  const http = httpServer && config.http
    ? await httpServer.serveHttp(config.http, [
        { method: 'ANY', path: '/v1/points', handle: (req, res) => ingest!.handle(req, res) },
        httpServer.healthRoute(() => {
          const age = oldestAgeSeconds();
          const spoolDiskFull = spool.stats().diskFull;
          const healthy = (age === null || age <= config.healthMaxUnackedAge) && !spoolDiskFull;
          return {
            healthy,
            body: { status: healthy ? 'ok' : 'unhealthy', oldestUnackedAgeSeconds: age, maxUnackedAgeSeconds: config.healthMaxUnackedAge, spoolDiskFull, connected: publisher.stats.connected },
          };
        }),
        httpServer.metricsRoute((await import('./metrics')).agentMetrics(stats)),
      ], httpTls)
    : null;

  for (const source of sources) source.start(output);
  log.info({ gateway: config.gateway, sources: sources.map((s) => s.name), http: http?.url, mavlink: mavlink?.addresses }, 'agent started');

  let stopped = false;
  async function stopSources(): Promise<void> {
    if (stopped) return;
    stopped = true;
    await Promise.all(sources.map((s) => s.stop()));
    await output.settle();
  }

  return {
    stats,
    http,
    mavlink,
    async drain(timeoutMs, whileConnected = false) {
      await stopSources();
      const deadline = Date.now() + timeoutMs;
      if (whileConnected && spool.count > 0) await publisher.tryNow(timeoutMs);
      while (spool.count > 0 && Date.now() < deadline && (!whileConnected || publisher.stats.connected)) await new Promise((r) => setTimeout(r, 20));
      return spool.count === 0;
    },
    async close() {
      await stopSources();
      await http?.close();
      auth?.close();
      await publisher.close();
      await spool.close();
      const { pointsIn: points, sent, resent, acked, pointsAcked, pendingBatches } = stats();
      log.info({ pointsIn: points, sent, resent, acked, pointsAcked, pending: pendingBatches }, 'agent stopped');
    },
  };
}
