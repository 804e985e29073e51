import type { Registry } from 'prom-client';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { agentMetrics } from '../agent/metrics';
import type { AgentStats } from '../agent/stats';
import { metricsRoute, serveHttp, type HttpServer } from '../deploy/runtime/http';
import { sinkMetrics } from '../sink/metrics';
import { emptySinkStats, type SinkSnapshot, type SinkStats } from '../sink/stats';
import { brokerMetrics } from '../broker/metrics';
import { emptyBrokerStats } from '../broker/stats';
import { ROOT } from './helpers';

// Every counter the README and operators read is a metric: they read them from GET
// /metrics, not from the process. Each stat gets a value of its own, the registry is served
// by the HTTP server the components use, and the scrape must show that value.

let server: HttpServer | null = null;
afterEach(async () => {
  await server?.close();
  server = null;
});

/** The samples of GET /metrics, `name` or `name{label="value"}` -> value. */
async function scrape(registry: Registry): Promise<Map<string, number>> {
  server = await serveHttp('127.0.0.1:0', [metricsRoute(registry)]);
  const res = await fetch(`${server.url}/metrics`);
  expect(res.status).toBe(200);
  const samples = new Map<string, number>();
  for (const line of (await res.text()).split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    samples.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return samples;
}

/** Each counter of `stats`, a number or counts by label, set to a value no other one has. */
function distinct<T extends { [K in keyof T]: number | Record<string, number> }>(stats: T, first: number): { stats: T; values: Map<string, number> } {
  const values = new Map<string, number>();
  let next = first;
  const filled: Record<string, number | Record<string, number>> = {};
  for (const [key, entry] of Object.entries(stats)) {
    const value: unknown = entry;
    const n = next++;
    values.set(key, n);
    if (typeof value === 'number') filled[key] = n;
    else if (typeof value === 'object' && value !== null) filled[key] = { ...Object.fromEntries(Object.entries(value)), [Object.keys(value)[0] ?? 'gw-metrics']: n };
  }
  return { stats: { ...stats, ...filled }, values };
}

/** The agent's counters, all zero but those of the ingest API given. */
const agentStats = (ingest: AgentStats['ingest']): AgentStats => ({
  sent: 0,
  resent: 0,
  acked: 0,
  pointsAcked: 0,
  badAcks: 0,
  connected: true,
  reconnects: 0,
  pointsIn: 0,
  batchesClosed: 0,
  pendingBatches: 0,
  pendingPoints: 0,
  pendingBytes: 0,
  spool: {
    appends: 0,
    acks: 0,
    fsyncs: 0,
    fsyncLastMs: 0,
    fsyncMaxMs: 0,
    segments: 0,
    bytes: 0,
    memoryBytes: 0,
    dropped: { batches: 0, points: 0 },
    diskFull: false,
    diskFullEvents: 0,
    recovery: { segments: 0, recordsRecovered: 0, truncatedBytes: 0, corruptRecords: 0 },
  },
  oldestUnackedAgeSeconds: null,
  mavlink: null,
  ingest,
});

/** What sink.stats() returns, around the counters given. */
const sinkSnapshot = (stats: SinkStats): SinkSnapshot => ({
  ...stats,
  startupReads: 0,
  store: { status: 'ok', failuresInARow: 0, since: null, lastError: null },
  staging: { status: 'ok', dir: '/tmp', since: null },
  stagedBytes: 0,
  streams: 0,
  live: null,
  latencyMs: { p50: null, p99: null, points: 0, counts: [] },
});

describe("the sink's GET /metrics", () => {
  it('shows every stat the sink keeps, each with its own value', async () => {
    const { stats, values } = distinct(emptySinkStats(), 1001);
    const samples = await scrape(sinkMetrics(() => sinkSnapshot(stats)));
    const shown = new Set(samples.values());
    expect([...values].filter(([, v]) => !shown.has(v)).map(([k]) => k)).toEqual([]);
    // The stats the README names, under the names it gives them.
    const named: [keyof SinkStats, string][] = [
      ['batchesOtherShards', 'dronelake_sink_batches_other_shards_total'],
      ['batchesEmpty', 'dronelake_sink_batches_empty_total'],
      ['batchesCommitted', 'dronelake_sink_batches_committed_total'],
      ['pointsStaged', 'dronelake_sink_points_staged'],
      ['pointsLate', 'dronelake_sink_points_late_total'],
      ['quarantineFiles', 'dronelake_sink_quarantine_files_total'],
      ['filesCompacted', 'dronelake_sink_files_compacted_total'],
      ['batchesRejectedRepeats', 'dronelake_sink_batches_rejected_repeats_total'],
      ['tableCommitRetries', 'dronelake_sink_table_commit_retries_total'],
    ];
    for (const [key, metric] of named) expect(samples.get(metric), metric).toBe(values.get(key));
    const dropped = Object.keys(stats.gatewayDroppedPoints)[0]!;
    expect(samples.get(`dronelake_sink_gateway_dropped_points_total{gateway="${dropped}"}`)).toBe(values.get('gatewayDroppedPoints'));
  });
});

describe("the agent's GET /metrics", () => {
  it("shows every stat of the ingest API and its token check, each with its own value", async () => {
    const ingest = distinct({ requests: 0, pointsAccepted: 0, pointsRejected: 0, badRequests: 0, pointsForbidden: 0 }, 2001);
    const refused = distinct({ missing_token: 0, unknown_token: 0, bad_token: 0, forbidden_drone: 0 }, 3001);
    const stats = agentStats({ ...ingest.stats, refused: refused.stats });
    const samples = await scrape(agentMetrics(() => stats));
    const metric: Record<keyof typeof ingest.stats, string> = {
      requests: 'dronelake_agent_ingest_requests_total',
      pointsAccepted: 'dronelake_agent_ingest_points_accepted_total',
      pointsRejected: 'dronelake_agent_ingest_points_rejected_total',
      badRequests: 'dronelake_agent_ingest_bad_requests_total',
      pointsForbidden: 'dronelake_agent_ingest_points_forbidden_total',
    };
    for (const [key, value] of ingest.values) expect(samples.get(metric[key as keyof typeof metric]), key).toBe(value);
    for (const [reason, value] of refused.values) expect(samples.get(`dronelake_agent_ingest_refused_total{reason="${reason}"}`), reason).toBe(value);
  });
});

describe('the metrics the guides name', () => {
  it('are each served by the agent, the broker or the sink', async () => {
    const registries = [
      agentMetrics(() => agentStats(null)),
      brokerMetrics(() => emptyBrokerStats()),
      sinkMetrics(() => sinkSnapshot(emptySinkStats())),
    ];
    const served = new Set(registries.flatMap((r) => r.getMetricsAsArray().map((m) => m.name)));
    const named = new Set<string>();
    for (const guide of ['README.md', 'deploy/README.md', 'deploy/gateway/README.md', 'sink/README.md', 'proto/README.md', 'bench/README.md']) {
      const text = await readFile(path.join(ROOT, guide), 'utf8');
      for (const [match] of text.matchAll(/dronelake_(?:agent|sink|broker)_[a-z0-9_{},]*[a-z0-9}]/g)) {
        // Labels ({reason}, {rule="..."}) are not part of the name; {a,b}_total stands for each.
        const name = match.replace(/\{[^},]*\}?$/, '');
        const braces = /\{([^}]*)\}/.exec(name);
        for (const part of braces ? braces[1]!.split(',') : ['']) named.add(braces ? name.replace(braces[0], part) : name);
      }
    }
    expect(named.size).toBeGreaterThan(20);
    expect([...named].filter((name) => !served.has(name)).sort()).toEqual([]);
  });
});
