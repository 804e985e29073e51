import duckdb from '@duckdb/node-bindings';
import { BOOLEAN, DOUBLE, DuckDBTableFunction, ENUM, INTEGER, UINTEGER, VARCHAR, type DuckDBDataChunk, type DuckDBInstance, type DuckDBType } from '@duckdb/node-api';
import { LAKE_COLUMNS, type LakeColumn } from '../proto/columns';
import { BLOCK_MASK, BLOCK_ROWS, BLOCK_SHIFT, STAGE_BYTES, STAGE_COLUMNS, type Block } from './stage-columns';
import { dictionaryRanks, type FileRows } from './stage-order';

// DuckDB reads a sealed stage buffer through a table function, `dronelake_staged(buffer,
// file)`: the rows of one file, in the files' order, a vector at a time, each column's
// values gathered from the buffer's blocks into a window of vectors ahead (ScanWindow) and
// copied into DuckDB's vector with one memcpy. String and enum columns come out as DuckDB
// ENUMs of the values the file's rows hold, found when the scan is bound, and go into the
// Parquet file as they are: DuckDB's Parquet writer takes an ENUM's values as the column's
// dictionary and its indexes as the dictionary's codes, so no string is made, hashed or
// compared per row. The
// file's column is the same UTF8 string column either way; casting the ENUMs to VARCHAR
// first cost 0.2 CPU-us a point of the 0.75 a commit's write took. DuckDB calls the
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

/**
 * How a scan hands DuckDB one column: its type and the bytes of a value. A string or enum
 * column goes out as an ENUM of the values its file holds: `codes` gives each staged id
 * its index among them. A file whose rows hold none of its values (a column of nulls) has
 * `codes` null and `allNull` set.
 */
interface ColumnOut {
  type: DuckDBType;
  bytes: number;
  codes: Uint32Array | null;
  /** The ENUM's values; null for a column that is not one. */
  values: readonly string[] | null;
  allNull: boolean;
}

/** A column that goes out as it is staged: no ENUM, and not all null. */
const AS_STAGED: Omit<ColumnOut, 'type' | 'bytes'> = { codes: null, values: null, allNull: false };

/**
 * The values of `names` (a string column's dictionary, an enum's names) that the
 * non-null rows of a file hold, in id order, with each id's index among them; or why not.
 * Only these go into the file: its dictionary and statistics are its own rows'.
 */
function valuesHeld(buffer: ScannedBuffer, from: number, to: number, c: number, names: readonly string[]): ColumnOut | string {
  const held = new Uint8Array(names.length);
  // A buffer of one file holds its rows in the blocks' order: walked as they lie, not
  // through the order, which reads them out of place.
  const error = buffer.files.length === 1 ? holdBlocks(buffer, to, c, held) : holdOrdered(buffer, from, to, c, held);
  if (error !== null) return `${SCAN}: staged column ${STAGE_COLUMNS[c]!.column.name} holds an index past its ${names.length} values`;
  const values: string[] = [];
  // A null row's id is 0 (sink/stage.ts), and its code then 0 too: a value of the ENUM.
  const codes = new Uint32Array(names.length);
  for (let id = 0; id < names.length; id++) {
    if (held[id] === 0) continue;
    codes[id] = values.length;
    values.push(names[id]!);
  }
  if (values.length === 0) return { type: VARCHAR, bytes: 0, codes: null, values: null, allNull: true };
  return { type: ENUM(values), bytes: enumIndexBytes(values.length), codes, values, allNull: false };
}

// Staging and validation keep every id within its values; should a bug not, the commit
// fails rather than have DuckDB read past them. Each returns the first id past them, or null.

/** Marks in `held` the ids the non-null rows [0, count) of column `c` hold, block by block. */
function holdBlocks(buffer: ScannedBuffer, count: number, c: number, held: Uint8Array): number | null {
  const nullable = buffer.nulls[c]!;
  for (let b = 0; b * BLOCK_ROWS < count; b++) {
    const values = buffer.blocks[b]!.values[c]!;
    const validity = buffer.blocks[b]!.validity[c]!;
    const rows = Math.min(BLOCK_ROWS, count - b * BLOCK_ROWS);
    for (let row = 0; row < rows; row++) {
      if (nullable && (validity[row >> 3]! & (1 << (row & 7))) === 0) continue;
      const id = values[row]!;
      if (id >= held.length) return id;
      held[id] = 1;
    }
  }
  return null;
}

