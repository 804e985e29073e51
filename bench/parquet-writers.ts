// Compares two ways for the sink to turn a batch of telemetry rows into one Parquet file,
// on the same synthetic rows in the same process, so bench/README.md can say which one the sink
// uses and why. Every file is read back with DuckDB and checked before any figure is reported.
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { DuckDBInstance, type DuckDBAppender, type DuckDBConnection } from '@duckdb/node-api';
import parquet, { type ParquetCompression, type ParquetFieldOptions } from 'parquetjs-lite';
import { LAKE_COLUMNS, SORT_COLUMNS, type ColumnKind, type LakeColumn } from '../proto/columns';
import { FlightState, GpsFix, type TelemetryPoint } from '../proto/types';
import { sqlString } from '../sink/sql';
import { DUCKDB_ROW_GROUP_ROWS } from '../sink/write-files';

export interface ParquetWriterResult {
  writer: string;
  rows: number;
  seconds: number;
  rowsPerSec: number;
  bytes: number;
  bytesPerRow: number;
  compression: string;
  appendSeconds?: number;
  copySeconds?: number;
}

/** A point as the sink stores it: the wire fields plus the columns the sink adds. */
type LakeRow = TelemetryPoint & { gateway_id: string; ingested_at: number };
type LakeValue = string | number | boolean;

// Both writers use the same row-group size so their file sizes compare like for like;
// 122880 is DuckDB's default, while parquetjs-lite's own default (4096) would cost it
// compression and footer size for reasons unrelated to the library's encoder.
const ROW_GROUP_ROWS = DUCKDB_ROW_GROUP_ROWS;

// parquetjs-lite has no ZSTD (lib/compression.js knows UNCOMPRESSED, GZIP, SNAPPY, and LZO and
// BROTLI only as stubs that throw), so it runs with both codecs it really has: GZIP for size,
// SNAPPY for speed.
const PARQUETJS_COMPRESSIONS: readonly ParquetCompression[] = ['GZIP', 'SNAPPY'];

const DRONES = 200;
const DRONES_PER_GATEWAY = 50;
const TICK_US = 100_000;
// Fixed so that every run writes the same rows. 1M rows are 500 s of flight, so a run stays
// inside one hour partition, as one file of the sink does.
const START_US = Date.UTC(2025, 5, 1, 10, 0, 0) * 1000;

/** mulberry32: a tiny deterministic PRNG, good enough to make synthetic telemetry. */
function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

interface Gateway {
  id: string;
  /** When the sink received the gateway's current one-second batch. */
  ingestedAt: number;
}

interface Drone {
  id: string;
  gateway: Gateway;
  /** Drones do not sample in lockstep; each keeps its own sub-tick offset. */
  phaseUs: number;
  seq: number;
  lat: number;
  lon: number;
  groundAltM: number;
  relAltM: number;
  headingDeg: number;
  speedMps: number;
  batteryPct: number;
  gpsFix: GpsFix;
  gpsOutageTicks: number;
  flightState: FlightState;
  missionId: string | null;
}

function makeDrones(rand: () => number): Drone[] {
  const gateways: Gateway[] = Array.from({ length: Math.ceil(DRONES / DRONES_PER_GATEWAY) }, (_, i) => ({
    id: `gw${i + 1}`,
    ingestedAt: 0,
  }));
  return Array.from({ length: DRONES }, (_, i): Drone => {
    const gateway = gateways[Math.floor(i / DRONES_PER_GATEWAY)];
    if (gateway === undefined) throw new Error(`drone ${i} has no gateway`);
    const flying = rand() < 0.9;
    const state = rand();
    return {
      id: `${gateway.id}-d${String(i + 1).padStart(4, '0')}`,
      gateway,
      phaseUs: Math.floor(rand() * TICK_US),
      seq: Math.floor(rand() * 1_000_000),
      lat: 52.45 + rand() * 0.1,
      lon: 13.3 + rand() * 0.2,
      groundAltM: 34 + rand() * 20,
      relAltM: flying ? 30 + rand() * 90 : 0,
      headingDeg: rand() * 360,
      speedMps: flying ? 4 + rand() * 16 : 0,
      batteryPct: 30 + rand() * 70,
      gpsFix: rand() < 0.3 ? GpsFix.rtkFixed : GpsFix.fix3d,
      gpsOutageTicks: 0,
      flightState: !flying
        ? FlightState.idle
        : state < 0.5
          ? FlightState.cruise
          : state < 0.8
            ? FlightState.delivering
            : FlightState.returning,
      missionId: flying ? `m-20250601-${String(Math.floor(rand() * 100_000)).padStart(5, '0')}` : null,
    };
  });
}

