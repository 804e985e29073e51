import duckdb from '@duckdb/node-bindings';
import {
  BOOLEAN,
  DOUBLE,
  DuckDBDataChunk,
  UINTEGER,
  UTINYINT,
  type DuckDBAppender,
  type DuckDBConnection,
  type DuckDBInstance,
  type DuckDBType,
} from '@duckdb/node-api';
import { LAKE_COLUMNS, SORT_COLUMNS, type LakeColumn } from '../proto/columns';
import { MICROS_PER_HOUR } from '../proto/time';
import { isPresent, POINT_FIELDS, TS_COLUMN, type PointColumns } from '../proto/columnar';
import type { PointKeys } from './dedupe';
import { emptyCommitCounts, type OpenCommitCounts } from './checkpoint';
import type { LivePoint } from './live';
import { newQuarantine, type QuarantineBuffer } from './quarantine';
import { sqlString } from './sql';

// Staging is columnar. Points are written into typed arrays, one chunk of DuckDB's vector
// size at a time, and each full chunk is copied into DuckDB's vectors with one memcpy per
// column. Per-value appender calls cost ~250 ns each across the JS/C++ boundary, which
// capped the sink at ~140k points/s; whole-chunk copies make staging a small part of a
// point's cost. So every staged column is fixed-width:
// - strings become ids into a per-buffer dictionary (a table joined at commit);
// - enums stay as their numbers and are named at commit;
// - 64-bit values are staged as DOUBLE, exact below 2^53 as every sequence number and
//   microsecond time is, so no BigInt is made per value.

type StageKind = 'f64' | 'u32' | 'u8' | 'bool' | 'dict';

const STAGE_KIND: Record<LakeColumn['kind'], StageKind> = {
  string: 'dict',
  uint64: 'f64',
  timestamp: 'f64',
  double: 'f64',
  uint32: 'u32',
  bool: 'bool',
  enum: 'u8',
};

const STAGE_TYPE: Record<StageKind, { sql: string; duck: DuckDBType; bytes: number }> = {
  f64: { sql: 'DOUBLE', duck: DOUBLE, bytes: 8 },
  u32: { sql: 'UINTEGER', duck: UINTEGER, bytes: 4 },
  u8: { sql: 'UTINYINT', duck: UTINYINT, bytes: 1 },
  bool: { sql: 'BOOLEAN', duck: BOOLEAN, bytes: 1 },
  dict: { sql: 'UINTEGER', duck: UINTEGER, bytes: 4 },
};

const CHUNK_ROWS = duckdb.vector_size();
const VALIDITY_BYTES = Math.ceil(CHUNK_ROWS / 64) * 8;

const STAGE_COLUMNS = LAKE_COLUMNS.map((column) => ({ column, kind: STAGE_KIND[column.kind] }));
/** What one staged row takes in DuckDB: its fixed-width values plus a validity bit each. */
const STAGED_ROW_BYTES = STAGE_COLUMNS.reduce((n, { kind }) => n + STAGE_TYPE[kind].bytes, 0) + Math.ceil(STAGE_COLUMNS.length / 8);
/** A dictionary entry: the string as DuckDB stores it, its id, and the JS map entry that finds it. */
const DICT_ENTRY_OVERHEAD = 64;
const POINT_COLUMN_COUNT = LAKE_COLUMNS.filter((c) => c.origin === 'point').length;
const GATEWAY_INDEX = LAKE_COLUMNS.findIndex((c) => c.name === 'gateway_id');
const STREAM_INDEX = LAKE_COLUMNS.findIndex((c) => c.name === 'stream');
// stageRows copies point column c of a batch into staged column c.
if (POINT_FIELDS.some((f, c) => LAKE_COLUMNS[c]!.name !== f.name)) throw new Error('the lake columns do not begin with the point fields in their order');
const INGESTED_INDEX = LAKE_COLUMNS.findIndex((c) => c.name === 'ingested_at');


