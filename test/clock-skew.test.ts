import path from 'node:path';
import mqtt from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { startBroker, type Broker } from '../broker/server';
import { encodeBatch } from '../proto/codec';
import { nowMicros } from '../proto/time';
import { telemetryTopic } from '../proto/topics';
import { GpsFix, type TelemetryPoint } from '../proto/types';
import { sinkConfig } from '../sink/options';
import { startSink, type Sink } from '../sink/sink';
import { awayFromHourBoundary, duck, lakeGlob, quietLog, tempDir, waitFor } from './helpers';

const HOUR_US = 3_600_000_000;
const POINTS = 50;

describe('gateways whose clocks are wrong', () => {
  let broker: Broker | null = null;
  let sink: Sink | null = null;
  const clients: mqtt.MqttClient[] = [];
  const cleanups: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const c of clients.splice(0)) await c.endAsync();
    await sink?.close();
    sink = null;
    await broker?.close();
    broker = null;
    for (const c of cleanups.splice(0)) await c();
  });

  it('3 h ahead: quarantined as ts_in_future; 3 h behind: kept and counted late; ingested_at and freshness follow the sink clock', async () => {
    // The right clock's points must stay in the current hour's partition. The wait can take
    // 90 s near the top of the hour, so the test's timeout is longer than the default 60 s.
    await awayFromHourBoundary();
    const { dir, remove } = await tempDir('clock-skew');
    cleanups.push(remove);
    const lake = path.join(dir, 'lake');
    broker = await startBroker({ host: '127.0.0.1', port: 0 }, quietLog);
    sink = await startSink(sinkConfig({ broker: broker.url, lake, flushInterval: 600, qualityWindow: 3600 }), quietLog);
    const before = Date.now();
    // Each gateway stamps its points with its own clock, as the agent does.
    const gateways: Array<[string, number]> = [
      ['gw-ahead', 3 * HOUR_US],
      ['gw-behind', -3 * HOUR_US],
      ['gw-right', 0],
      // Within --max-future-skew (300 s): kept as it is.
      ['gw-bit-ahead', 120_000_000],
    ];
    for (const [gw, skew] of gateways) {
      const client = await mqtt.connectAsync(broker.url, { clientId: `${gw}-1` });
      clients.push(client);
      const clock = nowMicros() + skew;
      const points: TelemetryPoint[] = Array.from({ length: POINTS }, (_, i) => ({ drone_id: `${gw}-d`, seq: i, ts: clock - (POINTS - i) * 100_000, lat: 47, lon: 8, battery_pct: 50, gps_fix: GpsFix.fix3d }));
      await client.publishAsync(telemetryTopic(gw), Buffer.from(encodeBatch({ gateway_id: gw, batch_seq: 1, sent_at: clock, points, dropped_points: 0, stream: 1 })), { qos: 1 });
    }
    await waitFor('every batch taken', () => sink!.stats().batchesReceived === gateways.length);
    await sink.flush();
    const after = Date.now();

    const stats = sink.stats();
    expect(stats.pointsInvalid.ts_in_future).toBe(POINTS);
    expect(stats.pointsCommitted).toBe(3 * POINTS);
    expect(stats.pointsLate).toBe(POINTS);

    const rows = await duck(
      `SELECT split_part(drone_id, '-d', 1) AS gw, count(*)::INTEGER AS n, min(ingested_at) AS first_in, max(ingested_at) AS last_in, min(hour)::INTEGER AS hour
       FROM read_parquet('${lakeGlob(lake)}', hive_partitioning = true) GROUP BY ALL ORDER BY gw`,
    );
    expect(rows.map((r) => [r['gw'], r['n']])).toEqual([
      ['gw-behind', POINTS],
      ['gw-bit-ahead', POINTS],
      ['gw-right', POINTS],
    ]);
    // ingested_at is the sink's clock, whatever the gateway's said.
    for (const r of rows) {
      expect(Date.parse(String(r['first_in']))).toBeGreaterThanOrEqual(before - 1000);
      expect(Date.parse(String(r['last_in']))).toBeLessThanOrEqual(after + 1000);
    }
    // Partitioned by event time: the late points went to the hour their clock named.
    const behindHour = new Date(Date.now() - 3 * 3_600_000).getUTCHours();
    expect(rows.find((r) => r['gw'] === 'gw-behind')!['hour']).toBe(behindHour);

    await sink.catalog.closeWindow();
    const quality = sink.catalog.status()!.quality!;
    expect(quality.rejected_points_by_reason.ts_in_future).toBe(POINTS);
    expect(quality.late_points).toBe(POINTS);
    // The newest kept event is 2 minutes ahead, so freshness reads 0, never negative; the
    // gateway 3 h ahead does not count, and the one 3 h behind does not make it stale.
    expect(quality.freshness_seconds).toBe(0);
  }, 150_000);
});