const clamp = (value: number, min: number, max: number): number => Math.min(max, Math.max(min, value));
// Quantised the way MAVLink carries them (degE7, mm, cm/s, cdeg, mV): full-precision random
// doubles would not compress like real telemetry does.
const quantise = (value: number, perUnit: number): number => Math.round(value * perUnit) / perUnit;

function nextPoint(drone: Drone, tick: number, rand: () => number): LakeRow {
  const dtS = TICK_US / 1e6;
  const flying = drone.flightState !== FlightState.idle;
  let verticalSpeed = 0;
  if (flying) {
    drone.headingDeg = (drone.headingDeg + (rand() - 0.5) * 6 + 360) % 360;
    drone.speedMps = clamp(drone.speedMps + (rand() - 0.5) * 0.4, 4, 20);
    const relAlt = clamp(drone.relAltM + (rand() - 0.5) * 0.6, 30, 120);
    verticalSpeed = (relAlt - drone.relAltM) / dtS;
    drone.relAltM = relAlt;
    const headingRad = (drone.headingDeg * Math.PI) / 180;
    drone.lat += (drone.speedMps * Math.cos(headingRad) * dtS) / 111_320;
    drone.lon += (drone.speedMps * Math.sin(headingRad) * dtS) / (111_320 * Math.cos((drone.lat * Math.PI) / 180));
    drone.batteryPct = Math.max(5, drone.batteryPct - 0.003);
  }
  // GPS drops out in bursts, not point by point, so the nulls come in runs as they do in the field.
  if (drone.gpsOutageTicks > 0) drone.gpsOutageTicks--;
  else if (rand() < 0.001) drone.gpsOutageTicks = 20 + Math.floor(rand() * 80);
  const gps = drone.gpsOutageTicks === 0;
  drone.seq++;
  return {
    drone_id: drone.id,
    seq: drone.seq,
    ts: START_US + tick * TICK_US + drone.phaseUs,
    lat: gps ? quantise(drone.lat, 1e7) : null,
    lon: gps ? quantise(drone.lon, 1e7) : null,
    alt_m: gps ? quantise(drone.groundAltM + drone.relAltM, 1e3) : null,
    rel_alt_m: quantise(drone.relAltM, 1e3),
    ground_speed_mps: gps ? quantise(drone.speedMps, 100) : null,
    vertical_speed_mps: rand() < 0.05 ? null : quantise(verticalSpeed, 100),
    heading_deg: flying ? quantise(drone.headingDeg, 100) : null,
    battery_pct: Math.round(drone.batteryPct),
    battery_voltage_v: rand() < 0.03 ? null : quantise(19.8 + (5.4 * drone.batteryPct) / 100 + (rand() - 0.5) * 0.05, 1e3),
    gps_fix: gps ? drone.gpsFix : GpsFix.none,
    satellites: gps ? (drone.gpsFix === GpsFix.rtkFixed ? 18 : 9) + Math.floor(rand() * 6) : null,
    flight_state: drone.flightState,
    armed: flying,
    mission_id: drone.missionId,
    gateway_id: drone.gateway.id,
    ingested_at: drone.gateway.ingestedAt,
  };
}

/** Rows in arrival order: every tick, each drone reports once, so drones interleave and need sorting. */
function generateRows(count: number): LakeRow[] {
  const rand = mulberry32(0x5eed);
  const drones = makeDrones(rand);
  const rows: LakeRow[] = [];
  for (let tick = 0; rows.length < count; tick++) {
    // Gateways send one batch per second; the sink stamps a whole batch when it arrives.
    if (tick % 10 === 0) {
      const batchEnd = START_US + (tick / 10 + 1) * 1_000_000;
      for (const drone of drones) drone.gateway.ingestedAt = batchEnd + 150_000 + Math.floor(rand() * 750_000);
    }
    for (const drone of drones) {
      if (rows.length === count) break;
      rows.push(nextPoint(drone, tick, rand));
    }
  }
  return rows;
}

function enumName(column: LakeColumn, value: number): string {
  const name = column.enumNames?.[value];
  if (name === undefined) throw new Error(`${column.name}: no name for enum value ${value}`);
  return name;
}

