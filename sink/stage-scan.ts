import duckdb from '@duckdb/node-bindings';
import { DuckDBTableFunction, INTEGER, UINTEGER, VARCHAR, type DuckDBDataChunk, type DuckDBInstance } from '@duckdb/node-api';
import { LAKE_COLUMNS, type LakeColumn } from '../proto/columns';
import { sqlString } from './sql';
import { BLOCK_MASK, BLOCK_SHIFT, STAGE_COLUMNS, STAGE_TYPE, type Block } from './stage-columns';
import type { FileRows } from './stage-order';

// DuckDB reads a sealed stage buffer through two table functions: `dronelake_staged(buffer,
// file)`, the rows of one file, in the files' order, a vector at a time, each column's
// values gathered from the buffer's blocks into one scratch array and copied into DuckDB's
// vector with one memcpy; and `dronelake_staged_dict(buffer)`, the strings the rows' ids
// stand for. DuckDB calls the functions on the JavaScript thread, while
// the statement that scans it runs on DuckDB's own; the sink runs every such statement with
// the async API, so the thread is free to answer. A call on this thread that blocks until
// DuckDB finishes that statement would wait for a scan that waits for this thread: none may
// be made while a commit is written.

const SCAN = 'dronelake_staged';
const DICT_SCAN = 'dronelake_staged_dict';

/** What the scan reads of a stage buffer (sink/stage.ts). */
export interface ScannedBuffer {
  /** Names the buffer to the scan. */
  readonly id: number;
  readonly blocks: readonly Block[];
  /** Per column, whether any row is null. */
  readonly nulls: readonly boolean[];
  /** Once sealed: the rows in the files' order, and each file's share of it. */
  readonly order: Uint32Array | null;
  readonly files: readonly FileRows[];
  /** Once sealed: the strings of its string columns, by the id the rows hold. */
  readonly strings: readonly string[];
}
const CHUNK_ROWS = duckdb.vector_size();
const VALIDITY_BYTES = Math.ceil(CHUNK_ROWS / 64) * 8;

/** The buffers DuckDB may scan, by id: from their creation to their close. */
const scannable = new Map<number, ScannedBuffer>();
/** The databases the functions are registered in, once each, for every connection: when done. */
const registered = new WeakMap<DuckDBInstance, Promise<void>>();

/** What a scan is bound to: a buffer, and its file's positions in the order. */
class ScanBinding {
  constructor(
    readonly buffer: ScannedBuffer,
    readonly from: number,
    readonly to: number,
  ) {}
}

/** A dictionary scan's place: the next id, and the end. */
class DictCursor {
  constructor(
    readonly buffer: ScannedBuffer,
    public at: number,
  ) {}
}

/** A scan's place in its buffer's order: the next position, and the end of its file. */
class ScanState {
  /** Each column's blocks, made once per scan. */
  readonly columns: ColumnBlocks[];
  readonly validity: Array<readonly Uint8Array[] | null>;

  constructor(
    readonly buffer: ScannedBuffer,
    public at: number,
    readonly to: number,
  ) {
    this.columns = STAGE_COLUMNS.map((_, c) => columnBlocks(buffer.blocks, c));
    // A column with no null anywhere keeps the chunk's validity as DuckDB hands it over: all valid.
    this.validity = STAGE_COLUMNS.map((_, c) => (buffer.nulls[c] ? buffer.blocks.map((b) => b.validity[c]!) : null));
  }
}

// One scratch array per kind: a scan call fills and copies them before it returns, and
// calls come one at a time on the JavaScript thread.
const scratchF64 = new Float64Array(CHUNK_ROWS);
const scratchU32 = new Uint32Array(CHUNK_ROWS);
const scratchU8 = new Uint8Array(CHUNK_ROWS);
const scratchValidity = new Uint8Array(VALIDITY_BYTES);

// A function per kind, so that each loop reads one kind of array and V8 keeps it
// monomorphic: one loop for all three ran at twice the cost.
function gatherF64(from: readonly Float64Array[], order: Uint32Array, at: number, rows: number): Float64Array {
  for (let j = 0; j < rows; j++) {
    const i = order[at + j]!;
    scratchF64[j] = from[i >>> BLOCK_SHIFT]![i & BLOCK_MASK]!;
  }
  return scratchF64;
}
function gatherU32(from: readonly Uint32Array[], order: Uint32Array, at: number, rows: number): Uint32Array {
  for (let j = 0; j < rows; j++) {
    const i = order[at + j]!;
    scratchU32[j] = from[i >>> BLOCK_SHIFT]![i & BLOCK_MASK]!;
  }
  return scratchU32;
}
function gatherU8(from: readonly Uint8Array[], order: Uint32Array, at: number, rows: number): Uint8Array {
  for (let j = 0; j < rows; j++) {
    const i = order[at + j]!;
    scratchU8[j] = from[i >>> BLOCK_SHIFT]![i & BLOCK_MASK]!;
  }
  return scratchU8;
}
function gatherValidity(from: readonly Uint8Array[], order: Uint32Array, at: number, rows: number): Uint8Array {
  scratchValidity.fill(0);
  for (let j = 0; j < rows; j++) {
    const i = order[at + j]!;
    const row = i & BLOCK_MASK;
    if ((from[i >>> BLOCK_SHIFT]![row >> 3]! & (1 << (row & 7))) !== 0) scratchValidity[j >> 3]! |= 1 << (j & 7);
  }
  return scratchValidity;
}

