import { existsSync, readFileSync } from 'node:fs';
import { mkdir, stat } from 'node:fs/promises';
import path from 'node:path';
import type { DuckDBConnection } from '@duckdb/node-api';
import { MavlinkScanner, detectFormat } from '../agent/mavlink/scanner';
import { MavlinkTelemetry } from '../agent/mavlink/telemetry';
import { SORT_COLUMNS } from '../proto/columns';
import type { TelemetryPoint } from '../proto/types';
import { PARQUET_WRITE_OPTIONS, writeFiles } from '../sink/write-files';
import { COMPACTED_ROW_GROUP_ROWS } from '../sink/compactor';
import { STAGING_PREFIX } from '../sink/layout';
import { sqlString } from '../sink/sql';
import { createStageBuffer, stageDictIds, stageRows } from '../sink/stage';
import { ColumnarWriter, columnsOfPoints } from '../proto/columnar';
import { LEGACY_STREAM } from '../proto/stream';
import { localStorage } from '../sink/storage';
import { forEachSimulatedPoint } from './points';
import { figure, type BenchContext, type Figure } from './report';
import { sinkDatabase } from './stages';

const SECTION = 'lake';
const GATEWAY = 'gw-bench';
const DRONES = 100;
const HZ = 10;
// The real flight logs, beside the repository when they are there.
const TLOG = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../../shared/fixtures/mavlink/vtol.tlog');

/** Hands `emit` the points of a MAVLink log as the agent's MAVLink source makes them, one per GLOBAL_POSITION_INT. */
async function forEachFlightLogPoint(file: string, startUs: number, emit: (p: TelemetryPoint) => void): Promise<void> {
  const buf = readFileSync(file);
  const format = detectFormat(buf);
  if (format === null) throw new Error(`${file}: no MAVLink packet`);
  // The MAVLink source hands out one point object per vehicle, updated in place: each is copied.
  const telemetry = new MavlinkTelemetry({ droneId: (sysid) => `${GATEWAY}-sys${sysid}`, hz: 0, firstSeq: () => 0, emit: (p) => emit({ ...p }), canEmit: () => true, rawStartUs: startUs });
  new MavlinkScanner(format, telemetry.stats, (b, frame, tlogUs) => telemetry.onFrame(b, frame, tlogUs)).scan(buf, buf.length, true);
}

/**
 * The points as the sink stores them: one commit through the sink's writer, then merged
 * into one file sorted as the compactor sorts, with its write options and row groups.
 * `fill` hands its points to `stage`; each batch of 1,000 gets one ingestion time, 1.8 s
 * after its first point (the agent's linger, then a sink commit), as a sink gives it.
 */
async function compactedFile(
  ctx: BenchContext,
  conn: DuckDBConnection,
  name: string,
  fill: (stage: (p: TelemetryPoint) => void) => Promise<void>,
): Promise<{ file: string; points: number; writeSeconds: number }> {
  const buffer = createStageBuffer(`stage_${name}`);
  let points = 0;
  let batch: TelemetryPoint[] = [];
  // Staged as the sink stages a batch: its columns, with one ingestion time.
  const stageBatch = () => {
    if (batch.length === 0) return;
    const columns = columnsOfPoints(batch);
    const ids = stageDictIds(columns);
    const ingestedAt = batch[0]!.ts + 1_800_000;
    stageRows(buffer, columns, Uint32Array.from(batch, (_, i) => i), columns.count, ids, LEGACY_STREAM, GATEWAY, ingestedAt);
    batch = [];
  };
  await fill((p) => {
    points++;
    batch.push(p);
    if (batch.length === 1000) stageBatch();
  });
  stageBatch();
  const storage = await localStorage(path.join(ctx.tmp, `lake-${name}`), STAGING_PREFIX);
  await mkdir(storage.stagingDir, { recursive: true });
  const { files } = await writeFiles(conn, buffer, storage, `bench-${name}`);
  const inputs = files.map((f) => sqlString(path.join(storage.root, f.key))).join(', ');
  await conn.run(`CREATE TABLE ${name} AS SELECT * FROM read_parquet([${inputs}], hive_partitioning = false)`);
  const file = path.join(ctx.tmp, `${name}-compacted.parquet`);
  const started = performance.now();
  await conn.run(`COPY (SELECT * FROM ${name} ORDER BY ${SORT_COLUMNS.join(', ')}) TO ${sqlString(file)} (${PARQUET_WRITE_OPTIONS}, ROW_GROUP_SIZE ${COMPACTED_ROW_GROUP_ROWS})`);
  return { file, points, writeSeconds: (performance.now() - started) / 1000 };
}