/** The SQL expression that turns a staged column of table alias `t` into its lake type. */
function lakeExpression(column: LakeColumn): string {
  const staged = `t.${column.name}`;
  switch (column.kind) {
    case 'string':
      // An uncorrelated subquery, computed once: 25 % faster than a join per string column.
      return `(SELECT list(s ORDER BY id) FROM dict)[${staged} + 1] AS ${column.name}`;
    case 'uint64':
      return `${staged}::BIGINT AS ${column.name}`;
    case 'uint32':
      // Staged as UINTEGER, stored as the lake's signed type (proto/columns.ts).
      return `${staged}::${column.sqlType} AS ${column.name}`;
    case 'timestamp':
      // Integer microseconds in, exact, whatever the session time zone; casting a
      // TIMESTAMP to TIMESTAMPTZ instead would shift it by the zone's offset.
      return `make_timestamptz(${staged}::BIGINT) AS ${column.name}`;
    case 'enum':
      return `[${column.enumNames!.map(sqlString).join(', ')}][${staged} + 1] AS ${column.name}`;
    default:
      return `${staged} AS ${column.name}`;
  }
}

const LAKE_SELECT = LAKE_COLUMNS.map(lakeExpression).join(', ');

/**
 * The files' sort order (SORT_COLUMNS) over the staged columns. A string sorts by its rank
 * in the buffer's dictionary, an integer, not by the string it stands for: the same order,
 * for less of DuckDB's time. The bench's Parquet stage, three pairs of runs side by side:
 * 1.22-1.28 -> 1.08-1.16 CPU-us a point.
 */
const LAKE_ORDER = SORT_COLUMNS.map((name) => {
  const column = LAKE_COLUMNS.find((c) => c.name === name)!;
  return column.kind === 'string' ? `(SELECT list(r ORDER BY id) FROM (SELECT id, row_number() OVER (ORDER BY s) AS r FROM dict))[t.${name} + 1]` : `t.${name}`;
}).join(', ');

/**
 * The query that reads a staged buffer as lake rows, in the files' sort order, for rows
 * whose event time lies in [fromUs, toUs). Strings come back through the buffer's dictionary.
 */
export function lakeRowsSql(buffer: StageBuffer, fromUs: number, toUs: number): string {
  return (
    `WITH dict AS (SELECT id, s FROM ${buffer.table}_dict) ` +
    `SELECT ${LAKE_SELECT} FROM ${buffer.table} t WHERE t.ts >= ${fromUs} AND t.ts < ${toUs} ORDER BY ${LAKE_ORDER}`
  );
}

interface ColumnBuffer {
  kind: StageKind;
  values: Float64Array | Uint32Array | Uint8Array;
  /** DuckDB's validity mask: bit i set when row i is not null. */
  validity: Uint8Array;
}

/**
 * Points staged for one commit: a DuckDB table, its appender, and what they hold. Each
 * buffer has a connection of its own, because a DuckDB connection runs one statement at
 * a time, and appenders flush through it while other buffers are being committed.
 */
export interface StageBuffer {
  readonly connection: DuckDBConnection;
  readonly table: string;
  readonly appender: DuckDBAppender;
  readonly dictAppender: DuckDBAppender;
  readonly dict: Map<string, number>;
  dictBytes: number;
  readonly columns: ColumnBuffer[];
  readonly chunk: DuckDBDataChunk;
  /** Rows in the typed arrays, not yet handed to DuckDB. */
  chunkRows: number;
  sealed: boolean;
  points: number;
  /** What this commit took, for the quality metrics its record carries. */
  readonly counts: OpenCommitCounts;
  /** Rows per event-time hour (hours since the epoch): one Parquet file each. */
  readonly hours: Map<number, number>;
  /** Batch sequence numbers per gateway, to be acknowledged once the commit lands. */
  readonly batches: Map<string, number[]>;
  /** The (drone_id, stream, seq) staged here, for dedupe until the commit lands. */
  readonly pointKeys: PointKeys;
  /** Bad input received since the last commit, published with this one. */
  readonly quarantine: QuarantineBuffer;
  /** With the live port after commit: the points to publish once this commit lands. */
  readonly live: LivePoint[];
}

function newColumn(kind: StageKind): ColumnBuffer {
  const values = kind === 'f64' ? new Float64Array(CHUNK_ROWS) : kind === 'u32' || kind === 'dict' ? new Uint32Array(CHUNK_ROWS) : new Uint8Array(CHUNK_ROWS);
  return { kind, values, validity: new Uint8Array(VALIDITY_BYTES).fill(0xff) };
}