/** One column's arrays across a buffer's blocks, by kind: what the gathers read. */
type ColumnBlocks = { kind: 'f64'; values: Float64Array[] } | { kind: 'u32'; values: Uint32Array[] } | { kind: 'u8'; values: Uint8Array[] };

function columnBlocks(blocks: readonly Block[], c: number): ColumnBlocks {
  const values = blocks.map((b) => b.values[c]!);
  if (values.every((v): v is Float64Array => v instanceof Float64Array)) return { kind: 'f64', values };
  if (values.every((v): v is Uint32Array => v instanceof Uint32Array)) return { kind: 'u32', values };
  if (values.every((v): v is Uint8Array => v instanceof Uint8Array)) return { kind: 'u8', values };
  throw new Error(`staged column ${c} holds arrays of more than one kind`);
}

/** Fills DuckDB's chunk with the scan's next rows; none once its file is done. */
function scanChunk(state: ScanState, chunk: DuckDBDataChunk): void {
  const order = state.buffer.order!;
  const rows = Math.min(CHUNK_ROWS, state.to - state.at);
  chunk.rowCount = rows;
  if (rows === 0) return;
  for (let c = 0; c < state.columns.length; c++) {
    const column = state.columns[c]!;
    const out =
      column.kind === 'f64' ? gatherF64(column.values, order, state.at, rows) : column.kind === 'u32' ? gatherU32(column.values, order, state.at, rows) : gatherU8(column.values, order, state.at, rows);
    const vector = duckdb.data_chunk_get_vector(chunk.chunk, c);
    duckdb.copy_data_to_vector(vector, 0, out.buffer as ArrayBuffer, 0, rows * out.BYTES_PER_ELEMENT);
    const validity = state.validity[c];
    if (validity) {
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
      info.setBindData(new ScanBinding(buffer, file.from, file.to));
    },
    initFunction: (info) => {
      const bound = info.bindData;
      if (!(bound instanceof ScanBinding)) {
        info.setError(`${SCAN}: no bound scan`);
        return;
      }
      // Each scan its own cursor; one thread, so the rows come out in order.
      info.setInitData(new ScanState(bound.buffer, bound.from, bound.to));
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

/** Fills DuckDB's chunk with the next ids and their strings; none once all are out. */
function scanDictChunk(cursor: DictCursor, chunk: DuckDBDataChunk): void {
  const strings = cursor.buffer.strings;
  const rows = Math.min(CHUNK_ROWS, strings.length - cursor.at);
  chunk.rowCount = rows;
  if (rows === 0) return;
  for (let j = 0; j < rows; j++) scratchU32[j] = cursor.at + j;
  duckdb.copy_data_to_vector(duckdb.data_chunk_get_vector(chunk.chunk, 0), 0, scratchU32.buffer as ArrayBuffer, 0, rows * 4);
  // One call a string: a dictionary holds a commit's drones, gateways and missions, not its rows.
  const vector = duckdb.data_chunk_get_vector(chunk.chunk, 1);
  for (let j = 0; j < rows; j++) duckdb.vector_assign_string_element(vector, j, strings[cursor.at + j]!);
  cursor.at += rows;
}

function dictScanFunction(): DuckDBTableFunction {
  return DuckDBTableFunction.create({
    name: DICT_SCAN,
    parameterTypes: [INTEGER],
    bindFunction: (info) => {
      const id = Number(info.getParameter(0));
      const buffer = scannable.get(id);
      if (!buffer?.order) {
        info.setError(`${DICT_SCAN}: no sealed stage buffer ${id}`);
        return;
      }
      info.addResultColumn('id', UINTEGER);
      info.addResultColumn('s', VARCHAR);
      info.setCardinality(buffer.strings.length, true);
      info.setBindData(new DictCursor(buffer, 0));
    },
    initFunction: (info) => {
      const bound = info.bindData;
      if (!(bound instanceof DictCursor)) {
        info.setError(`${DICT_SCAN}: no bound scan`);
        return;
      }
      info.setInitData(new DictCursor(bound.buffer, 0));
      info.setMaxThreads(1);
    },
    mainFunction: (info, chunk) => {
      const cursor = info.initData;
      if (!(cursor instanceof DictCursor) || cursor.buffer.order === null) {
        info.setError(`${DICT_SCAN}: the stage buffer was closed during its scan`);
        return;
      }
      scanDictChunk(cursor, chunk);
    },
  });
}

/** Registers the scans in `db`, for every connection: before its first commit. */
export async function registerStageScan(db: DuckDBInstance): Promise<void> {
  let registering = registered.get(db);
  if (registering === undefined) {
    registering = (async () => {
      // Registered in the database's catalog, for every connection: this one can go.
      const connection = await db.connect();
      connection.registerTableFunction(scanFunction());
      connection.registerTableFunction(dictScanFunction());
      connection.closeSync();
    })();
    registered.set(db, registering);
  }
  await registering;
}

/** Makes `buffer` scannable in every database the scans are registered in. */
export function openStageScan(buffer: ScannedBuffer): void {
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
  return `WITH dict AS (SELECT id, s FROM ${DICT_SCAN}(${buffer.id})) SELECT ${LAKE_SELECT} FROM ${SCAN}(${buffer.id}, ${index}) t`;
}