/** Marks in `held` the ids the non-null rows of column `c` at positions [from, to) of the order hold. */
function holdOrdered(buffer: ScannedBuffer, from: number, to: number, c: number, held: Uint8Array): number | null {
  const order = buffer.order!;
  const nullable = buffer.nulls[c]!;
  for (let k = from; k < to; k++) {
    const i = order[k]!;
    const block = buffer.blocks[i >>> BLOCK_SHIFT]!;
    const row = i & BLOCK_MASK;
    if (nullable && (block.validity[c]![row >> 3]! & (1 << (row & 7))) === 0) continue;
    const id = block.values[c]![row]!;
    if (id >= held.length) return id;
    held[id] = 1;
  }
  return null;
}

/** How column `c` of a file goes out: strings and enums as ENUMs of the file's values, the rest as staged; or why it cannot. */
function columnOut(buffer: ScannedBuffer, from: number, to: number, c: number): ColumnOut | string {
  const { column, kind } = STAGE_COLUMNS[c]!;
  switch (kind) {
    case 'dict':
      return valuesHeld(buffer, from, to, c, buffer.strings);
    case 'u8': {
      // Only enums are staged in one byte (sink/stage-columns.ts).
      const names = column.enumNames;
      if (!names) return `${SCAN}: staged column ${column.name} is one byte, but no enum`;
      return valuesHeld(buffer, from, to, c, names);
    }
    case 'f64':
      return { type: DOUBLE, bytes: STAGE_BYTES.f64, ...AS_STAGED };
    case 'u32':
      return { type: UINTEGER, bytes: STAGE_BYTES.u32, ...AS_STAGED };
    case 'bool':
      return { type: BOOLEAN, bytes: STAGE_BYTES.bool, ...AS_STAGED };
  }
}

const noFile = (id: number, index: number): string => `${SCAN}: no sealed stage buffer ${id} with a file ${index}`;

/** Each sealed buffer's files' columns as the scan hands them out, found once a file. */
const filesOut = new WeakMap<ScannedBuffer, Map<number, readonly ColumnOut[]>>();

/** How every column of file `index` of a sealed buffer goes out, or why one cannot. */
function fileColumnsOut(buffer: ScannedBuffer, index: number): readonly ColumnOut[] | string {
  const file = buffer.order ? buffer.files[index] : undefined;
  if (!file) return noFile(buffer.id, index);
  let files = filesOut.get(buffer);
  const known = files?.get(index);
  if (known) return known;
  const out: ColumnOut[] = [];
  for (let c = 0; c < STAGE_COLUMNS.length; c++) {
    const column = columnOut(buffer, file.from, file.to, c);
    if (typeof column === 'string') return column;
    out.push(column);
  }
  if (!files) filesOut.set(buffer, (files = new Map()));
  files.set(index, out);
  return out;
}

/**
 * The least and greatest value, in byte order, of each string and enum column of file
 * `index`, for the manifest's bounds: DuckDB reports none for a column written from an
 * ENUM, though the file's own statistics have them. A column of nulls has none.
 */
