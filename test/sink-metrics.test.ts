import { describe, expect, it } from 'vitest';
import { sinkMetrics } from '../sink/metrics';
import { emptySinkStats } from '../sink/stats';

// Every counter the sink keeps is a metric: the README and operators read them from
// /metrics, not from the process. Each stat gets a value of its own, and the scrape must
// show that value.
describe("the sink's /metrics", () => {
  it('exposes every stat the sink keeps, each with its own value', async () => {
    const stats = emptySinkStats();
    const expected = new Map<string, number>();
    let next = 1001;
    const record = stats as unknown as Record<string, number | Record<string, number>>;
    for (const [key, value] of Object.entries(record)) {
      if (typeof value === 'number') {
        record[key] = next;
        expected.set(key, next++);
      } else {
        const label = Object.keys(value)[0] ?? 'gw-metrics';
        record[key] = { ...value, [label]: next };
        expected.set(key, next++);
      }
    }
    const registry = sinkMetrics(() => ({
      ...stats,
      startupReads: 0,
      store: { status: 'ok', failuresInARow: 0, since: null, lastError: null },
      staging: { status: 'ok', dir: '/tmp', since: null },
      stagedBytes: 0,
      streams: 0,
      live: null,
      latencyMs: { p50: null, p99: null, points: 0, counts: [] },
    }));
    const text = await registry.metrics();
    const values = new Set(text.split('\n').filter((l) => l && !l.startsWith('#')).map((l) => Number(l.slice(l.lastIndexOf(' ') + 1))));
    const missing = [...expected].filter(([, v]) => !values.has(v)).map(([k]) => k);
    expect(missing).toEqual([]);
  });
});