/** Points per drone in one of wireBytes' batches: a long run of one drone, as a compacted file holds it. */
const WIRE_RUN = 10_000;

/**
 * The bytes the points' values carry, by the wire's own coding: wire v2 batches of one
 * drone's points in time order (as the lake sorts them), each column delta- or
 * delta-of-delta-coded at the decimal scale its values round-trip at, then deflate. Parquet
 * has no delta-of-delta and no scaled coding of doubles, so this is a floor the lake's
 * files are measured against, not an option for them. Returns the tee that takes each
 * point, and the bytes per point so far.
 */
function wireBytes(): { take: (p: TelemetryPoint) => void; bytesPerPoint: () => number } {
  const writers = new Map<string, ColumnarWriter>();
  let bytes = 0;
  let points = 0;
  const flush = (w: ColumnarWriter) => {
    points += w.pointCount;
    bytes += w.finish({ gatewayId: GATEWAY, batchSeq: 0, sentAt: 0 }).length;
  };
  return {
    take(p) {
      let w = writers.get(p.drone_id);
      if (!w) writers.set(p.drone_id, (w = new ColumnarWriter('deflate')));
      w.add(p);
      if (w.pointCount === WIRE_RUN) flush(w);
    },
    bytesPerPoint() {
      for (const w of writers.values()) if (w.pointCount > 0) flush(w);
      return bytes / points;
    },
  };
}

/** The same rows written another way: a SELECT list over table `name`, and COPY options. */
interface Variant {
  key: string;
  label: string;
  select: (columns: string[]) => string;
  options: string;
}

const cast = (types: Record<string, string>) => (columns: string[]) => columns.map((c) => (types[c] ? `${c}::${types[c]} AS ${c}` : c)).join(', ');
// What the values are on MAVLink's grids, exactly: degE7, mm, cm/s, cdeg, mV. Ground speed,
// |(vx, vy)|, lies on no grid and stays DOUBLE.
const EXACT_DECIMALS = cast({
  lat: 'DECIMAL(10,7)',
  lon: 'DECIMAL(10,7)',
  alt_m: 'DECIMAL(9,3)',
  rel_alt_m: 'DECIMAL(9,3)',
  vertical_speed_mps: 'DECIMAL(6,2)',
  heading_deg: 'DECIMAL(5,2)',
  battery_voltage_v: 'DECIMAL(6,3)',
});
// The same grids as integers in their MAVLink units (degE7, mm, cm/s, cdeg, mV): what a
// contract that stored the autopilot's integers would hold.
const GRID_UNITS: Record<string, number> = { lat: 1e7, lon: 1e7, alt_m: 1e3, rel_alt_m: 1e3, vertical_speed_mps: 1e2, heading_deg: 1e2, battery_voltage_v: 1e3 };
const GRID_INTEGERS = (columns: string[]) => columns.map((c) => (GRID_UNITS[c] ? `round(${c} * ${GRID_UNITS[c]})::INTEGER AS ${c}` : c)).join(', ');
const VARIANTS: readonly Variant[] = [
  // Takes ground speed into a dictionary on the fleet (0.987 of the bytes), but every column of a small file too.
  { key: 'dict64k', label: 'dictionaries of up to 65,536 values (DICTIONARY_SIZE_LIMIT)', select: () => '*', options: `${PARQUET_WRITE_OPTIONS}, DICTIONARY_SIZE_LIMIT 65536, ROW_GROUP_SIZE ${COMPACTED_ROW_GROUP_ROWS}` },
  { key: 'rg1m', label: 'row groups of 1,048,576 rows', select: () => '*', options: `${PARQUET_WRITE_OPTIONS}, ROW_GROUP_SIZE 1048576` },
  { key: 'v1', label: 'Parquet V1 encodings (dictionaries, else PLAIN)', select: () => '*', options: `FORMAT parquet, COMPRESSION zstd, PARQUET_VERSION V1, ROW_GROUP_SIZE ${COMPACTED_ROW_GROUP_ROWS}` },
  { key: 'zstd9', label: 'ZSTD level 9', select: () => '*', options: `${PARQUET_WRITE_OPTIONS}, COMPRESSION_LEVEL 9, ROW_GROUP_SIZE ${COMPACTED_ROW_GROUP_ROWS}` },
  { key: 'zstd19', label: 'ZSTD level 19', select: () => '*', options: `${PARQUET_WRITE_OPTIONS}, COMPRESSION_LEVEL 19, ROW_GROUP_SIZE ${COMPACTED_ROW_GROUP_ROWS}` },
  { key: 'decimal', label: 'exact DECIMAL for the columns on MAVLink grids (a contract change)', select: EXACT_DECIMALS, options: `${PARQUET_WRITE_OPTIONS}, ROW_GROUP_SIZE ${COMPACTED_ROW_GROUP_ROWS}` },
  { key: 'integer', label: 'INTEGER in MAVLink units for the columns on its grids (a contract change)', select: GRID_INTEGERS, options: `${PARQUET_WRITE_OPTIONS}, ROW_GROUP_SIZE ${COMPACTED_ROW_GROUP_ROWS}` },
];

