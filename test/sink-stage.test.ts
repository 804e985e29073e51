import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { DuckDBInstance, DuckDBLogicalType, DuckDBTypeId } from '@duckdb/node-api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LAKE_COLUMNS } from '../proto/columns';
import { GPS_FIX_NAMES } from '../proto/schema';
import { MICROS_PER_HOUR } from '../proto/time';
import { GpsFix, type TelemetryPoint } from '../proto/types';
import { closeStageBuffer, createStageBuffer, recordBatch, sealStageBuffer, stagedBytes, type StageBuffer } from '../sink/stage';
import { commitOrder, dictionaryRanks } from '../sink/stage-order';
import { enumIndexBytes, lakeRowsSql, registerStageScan } from '../sink/stage-scan';
import { fieldIdByName } from '../sink/table/schema';
import { localStorage } from '../sink/storage';
import { STAGING_PREFIX } from '../sink/layout';
import { writeFiles } from '../sink/write-files';
import { cruisePoint, stageAll, taken } from './helpers';

// The sink's staging step: points of decoded batches into typed arrays, read back by DuckDB
// as lake rows through the buffer's scan. Real DuckDB, as the sink runs it.

const HOUR = Math.floor(Date.UTC(2026, 0, 2, 3) * 1000 / MICROS_PER_HOUR);
const T0 = HOUR * MICROS_PER_HOUR;