export async function createStageBuffer(db: DuckDBInstance, table: string): Promise<StageBuffer> {
  const connection = await db.connect();
  const columns = STAGE_COLUMNS.map(({ column, kind }) => `${column.name} ${STAGE_TYPE[kind].sql}`).join(', ');
  await connection.run(`CREATE OR REPLACE TABLE ${table} (${columns})`);
  await connection.run(`CREATE OR REPLACE TABLE ${table}_dict (id UINTEGER, s VARCHAR)`);
  return {
    connection,
    table,
    appender: await connection.createAppender(table),
    dictAppender: await connection.createAppender(`${table}_dict`),
    dict: new Map(),
    dictBytes: 0,
    columns: STAGE_COLUMNS.map(({ kind }) => newColumn(kind)),
    chunk: DuckDBDataChunk.create(STAGE_COLUMNS.map(({ kind }) => STAGE_TYPE[kind].duck)),
    chunkRows: 0,
    sealed: false,
    points: 0,
    counts: emptyCommitCounts(),
    hours: new Map(),
    batches: new Map(),
    pointKeys: new Map(),
    quarantine: newQuarantine(),
    live: [],
  };
}

export function recordBatch(buffer: StageBuffer, gatewayId: string, batchSeq: number): void {
  const seqs = buffer.batches.get(gatewayId);
  if (seqs) seqs.push(batchSeq);
  else buffer.batches.set(gatewayId, [batchSeq]);
}

function dictId(buffer: StageBuffer, s: string): number {
  let id = buffer.dict.get(s);
  if (id === undefined) {
    id = buffer.dict.size;
    buffer.dict.set(s, id);
    buffer.dictBytes += s.length * 2 + DICT_ENTRY_OVERHEAD;
    buffer.dictAppender.appendUInteger(id);
    buffer.dictAppender.appendVarchar(s);
    buffer.dictAppender.endRow();
  }
  return id;
}

/** Hands the rows in the typed arrays to DuckDB, one memcpy per column. */
function flushChunk(buffer: StageBuffer): void {
  const rows = buffer.chunkRows;
  if (rows === 0) return;
  const chunk = buffer.chunk;
  chunk.reset();
  for (let i = 0; i < buffer.columns.length; i++) {
    const col = buffer.columns[i]!;
    const vector = duckdb.data_chunk_get_vector(chunk.chunk, i);
    const bytes = STAGE_TYPE[col.kind].bytes;
    duckdb.copy_data_to_vector(vector, 0, col.values.buffer as ArrayBuffer, 0, rows * bytes);
    duckdb.vector_ensure_validity_writable(vector);
    duckdb.copy_data_to_vector_validity(vector, 0, col.validity.buffer as ArrayBuffer, 0, VALIDITY_BYTES);
    col.validity.fill(0xff);
  }
  chunk.rowCount = rows;
  buffer.appender.appendDataChunk(chunk);
  buffer.chunkRows = 0;
}

/** Per string column of a batch: its dictionary's ids in this buffer's dictionary, -1 until first staged. */
export type StageDictIds = Array<Int32Array | null>;

export const stageDictIds = (points: PointColumns): StageDictIds => points.columns.map((c) => (c?.dictionary ? new Int32Array(c.dictionary.length).fill(-1) : null));

/**
 * Stages the points `rows[0..count)` of a batch's columns, valid and new; `stream` is the
 * batch's, for the points that name none. The hot path: column by column over the rows,
 * typed-array reads and writes in tight loops, no allocation, a string looked up once per
 * batch and dictionary entry.
 */
