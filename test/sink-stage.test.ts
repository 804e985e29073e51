import { DuckDBInstance } from '@duckdb/node-api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MICROS_PER_HOUR } from '../proto/time';
import { GpsFix, type TelemetryPoint } from '../proto/types';
import { closeStageBuffer, createStageBuffer, lakeRowsSql, recordBatch, sealStageBuffer, stagedBytes, type StageBuffer } from '../sink/stage';
import { cruisePoint, stageAll, taken } from './helpers';

// The sink's staging step: points of decoded batches into an in-memory DuckDB table, read
// back as lake rows. Real DuckDB, as the sink runs it.

const HOUR = Math.floor(Date.UTC(2026, 0, 2, 3) * 1000 / MICROS_PER_HOUR);
const T0 = HOUR * MICROS_PER_HOUR;

describe('sink step: stage', () => {
  let db: DuckDBInstance;
  beforeAll(async () => {
    db = await DuckDBInstance.create(':memory:');
  });
  afterAll(() => db.closeSync());

  it('stages points as the lake rows they become: strings, enums, times, nulls, stream and gateway', async () => {
    const buffer = await createStageBuffer(db, 'stage_rows');
    const conn = await db.connect();
    try {
      const batch = taken('gw-st', 4, 77, [cruisePoint('d-1', 10, T0 + 1_500_000), { drone_id: 'd-2', seq: 3, ts: T0 + 2_000_001, gps_fix: GpsFix.rtkFixed }], T0);
      stageAll(buffer, batch, T0 + 9_000_000);
      recordBatch(buffer, 'gw-st', 4);
      recordBatch(buffer, 'gw-st', 5);
      recordBatch(buffer, 'gw-other', 1);
      sealStageBuffer(buffer);
      await conn.run("SET TimeZone = 'UTC'");
      const reader = await conn.runAndReadAll(
        `SELECT drone_id, seq, strftime(ts, '%Y-%m-%dT%H:%M:%S.%f') AS ts, lat, battery_pct, gps_fix, flight_state, armed, stream, gateway_id, strftime(ingested_at, '%H:%M:%S') AS ingested
         FROM (${lakeRowsSql(buffer, T0, T0 + MICROS_PER_HOUR)}) ORDER BY drone_id`,
      );
      expect(reader.getRowObjectsJson()).toEqual([
        { drone_id: 'd-1', seq: '10', ts: '2026-01-02T03:00:01.500000', lat: 47.0001, battery_pct: 70, gps_fix: '3d', flight_state: 'cruise', armed: true, stream: '77', gateway_id: 'gw-st', ingested: '03:00:09' },
        { drone_id: 'd-2', seq: '3', ts: '2026-01-02T03:00:02.000001', lat: null, battery_pct: null, gps_fix: 'rtk_fixed', flight_state: null, armed: null, stream: '77', gateway_id: 'gw-st', ingested: '03:00:09' },
      ]);
      expect(buffer.points).toBe(2);
      expect([...buffer.hours]).toEqual([[HOUR, 2]]);
      expect([...buffer.batches]).toEqual([['gw-st', [4, 5]], ['gw-other', [1]]]);
    } finally {
      conn.closeSync();
      closeStageBuffer(buffer);
    }
  });

  it('stages more points than one DuckDB chunk, over two hours, each counted in its hour, a point in its own stream', async () => {
    const buffer = await createStageBuffer(db, 'stage_many');
    const conn = await db.connect();
    try {
      const n = 5_000;
      // The first 3,000 points in HOUR, the rest in the next hour.
      const points = Array.from({ length: n }, (_, i) => cruisePoint(`d-${i % 7}`, i, T0 + (i < 3_000 ? i : MICROS_PER_HOUR + i)));
      points[0] = { ...points[0]!, stream: 6 };
      const batch = taken('gw-st', 1, 5, points, T0);
      const before = stagedBytes(buffer);
      stageAll(buffer, batch, T0);
      expect(stagedBytes(buffer)).toBeGreaterThan(before + n * 100);
      sealStageBuffer(buffer);
      expect([...buffer.hours].sort()).toEqual([[HOUR, 3_000], [HOUR + 1, 2_000]]);
      const count = async (from: number, to: number) =>
        (await conn.runAndReadAll(`SELECT count(*)::INTEGER AS n, count(DISTINCT drone_id)::INTEGER AS drones, sum(seq)::BIGINT AS seqs, count(*) FILTER (stream = 6)::INTEGER AS own FROM (${lakeRowsSql(buffer, from, to)})`)).getRowObjectsJson()[0];
      expect(await count(T0, T0 + MICROS_PER_HOUR)).toEqual({ n: 3_000, drones: 7, seqs: String((2_999 * 3_000) / 2), own: 1 });
      expect(await count(T0 + MICROS_PER_HOUR, T0 + 2 * MICROS_PER_HOUR)).toEqual({ n: 2_000, drones: 7, seqs: String((4_999 * 5_000) / 2 - (2_999 * 3_000) / 2), own: 0 });
    } finally {
      conn.closeSync();
      closeStageBuffer(buffer);
    }
  });
});