/** Compressed bytes of each column of a Parquet file, summed over its row groups, largest first. */
async function columnBytes(conn: DuckDBConnection, file: string): Promise<Array<[string, number]>> {
  const rows = await conn.runAndReadAll(
    `SELECT path_in_schema, sum(total_compressed_size)::BIGINT FROM parquet_metadata(${sqlString(file)}) GROUP BY ALL ORDER BY 2 DESC, 1`,
  );
  return rows.getRows().map(([column, bytes]) => [String(column), Number(bytes)]);
}

/** Bytes per point of the lake's file and of each variant, and each variant's size as a ratio of the lake's. */
async function sizeFigures(ctx: BenchContext, conn: DuckDBConnection, name: string, written: { file: string; points: number; writeSeconds: number }, what: string): Promise<Figure[]> {
  const { file, points, writeSeconds } = written;
  const lakeBytes = (await stat(file)).size;
  const figures = [
    figure(SECTION, `${name}_bytes_per_point`, `${what}: compacted, as the lake writes it (${PARQUET_WRITE_OPTIONS})`, lakeBytes / points, 'bytes'),
    figure(SECTION, `${name}_write_seconds_per_million`, `${what}: writing the compacted file (sort and COPY), per million points`, (writeSeconds / points) * 1e6, 's'),
  ];
  // Where the bytes go: each column of the lake's file, compressed (the footer is the rest).
  for (const [column, bytes] of await columnBytes(conn, file)) {
    figures.push(figure(SECTION, `${name}_column_${column}_bytes_per_point`, `${what}: column ${column}, as the lake writes it`, bytes / points, 'bytes'));
  }
  const columns = (await conn.runAndReadAll(`SELECT column_name FROM (DESCRIBE ${name})`)).getRows().map((r) => String(r[0]));
  for (const v of VARIANTS) {
    const out = path.join(ctx.tmp, `${name}-${v.key}.parquet`);
    await conn.run(`COPY (SELECT ${v.select(columns)} FROM ${name} ORDER BY ${SORT_COLUMNS.join(', ')}) TO ${sqlString(out)} (${v.options})`);
    const bytes = (await stat(out)).size;
    figures.push(figure(SECTION, `${name}_${v.key}_bytes_per_point`, `${what}: ${v.label}`, bytes / points, 'bytes'));
    figures.push(figure(SECTION, `${name}_${v.key}_vs_lake_ratio`, `${what}: ${v.label}, size / the lake's`, bytes / lakeBytes, 'ratio'));
    // A retyped column's own bytes, beside the lake's figure for it above.
    if (v.key === 'decimal' || v.key === 'integer') {
      for (const [column, colBytes] of await columnBytes(conn, out)) {
        if (!GRID_UNITS[column]) continue;
        figures.push(figure(SECTION, `${name}_${v.key}_column_${column}_bytes_per_point`, `${what}: column ${column}, ${v.key === 'decimal' ? 'exact DECIMAL' : 'INTEGER in MAVLink units'}`, colBytes / points, 'bytes'));
      }
    }
  }
  return figures;
}

/**
 * Bytes hyparquet (an independent reader) fetches to find one drone's rows, footer included:
 * it skips row groups by their drone_id statistics and, for an id inside a group's range, by
 * its Bloom filter.
 */
async function lookupBytes(file: string, droneId: string): Promise<{ bytes: number; rows: number }> {
  const { asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects } = await import('hyparquet');
  const { compressors } = await import('hyparquet-compressors');
  const inner = await asyncBufferFromFile(file);
  let bytes = 0;
  const counting = {
    byteLength: inner.byteLength,
    slice(start: number, end?: number) {
      bytes += (end ?? inner.byteLength) - start;
      return inner.slice(start, end);
    },
  };
  // The footer's length first, then the footer, as a reader that knows no size reads it
  // (hyparquet's default fetches the last 512 KiB at once).
  const metadata = await parquetMetadataAsync(counting, { initialFetchSize: 8 });
  const rows = await parquetReadObjects({ file: counting, metadata, compressors, rowFormat: 'object', filter: { drone_id: { $eq: droneId } }, useBloomFilters: true });
  return { bytes, rows: rows.length };
}