export function stageRows(buffer: StageBuffer, points: PointColumns, rows: Uint32Array, count: number, dictIds: StageDictIds, stream: number, gatewayId: string, ingestedAt: number): void {
  if (count === 0) return;
  const gateway = dictId(buffer, gatewayId);
  // The lake's columns begin with the point's (checked above), so its stream is the point's.
  const streams = points.columns[STREAM_INDEX] ?? null;
  for (let from = 0; from < count; ) {
    // As many rows as the open chunk has room for.
    const start = buffer.chunkRows;
    const take = Math.min(count - from, CHUNK_ROWS - start);
    for (let c = 0; c < POINT_COLUMN_COUNT; c++) {
      // The stream column is written below, each row's own or the batch's.
      if (c === STREAM_INDEX) continue;
      const column = points.columns[c] ?? null;
      const col = buffer.columns[c]!;
      const out = col.values;
      const validity = col.validity;
      if (column === null) {
        for (let j = 0; j < take; j++) validity[(start + j) >> 3]! &= ~(1 << ((start + j) & 7));
        continue;
      }
      const { values, present } = column;
      const ids = dictIds[c];
      for (let j = 0; j < take; j++) {
        const i = rows[from + j]!;
        const row = start + j;
        if (present !== null && (present[i >> 3]! & (1 << (i & 7))) === 0) {
          validity[row >> 3]! &= ~(1 << (row & 7));
          continue;
        }
        const v = values[i]!;
        if (ids) {
          let id = ids[v]!;
          if (id < 0) id = ids[v] = dictId(buffer, column.dictionary![v]!);
          out[row] = id;
        } else {
          out[row] = v;
        }
      }
    }
    // Invariant 3: every stored point names the stream its seq counts in.
    const streamOut = buffer.columns[STREAM_INDEX]!;
    for (let j = 0; j < take; j++) {
      const i = rows[from + j]!;
      const row = start + j;
      streamOut.values[row] = streams !== null && isPresent(streams.present, i) ? streams.values[i]! : stream;
      streamOut.validity[row >> 3]! |= 1 << (row & 7);
    }
    buffer.columns[GATEWAY_INDEX]!.values.fill(gateway, start, start + take);
    buffer.columns[INGESTED_INDEX]!.values.fill(ingestedAt, start, start + take);
    // Rows per event-time hour, counted per run of one hour.
    const times = points.columns[TS_COLUMN]!.values;
    let hour = Math.floor(times[rows[from]!]! / MICROS_PER_HOUR);
    let run = 0;
    for (let j = 0; j < take; j++) {
      const h = Math.floor(times[rows[from + j]!]! / MICROS_PER_HOUR);
      if (h !== hour) {
        buffer.hours.set(hour, (buffer.hours.get(hour) ?? 0) + run);
        hour = h;
        run = 0;
      }
      run++;
    }
    buffer.hours.set(hour, (buffer.hours.get(hour) ?? 0) + run);
    buffer.chunkRows = start + take;
    buffer.points += take;
    from += take;
    if (buffer.chunkRows === CHUNK_ROWS) flushChunk(buffer);
  }
}

/** What a live point waiting for its commit holds: an object of some twenty fields, its strings included. */
const LIVE_ROW_BYTES = 600;

/** An estimate of the memory the buffer holds: staged rows, their strings, bad input and live points waiting for the commit. */
export function stagedBytes(buffer: StageBuffer): number {
  return buffer.points * STAGED_ROW_BYTES + buffer.dictBytes + buffer.quarantine.bytes + buffer.live.length * LIVE_ROW_BYTES;
}

/**
 * The sink's buffers: `open` takes the points of each message, `committing` is the one a
 * commit is writing (its point keys still count for dedupe), and `spare` is made in advance,
 * so that a commit swaps buffers without waiting for DuckDB.
 */
export interface StageBuffers {
  open: StageBuffer;
  committing: StageBuffer | null;
  spare: Promise<StageBuffer>;
}

/** What the sink holds in memory before commit (invariant 6: bounded by --max-staged-mib). */
export const heldBytes = (buffers: StageBuffers): number => stagedBytes(buffers.open) + (buffers.committing ? stagedBytes(buffers.committing) : 0);

/** Makes everything staged readable by other connections; the buffer takes no more points. */
export function sealStageBuffer(buffer: StageBuffer): void {
  if (buffer.sealed) return;
  buffer.sealed = true;
  flushChunk(buffer);
  buffer.appender.closeSync();
  buffer.dictAppender.closeSync();
}

/** Releases a buffer and its connection. */
export function closeStageBuffer(buffer: StageBuffer): void {
  sealStageBuffer(buffer);
  buffer.connection.closeSync();
}
