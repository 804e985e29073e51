import { hostname } from 'node:os';
import type { Logger } from 'pino';
import type { ParsedOptions } from '../deploy/options';
import { nowMicros } from '../proto/time';
import type { TelemetryPoint } from '../proto/types';
import { Batcher } from './batcher';
import type { agentOptions } from './options';
import { PendingBatches } from './pending';
import { Publisher, type PublisherStats } from './publisher';
import { createSimulatedFleet } from './simulator';
import type { Source, SourceOutput } from './source';

export type AgentConfig = ParsedOptions<typeof agentOptions>;

export interface AgentStats extends PublisherStats {
  pointsIn: number;
  batchesClosed: number;
  pendingBatches: number;
  pendingPoints: number;
  pendingBytes: number;
}

export interface Agent {
  stats(): AgentStats;
  /** Stops the sources and waits until every batch is acked or the timeout passes; true when all were. */
  drain(timeoutMs: number): Promise<boolean>;
  close(): Promise<void>;
}

export async function startAgent(config: AgentConfig, log: Logger, extraSources: Source[] = []): Promise<Agent> {
  // Counters continue from the clock, so they keep increasing across restarts while the
  // pending batches live in memory; the disk spool will carry them instead.
  const startedAt = nowMicros();
  const pending = new PendingBatches();
  const publisher = new Publisher(
    {
      broker: config.broker,
      gatewayId: config.gateway,
      clientId: `${config.gateway}-${hostname().replace(/[^A-Za-z0-9]/g, '').slice(0, 16)}-${process.pid}`,
      window: config.window,
      ackTimeoutMs: config.ackTimeout * 1000,
    },
    pending,
    log,
  );
  let batchesClosed = 0;
  let pointsIn = 0;
  const batcher = new Batcher(
    {
      gatewayId: config.gateway,
      maxPoints: config.batchPoints,
      maxBytes: config.batchBytes,
      lingerMs: config.linger * 1000,
      firstSeq: startedAt,
    },
    (batch) => {
      batchesClosed++;
      pending.append(batch);
      publisher.enqueue(batch);
    },
  );
  const output: SourceOutput = {
    emit(point: TelemetryPoint) {
      pointsIn++;
      batcher.add(point);
    },
    get accepting() {
      return pending.bytes < config.maxPendingBytes;
    },
  };
  const sources = [...extraSources];
  if (config.simulate > 0) {
    sources.push(createSimulatedFleet({ gatewayId: config.gateway, drones: config.simulate, hz: config.hz, firstSeq: () => startedAt }));
  }
  for (const source of sources) source.start(output);
  log.info({ gateway: config.gateway, sources: sources.map((s) => s.name) }, 'agent started');

  let stopped = false;
  async function stopSources(): Promise<void> {
    if (stopped) return;
    stopped = true;
    await Promise.all(sources.map((s) => s.stop()));
    batcher.close();
  }

  const stats = (): AgentStats => ({
    ...publisher.stats,
    pointsIn,
    batchesClosed,
    pendingBatches: pending.count,
    pendingPoints: pending.points,
    pendingBytes: pending.bytes,
  });

  return {
    stats,
    async drain(timeoutMs) {
      await stopSources();
      const deadline = Date.now() + timeoutMs;
      while (pending.count > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      return pending.count === 0;
    },
    async close() {
      await stopSources();
      await publisher.close();
      const { pointsIn: points, sent, resent, acked, pointsAcked, pendingBatches } = stats();
      log.info({ pointsIn: points, sent, resent, acked, pointsAcked, pending: pendingBatches }, 'agent stopped');
    },
  };
}