/** The value a column holds in the lake: null when absent, an enum by its name. */
function lakeValue(row: LakeRow, column: LakeColumn): LakeValue | null {
  const value = (row as unknown as Record<string, LakeValue | null | undefined>)[column.name];
  if (value === undefined || value === null) return null;
  return column.kind === 'enum' ? enumName(column, value as number) : value;
}

// Mirrors SORT_COLUMNS (drone_id, ts); ids are ASCII, so JS and DuckDB order strings alike.
function bySortKey(a: LakeRow, b: LakeRow): number {
  return a.drone_id < b.drone_id ? -1 : a.drone_id > b.drone_id ? 1 : a.ts - b.ts;
}

const quoteIdent = (name: string): string => `"${name.replaceAll('"', '""')}"`;

/** How the lake's column kinds map to parquetjs-lite's types; the tutorial baseline uses it too. */
export const PARQUETJS_TYPE: Record<ColumnKind, ParquetFieldOptions['type']> = {
  string: 'UTF8',
  uint64: 'UINT_64',
  timestamp: 'TIMESTAMP_MICROS',
  double: 'DOUBLE',
  uint32: 'UINT_32',
  bool: 'BOOLEAN',
  enum: 'UTF8',
};

async function writeWithParquetjs(rows: readonly LakeRow[], file: string, compression: ParquetCompression): Promise<void> {
  // Every column optional, as DuckDB writes them, so both files carry the same repetition levels.
  const schema = new parquet.ParquetSchema(
    Object.fromEntries(
      LAKE_COLUMNS.map((column): [string, ParquetFieldOptions] => [
        column.name,
        { type: PARQUETJS_TYPE[column.kind], optional: true, compression },
      ]),
    ),
  );
  const writer = await parquet.ParquetWriter.openFile(schema, file, { rowGroupSize: ROW_GROUP_ROWS });
  for (const row of [...rows].sort(bySortKey)) {
    const record: Record<string, LakeValue | null> = {};
    for (const column of LAKE_COLUMNS) record[column.name] = lakeValue(row, column);
    await writer.appendRow(record);
  }
  await writer.close();
}

// Staged as DOUBLE and cast in SQL: the appender takes BIGINT and UBIGINT only as bigint, one
// allocation per value, and every 64-bit value in the contract is an integer below 2^53,
// which a double holds exactly.
const STAGED_AS_DOUBLE: ReadonlySet<ColumnKind> = new Set<ColumnKind>(['uint64', 'timestamp']);

type StagingPut = (appender: DuckDBAppender, value: LakeValue) => void;

function stagingPut(column: LakeColumn): StagingPut {
  switch (column.kind) {
    case 'string':
    case 'enum':
      return (appender, value) => appender.appendVarchar(value as string);
    case 'uint64':
    case 'timestamp':
    case 'double':
      return (appender, value) => appender.appendDouble(value as number);
    case 'uint32':
      return (appender, value) => appender.appendUInteger(value as number);
    case 'bool':
      return (appender, value) => appender.appendBoolean(value as boolean);
  }
}

function lakeExpression(column: LakeColumn): string {
  const id = quoteIdent(column.name);
  switch (column.kind) {
    // make_timestamptz(BIGINT) takes microseconds since the epoch as an instant: integer-exact,
    // unlike to_timestamp(DOUBLE seconds), and unlike make_timestamp(...)::TIMESTAMPTZ it does
    // not shift by the session TimeZone.
    case 'timestamp':
      return `make_timestamptz(${id}::BIGINT)`;
    case 'uint64':
      return `${id}::UBIGINT`;
    default:
      return id;
  }
}

async function writeWithDuckdb(
  connection: DuckDBConnection,
  rows: readonly LakeRow[],
  file: string,
): Promise<{ appendSeconds: number; copySeconds: number }> {
  const staged = LAKE_COLUMNS.map((column) => ({ column, put: stagingPut(column) }));
  const columnsDdl = LAKE_COLUMNS.map(
    (column) => `${quoteIdent(column.name)} ${STAGED_AS_DOUBLE.has(column.kind) ? 'DOUBLE' : column.sqlType}`,
  );
  const select = LAKE_COLUMNS.map((column) => `${lakeExpression(column)} AS ${quoteIdent(column.name)}`);

  const appendStart = performance.now();
  await connection.run(`CREATE OR REPLACE TABLE staging (${columnsDdl.join(', ')})`);
  const appender = await connection.createAppender('staging');
  for (const row of rows) {
    for (const { column, put } of staged) {
      const value = lakeValue(row, column);
      if (value === null) appender.appendNull();
      else put(appender, value);
    }
    appender.endRow();
  }
  appender.closeSync();
  const copyStart = performance.now();
  await connection.run(
    `COPY (SELECT ${select.join(', ')} FROM staging ORDER BY ${SORT_COLUMNS.join(', ')}) ` +
      `TO ${sqlString(file)} (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE ${ROW_GROUP_ROWS})`,
  );
  const copyEnd = performance.now();
  await connection.run('DROP TABLE staging');
  return { appendSeconds: (copyStart - appendStart) / 1000, copySeconds: (copyEnd - copyStart) / 1000 };
}

