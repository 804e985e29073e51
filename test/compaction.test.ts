import mqtt from 'mqtt';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startBroker, type Broker } from '../broker/server';
import { decodeAck, encodeBatch } from '../proto/codec';
import { nowMicros } from '../proto/time';
import { ackTopic, telemetryTopic } from '../proto/topics';
import type { TelemetryPoint } from '../proto/types';
import { compactLake } from '../sink/compact';
import { newManifestCache } from '../sink/table/manifests';
import { expireSnapshots, tableWriter } from '../sink/table/transaction';
import { maintainTable } from '../sink/table/maintain';
import { compactTime, LINEAGE_PREFIX, QUALITY_PREFIX, qualityDayPrefix } from '../sink/layout';
import { putObject, type KeyRange, type LakeStorage } from '../sink/storage';
import { currentFiles, snapshotsOf } from './table';
import { sinkConfig } from '../sink/options';
import { startSink, type Sink } from '../sink/sink';
import { DuckDBInstance } from '@duckdb/node-api';
import { awayFromHourBoundary, cruisePoint, quietLog, waitFor } from './helpers';
import { BACKENDS, testLake, type TestLake } from './lakes';

const GW = 'gw-compact';
const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;

const point = cruisePoint;

describe.each(BACKENDS)('late data and compaction on the %s backend', (backend) => {
  let broker: Broker;
  let sink: Sink;
  let gateway: mqtt.MqttClient;
  let lake: TestLake;
  const acked = new Set<number>();

  beforeEach(async () => {
    // Points of the current hour must stay on time for the whole test: wait out an hour boundary close ahead.
    await awayFromHourBoundary();
    lake = await testLake(backend);
    broker = await startBroker({ host: '127.0.0.1', port: 0 }, quietLog);
    // Lateness 0: every earlier hour is closed. The sink's own compactor is off; the test runs passes itself.
    sink = await startSink(sinkConfig({ broker: broker.url, ...lake.config, flushInterval: 60, lateness: 0, compactInterval: 0, compactGrace: 600 }), quietLog);
    gateway = await mqtt.connectAsync(broker.url, { clientId: `${GW}-1` });
    acked.clear();
    gateway.on('message', (_t, payload) => decodeAck(payload).batch_seqs.forEach((s) => acked.add(s)));
    await gateway.subscribeAsync(ackTopic(GW), { qos: 1 });
  }, 120_000);

  afterEach(async () => {
    await gateway.endAsync();
    await sink.close();
    await broker.close();
    await lake.remove();
  });

  /** Sends one batch and commits it on its own, so each batch becomes files of its own. */
  async function commitBatch(seq: number, points: TelemetryPoint[]): Promise<void> {
    const received = sink.stats().batchesReceived;
    await gateway.publishAsync(telemetryTopic(GW), Buffer.from(encodeBatch({ gateway_id: GW, batch_seq: seq, sent_at: nowMicros(), points })), { qos: 1 });
    await waitFor(`batch ${seq} taken`, () => sink.stats().batchesReceived > received || undefined);
    await sink.flush();
    await waitFor(`the ack of batch ${seq}`, () => acked.has(seq));
  }

  const totals = async () => {
    const [row] = await lake.query('SELECT count(*)::INTEGER AS n, count(DISTINCT (drone_id, seq))::INTEGER AS k FROM telemetry');
    return { rows: row!['n'], distinct: row!['k'] };
  };

  it('counts late points, merges closed partitions into bigger sorted files, and every snapshot holds each point once', async () => {
    const nowHourStart = Math.floor(Date.now() / HOUR_MS) * HOUR_MS;
    const fresh = (seq: number) => point('d-live', seq, Date.now() * 1000);
    // Three hours ago and five hours ago: two closed partitions.
    const old = (drone: string, seq: number, hoursAgo: number) => point(drone, seq, (nowHourStart - hoursAgo * HOUR_MS + 60_000 + seq * 10) * 1000);

    // New data first, then a drone that was offline sends hours-old points, in 6 commits.
    await commitBatch(1, Array.from({ length: 40 }, (_, i) => fresh(i)));
    let seq = 0;
    for (let b = 0; b < 6; b++) {
      const pts: TelemetryPoint[] = [];
      for (let i = 0; i < 500; i++, seq++) pts.push(old(`d-off-${seq % 3}`, seq, seq % 2 === 0 ? 3 : 5));
      await commitBatch(2 + b, pts);
    }
    expect(sink.stats().pointsLate).toBe(3000);
    expect(sink.stats().pointsCommitted).toBe(3040);

    const storage = await lake.open();
    try {
      const oldFiles = (await currentFiles(storage)).filter((f) => f.max_ts < nowHourStart * 1000);
      expect(oldFiles).toHaveLength(12);
      expect(await totals()).toEqual({ rows: 3040, distinct: 3040 });

      // Readers query all through the compaction: each must see every point exactly once.
      let compactionDone = false;
      const snapshots: Array<{ rows: unknown; distinct: unknown }> = [];
      const reader = (async () => {
        while (!compactionDone || snapshots.length < 3) snapshots.push(await totals());
      })();
      await sink.compact();
      compactionDone = true;
      await reader;
      expect(snapshots.length).toBeGreaterThanOrEqual(3);
      for (const s of snapshots) expect(s).toEqual({ rows: 3040, distinct: 3040 });

      const after = await currentFiles(storage);
      expect(await snapshotsOf(storage, 'replace')).toBe(2);
      const compacted = after.filter((f) => f.max_ts < nowHourStart * 1000);
      expect(compacted).toHaveLength(2);
      expect(compacted.map((f) => f.rows).sort()).toEqual([1500, 1500]);
      const biggestInput = Math.max(...oldFiles.map((f) => f.bytes));
      for (const f of compacted) expect(f.bytes).toBeGreaterThan(biggestInput);
      // The current hour is open, so its file is left alone.
      expect(after.filter((f) => f.min_ts >= nowHourStart * 1000)).toHaveLength(1);

      // Each output is sorted by (drone_id, ts) and has its rows in row groups of the configured size at most.
      const db = await DuckDBInstance.create(':memory:');
      const conn = await db.connect();
      try {
        for (const f of compacted) {
          const local = await storage.localPath(f.key);
          const rows = (await conn.runAndReadAll(`SELECT drone_id, epoch_us(ts)::BIGINT AS ts FROM read_parquet('${local}')`)).getRowObjectsJson();
          const keys = rows.map((r) => `${r['drone_id']}|${String(r['ts']).padStart(20, '0')}`);
          expect(keys).toEqual([...keys].sort());
          const groups = (await conn.runAndReadAll(`SELECT DISTINCT row_group_id, row_group_num_rows FROM parquet_metadata('${local}')`)).getRowObjectsJson();
          expect(groups).toHaveLength(1);
        }
      } finally {
        conn.closeSync();
        db.closeSync();
      }

      // During the grace period the inputs are still in the store, for readers that listed them.
      const listed = new Set((await storage.list('drones/telemetry/v1/')).map((o) => o.key));
      for (const f of oldFiles) expect(listed.has(f.key)).toBe(true);

      // More late points land in a compacted partition, are counted, and the next pass merges them in.
      const more = Array.from({ length: 200 }, (_, i) => old('d-off-late', i, 3));
      await commitBatch(10, more.slice(0, 100));
      await commitBatch(11, more.slice(100));
      expect(sink.stats().pointsLate).toBe(3200);
      await sink.compact();
      const threeHoursAgo = (await currentFiles(storage)).filter((f) => f.max_ts < (nowHourStart - 2 * HOUR_MS) * 1000 && f.min_ts >= (nowHourStart - 3 * HOUR_MS) * 1000);
      expect(threeHoursAgo.map((f) => f.rows)).toEqual([1700]);
      expect(await totals()).toEqual({ rows: 3240, distinct: 3240 });
    } finally {
      await storage.close();
    }
  });

  it('removes the quality windows and lineage events past the history retention, and only those, listing only the days it removes from', async () => {
    await commitBatch(1, [point('d-history', 1, Date.now() * 1000)]);
    const storage = await lake.open('maintainer');
    try {
      const now = Math.floor(Date.now() / HOUR_MS) * HOUR_MS;
      const put = async (key: string) => putObject(storage, key, '{}\n', 'publish');
      // Windows and events every 6 hours over 10 days; the retention is 3 days.
      const expected: string[] = [];
      const kept: string[] = [];
      for (let t = now - 10 * DAY_MS; t <= now; t += 6 * HOUR_MS) {
        const window = `${qualityDayPrefix(t)}window-sink-h-${compactTime(t)}.json`;
        const event = `${LINEAGE_PREFIX}/date=${new Date(t).toISOString().slice(0, 10)}/event-sink-h-running-${compactTime(t)}.json`;
        for (const key of [window, event]) {
          await put(key);
          (t < now - 3 * DAY_MS ? expected : kept).push(key);
        }
      }
      const listed: string[] = [];
      const counted: LakeStorage = Object.assign(Object.create(storage) as LakeStorage, {
        list: (prefix: string, range?: KeyRange) => {
          const objects = storage.list(prefix, range);
          void objects.then((o) => listed.push(...o.map((x) => x.key)));
          return objects;
        },
      });
      const swept = await maintainTable(counted, { graceMs: 600_000, snapshotRetentionMs: 7 * DAY_MS, historyRetentionMs: 3 * DAY_MS }, now);
      expect(swept.historyFiles).toBe(expected.length);
      const left = [...(await storage.list(`${QUALITY_PREFIX}/`)), ...(await storage.list(`${LINEAGE_PREFIX}/`))].map((o) => o.key);
      expect(left.filter((k) => expected.includes(k))).toEqual([]);
      expect(kept.every((k) => left.includes(k))).toBe(true);
      // Of the history, only the days that held something to remove were listed: the cut-off day, and none after it.
      const cutDay = new Date(now - 3 * DAY_MS).toISOString().slice(0, 10);
      const historyListed = listed.filter((k) => k.startsWith(`${QUALITY_PREFIX}/`) || k.startsWith(`${LINEAGE_PREFIX}/`));
      expect(historyListed.every((k) => (/date=(\d{4}-\d{2}-\d{2})\//.exec(k)?.[1] ?? '') <= cutDay)).toBe(true);
    } finally {
      await storage.close();
    }
  });

  it('lets two compactors race over the same lake without losing or doubling a row, and deletes inputs after the grace period', async () => {
    const nowHourStart = Math.floor(Date.now() / HOUR_MS) * HOUR_MS;
    for (let b = 0; b < 8; b++) {
      await commitBatch(1 + b, Array.from({ length: 250 }, (_, i) => point(`d-race-${b % 2}`, b * 250 + i, (nowHourStart - 2 * HOUR_MS + b * 1000 + i) * 1000)));
    }
    const storage = await lake.open('compactor-a');
    const other = await lake.open('compactor-b');
    const conns = await Promise.all([1, 2].map(async () => (await DuckDBInstance.create(':memory:')).connect()));
    try {
      const settings = { targetBytes: 1 << 30, latenessUs: 0, graceMs: 600_000, snapshotRetentionMs: 3_600_000, historyRetentionMs: 90 * DAY_MS, rowGroupRows: 262_144 };
      const writers = [storage, other].map((s, i) => tableWriter(s, `compactor-${i}`, settings, newManifestCache()));
      const fileBytes = (await currentFiles(other))[0]!.bytes;
      // Different target sizes make the two plan different groups over the same files.
      const results = await Promise.all([
        compactLake(writers[0]!, conns[0]!, settings, quietLog),
        compactLake(writers[1]!, conns[1]!, { ...settings, targetBytes: 3 * fileBytes }, quietLog),
      ]);
      // Both planned on the same snapshot; a replace whose inputs the other took is not committed.
      const committed = results[0].compactions + results[1].compactions;
      expect(committed).toBeGreaterThan(0);
      expect(await snapshotsOf(storage, 'replace')).toBe(committed);
      expect(results[0].stale + results[1].stale).toBeGreaterThan(0);
      expect(await totals()).toEqual({ rows: 2000, distinct: 2000 });

      // Sixteen minutes on, with a retention of nothing: every snapshot but the current one
      // expires, and the inputs and the race's losing outputs leave the store.
      const later = Date.now() + 16 * 60_000;
      expect(await expireSnapshots(storage, { snapshotRetentionMs: 0 }, later)).toBeGreaterThan(0);
      const swept = await maintainTable(storage, { graceMs: 0, snapshotRetentionMs: 0, historyRetentionMs: 90 * DAY_MS }, later);
      expect(swept.dataFiles).toBeGreaterThanOrEqual(8);
      const live = await currentFiles(storage);
      const listed = (await storage.list('drones/telemetry/v1/')).map((o) => o.key).filter((k) => k.endsWith('.parquet')).sort();
      expect(listed).toEqual(live.map((f) => f.key).sort());
      expect(await totals()).toEqual({ rows: 2000, distinct: 2000 });
    } finally {
      for (const c of conns) c.closeSync();
      await storage.close();
      await other.close();
    }
  });
});
