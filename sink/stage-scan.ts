import duckdb from '@duckdb/node-bindings';
import { BOOLEAN, DOUBLE, DuckDBTableFunction, ENUM, INTEGER, UINTEGER, type DuckDBDataChunk, type DuckDBInstance, type DuckDBType } from '@duckdb/node-api';
import { LAKE_COLUMNS, type LakeColumn } from '../proto/columns';
import { BLOCK_MASK, BLOCK_SHIFT, STAGE_BYTES, STAGE_COLUMNS, type Block, type StageKind } from './stage-columns';
import type { FileRows } from './stage-order';

// DuckDB reads a sealed stage buffer through a table function, `dronelake_staged(buffer,
// file)`: the rows of one file, in the files' order, a vector at a time, each column's
// values gathered from the buffer's blocks into one scratch array and copied into DuckDB's
// vector with one memcpy. String and enum columns come out as DuckDB ENUMs of the buffer's
// dictionary and of the enum's names, declared when the scan is bound, so DuckDB names each
// row's value with a cast of its index (lakeRowsSql): a lookup in a list per row and
// column cost about 0.05 CPU-us a point each, the cast a fifth of that. DuckDB calls the
// function on the JavaScript thread, while the statement that scans it runs on DuckDB's
// own; the sink runs every such statement with the async API, so the thread is free to
// answer. A call on this thread that blocks until DuckDB finishes that statement would wait
// for a scan that waits for this thread: none may be made while a commit is written.

const SCAN = 'dronelake_staged';

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

/**
 * Bytes of an ENUM's index in DuckDB's vectors, by its count of values: DuckDB's rule for
 * the index type of a new ENUM, pinned by a test against DuckDB itself.
 */
export const enumIndexBytes = (values: number): 1 | 2 | 4 => (values <= 0xff ? 1 : values <= 0xffff ? 2 : 4);

for (const column of LAKE_COLUMNS) {
  const names = column.enumNames;
  // An ENUM's values are dense and distinct, and a staged enum index is one byte. (The
  // spread turns an enum number the proto skips into undefined, which `some` alone skips.)
  if (names && (names.length > 0xff || [...names].some((n) => typeof n !== 'string') || new Set(names).size !== names.length)) {
    throw new Error(`enum column ${column.name}: its names are not distinct, dense and at most 255`);
  }
}

/** How a scan hands DuckDB one column: its type, the bytes of a value, and for an ENUM its count of values (else null). */
interface ColumnOut {
  type: DuckDBType;
  bytes: number;
  values: number | null;
}

/** A string column goes out as an ENUM of the buffer's dictionary, an enum column as one of its names, the rest as staged. */
function columnOut(column: LakeColumn, kind: StageKind, strings: readonly string[]): ColumnOut {
  switch (kind) {
    case 'dict':
      return { type: ENUM(strings), bytes: enumIndexBytes(strings.length), values: strings.length };
    case 'u8': {
      // Only enums are staged in one byte (sink/stage-columns.ts).
      const names = column.enumNames;
      if (!names) throw new Error(`staged column ${column.name} is one byte, but no enum`);
      return { type: ENUM(names), bytes: STAGE_BYTES.u8, values: names.length };
    }
    case 'f64':
      return { type: DOUBLE, bytes: STAGE_BYTES.f64, values: null };
    case 'u32':
      return { type: UINTEGER, bytes: STAGE_BYTES.u32, values: null };
    case 'bool':
      return { type: BOOLEAN, bytes: STAGE_BYTES.bool, values: null };
  }
}