/** A column read back as a plain JS value that compares with lakeValue(). */
function comparable(column: LakeColumn): string {
  const id = quoteIdent(column.name);
  switch (column.kind) {
    case 'timestamp':
      return `epoch_us(${id})::DOUBLE AS ${id}`;
    case 'uint64':
      return `${id}::DOUBLE AS ${id}`;
    default:
      return id;
  }
}

async function scalar(connection: DuckDBConnection, sql: string): Promise<number> {
  const reader = await connection.runAndReadAll(sql);
  return Number(reader.getRows()[0]?.[0]);
}

async function verifyFile(connection: DuckDBConnection, file: string, rows: readonly LakeRow[]): Promise<void> {
  const source = `read_parquet(${sqlString(file)})`;
  const count = await scalar(connection, `SELECT count(*) FROM ${source}`);
  if (count !== rows.length) throw new Error(`${file}: ${count} rows read back, ${rows.length} written`);

  const unsorted = await scalar(
    connection,
    `SELECT count(*) FROM (
       SELECT drone_id, ts, lag(drone_id) OVER w AS prev_drone, lag(ts) OVER w AS prev_ts
       FROM read_parquet(${sqlString(file)}, file_row_number = true)
       WINDOW w AS (ORDER BY file_row_number))
     WHERE prev_drone > drone_id OR (prev_drone = drone_id AND prev_ts > ts)`,
  );
  if (unsorted !== 0) throw new Error(`${file}: ${unsorted} rows out of (drone_id, ts) order`);

  // First, middle and last row in arrival order: they land at different places in the sorted file.
  for (const row of [rows[0], rows[rows.length >> 1], rows[rows.length - 1]]) {
    if (row === undefined) continue;
    const reader = await connection.runAndReadAll(
      `SELECT ${LAKE_COLUMNS.map(comparable).join(', ')} FROM ${source} WHERE drone_id = $drone AND seq::DOUBLE = $seq`,
      { drone: row.drone_id, seq: row.seq },
    );
    const found = reader.getRowObjects();
    if (found.length !== 1) throw new Error(`${file}: ${found.length} rows for ${row.drone_id} seq ${row.seq}`);
    for (const column of LAKE_COLUMNS) {
      const expected = lakeValue(row, column);
      const actual = found[0]?.[column.name];
      if (actual !== expected) {
        throw new Error(`${file}: ${row.drone_id} seq ${row.seq} ${column.name} is ${String(actual)}, expected ${expected}`);
      }
    }
  }
}

/** The sink's own file must carry the lake's types, timestamps as UTC-adjusted microseconds. */
async function verifyLakeTypes(connection: DuckDBConnection, file: string): Promise<void> {
  const described = await connection.runAndReadAll(`DESCRIBE SELECT * FROM read_parquet(${sqlString(file)})`);
  const types = new Map(described.getRowObjects().map((row) => [String(row.column_name), String(row.column_type)]));
  for (const column of LAKE_COLUMNS) {
    const sqlType = column.sqlType === 'TIMESTAMPTZ' ? 'TIMESTAMP WITH TIME ZONE' : column.sqlType;
    if (types.get(column.name) !== sqlType) {
      throw new Error(`${file}: ${column.name} reads back as ${types.get(column.name)}, expected ${sqlType}`);
    }
  }
  const schema = await connection.runAndReadAll(
    `SELECT name, logical_type FROM parquet_schema(${sqlString(file)})`,
  );
  const logical = new Map(schema.getRowObjects().map((row) => [String(row.name), String(row.logical_type)]));
  for (const column of LAKE_COLUMNS.filter((c) => c.kind === 'timestamp')) {
    const type = logical.get(column.name) ?? '';
    if (!/isAdjustedToUTC=1/.test(type) || !/MICROS/.test(type)) {
      throw new Error(`${file}: ${column.name} has Parquet logical type ${type}, expected UTC-adjusted micros`);
    }
  }
}