describe('sink step: stage', () => {
  let db: DuckDBInstance;
  beforeAll(async () => {
    db = await DuckDBInstance.create(':memory:');
    await registerStageScan(db);
  });
  afterAll(() => db.closeSync());

  it('stages points as the lake rows they become: strings, enums, times, nulls, stream and gateway', async () => {
    const buffer = createStageBuffer('stage_rows');
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
         FROM (${lakeRowsSql(buffer, 0)})`,
      );
      expect(reader.getRowObjectsJson()).toEqual([
        { drone_id: 'd-1', seq: '10', ts: '2026-01-02T03:00:01.500000', lat: 47.0001, battery_pct: 70, gps_fix: '3d', flight_state: 'cruise', armed: true, stream: '77', gateway_id: 'gw-st', ingested: '03:00:09' },
        { drone_id: 'd-2', seq: '3', ts: '2026-01-02T03:00:02.000001', lat: null, battery_pct: null, gps_fix: 'rtk_fixed', flight_state: null, armed: null, stream: '77', gateway_id: 'gw-st', ingested: '03:00:09' },
      ]);
      expect(buffer.points).toBe(2);
      expect(buffer.files.map((f) => [f.hour, f.to - f.from])).toEqual([[HOUR, 2]]);
      expect([...buffer.batches]).toEqual([['gw-st', [4, 5]], ['gw-other', [1]]]);
    } finally {
      conn.closeSync();
      closeStageBuffer(buffer);
    }
  });

  it('stages more points than one DuckDB chunk and one block, over two hours, each counted in its hour, a point in its own stream', async () => {
    const buffer = createStageBuffer('stage_many');
    const conn = await db.connect();
    try {
      // Past the first block of 2^14 rows, within one batch.
      const n = 20_000;
      // The first 3,000 points in HOUR, the rest in the next hour.
      const points = Array.from({ length: n }, (_, i) => cruisePoint(`d-${i % 7}`, i, T0 + (i < 3_000 ? i : MICROS_PER_HOUR + i)));
      points[0] = { ...points[0]!, stream: 6 };
      const batch = taken('gw-st', 1, 5, points, T0);
      const before = stagedBytes(buffer);
      stageAll(buffer, batch, T0);
      expect(stagedBytes(buffer)).toBeGreaterThan(before + n * 100);
      sealStageBuffer(buffer);
      expect(buffer.files.map(({ hour, from, to }) => ({ hour, from, to }))).toEqual([{ hour: HOUR, from: 0, to: 3_000 }, { hour: HOUR + 1, from: 3_000, to: n }]);
      const count = async (file: number) =>
        (await conn.runAndReadAll(`SELECT count(*)::INTEGER AS n, count(DISTINCT drone_id)::INTEGER AS drones, sum(seq)::BIGINT AS seqs, count(*) FILTER (stream = 6)::INTEGER AS own FROM (${lakeRowsSql(buffer, file)})`)).getRowObjectsJson()[0];
      expect(await count(0)).toEqual({ n: 3_000, drones: 7, seqs: String((2_999 * 3_000) / 2), own: 1 });
      expect(await count(1)).toEqual({ n: n - 3_000, drones: 7, seqs: String(((n - 1) * n) / 2 - (2_999 * 3_000) / 2), own: 0 });
    } finally {
      conn.closeSync();
      closeStageBuffer(buffer);
    }
  });

  it('reads back every row whole past several of the scan\'s windows: values, nulls and strings where the order puts them', async () => {
    const buffer = createStageBuffer('stage_windows');
    const conn = await db.connect();
    try {
      // 60 batches of 50 drones' 50 points each, a drone's points side by side: the order
      // reads runs of 50 from every batch. The last 12 batches fall in the next hour, so the
      // second file starts at position 120,000 of the order, past one window of 65,536 rows.
      for (let b = 0; b < 60; b++) {
        const points: TelemetryPoint[] = [];
        for (let d = 0; d < 50; d++) {
          for (let k = 0; k < 50; k++) {
            const seq = b * 50 + k;
            points.push({
              drone_id: `d-${d}`,
              seq,
              ts: T0 + seq * 1000 + (b >= 48 ? MICROS_PER_HOUR : 0),
              satellites: d,
              ...((seq + d) % 7 === 0 ? {} : { lat: d + seq / 1e5 }),
              ...(seq % 3 === 0 ? { mission_id: `m-${d % 4}` } : {}),
              gps_fix: seq % 2 === 0 ? GpsFix.fix3d : GpsFix.rtkFixed,
            });
          }
        }
        stageAll(buffer, taken('gw-st', b, 5, points, T0), T0);
      }
      sealStageBuffer(buffer);
      expect(buffer.files.map(({ from, to }) => [from, to])).toEqual([[0, 120_000], [120_000, 150_000]]);
      const check = async (file: number) =>
        (await conn.runAndReadAll(
          `SELECT count(*)::INTEGER AS n,
             bool_and(drone_id = 'd-' || satellites) AS drones,
             bool_and((lat IS NULL) = ((seq + satellites) % 7 = 0) AND (lat IS NULL OR lat = satellites::DOUBLE + seq::DOUBLE / 1e5)) AS lats,
             count(*) FILTER (lat IS NULL)::INTEGER AS no_lat,
             bool_and((mission_id IS NULL) = (seq % 3 <> 0) AND (mission_id IS NULL OR mission_id = 'm-' || (satellites % 4))) AS missions,
             bool_and(gps_fix = CASE WHEN seq % 2 = 0 THEN '3d' ELSE 'rtk_fixed' END) AS fixes,
             bool_and(gateway_id = 'gw-st' AND stream = 5) AS batch
           FROM (${lakeRowsSql(buffer, file)})`,
        )).getRowObjectsJson()[0];
      const nullLats = [0, 0];
      for (let b = 0; b < 60; b++) for (let d = 0; d < 50; d++) for (let k = 0; k < 50; k++) if ((b * 50 + k + d) % 7 === 0) nullLats[b >= 48 ? 1 : 0]!++;
      expect(await check(0)).toEqual({ n: 120_000, drones: true, lats: true, no_lat: nullLats[0], missions: true, fixes: true, batch: true });
      expect(await check(1)).toEqual({ n: 30_000, drones: true, lats: true, no_lat: nullLats[1], missions: true, fixes: true, batch: true });
      // And in the files' order: by drone, then time.
      const [ordered] = (await conn.runAndReadAll(
        `SELECT bool_and(prev_drone IS NULL OR prev_drone < drone_id OR (prev_drone = drone_id AND prev_ts < ts)) AS ordered
         FROM (SELECT drone_id::VARCHAR AS drone_id, ts, lag(drone_id::VARCHAR) OVER () AS prev_drone, lag(ts) OVER () AS prev_ts FROM (${lakeRowsSql(buffer, 0)}))`,
      )).getRowObjectsJson();
      expect(ordered).toEqual({ ordered: true });
    } finally {
      conn.closeSync();
      closeStageBuffer(buffer);
    }
  });

  it('names strings through an ENUM of the values a file holds, at each index width DuckDB picks: 1, 2 and 4 bytes', async () => {
    // DuckDB's own rule, which enumIndexBytes follows, at the edges of each width.
    for (const [values, width] of [[255, 1], [256, 2], [65_535, 2], [65_536, 4]] as const) {
      const logical = DuckDBLogicalType.createEnum(Array.from({ length: values }, (_, i) => `v${i}`));
      expect([logical.internalTypeId, enumIndexBytes(values)]).toEqual([{ 1: DuckDBTypeId.UTINYINT, 2: DuckDBTypeId.USMALLINT, 4: DuckDBTypeId.UINTEGER }[width], width]);
    }
    const conn = await db.connect();
    try {
      // drone_id's ENUM holds each drone: 255, 256 and 65,536 values.
      for (const drones of [255, 256, 65_536]) {
        const buffer = createStageBuffer(`stage_enum_${drones}`);
        try {
          stageAll(buffer, taken('gw-st', 1, 5, Array.from({ length: drones }, (_, i) => ({ drone_id: `d-${i}`, seq: i, ts: T0 + i, gps_fix: i % 4 })), T0), T0);
          sealStageBuffer(buffer);
          expect(buffer.strings.length).toBe(drones + 1);
          const row = (await conn.runAndReadAll(
            `SELECT count(*)::INTEGER AS n, count(DISTINCT drone_id)::INTEGER AS drones, bool_and(drone_id = 'd-' || seq) AS named, count(DISTINCT gps_fix)::INTEGER AS fixes, bool_and(gateway_id = 'gw-st') AS gateway FROM (${lakeRowsSql(buffer, 0)})`,
          )).getRowObjectsJson()[0];
          expect(row).toEqual({ n: drones, drones, named: true, fixes: 4, gateway: true });
        } finally {
          closeStageBuffer(buffer);
        }
      }
    } finally {
      conn.closeSync();
    }
  });

  it('writes a file\'s string and enum columns with a dictionary and statistics of its own rows\' values, and a column of nulls as nulls', async () => {
    const buffer = createStageBuffer('stage_file_values');
    const conn = await db.connect();
    const dir = await mkdtemp(path.join(os.tmpdir(), 'stage-values-'));
    try {
      // Hour one: drones a-1 and a-2 with 3d fixes and no mission; hour two: z-9 on rtk_fixed
      // with a mission. The buffer's dictionary holds every string of both hours.
      stageAll(buffer, taken('gw-st', 1, 5, [
        { drone_id: 'a-2', seq: 1, ts: T0 + 1, gps_fix: GpsFix.fix3d },
        { drone_id: 'a-1', seq: 1, ts: T0 + 2, gps_fix: GpsFix.fix3d },
        { drone_id: 'z-9', seq: 1, ts: T0 + MICROS_PER_HOUR, gps_fix: GpsFix.rtkFixed, mission_id: 'm-7' },
      ], T0), T0);
      sealStageBuffer(buffer);
      expect(buffer.files.length).toBe(2);
      const stats = async (file: number) => {
        const out = path.join(dir, `f${file}.parquet`);
        await conn.run(`COPY (${lakeRowsSql(buffer, file)}) TO '${out}' (FORMAT parquet)`);
        const reader = await conn.runAndReadAll(
          `SELECT path_in_schema AS col, type, stats_min_value AS min, stats_max_value AS max, stats_null_count::INTEGER AS nulls FROM parquet_metadata('${out}') WHERE path_in_schema IN ('drone_id', 'gps_fix', 'mission_id', 'gateway_id') ORDER BY col`,
        );
        const rows = (await conn.runAndReadAll(`SELECT DISTINCT drone_id FROM '${out}' ORDER BY 1`)).getRows().map((r) => r[0]);
        return { columns: reader.getRowObjectsJson(), rows };
      };
      expect(await stats(0)).toEqual({
        columns: [
          { col: 'drone_id', type: 'BYTE_ARRAY', min: 'a-1', max: 'a-2', nulls: 0 },
          { col: 'gateway_id', type: 'BYTE_ARRAY', min: 'gw-st', max: 'gw-st', nulls: 0 },
          { col: 'gps_fix', type: 'BYTE_ARRAY', min: '3d', max: '3d', nulls: 0 },
          { col: 'mission_id', type: 'BYTE_ARRAY', min: null, max: null, nulls: 2 },
        ],
        rows: ['a-1', 'a-2'],
      });
      expect(await stats(1)).toEqual({
        columns: [
          { col: 'drone_id', type: 'BYTE_ARRAY', min: 'z-9', max: 'z-9', nulls: 0 },
          { col: 'gateway_id', type: 'BYTE_ARRAY', min: 'gw-st', max: 'gw-st', nulls: 0 },
          { col: 'gps_fix', type: 'BYTE_ARRAY', min: 'rtk_fixed', max: 'rtk_fixed', nulls: 0 },
          { col: 'mission_id', type: 'BYTE_ARRAY', min: 'm-7', max: 'm-7', nulls: 0 },
        ],
        rows: ['z-9'],
      });
      // As the sink writes the files: the manifest's bounds of each, which DuckDB does not
      // report for a column it writes from an ENUM.
      const storage = await localStorage(path.join(dir, 'lake'), STAGING_PREFIX);
      await mkdir(storage.stagingDir, { recursive: true });
      const { dataFiles } = await writeFiles(conn, buffer, storage, 'bounds');
      const bound = (bounds: Array<{ key: number; value: Buffer }> | null | undefined, name: string) => bounds?.find((b) => b.key === fieldIdByName.get(name))?.value.toString('utf8') ?? null;
      expect(dataFiles.map((f) => Object.fromEntries(['drone_id', 'gps_fix', 'mission_id', 'gateway_id'].map((c) => [c, [bound(f.lower_bounds, c), bound(f.upper_bounds, c)]])))).toEqual([
        { drone_id: ['a-1', 'a-2'], gps_fix: ['3d', '3d'], mission_id: [null, null], gateway_id: ['gw-st', 'gw-st'] },
        { drone_id: ['z-9', 'z-9'], gps_fix: ['rtk_fixed', 'rtk_fixed'], mission_id: ['m-7', 'm-7'], gateway_id: ['gw-st', 'gw-st'] },
      ]);
    } finally {
      conn.closeSync();
      closeStageBuffer(buffer);
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("orders a buffer's rows right in the order array a larger, closed buffer left behind", async () => {
    const conn = await db.connect();
    const rowsOf = async (buffer: StageBuffer, file: number) =>
      (await conn.runAndReadAll(`SELECT drone_id, seq::INTEGER AS seq FROM (${lakeRowsSql(buffer, file)})`)).getRowObjectsJson();
    try {
      // Over two hours, so its order goes through the sort's scratch too; then closed.
      const big = createStageBuffer('stage_order_big');
      stageAll(big, taken('gw-st', 1, 5, Array.from({ length: 5_000 }, (_, i) => cruisePoint(`d-${i % 3}`, i, T0 + (i % 2 ? MICROS_PER_HOUR : 0) + i)), T0), T0);
      sealStageBuffer(big);
      expect(big.files.map((f) => f.to - f.from)).toEqual([2_500, 2_500]);
      closeStageBuffer(big);
      // Fewer rows, arriving in reverse: each must come from this buffer, in the files' order.
      const small = createStageBuffer('stage_order_small');
      try {
        stageAll(small, taken('gw-st', 2, 5, Array.from({ length: 6 }, (_, i) => cruisePoint(`e-${i % 2}`, 100 - i, T0 + 1_000 - i)), T0), T0);
        sealStageBuffer(small);
        expect(await rowsOf(small, 0)).toEqual([
          { drone_id: 'e-0', seq: 96 }, { drone_id: 'e-0', seq: 98 }, { drone_id: 'e-0', seq: 100 },
          { drone_id: 'e-1', seq: 95 }, { drone_id: 'e-1', seq: 97 }, { drone_id: 'e-1', seq: 99 },
        ]);
      } finally {
        closeStageBuffer(small);
      }
    } finally {
      conn.closeSync();
    }
  });

  it('reads a null as null in blocks that an earlier buffer filled with other strings', async () => {
    const conn = await db.connect();
    try {
      const first = createStageBuffer('stage_spare_1');
      stageAll(first, taken('gw-st', 1, 5, Array.from({ length: 300 }, (_, i) => ({ ...cruisePoint(`d-${i}`, i, T0 + i), mission_id: `m-${i}` })), T0), T0);
      sealStageBuffer(first);
      // Its blocks go to the spares, and the next buffer takes them with their values.
      closeStageBuffer(first);
      const second = createStageBuffer('stage_spare_2');
      try {
        // Odd points carry a mission (a string), even ones an altitude (a double).
        stageAll(second, taken('gw-st', 2, 5, Array.from({ length: 300 }, (_, i) => ({ drone_id: 'd-0', seq: 1000 + i, ts: T0 + i, ...(i % 2 ? { mission_id: 'm-odd' } : { alt_m: i }) })), T0), T0);
        sealStageBuffer(second);
        const row = (await conn.runAndReadAll(`SELECT count(*)::INTEGER AS n, count(mission_id)::INTEGER AS missions, count(DISTINCT mission_id)::INTEGER AS distinct_missions, count(gps_fix)::INTEGER AS fixes, count(alt_m)::INTEGER AS alts, bool_and(alt_m = seq - 1000) AS alt_exact, count(*) FILTER (alt_m IS NULL AND seq % 2 = 0)::INTEGER AS even_without FROM (${lakeRowsSql(second, 0)})`)).getRowObjectsJson()[0];
        expect(row).toEqual({ n: 300, missions: 150, distinct_missions: 1, fixes: 0, alts: 150, alt_exact: true, even_without: 0 });
      } finally {
        closeStageBuffer(second);
      }
    } finally {
      conn.closeSync();
    }
  });

  it('fails the scan, in one line, on a staged enum index past the enum\'s names, rather than read past them', async () => {
    const buffer = createStageBuffer('stage_bad_enum');
    const conn = await db.connect();
    try {
      stageAll(buffer, taken('gw-st', 1, 5, [cruisePoint('d-1', 1, T0)], T0), T0);
      sealStageBuffer(buffer);
      const fix = LAKE_COLUMNS.findIndex((c) => c.name === 'gps_fix');
      buffer.blocks[0]!.values[fix]![0] = GPS_FIX_NAMES.length;
      await expect(conn.run(`SELECT count(*) FROM (${lakeRowsSql(buffer, 0)})`)).rejects.toThrow(`dronelake_staged: staged column gps_fix holds an index past its ${GPS_FIX_NAMES.length} values`);
    } finally {
      conn.closeSync();
      closeStageBuffer(buffer);
    }
  });

  it("refuses a scan of a buffer that is not sealed, or is gone, in one line", async () => {
    const buffer = createStageBuffer('stage_refused');
    const conn = await db.connect();
    try {
      stageAll(buffer, taken('gw-st', 1, 5, [cruisePoint('d-1', 1, T0)], T0), T0);
      await expect(conn.run(`SELECT count(*) FROM (${lakeRowsSql(buffer, 0)})`)).rejects.toThrow(`dronelake_staged: no sealed stage buffer ${buffer.id} with a file 0`);
      sealStageBuffer(buffer);
      await expect(conn.run(`SELECT count(*) FROM (${lakeRowsSql(buffer, 1)})`)).rejects.toThrow(`no sealed stage buffer ${buffer.id} with a file 1`);
      closeStageBuffer(buffer);
      await expect(conn.run(`SELECT count(*) FROM (${lakeRowsSql(buffer, 0)})`)).rejects.toThrow(`no sealed stage buffer ${buffer.id} with a file 0`);
    } finally {
      conn.closeSync();
    }
  });
});

describe('sink step: the files\' order', () => {
  it('ranks strings in byte order, as DuckDB orders VARCHAR', () => {
    const strings = ['d-2', 'd-10', 'D-9', 'a', 'é', 'z', 'd-1'];
    const ranks = dictionaryRanks(strings);
    const byRank = strings.slice().sort((a, b) => ranks[strings.indexOf(a)]! - ranks[strings.indexOf(b)]!);
    expect(byRank).toEqual(['D-9', 'a', 'd-1', 'd-10', 'd-2', 'z', 'é']);
  });

  it.each([
    ['three hours', T0 - MICROS_PER_HOUR / 2, 360_000, [HOUR - 1, HOUR, HOUR + 1]],
    ['one hour', T0 + 10_000_000, 150_000, [HOUR]],
  ] as const)('orders rows by hour, then string, then time, ties in arrival order, against a plain sort: %s', (_, start, step, hours) => {
    let seed = 11;
    const random = () => ((seed = (seed * 48271) % 2147483647) / 2147483647);
    const strings = ['d-3', 'd-1', 'gw', 'd-2', 'd-10'];
    const n = 20_000;
    const keys = new Uint32Array(n);
    const times = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      keys[i] = [0, 1, 3, 4][Math.floor(random() * 4)]!;
      // Mostly rising, sometimes back in time, now and then a tie.
      times[i] = start + Math.floor(i * step + (random() < 0.1 ? -random() * 5e6 : 0)) + (random() < 0.05 ? 0 : i % 3);
    }
    const ranks = dictionaryRanks(strings);
    // Two blocks of 2^14 rows and a part of a third, as a buffer holds them.
    const blocks = [0, 1, 2].map((b) => b * 2 ** 14);
    const { order, files } = commitOrder(blocks.map((b) => keys.subarray(b, b + 2 ** 14)), blocks.map((b) => times.subarray(b, b + 2 ** 14)), 14, n, ranks);
    const hour = (i: number) => Math.floor(times[i]! / MICROS_PER_HOUR);
    const expected = Array.from({ length: n }, (_, i) => i).sort((a, b) => hour(a) - hour(b) || ranks[keys[a]!]! - ranks[keys[b]!]! || times[a]! - times[b]! || a - b);
    expect(Array.from(order)).toEqual(expected);
    expect(files.map((f) => f.hour)).toEqual(hours);
    expect(files.map((f) => f.to - f.from).reduce((a, b) => a + b, 0)).toBe(n);
    for (const f of files) {
      const rows = expected.slice(f.from, f.to);
      expect(rows.every((i) => hour(i) === f.hour)).toBe(true);
      expect([f.minTs, f.maxTs]).toEqual([Math.min(...rows.map((i) => times[i]!)), Math.max(...rows.map((i) => times[i]!))]);
    }
  });

  it.each([
    // Packed into one number a time, these would pass 2^53: sorted by comparison instead.
    ['times decades apart', (i: number) => T0 + (i % 3 === 0 ? 2 ** 50 : 0) - (i % 5) * 1_000],
    // Not whole microseconds, which validation never stages: still in order, not garbled.
    ['a time that is not whole', (i: number) => T0 + (i % 4) * 1_000 + (i === 7 ? 0.5 : 0)],
  ] as const)('orders an out-of-order run against a plain sort when its times cannot be packed: %s', (_, timeOf) => {
    const n = 64;
    const keys = Uint32Array.from({ length: n }, (_, i) => i % 2);
    const times = Float64Array.from({ length: n }, (_, i) => timeOf(n - i));
    const ranks = dictionaryRanks(['d-b', 'd-a']);
    const { order } = commitOrder([keys], [times], 14, n, ranks);
    const hour = (i: number) => Math.floor(times[i]! / MICROS_PER_HOUR);
    const expected = Array.from({ length: n }, (_, i) => i).sort((a, b) => hour(a) - hour(b) || ranks[keys[a]!]! - ranks[keys[b]!]! || times[a]! - times[b]! || a - b);
    expect(Array.from(order)).toEqual(expected);
  });
});
