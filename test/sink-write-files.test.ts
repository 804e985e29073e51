import { mkdir, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { DuckDBInstance, type DuckDBConnection } from '@duckdb/node-api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MICROS_PER_HOUR } from '../proto/time';
import type { TelemetryPoint } from '../proto/types';
import { commitFileOptions, PARQUET_WRITE_OPTIONS, writeFiles } from '../sink/write-files';
import { latencyBucket, latencyCounter, LatencyHistogram } from '../sink/latency';
import { commitTag, partitionOfHour, STAGING_PREFIX } from '../sink/layout';
import { createStageBuffer, type StageBuffer } from '../sink/stage';
import { registerStageScan } from '../sink/stage-scan';
import { localStorage, type LakeStorage } from '../sink/storage';
import { cruisePoint, duck, prng, stageAll, taken, tempDir } from './helpers';

// The sink's Parquet step: one sorted ZSTD file per event-time hour of a commit, published
// create-only under the commit's name (invariant 4: a file is whole before its name shows).
// Real DuckDB, real files, read back by a second DuckDB.

const HOUR = Math.floor(Date.UTC(2026, 0, 2, 3) * 1000 / MICROS_PER_HOUR);
const T0 = HOUR * MICROS_PER_HOUR;

describe('sink step: commit (Parquet)', () => {
  let db: DuckDBInstance;
  let conn: DuckDBConnection;
  let lake: string;
  let storage: LakeStorage;
  let remove: () => Promise<void>;
  let table = 0;
  beforeAll(async () => {
    ({ dir: lake, remove } = await tempDir('sink-write-files'));
    storage = await localStorage(lake, STAGING_PREFIX);
    await mkdir(storage.stagingDir, { recursive: true });
    db = await DuckDBInstance.create(':memory:');
    await registerStageScan(db);
    conn = await db.connect();
    await conn.run("SET TimeZone = 'UTC'");
  });
  afterAll(async () => {
    conn.closeSync();
    db.closeSync();
    await remove();
  });

  /** A buffer holding `points`, staged as the sink stages a decoded batch. */
  function staged(points: TelemetryPoint[]): StageBuffer {
    const buffer = createStageBuffer(`commit_${table++}`);
    stageAll(buffer, taken('gw-c', 1, 9, points, T0), T0);
    return buffer;
  }

  // Two hours, drones and times out of order: each file must come out sorted by (drone_id, ts).
  const POINTS = [
    cruisePoint('d-2', 1, T0 + 30_000_000),
    cruisePoint('d-1', 2, T0 + 20_000_000),
    cruisePoint('d-1', 1, T0 + 10_000_000),
    cruisePoint('d-1', 3, T0 + MICROS_PER_HOUR + 5),
  ];

  it('writes one sorted file per hour under the commit tag, and reports what each holds', async () => {
    const tag = commitTag('sink-a', 1);
    const latency = new LatencyHistogram();
    const { files, dataFiles } = await writeFiles(conn, await staged(POINTS), storage, tag, latency);
    expect(tag).toBe('sink-a-0000000001');
    expect(files.map(({ key, rows, min_ts, max_ts }) => ({ key, rows, min_ts, max_ts }))).toEqual([
      { key: `${partitionOfHour(HOUR)}/part-sink-a-0000000001.parquet`, rows: 3, min_ts: T0 + 10_000_000, max_ts: T0 + 30_000_000 },
      { key: `${partitionOfHour(HOUR + 1)}/part-sink-a-0000000001.parquet`, rows: 1, min_ts: T0 + MICROS_PER_HOUR + 5, max_ts: T0 + MICROS_PER_HOUR + 5 },
    ]);
    expect(files[0]!.key).toBe('drones/telemetry/v1/date=2026-01-02/hour=03/part-sink-a-0000000001.parquet');
    expect(dataFiles.map((f) => f.record_count)).toEqual([3, 1]);
    expect(latency.total).toBe(4);
    // Each file as a reader sees it, in file order.
    const first = await duck(`SELECT drone_id, seq::INTEGER AS seq, stream::INTEGER AS stream, gateway_id FROM read_parquet('${path.join(lake, files[0]!.key)}')`);
    expect(first).toEqual([
      { drone_id: 'd-1', seq: 1, stream: 9, gateway_id: 'gw-c' },
      { drone_id: 'd-1', seq: 2, stream: 9, gateway_id: 'gw-c' },
      { drone_id: 'd-2', seq: 1, stream: 9, gateway_id: 'gw-c' },
    ]);
    const meta = await duck(`SELECT DISTINCT compression FROM parquet_metadata('${path.join(lake, files[1]!.key)}')`);
    expect(meta).toEqual([{ compression: 'ZSTD' }]);
    // Nothing is left in staging: each file went through it and was linked into place.
    expect(await readdir(storage.stagingDir)).toEqual([]);
  });

  it('sorts a commit of many segments by (drone_id, ts) as DuckDB orders them: jittered times, a drone whose times run backwards, nulls kept', async () => {
    // 40,000 points in batches of 1,000, as gateways send them: each batch holds a few points
    // of every drone. Names whose order is not their numbers' (d-10 before d-2, upper case
    // before lower case), times jittered within a drone, and one drone sent newest first.
    const drones = [...Array.from({ length: 30 }, (_, i) => `d-${i}`), 'D-9', 'Z', 'a', 'd_', 'd-', 'd-1x', 'backwards'];
    const n = 40_000;
    const per = Math.ceil(n / drones.length);
    let seed = 7;
    const random = () => ((seed = (seed * 48271) % 2147483647) / 2147483647);
    const points: TelemetryPoint[] = [];
    for (let k = 0; k < per; k++) {
      for (const [d, drone] of drones.entries()) {
        if (points.length === n) break;
        // Three seconds apart, jittered by up to three steps (so a drone's points arrive out of
        // order), distinct by the microseconds; half an hour in, the next hour begins.
        const step = (drone === 'backwards' ? per - k : k) + Math.floor(random() * 4);
        const ts = T0 + MICROS_PER_HOUR / 2 + step * 3_000_000 + k * 10 + d;
        points.push(k % 11 === 0 ? { drone_id: drone, seq: k, ts } : cruisePoint(drone, k, ts));
      }
    }
    const buffer = createStageBuffer(`commit_${table++}`);
    for (let b = 0; b * 1000 < n; b++) stageAll(buffer, taken('gw-c', b, 9, points.slice(b * 1000, (b + 1) * 1000), T0), T0);
    const latency = new LatencyHistogram();
    const { files } = await writeFiles(conn, buffer, storage, commitTag('sink-sort', 1), latency);
    expect(files.map((f) => f.rows).reduce((a, b) => a + b, 0)).toBe(n);
    expect(files.length).toBe(2);
    expect(latency.total).toBe(n);
    for (const file of files) {
      const source = `read_parquet('${path.join(lake, file.key)}')`;
      // The file's own order, against DuckDB's ORDER BY of the same rows.
      const asWritten = await duck(`SELECT drone_id, ts::VARCHAR AS ts, seq::INTEGER AS seq, lat FROM ${source}`);
      const sorted = await duck(`SELECT drone_id, ts::VARCHAR AS ts, seq::INTEGER AS seq, lat FROM ${source} ORDER BY drone_id, ts`);
      expect(asWritten.length).toBe(file.rows);
      expect(asWritten).toEqual(sorted);
      const [bounds] = await duck(`SELECT epoch_us(min(ts))::DOUBLE AS min_ts, epoch_us(max(ts))::DOUBLE AS max_ts FROM ${source}`);
      expect(bounds).toEqual({ min_ts: file.min_ts, max_ts: file.max_ts });
    }
    // Every point once, the nulls of the points sent without a position kept.
    const all = files.map((f) => `'${path.join(lake, f.key)}'`).join(', ');
    expect(await duck(`SELECT count(*)::INTEGER AS n, count(DISTINCT (drone_id, seq))::INTEGER AS keys, count(*) FILTER (lat IS NULL)::INTEGER AS no_lat FROM read_parquet([${all}])`)).toEqual([
      { n, keys: n, no_lat: points.filter((p) => p.lat === undefined).length },
    ]);
  });

  it("replaces what a crashed run left under the commit's names", async () => {
    const tag = commitTag('sink-b', 7);
    const key = `${partitionOfHour(HOUR)}/part-${tag}.parquet`;
    await mkdir(path.dirname(path.join(lake, key)), { recursive: true });
    await writeFile(path.join(lake, key), 'half a file from a crashed run');
    const { files } = await writeFiles(conn, await staged(POINTS.slice(0, 2)), storage, tag);
    expect(files.map((f) => f.key)).toEqual([key]);
    expect(await duck(`SELECT count(*)::INTEGER AS n FROM read_parquet('${path.join(lake, key)}')`)).toEqual([{ n: 2 }]);
  });

  it('removes the files it published when a later one fails, and says why', async () => {
    const tag = commitTag('sink-c', 3);
    const firstKey = `${partitionOfHour(HOUR)}/part-${tag}.parquet`;
    // A directory where the second hour's file goes: link(2) and unlink(2) both refuse it.
    const blocked = path.join(lake, `${partitionOfHour(HOUR + 1)}/part-${tag}.parquet`);
    await mkdir(path.join(blocked, 'inside'), { recursive: true });
    await expect(writeFiles(conn, await staged(POINTS), storage, tag)).rejects.toThrow(/part-sink-c-0000000003\.parquet/);
    await expect(readdir(path.dirname(path.join(lake, firstKey)))).resolves.not.toContain(path.basename(firstKey));
    expect(await readdir(storage.stagingDir)).toEqual([]);
  });

  // commitFileOptions keeps DuckDB's own limit for a small file, which rests on DuckDB's
  // default being a fifth of a row group's rows: pinned here against DuckDB itself.
  it("limits a large file's dictionaries to 4,096 values and leaves a small file DuckDB's default, a fifth of its rows", async () => {
    expect(commitFileOptions(300)).toBe('DICTIONARY_SIZE_LIMIT 60, COMPRESSION_LEVEL 1');
    expect(commitFileOptions(20_480)).toBe('DICTIONARY_SIZE_LIMIT 4096, COMPRESSION_LEVEL 1');
    expect(commitFileOptions(5_000_000)).toBe('DICTIONARY_SIZE_LIMIT 4096, COMPRESSION_LEVEL 1');
    const file = path.join(lake, 'dictionaries.parquet');
    /** The encodings of column x of `rows` rows holding `distinct` values, written with `options`. */
    const encodings = async (rows: number, distinct: number, options: string) => {
      await conn.run(`COPY (SELECT (i % ${distinct})::DOUBLE AS x FROM range(${rows}) r(i)) TO '${file}' (${PARQUET_WRITE_OPTIONS}${options})`);
      const [row] = await duck(`SELECT encodings FROM parquet_metadata('${file}') LIMIT 1`);
      return String(row!.encodings);
    };
    for (const rows of [300, 10_000, 122_880]) {
      const fifth = rows / 5;
      expect(await encodings(rows, fifth, '')).toBe('RLE_DICTIONARY');
      expect(await encodings(rows, fifth + 1, '')).toBe('BYTE_STREAM_SPLIT');
      expect(await encodings(rows, fifth, `, ${commitFileOptions(rows)}`)).toBe(fifth <= 4096 ? 'RLE_DICTIONARY' : 'BYTE_STREAM_SPLIT');
      expect(await encodings(rows, fifth + 1, `, ${commitFileOptions(rows)}`)).toBe('BYTE_STREAM_SPLIT');
    }
    expect(await encodings(122_880, 4096, `, ${commitFileOptions(122_880)}`)).toBe('RLE_DICTIONARY');
    expect(await encodings(122_880, 4097, `, ${commitFileOptions(122_880)}`)).toBe('BYTE_STREAM_SPLIT');
  });
});

describe('sink step: commit latency', () => {
  it('counts each point in the bucket latencyBucket gives it, at and either side of every bound, in runs of any order', () => {
    const committedAt = 1_780_000_000_123_456;
    // Every bound of buckets 0-80 (1 ms to 17 minutes), a microsecond either side, and noise.
    const times: number[] = [committedAt + 5_000_000, committedAt];
    for (let b = 1; b <= 80; b++) {
      const bound = committedAt - Math.round(1000 * 2 ** (b / 4));
      times.push(bound - 1, bound, bound + 1);
    }
    const random = prng(5);
    for (let i = 0; i < 5_000; i++) times.push(committedAt - Math.floor(random() ** 3 * 3_600_000_000));
    const expected = new LatencyHistogram();
    for (const t of times) expected.add(latencyBucket(committedAt, t), 1);
    // In order, backwards, and shuffled, in runs of three arrays.
    for (const order of [times, [...times].reverse(), [...times].sort(() => random() - 0.5)]) {
      const latency = new LatencyHistogram();
      const count = latencyCounter(latency, committedAt);
      const third = Math.floor(order.length / 3);
      count(Float64Array.from(order), 0, third);
      count(order, third, 2 * third);
      count(Float64Array.from(order.slice(2 * third)), 0, order.length - 2 * third);
      expect(latency.total).toBe(times.length);
      expect(latency.counts).toEqual(expected.counts);
    }
  });
});