/**
 * The two writers stored the same data. One direction of EXCEPT ALL is enough because
 * verifyFile has already found the same row count in both files.
 */
async function verifySameContent(connection: DuckDBConnection, file: string, reference: string): Promise<void> {
  const columns = LAKE_COLUMNS.map(comparable).join(', ');
  const differing = await scalar(
    connection,
    `SELECT count(*) FROM (
       SELECT ${columns} FROM read_parquet(${sqlString(file)})
       EXCEPT ALL
       SELECT ${columns} FROM read_parquet(${sqlString(reference)}))`,
  );
  if (differing !== 0) throw new Error(`${file}: ${differing} rows differ from ${reference}`);
}

async function measured(
  writer: string,
  compression: string,
  rows: number,
  seconds: number,
  file: string,
): Promise<ParquetWriterResult> {
  const { size } = await stat(file);
  return { writer, rows, seconds, rowsPerSec: rows / seconds, bytes: size, bytesPerRow: size / rows, compression };
}

export async function benchParquetWriters(opts: { rows: number; dir: string }): Promise<ParquetWriterResult[]> {
  const rows = generateRows(opts.rows);
  const instance = await DuckDBInstance.create(':memory:');
  const connection = await instance.connect();
  try {
    // The conversion does not depend on it, but anything DuckDB renders or derives from a
    // TIMESTAMPTZ (text, date and hour parts) must be in UTC, as the lake's partitions are.
    await connection.run("SET TimeZone = 'UTC'");
    const results: ParquetWriterResult[] = [];
    const parquetjsFiles: string[] = [];
    for (const compression of PARQUETJS_COMPRESSIONS) {
      const file = join(opts.dir, `parquetjs-lite-${compression.toLowerCase()}.parquet`);
      const start = performance.now();
      await writeWithParquetjs(rows, file, compression);
      results.push(await measured('parquetjs-lite', compression, rows.length, (performance.now() - start) / 1000, file));
      parquetjsFiles.push(file);
    }

    const duckdbFile = join(opts.dir, 'duckdb-zstd.parquet');
    const { appendSeconds, copySeconds } = await writeWithDuckdb(connection, rows, duckdbFile);
    results.push({
      ...(await measured('duckdb', 'ZSTD', rows.length, appendSeconds + copySeconds, duckdbFile)),
      appendSeconds,
      copySeconds,
    });

    await verifyLakeTypes(connection, duckdbFile);
    for (const file of [...parquetjsFiles, duckdbFile]) await verifyFile(connection, file, rows);
    for (const file of parquetjsFiles) await verifySameContent(connection, file, duckdbFile);
    return results;
  } finally {
    connection.closeSync();
    instance.closeSync();
  }
}

function formatTable(results: readonly ParquetWriterResult[]): string {
  const header = ['writer', 'compression', 'rows', 'seconds', 'rows/s', 'bytes', 'bytes/row', 'append s', 'copy s'];
  const body = results.map((r) => [
    r.writer,
    r.compression,
    String(r.rows),
    r.seconds.toFixed(3),
    String(Math.round(r.rowsPerSec)),
    String(r.bytes),
    r.bytesPerRow.toFixed(2),
    r.appendSeconds?.toFixed(3) ?? '-',
    r.copySeconds?.toFixed(3) ?? '-',
  ]);
  const lines = [header, ...body];
  const widths = header.map((_, i) => Math.max(...lines.map((line) => (line[i] ?? '').length)));
  // Names left-aligned, figures right-aligned so their digits line up.
  return lines
    .map((line) => line.map((cell, i) => (i < 2 ? cell.padEnd(widths[i] ?? 0) : cell.padStart(widths[i] ?? 0))).join('  '))
    .join('\n');
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { rows: { type: 'string', default: '200000' } } });
  const rows = Number(values.rows);
  if (!Number.isSafeInteger(rows) || rows < 1) throw new Error(`--rows must be a positive integer, got ${values.rows}`);
  const dir = await mkdtemp(join(tmpdir(), 'pw-bench-'));
  try {
    const results = await benchParquetWriters({ rows, dir });
    console.log(formatTable(results));
    console.log(JSON.stringify(results));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) await main();
