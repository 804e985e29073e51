import duckdb from '@duckdb/node-bindings';
import {
  BOOLEAN,
  DOUBLE,
  DuckDBTableFunction,
  INTEGER,
  UINTEGER,
  UTINYINT,
  type DuckDBAppender,
  type DuckDBConnection,
  type DuckDBDataChunk,
  type DuckDBInstance,
  type DuckDBType,
} from '@duckdb/node-api';
import { LAKE_COLUMNS, SORT_COLUMNS, type LakeColumn } from '../proto/columns';
import { MICROS_PER_HOUR } from '../proto/time';
import { latencyBucket, type LatencyHistogram } from './latency';
import { isPresent, POINT_FIELDS, TS_COLUMN, type PointColumns } from '../proto/columnar';
import type { PointKeys } from './dedupe';
import { emptyCommitCounts, type OpenCommitCounts } from './checkpoint';
import type { LivePoint } from './live';
import { newQuarantine, type QuarantineBuffer } from './quarantine';
import { sqlString } from './sql';

// Staging is columnar. Points are written into typed arrays, a segment of rows at a time,
// and stay in JavaScript: the commit seals the buffer, which puts the rows in the lake's
// order, (drone_id, ts), and DuckDB reads them through a table function, a chunk of its
// vector size at a time, one memcpy per column. Per-value appender calls cost ~250 ns each
// across the JS/C++ boundary, which capped the sink at ~140k points/s; whole-chunk copies
// make staging a small part of a point's cost. Two costs of the commit are gone this way:
// DuckDB's sort of the finished rows, with their strings (a third of the commit's CPU), and
// appending every row to a DuckDB table, which keeps statistics of each column as it goes
// (a quarter); sorting fixed-width numbers that arrive nearly in order (a drone's points
// come in time order) costs a fraction of either. So every staged column is fixed-width:
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
const validityBytes = (rows: number) => Math.ceil(rows / 64) * 8;
/**
 * Rows of a segment, the typed arrays staged points are written into: eight DuckDB chunks,
 * so that a commit of 500,000 points makes some 30 sets of arrays for the garbage
 * collector, not 250. A staged row's number is its segment's times SEGMENT_ROWS plus its
 * row in the segment.
 */
const SEGMENT_ROWS = 8 * CHUNK_ROWS;
const SEGMENT_SHIFT = Math.log2(SEGMENT_ROWS);
const SEGMENT_MASK = SEGMENT_ROWS - 1;
if (!Number.isInteger(SEGMENT_SHIFT)) throw new Error(`DuckDB's vector size ${CHUNK_ROWS} is not a power of two`);

const STAGE_COLUMNS = LAKE_COLUMNS.map((column) => ({ column, kind: STAGE_KIND[column.kind] }));
/** What one staged row takes in DuckDB: its fixed-width values plus a validity bit each. */
const STAGED_ROW_BYTES = STAGE_COLUMNS.reduce((n, { kind }) => n + STAGE_TYPE[kind].bytes, 0) + Math.ceil(STAGE_COLUMNS.length / 8);
/** A dictionary entry: the string as DuckDB stores it, its id, and the JS map entry that finds it. */
const DICT_ENTRY_OVERHEAD = 64;
const POINT_COLUMN_COUNT = LAKE_COLUMNS.filter((c) => c.origin === 'point').length;
const GATEWAY_INDEX = LAKE_COLUMNS.findIndex((c) => c.name === 'gateway_id');
const DRONE_INDEX = LAKE_COLUMNS.findIndex((c) => c.name === 'drone_id');
const TS_INDEX = LAKE_COLUMNS.findIndex((c) => c.name === 'ts');
// sealStageBuffer orders the rows as the lake's files are sorted.
if (SORT_COLUMNS.join() !== 'drone_id,ts') throw new Error(`stage.ts sorts by (drone_id, ts), the lake by (${SORT_COLUMNS.join(', ')})`);
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

/**
 * The query that reads a staged buffer as lake rows, for rows whose event time lies in
 * [fromUs, toUs). Strings come back through the buffer's dictionary.
 */
