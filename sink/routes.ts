import type { MqttClient } from 'mqtt';
import { healthRoute, metricsRoute, send, type Route } from '../deploy/runtime/http';
import type { Catalog } from './catalog/publisher';
import { sinkMetrics } from './metrics';
import { heldBytes, type StageBuffers } from './stage';
import type { stagingGate } from './staging-space';
import type { SinkSnapshot, SinkStats } from './stats';
import type { createStoreHealth } from './store-health';

/** What the sink's own routes read; the sink wires it once. */
export interface RouteParts {
  client: MqttClient;
  closing: () => boolean;
  stats: SinkStats;
  snapshot: () => SinkSnapshot;
  storeHealth: ReturnType<typeof createStoreHealth>;
  staging: ReturnType<typeof stagingGate>;
  buffers: StageBuffers;
  createOnly: boolean;
  /** The catalog once it has started: it starts after the routes, to know their URL. */
  catalog: () => Catalog | null;
}

/** The sink's /health, /metrics and /quality/latest, before the catalog's routes. */
export function sinkRoutes(parts: RouteParts): Route[] {
  const { client, stats, storeHealth, staging, buffers, createOnly } = parts;
  return [
    // Degraded, not unhealthy: a restart would bring back neither the store nor disk space,
    // and the sink retries by itself.
    healthRoute(() => {
      const store = storeHealth.state();
      const healthy = client.connected && !parts.closing();
      const status = !healthy ? 'unhealthy' : staging.full ? 'staging_full' : store.status;
      return { healthy, body: { status, connected: client.connected, store, staging: staging.state(), staged_bytes: heldBytes(buffers), commits: stats.commits, create_only: createOnly } };
    }),
    metricsRoute(sinkMetrics(parts.snapshot)),
    { method: 'GET', path: '/quality/latest', handle: (_req, res) => send(res, 200, parts.catalog()?.status() ?? { window: null, quality: null, slos: [] }) },
  ];
}