/** What a scan is bound to: a buffer, its file's positions in the order, and how each column goes out. */
class ScanBinding {
  constructor(
    readonly buffer: ScannedBuffer,
    readonly from: number,
    readonly to: number,
    readonly out: readonly ColumnOut[],
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
    readonly out: readonly ColumnOut[],
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
// The dictionary's ids narrowed to a smaller ENUM's index.
const narrowU16 = new Uint16Array(CHUNK_ROWS);
const narrowU8 = new Uint8Array(CHUNK_ROWS);
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

/** The largest of the first `rows` values. */
function largest(values: Uint32Array | Uint8Array, rows: number): number {
  let max = 0;
  for (let j = 0; j < rows; j++) if (values[j]! > max) max = values[j]!;
  return max;
}

/** The dictionary's ids, staged in 32 bits, at the width of the ENUM's index. */
function narrowed(ids: Uint32Array, rows: number, bytes: number): Uint32Array | Uint16Array | Uint8Array {
  if (bytes === 4) return ids;
  const out = bytes === 2 ? narrowU16 : narrowU8;
  out.set(ids.subarray(0, rows));
  return out;
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

/** Fills DuckDB's chunk with the scan's next rows, none once its file is done; or says why it cannot. */
function scanChunk(state: ScanState, chunk: DuckDBDataChunk): string | null {
  const order = state.buffer.order!;
  const rows = Math.min(CHUNK_ROWS, state.to - state.at);
  chunk.rowCount = rows;
  if (rows === 0) return null;
  for (let c = 0; c < state.columns.length; c++) {
    const column = state.columns[c]!;
    const { bytes, values } = state.out[c]!;
    let out: Float64Array | Uint32Array | Uint16Array | Uint8Array;
    if (column.kind === 'f64') out = gatherF64(column.values, order, state.at, rows);
    else {
      const gathered = column.kind === 'u32' ? gatherU32(column.values, order, state.at, rows) : gatherU8(column.values, order, state.at, rows);
      // Staging and validation keep every index within its ENUM; should a bug not, the
      // commit fails rather than have DuckDB read past the ENUM's values.
      if (values !== null && largest(gathered, rows) >= values) return `${SCAN}: staged column ${STAGE_COLUMNS[c]!.column.name} holds an index past its ${values} values`;
      out = column.kind === 'u32' ? narrowed(scratchU32, rows, bytes) : gathered;
    }
    const vector = duckdb.data_chunk_get_vector(chunk.chunk, c);
    duckdb.copy_data_to_vector(vector, 0, out.buffer as ArrayBuffer, 0, rows * out.BYTES_PER_ELEMENT);
    const validity = state.validity[c];
    if (validity) {
      duckdb.vector_ensure_validity_writable(vector);
      duckdb.copy_data_to_vector_validity(vector, 0, gatherValidity(validity, order, state.at, rows).buffer as ArrayBuffer, 0, VALIDITY_BYTES);
    }
  }
  state.at += rows;
  return null;
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
      const out = STAGE_COLUMNS.map(({ column, kind }) => columnOut(column, kind, buffer.strings));
      STAGE_COLUMNS.forEach(({ column }, c) => info.addResultColumn(column.name, out[c]!.type));
      info.setCardinality(file.to - file.from, true);
      info.setBindData(new ScanBinding(buffer, file.from, file.to, out));
    },
    initFunction: (info) => {
      const bound = info.bindData;
      if (!(bound instanceof ScanBinding)) {
        info.setError(`${SCAN}: no bound scan`);
        return;
      }
      // Each scan its own cursor; one thread, so the rows come out in order.
      info.setInitData(new ScanState(bound.buffer, bound.from, bound.to, bound.out));
      info.setMaxThreads(1);
    },
    mainFunction: (info, chunk) => {
      const state = info.initData;
      if (!(state instanceof ScanState) || state.buffer.order === null) {
        info.setError(`${SCAN}: the stage buffer was closed during its scan`);
        return;
      }
      const error = scanChunk(state, chunk);
      if (error !== null) info.setError(error);
    },
  });
}

/** Registers the scan in `db`, for every connection: before its first commit. */
export async function registerStageScan(db: DuckDBInstance): Promise<void> {
  let registering = registered.get(db);
  if (registering === undefined) {
    registering = (async () => {
      // Registered in the database's catalog, for every connection: this one can go.
      const connection = await db.connect();
      connection.registerTableFunction(scanFunction());
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

/** The SQL expression that turns a scanned column of table alias `t` into its lake type. */
function lakeExpression(column: LakeColumn): string {
  const staged = `t.${column.name}`;
  switch (column.kind) {
    case 'string':
    case 'enum':
      // Scanned as ENUMs (above); the lake stores their text.
      return `${staged}::VARCHAR AS ${column.name}`;
    case 'uint64':
      return `${staged}::BIGINT AS ${column.name}`;
    case 'uint32':
      // Staged as UINTEGER, stored as the lake's signed type (proto/columns.ts).
      return `${staged}::${column.sqlType} AS ${column.name}`;
    case 'timestamp':
      // Integer microseconds in, exact, whatever the session time zone; casting a
      // TIMESTAMP to TIMESTAMPTZ instead would shift it by the zone's offset.
      return `make_timestamptz(${staged}::BIGINT) AS ${column.name}`;
    default:
      return `${staged} AS ${column.name}`;
  }
}

const LAKE_SELECT = LAKE_COLUMNS.map(lakeExpression).join(', ');

/** The query that reads file `index` of a sealed buffer (`buffer.files`) as lake rows, in the files' sort order. */
export function lakeRowsSql(buffer: ScannedBuffer, index: number): string {
  return `SELECT ${LAKE_SELECT} FROM ${SCAN}(${buffer.id}, ${index}) t`;
}