const LAKE_SELECT = LAKE_COLUMNS.map(lakeExpression).join(', ');

export function lakeRowsSql(buffer: StageBuffer, fromUs: number, toUs: number): string {
  if (!buffer.sealed) throw new Error(`stage buffer ${buffer.table} is read before it is sealed`);
  return (
    `WITH dict AS (SELECT id, s FROM ${buffer.table}_dict) ` +
    `SELECT ${LAKE_SELECT} FROM ${STAGED_ROWS}(${buffer.number}, ${fromUs}, ${toUs}) t`
  );
}

interface ColumnBuffer {
  kind: StageKind;
  values: Float64Array | Uint32Array | Uint8Array;
  /** DuckDB's validity mask: bit i set when row i is not null. */
  validity: Uint8Array;
  /** Whether any bit of `validity` is clear: the seal copies the mask only then. */
  nulls: boolean;
}

/**
 * Points staged for one commit: their columns, the DuckDB table of their strings and its
 * appender, and what they hold. Each buffer has a connection of its own, because a DuckDB
 * connection runs one statement at a time, and the appender flushes through it while other
 * buffers are being committed.
 */
export interface StageBuffer {
  readonly connection: DuckDBConnection;
  /** Names the buffer's string table (`{table}_dict`) and its bad input. */
  readonly table: string;
  /** Names the buffer to the table function that reads its rows. */
  readonly number: number;
  readonly dictAppender: DuckDBAppender;
  readonly dict: Map<string, number>;
  dictBytes: number;
  /** The segment being filled. */
  columns: ColumnBuffer[];
  /** Full segments; with `columns`, every staged row, until the buffer is closed. */
  readonly full: ColumnBuffer[][];
  /** Rows in `columns`. */
  segmentRows: number;
  sealed: boolean;
  /** Once sealed: the staged rows' numbers in the lake's order. */
  order: Uint32Array;
  /** Once sealed: the event-time bounds of each hour's rows, [min, max]. */
  readonly bounds: Map<number, [number, number]>;
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

function newColumn(kind: StageKind, rows: number): ColumnBuffer {
  const values = kind === 'f64' ? new Float64Array(rows) : kind === 'u32' || kind === 'dict' ? new Uint32Array(rows) : new Uint8Array(rows);
  return { kind, values, validity: new Uint8Array(validityBytes(rows)).fill(0xff), nulls: false };
}

/** A segment's columns, or (CHUNK_ROWS) the columns of one DuckDB chunk. */
const newColumns = (rows: number): ColumnBuffer[] => STAGE_COLUMNS.map(({ kind }) => newColumn(kind, rows));

/**
 * Segments a seal let go of, for the next buffers to fill. Each commit stages tens of MB;
 * allocated afresh every time, that memory made V8 run full collections for its external
 * memory, costing more than the sort saves. At most POOLED_SEGMENTS wait here (about 50 MB),
 * and never more than the sink once staged (invariant 6).
 */
const pooled: ColumnBuffer[][] = [];
const POOLED_SEGMENTS = 32;

function takeSegment(): ColumnBuffer[] {
  const segment = pooled.pop();
  if (!segment) return newColumns(SEGMENT_ROWS);
  for (const col of segment) {
    if (col.nulls) col.validity.fill(0xff);
    col.nulls = false;
  }
  return segment;
}

function releaseSegments(segments: ColumnBuffer[][]): void {
  for (const segment of segments) if (pooled.length < POOLED_SEGMENTS) pooled.push(segment);
}

/** Sealed buffers by number: what the table function reads. A buffer leaves when closed. */
const sealedBuffers = new Map<number, StageBuffer>();
let buffersMade = 0;
/** The table function that reads a sealed buffer's rows: `dronelake_staged(number, from_us, to_us)`. */
const STAGED_ROWS = 'dronelake_staged';
/** The databases the table function is registered with (once each, for all their connections). */
const withStagedRows = new WeakSet<DuckDBInstance>();

/** A scan of one buffer's rows with event times in [from, to): where it has got to in the order. */
interface Scan {
  buffer: StageBuffer;
  from: number;
  to: number;
  at: number;
}
// The bind step makes the scan; each execution starts it over. Keyed by the objects handed
// to DuckDB as bind and init data, so the scan is found again without a cast.
const bound = new WeakMap<object, Omit<Scan, 'at'>>();
const scans = new WeakMap<object, Scan>();
/** One chunk's rows, picked from the order, and their columns: scratch that each call of scanChunk fills and copies into DuckDB before it returns, so scans may share it. */
const picked = new Uint32Array(CHUNK_ROWS);
const gathered = newColumns(CHUNK_ROWS);

/** Fills `output` with the next rows of the scan, up to one chunk; 0 rows ends it. */
function scanChunk(scan: Scan, output: DuckDBDataChunk): void {
  const { buffer, from, to } = scan;
  const order = buffer.order;
  const segments = [...buffer.full, buffer.columns];
  const ts = segments.map((c) => c[TS_INDEX]!.values);
  let count = 0;
  while (scan.at < order.length && count < CHUNK_ROWS) {
    const row = order[scan.at++]!;
    const t = ts[row >>> SEGMENT_SHIFT]![row & SEGMENT_MASK]!;
    if (t >= from && t < to) picked[count++] = row;
  }
  for (let c = 0; c < gathered.length; c++) {
    const col = gathered[c]!;
    gatherColumn(segments, c, picked, 0, count, col);
    const vector = duckdb.data_chunk_get_vector(output.chunk, c);
    duckdb.copy_data_to_vector(vector, 0, col.values.buffer as ArrayBuffer, 0, count * STAGE_TYPE[col.kind].bytes);
    duckdb.vector_ensure_validity_writable(vector);
    duckdb.copy_data_to_vector_validity(vector, 0, col.validity.buffer as ArrayBuffer, 0, validityBytes(CHUNK_ROWS));
  }
  output.rowCount = count;
}

const stagedRows = (): DuckDBTableFunction =>
  DuckDBTableFunction.create({
    name: STAGED_ROWS,
    parameterTypes: [INTEGER, DOUBLE, DOUBLE],
    bindFunction: (info) => {
      for (const { column, kind } of STAGE_COLUMNS) info.addResultColumn(column.name, STAGE_TYPE[kind].duck);
      const [number, from, to] = [info.getParameter(0), info.getParameter(1), info.getParameter(2)];
      const buffer = typeof number === 'number' ? sealedBuffers.get(number) : undefined;
      if (!buffer || typeof from !== 'number' || typeof to !== 'number') {
        info.setError(`${STAGED_ROWS}: no sealed stage buffer ${String(number)}`);
        return;
      }
      const key = {};
      bound.set(key, { buffer, from, to });
      info.setBindData(key);
      info.setCardinality(buffer.points, false);
    },
    initFunction: (info) => {
      const scan = info.bindData && bound.get(info.bindData);
      if (!scan) {
        info.setError(`${STAGED_ROWS}: scan started without its bind`);
        return;
      }
      const key = {};
      scans.set(key, { ...scan, at: 0 });
      info.setInitData(key);
      // One thread reads the rows in order: a COPY without ORDER BY writes them as they come.
      info.setMaxThreads(1);
    },
    mainFunction: (info, output) => {
      const scan = info.initData && scans.get(info.initData);
      if (!scan) info.setError(`${STAGED_ROWS}: scan without its state`);
      else scanChunk(scan, output);
    },
  });

export async function createStageBuffer(db: DuckDBInstance, table: string): Promise<StageBuffer> {
  const connection = await db.connect();
  if (!withStagedRows.has(db)) {
    connection.registerTableFunction(stagedRows());
    withStagedRows.add(db);
  }
  await connection.run(`CREATE OR REPLACE TABLE ${table}_dict (id UINTEGER, s VARCHAR)`);
  return {
    connection,
    table,
    number: buffersMade++,
    dictAppender: await connection.createAppender(`${table}_dict`),
    dict: new Map(),
    dictBytes: 0,
    columns: takeSegment(),
    full: [],
    segmentRows: 0,
    sealed: false,
    order: new Uint32Array(0),
    bounds: new Map(),
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

/**
 * `perm[from..to)` holds the row numbers of one drone in arrival order; this puts them in
 * `ts` order, ties in arrival order. A drone's points
 * come nearly in order, so an insertion sort does it in about one pass; input far from
 * order (a log replayed backwards) goes to the library sort once the moves pass a bound,
 * so no input costs quadratic time.
 */
function sortByTime(perm: Uint32Array, from: number, to: number, ts: Array<ColumnBuffer['values']>): void {
  const budget = 16 * (to - from) + 1024;
  let moves = 0;
  for (let i = from + 1; i < to; i++) {
    const row = perm[i]!;
    const t = ts[row >>> SEGMENT_SHIFT]![row & SEGMENT_MASK]!;
    let j = i - 1;
    while (j >= from) {
      const before = perm[j]!;
      if (ts[before >>> SEGMENT_SHIFT]![before & SEGMENT_MASK]! <= t) break;
      perm[j + 1] = before;
      j--;
    }
    perm[j + 1] = row;
    moves += i - 1 - j;
    if (moves > budget) {
      const time = (r: number) => ts[r >>> SEGMENT_SHIFT]![r & SEGMENT_MASK]!;
      perm.subarray(from, to).sort((a, b) => time(a) - time(b) || a - b);
      return;
    }
  }
}

/**
 * The staged rows' numbers in the lake's order, (drone_id, ts): a counting sort by the
 * drone's place among the dictionary's strings, in arrival order, then each drone's rows by
 * time. Strings compare as DuckDB orders VARCHAR, by their UTF-8 bytes.
 */
function lakeOrder(buffer: StageBuffer, segments: ColumnBuffer[][], rows: number): Uint32Array {
  const strings = [...buffer.dict.keys()];
  const bytes = strings.map((s) => Buffer.from(s, 'utf8'));
  const byBytes = Array.from(strings, (_, id) => id).sort((a, b) => Buffer.compare(bytes[a]!, bytes[b]!));
  const rank = new Uint32Array(strings.length);
  byBytes.forEach((id, place) => (rank[id] = place));
  const drones = segments.map((c) => c[DRONE_INDEX]!.values);
  // starts[r]: where the rows of the string ranked r begin in the order.
  const starts = new Uint32Array(strings.length + 1);
  const placeOf = (row: number) => rank[drones[row >>> SEGMENT_SHIFT]![row & SEGMENT_MASK]!]!;
  for (let row = 0; row < rows; row++) starts[placeOf(row) + 1]! += 1;
  for (let r = 1; r <= strings.length; r++) starts[r] = starts[r]! + starts[r - 1]!;
  const next = starts.slice(0, strings.length);
  const perm = new Uint32Array(rows);
  for (let row = 0; row < rows; row++) {
    const place = placeOf(row);
    perm[next[place]!] = row;
    next[place]! += 1;
  }
  const ts = segments.map((c) => c[TS_INDEX]!.values);
  for (let r = 0; r < strings.length; r++) if (starts[r + 1]! - starts[r]! > 1) sortByTime(perm, starts[r]!, starts[r + 1]!, ts);
  return perm;
}

/** Copies column `c` of the rows `perm[from..from+count)` into `out`, values and validity. */
function gatherColumn(segments: ColumnBuffer[][], c: number, perm: Uint32Array, from: number, count: number, out: ColumnBuffer): void {
  const target = out.values;
  const sources = segments.map((segment) => segment[c]!.values);
  for (let j = 0; j < count; j++) {
    const row = perm[from + j]!;
    target[j] = sources[row >>> SEGMENT_SHIFT]![row & SEGMENT_MASK]!;
  }
  const validity = out.validity;
  validity.fill(0xff);
  if (!segments.some((segment) => segment[c]!.nulls)) return;
  const masks = segments.map((segment) => segment[c]!.validity);
  for (let j = 0; j < count; j++) {
    const row = perm[from + j]!;
    const at = row & SEGMENT_MASK;
    if ((masks[row >>> SEGMENT_SHIFT]![at >> 3]! & (1 << (at & 7))) === 0) validity[j >> 3]! &= ~(1 << (j & 7));
  }
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
    // As many rows as the open segment has room for.
    const start = buffer.segmentRows;
    const take = Math.min(count - from, SEGMENT_ROWS - start);
    for (let c = 0; c < POINT_COLUMN_COUNT; c++) {
      const column = points.columns[c] ?? null;
      const col = buffer.columns[c]!;
      const out = col.values;
      const validity = col.validity;
      if (column === null) {
        for (let j = 0; j < take; j++) validity[(start + j) >> 3]! &= ~(1 << ((start + j) & 7));
        col.nulls = true;
        continue;
      }
      const { values, present } = column;
      const ids = dictIds[c];
      for (let j = 0; j < take; j++) {
        const i = rows[from + j]!;
        const row = start + j;
        if (present !== null && (present[i >> 3]! & (1 << (i & 7))) === 0) {
          validity[row >> 3]! &= ~(1 << (row & 7));
          col.nulls = true;
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
    buffer.segmentRows = start + take;
    buffer.points += take;
    from += take;
    if (buffer.segmentRows === SEGMENT_ROWS) {
      buffer.full.push(buffer.columns);
      buffer.columns = takeSegment();
      buffer.segmentRows = 0;
    }
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

/**
 * Puts the staged rows in the lake's order, (drone_id, ts), notes each hour's event-time
 * bounds, and makes the rows readable by lakeRowsSql on any connection of the database;
 * the buffer takes no more points. A COPY of lakeRowsSql without ORDER BY writes the rows in
 * that order: the table function hands them over in order, on one thread.
 */
export function sealStageBuffer(buffer: StageBuffer): void {
  if (buffer.sealed) return;
  buffer.sealed = true;
  const segments = [...buffer.full, buffer.columns];
  const rows = buffer.full.length * SEGMENT_ROWS + buffer.segmentRows;
  buffer.order = lakeOrder(buffer, segments, rows);
  for (let row = 0; row < rows; row++) {
    const t = segments[row >>> SEGMENT_SHIFT]![TS_INDEX]!.values[row & SEGMENT_MASK]!;
    const hour = Math.floor(t / MICROS_PER_HOUR);
    const b = buffer.bounds.get(hour);
    if (!b) buffer.bounds.set(hour, [t, t]);
    else if (t < b[0]) b[0] = t;
    else if (t > b[1]) b[1] = t;
  }
  sealedBuffers.set(buffer.number, buffer);
  buffer.dictAppender.closeSync();
}

/** Adds the event-to-commit latency of every row of a sealed buffer, committed at `commitUs`. */
export function addLatencies(buffer: StageBuffer, commitUs: number, latency: LatencyHistogram): void {
  const segments = [...buffer.full, buffer.columns];
  const rows = buffer.order.length;
  const counts: number[] = [];
  for (let row = 0; row < rows; row++) {
    const bucket = latencyBucket(commitUs, segments[row >>> SEGMENT_SHIFT]![TS_INDEX]!.values[row & SEGMENT_MASK]!);
    counts[bucket] = (counts[bucket] ?? 0) + 1;
  }
  counts.forEach((n, bucket) => latency.add(bucket, n));
}

/** Releases a buffer, its rows and its connection. */
export function closeStageBuffer(buffer: StageBuffer): void {
  sealStageBuffer(buffer);
  sealedBuffers.delete(buffer.number);
  releaseSegments([...buffer.full, buffer.columns]);
  buffer.full.length = 0;
  buffer.columns = [];
  buffer.segmentRows = 0;
  buffer.order = new Uint32Array(0);
  buffer.connection.closeSync();
}
