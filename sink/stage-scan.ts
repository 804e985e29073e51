import duckdb from '@duckdb/node-bindings';
import { DuckDBTableFunction, INTEGER, type DuckDBConnection, type DuckDBDataChunk, type DuckDBInstance } from '@duckdb/node-api';
import { LAKE_COLUMNS, type LakeColumn } from '../proto/columns';
import { sqlString } from './sql';
import { STAGE_COLUMNS, STAGE_TYPE, type ColumnBuffer } from './stage-columns';
import type { FileRows } from './stage-order';

// DuckDB reads a sealed stage buffer through a table function, `dronelake_staged(buffer,
// file)`: the rows of one file, in the files' order, a vector at a time, each column's
// values gathered from the buffer's typed arrays into one scratch array and copied into
// DuckDB's vector with one memcpy. DuckDB calls the function on the JavaScript thread, while
// the statement that scans it runs on DuckDB's own; the sink runs every such statement with
// the async API, so the thread is free to answer.

const SCAN = 'dronelake_staged';

/** What the scan reads of a stage buffer (sink/stage.ts). */
export interface ScannedBuffer {
  /** Names the buffer to the scan. */
  readonly id: number;
  /** The name its dictionary table begins with. */
  readonly table: string;
  readonly columns: readonly ColumnBuffer[];
  /** Once sealed: the rows in the files' order, and each file's share of it. */
  readonly order: Uint32Array | null;
  readonly files: readonly FileRows[];
}
const CHUNK_ROWS = duckdb.vector_size();
const VALIDITY_BYTES = Math.ceil(CHUNK_ROWS / 64) * 8;

/** The buffers DuckDB may scan, by id: from their creation to their close. */
const scannable = new Map<number, ScannedBuffer>();
/** The databases the function is registered in: once each, for every connection. */
const registered = new WeakSet<DuckDBInstance>();

/** A scan's place in its buffer's order: the next position, and the end of its file. */
class ScanState {
  constructor(
    readonly buffer: ScannedBuffer,
    public at: number,
    readonly to: number,
  ) {}
}

// One scratch array per kind: a scan call fills and copies them before it returns, and
// calls come one at a time on the JavaScript thread.
const scratchF64 = new Float64Array(CHUNK_ROWS);
const scratchU32 = new Uint32Array(CHUNK_ROWS);
const scratchU8 = new Uint8Array(CHUNK_ROWS);
const scratchValidity = new Uint8Array(VALIDITY_BYTES);

// A function per kind, so that each loop reads one kind of array and V8 keeps it
// monomorphic: one loop for all three ran at twice the cost.
function gatherF64(from: Float64Array, order: Uint32Array, at: number, rows: number): Float64Array {
  for (let j = 0; j < rows; j++) scratchF64[j] = from[order[at + j]!]!;
  return scratchF64;
}
function gatherU32(from: Uint32Array, order: Uint32Array, at: number, rows: number): Uint32Array {
  for (let j = 0; j < rows; j++) scratchU32[j] = from[order[at + j]!]!;
  return scratchU32;
}
function gatherU8(from: Uint8Array, order: Uint32Array, at: number, rows: number): Uint8Array {
  for (let j = 0; j < rows; j++) scratchU8[j] = from[order[at + j]!]!;
  return scratchU8;
}
function gatherValidity(from: Uint8Array, order: Uint32Array, at: number, rows: number): Uint8Array {
  scratchValidity.fill(0);
  for (let j = 0; j < rows; j++) {
    const i = order[at + j]!;
    if ((from[i >> 3]! & (1 << (i & 7))) !== 0) scratchValidity[j >> 3]! |= 1 << (j & 7);
  }
  return scratchValidity;
}

/** Fills DuckDB's chunk with the scan's next rows; none once its file is done. */
function scanChunk(state: ScanState, chunk: DuckDBDataChunk): void {
  const order = state.buffer.order!;
  const rows = Math.min(CHUNK_ROWS, state.to - state.at);
  chunk.rowCount = rows;
  if (rows === 0) return;
  const columns = state.buffer.columns;
  for (let c = 0; c < columns.length; c++) {
    const { values, validity, nulls } = columns[c]!;
    const out =
      values instanceof Float64Array ? gatherF64(values, order, state.at, rows) : values instanceof Uint32Array ? gatherU32(values, order, state.at, rows) : gatherU8(values, order, state.at, rows);
    const vector = duckdb.data_chunk_get_vector(chunk.chunk, c);
    duckdb.copy_data_to_vector(vector, 0, out.buffer as ArrayBuffer, 0, rows * out.BYTES_PER_ELEMENT);
    // A column with no null anywhere keeps the chunk's validity as DuckDB hands it over: all valid.
    if (nulls) {
      duckdb.vector_ensure_validity_writable(vector);
      duckdb.copy_data_to_vector_validity(vector, 0, gatherValidity(validity, order, state.at, rows).buffer as ArrayBuffer, 0, VALIDITY_BYTES);
    }
  }
  state.at += rows;
}

function scanFunction(): DuckDBTableFunction {
  return DuckDBTableFunction.create({
    name: SCAN,
    parameterTypes: [INTEGER, INTEGER],
    bindFunction: (info) => {
      const id = Number(info.getParameter(0));
      const index = Number(info.getParameter(1));
      const buffer = scannable.get(id);
      const file = buffer?.order ? buffer.files[index] : undefined;
      if (!buffer || !file) {
        info.setError(`${SCAN}: no sealed stage buffer ${id} with a file ${index}`);
        return;
      }
      for (const { column, kind } of STAGE_COLUMNS) info.addResultColumn(column.name, STAGE_TYPE[kind].duck);
      info.setCardinality(file.to - file.from, true);
      info.setBindData(new ScanState(buffer, file.from, file.to));
    },
    initFunction: (info) => {
      const bound = info.bindData;
      if (!(bound instanceof ScanState)) {
        info.setError(`${SCAN}: no bound scan`);
        return;
      }
      // Each scan its own cursor; one thread, so the rows come out in order.
      info.setInitData(new ScanState(bound.buffer, bound.at, bound.to));
      info.setMaxThreads(1);
    },
    mainFunction: (info, chunk) => {
      const state = info.initData;
      if (!(state instanceof ScanState) || state.buffer.order === null) {
        info.setError(`${SCAN}: the stage buffer was closed during its scan`);
        return;
      }
      scanChunk(state, chunk);
    },
  });
}

/** Makes `buffer` scannable through `connection`'s database. */
export function openStageScan(db: DuckDBInstance, connection: DuckDBConnection, buffer: ScannedBuffer): void {
  if (!registered.has(db)) {
    connection.registerTableFunction(scanFunction());
    registered.add(db);
  }
  scannable.set(buffer.id, buffer);
}

export function closeStageScan(buffer: ScannedBuffer): void {
  scannable.delete(buffer.id);
}

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
 * The query that reads file `index` of a sealed buffer (`buffer.files`) as lake rows, in
 * the files' sort order. Strings come back through the buffer's dictionary.
 */
export function lakeRowsSql(buffer: ScannedBuffer, index: number): string {
  return `WITH dict AS (SELECT id, s FROM ${buffer.table}_dict) SELECT ${LAKE_SELECT} FROM ${SCAN}(${buffer.id}, ${index}) t`;
}