export function stringBounds(buffer: ScannedBuffer, index: number): Map<string, readonly [string, string]> {
  const out = fileColumnsOut(buffer, index);
  if (typeof out === 'string') throw new Error(out);
  const bounds = new Map<string, readonly [string, string]>();
  out.forEach(({ values }, c) => {
    if (values === null || values.length === 0) return;
    const ranks = dictionaryRanks(values);
    bounds.set(STAGE_COLUMNS[c]!.column.name, [values[ranks.indexOf(0)]!, values[ranks.indexOf(values.length - 1)]!]);
  });
  return bounds;
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
  /** The rows gathered ahead, positions [windowFrom, windowTo) of the order; taken at the first chunk. */
  window: ScanWindow | null = null;
  windowFrom = 0;
  windowTo = 0;

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

/**
 * Rows a scan gathers at once, column after column, before DuckDB takes them a vector at a
 * time. The order reads a drone's rows from every batch of the commit, a few rows each
 * (runs of 5 for 1,000-point batches of 200 drones), so a vector's 2,048 rows lie in a few
 * hundred places, and each column of the vector reads all of them before the next column
 * does. Over a window, one column reads its runs from those places, then the next column:
 * scanning a 500,000-point commit went from 0.14-0.15 to 0.10-0.11 CPU-us a point (twenty
 * scans each, three runs; windows of 8, 16 and 64 vectors: 0.12, 0.11, 0.11), and a model of
 * the same pattern from 8-10 to 2.6-2.8 ns a value. Which of the processor's caches misses
 * less, this machine's counters do not say. A window holds WINDOW_ROWS rows of every column,
 * 8 MB, one for the sink, reused from scan to scan; the runs and ids it is gathered through
 * (below) take 1 MB more (invariant 6).
 */
const WINDOW_ROWS = CHUNK_ROWS * 32;

/** One column's rows of a window: one array, seen as each width a staged or coded value has. */
interface WindowColumn {
  f64: Float64Array;
  u32: Uint32Array;
  u16: Uint16Array;
  u8: Uint8Array;
  /** DuckDB's validity bits of the window's rows, a vector's at a multiple of VALIDITY_BYTES. */
  validity: Uint8Array;
}
type ScanWindow = readonly WindowColumn[];

function newWindow(): ScanWindow {
  // A column's values, or its codes, are at most as wide as it is staged (an ENUM's codes
  // for a string column up to 4 bytes, an enum's 1: enumIndexBytes).
  return STAGE_COLUMNS.map(({ kind }) => {
    const buffer = new ArrayBuffer(WINDOW_ROWS * STAGE_BYTES[kind]);
    return { f64: new Float64Array(buffer), u32: new Uint32Array(buffer), u16: new Uint16Array(buffer), u8: new Uint8Array(buffer), validity: new Uint8Array((WINDOW_ROWS / CHUNK_ROWS) * VALIDITY_BYTES) };
  });
}

/** A finished scan's window, for the next scan to take: scans of a sink's commits come one after another. */
let spareWindow: ScanWindow | null = null;

// Staged ids of a window's string and enum column, before they become its ENUM's codes.
const idsU32 = new Uint32Array(WINDOW_ROWS);
const idsU8 = new Uint8Array(WINDOW_ROWS);
const NONE_VALID = new Uint8Array(VALIDITY_BYTES);

// The window's rows as runs of consecutive rows of one block, found once a window and read by
// every column, values and validity alike: a drone's points of one v2 batch are staged next
// to each other, so a file's order holds runs of them (50 a run for 1,000-point batches of
// 20 drones). Each column then reads a run at a time, where it read the order and split
// each row into block and row: the bench's scan went from 0.17-0.22 to 0.14-0.16 CPU-us a
// point (`stages`, three runs each, taking turns; runs of 5 there, 200 drones to a gateway).
const runBlock = new Uint32Array(WINDOW_ROWS);
const runStart = new Uint32Array(WINDOW_ROWS);
const runLength = new Uint32Array(WINDOW_ROWS);

/** Splits positions [at, at + rows) of the order into runs; returns how many. */
function findRuns(order: Uint32Array, at: number, rows: number): number {
  let runs = 0;
  for (let j = 0; j < rows; ) {
    const first = order[at + j]!;
    const block = first >>> BLOCK_SHIFT;
    let length = 1;
    while (j + length < rows && order[at + j + length] === first + length && (first + length) >>> BLOCK_SHIFT === block) length++;
    runBlock[runs] = block;
    runStart[runs] = first & BLOCK_MASK;
    runLength[runs] = length;
    runs++;
    j += length;
  }
  return runs;
}

// A function per kind, so that each loop reads one kind of array and V8 keeps it
// monomorphic: one loop for all three ran at twice the cost.
function gatherF64(from: readonly Float64Array[], runs: number, out: Float64Array): void {
  for (let r = 0, j = 0; r < runs; r++) {
    const values = from[runBlock[r]!]!;
    for (let i = runStart[r]!, end = i + runLength[r]!; i < end; i++) out[j++] = values[i]!;
  }
}
function gatherU32(from: readonly Uint32Array[], runs: number, out: Uint32Array): void {
  for (let r = 0, j = 0; r < runs; r++) {
    const values = from[runBlock[r]!]!;
    for (let i = runStart[r]!, end = i + runLength[r]!; i < end; i++) out[j++] = values[i]!;
  }
}
function gatherU8(from: readonly Uint8Array[], runs: number, out: Uint8Array): void {
  for (let r = 0, j = 0; r < runs; r++) {
    const values = from[runBlock[r]!]!;
    for (let i = runStart[r]!, end = i + runLength[r]!; i < end; i++) out[j++] = values[i]!;
  }
}
function gatherValidity(from: readonly Uint8Array[], runs: number, out: Uint8Array): void {
  out.fill(0);
  for (let r = 0, j = 0; r < runs; r++) {
    const bits = from[runBlock[r]!]!;
    for (let row = runStart[r]!, end = row + runLength[r]!; row < end; row++, j++) {
      if ((bits[row >> 3]! & (1 << (row & 7))) !== 0) out[j >> 3]! |= 1 << (j & 7);
    }
  }
}

/** The first `rows` staged ids as their codes in a file's ENUM (ColumnOut), into the window's column at its index's width. */
function encodeCodes(ids: Uint32Array | Uint8Array, rows: number, codes: Uint32Array, column: WindowColumn, bytes: number): void {
  const out = bytes === 1 ? column.u8 : bytes === 2 ? column.u16 : column.u32;
  for (let j = 0; j < rows; j++) out[j] = codes[ids[j]!]!;
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

/** Gathers the scan's next WINDOW_ROWS rows (fewer at its file's end), every column in turn, into its window. */
function fillWindow(state: ScanState, window: ScanWindow): void {
  const rows = Math.min(WINDOW_ROWS, state.to - state.at);
  const runs = findRuns(state.buffer.order!, state.at, rows);
  for (let c = 0; c < state.columns.length; c++) {
    const { codes, bytes, allNull } = state.out[c]!;
    if (allNull) continue;
    const column = state.columns[c]!;
    const into = window[c]!;
    if (column.kind === 'f64') gatherF64(column.values, runs, into.f64);
    else if (codes === null) {
      if (column.kind === 'u32') gatherU32(column.values, runs, into.u32);
      else gatherU8(column.values, runs, into.u8);
    } else if (column.kind === 'u32') {
      gatherU32(column.values, runs, idsU32);
      encodeCodes(idsU32, rows, codes, into, bytes);
    } else {
      gatherU8(column.values, runs, idsU8);
      encodeCodes(idsU8, rows, codes, into, bytes);
    }
    const validity = state.validity[c];
    if (validity) gatherValidity(validity, runs, into.validity);
  }
  state.windowFrom = state.at;
  state.windowTo = state.at + rows;
}

/** Fills DuckDB's chunk with the scan's next rows, none once its file is done; or says why it cannot. */
function scanChunk(state: ScanState, chunk: DuckDBDataChunk): string | null {
  const rows = Math.min(CHUNK_ROWS, state.to - state.at);
  chunk.rowCount = rows;
  if (rows === 0) {
    // Done: the window goes to the next scan.
    if (state.window !== null) spareWindow = state.window;
    state.window = null;
    return null;
  }
  if (state.window === null) {
    state.window = spareWindow ?? newWindow();
    spareWindow = null;
  }
  if (state.at >= state.windowTo) fillWindow(state, state.window);
  // Windows start at a multiple of CHUNK_ROWS from the file's start, so a vector's validity is whole bytes.
  const offset = state.at - state.windowFrom;
  for (let c = 0; c < state.columns.length; c++) {
    const { bytes, allNull } = state.out[c]!;
    const vector = duckdb.data_chunk_get_vector(chunk.chunk, c);
    if (allNull) {
      duckdb.vector_ensure_validity_writable(vector);
      duckdb.copy_data_to_vector_validity(vector, 0, NONE_VALID.buffer as ArrayBuffer, 0, VALIDITY_BYTES);
      continue;
    }
    const column = state.window[c]!;
    duckdb.copy_data_to_vector(vector, 0, column.f64.buffer as ArrayBuffer, offset * bytes, rows * bytes);
    if (state.validity[c]) {
      duckdb.vector_ensure_validity_writable(vector);
      duckdb.copy_data_to_vector_validity(vector, 0, column.validity.buffer as ArrayBuffer, (offset / CHUNK_ROWS) * VALIDITY_BYTES, VALIDITY_BYTES);
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
      if (!buffer) {
        info.setError(noFile(id, index));
        return;
      }
      const out = fileColumnsOut(buffer, index);
      if (typeof out === 'string') {
        info.setError(out);
        return;
      }
      // fileColumnsOut found the file.
      const file = buffer.files[index]!;
      out.forEach((column, c) => info.addResultColumn(STAGE_COLUMNS[c]!.column.name, column.type));
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
      // Scanned as ENUMs of the file's values (above): written as the UTF8 strings they name.
      return `${staged} AS ${column.name}`;
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