export async function runLakeLayout(ctx: BenchContext): Promise<Figure[]> {
  // A full run stores one compacted hour partition of the fleet, the unit a day is made of.
  const seconds = ctx.quick ? 300 : 3600;
  const count = DRONES * HZ * seconds;
  ctx.progress(`lake: simulating ${count.toLocaleString('en-US')} points (${DRONES} drones at ${HZ} Hz for ${seconds} s)`);
  const { db, conn } = await sinkDatabase();
  const figures: Figure[] = [];
  try {
    const wire = wireBytes();
    const fleet = await compactedFile(ctx, conn, 'fleet', (stage) =>
      forEachSimulatedPoint(count, DRONES, GATEWAY, (p) => {
        // Kept until its batch is staged: a copy (agent/source.ts).
        stage({ ...p });
        wire.take(p);
      }),
    );
    const { file } = fleet;
    const what = `simulated fleet, ${DRONES} drones at ${HZ} Hz, ${seconds} s`;
    figures.push(...(await sizeFigures(ctx, conn, 'fleet', fleet, what)));
    figures.push(
      figure(SECTION, 'fleet_wire_floor_bytes_per_point', `${what}: the same points as wire v2 batches of ${WIRE_RUN.toLocaleString('en-US')} points of one drone, deflated (the values' information by the wire's coding; no Parquet encoding does delta-of-delta or scaled doubles)`, wire.bytesPerPoint(), 'bytes'),
    );

    // A point lookup reads the row groups that hold the drone: smaller groups, fewer bytes.
    const present = `${GATEWAY}-d${String(DRONES / 2).padStart(4, '0')}`;
    // Sorts between two drones that are there, so only the Bloom filter can rule it out.
    const absent = `${present}x`;
    for (const rowGroupRows of [COMPACTED_ROW_GROUP_ROWS, 65_536]) {
      const lake = rowGroupRows === COMPACTED_ROW_GROUP_ROWS;
      const f = lake ? file : path.join(ctx.tmp, `fleet-rg${rowGroupRows}.parquet`);
      if (!lake) await conn.run(`COPY (SELECT * FROM fleet ORDER BY ${SORT_COLUMNS.join(', ')}) TO ${sqlString(f)} (${PARQUET_WRITE_OPTIONS}, ROW_GROUP_SIZE ${rowGroupRows})`);
      const meta = await conn.runAndReadAll(
        `SELECT count(DISTINCT row_group_id)::INTEGER, max(bloom_filter_length) FILTER (WHERE path_in_schema = 'drone_id') FROM parquet_metadata(${sqlString(f)})`,
      );
      const [rowGroups, bloom] = meta.getRows()[0]!;
      const fileBytes = (await stat(f)).size;
      const hit = await lookupBytes(f, present);
      const miss = await lookupBytes(f, absent);
      if (hit.rows !== count / DRONES) throw new Error(`lookup of ${present} found ${hit.rows} rows, expected ${count / DRONES}`);
      if (miss.rows !== 0) throw new Error(`lookup of ${absent} found ${miss.rows} rows`);
      const rg = `rg${rowGroupRows}`;
      const how = `${String(rowGroups)} row groups of ${rowGroupRows.toLocaleString('en-US')} rows${lake ? ' (the lake\'s)' : ''}`;
      figures.push(
        figure(SECTION, `fleet_${rg}_bytes_per_point`, `fleet, ${how}; drone_id Bloom filter ${bloom === null ? 'absent' : `${String(bloom)} bytes`}`, fileBytes / count, 'bytes'),
        figure(SECTION, `lookup_${rg}_fraction_of_bytes`, `${how}: point lookup of one drone (hyparquet, drone_id = ...), bytes read / file bytes`, hit.bytes / fileBytes, 'ratio'),
        figure(SECTION, `lookup_absent_${rg}_fraction_of_bytes`, `${how}: lookup of a drone id that is not there, bytes read / file bytes`, miss.bytes / fileBytes, 'ratio'),
      );
    }

    if (existsSync(TLOG)) {
      const log = await compactedFile(ctx, conn, 'vtol', (stage) => forEachFlightLogPoint(TLOG, Date.UTC(2026, 0, 1) * 1000, stage));
      figures.push(...(await sizeFigures(ctx, conn, 'vtol', log, `vtol.tlog, a real flight log (${log.points} points; the file's metadata weighs on so few)`)));
    } else {
      ctx.progress(`lake: skipped the real flight log: ${TLOG} is not there`);
    }
  } finally {
    conn.closeSync();
    db.closeSync();
  }
  return figures;
}
