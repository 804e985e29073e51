import { LAKE_COLUMNS, SORT_COLUMNS } from '../proto/columns';
import { isPresent, POINT_FIELDS, TS_COLUMN, type PointColumns } from '../proto/columnar';
import type { PointKeys } from './dedupe';
import { emptyCommitCounts, type OpenCommitCounts } from './checkpoint';
import type { LivePoint } from './live';
import { newQuarantine, type QuarantineBuffer } from './quarantine';
import { BLOCK_MASK, BLOCK_ROWS, BLOCK_SHIFT, newBlock, STAGE_BYTES, STAGE_COLUMNS, type Block } from './stage-columns';
import { commitOrder, dictionaryRanks, type FileRows } from './stage-order';
import { closeStageScan, openStageScan, type ScannedBuffer } from './stage-scan';

// Staging is columnar. Points are written into typed arrays, one per column in blocks of
// rows (sink/stage-columns.ts), and held there until the commit. DuckDB then reads them
// through a table function (sink/stage-scan.ts) in the files' order (sink/stage-order.ts), a
// vector at a time, one memcpy per column: no table to append to, and no sort. Per-value appender calls cost ~250 ns each across the
// JS/C++ boundary, which capped the sink at ~140k points/s; then appending whole chunks to a
// staging table cost ~0.4 us a point, and DuckDB's sort of it ~0.45. So every staged column
// is fixed-width:
// - strings become ids into a per-buffer dictionary, which DuckDB reads at commit;
// - enums stay as their numbers and are named at commit;
// - 64-bit values are staged as DOUBLE, exact below 2^53 as every sequence number and
//   microsecond time is, so no BigInt is made per value.

/** What one staged row takes: its fixed-width values plus a validity bit each. */
const STAGED_ROW_BYTES = STAGE_COLUMNS.reduce((n, { kind }) => n + STAGE_BYTES[kind], 0) + Math.ceil(STAGE_COLUMNS.length / 8);
/** A dictionary entry: the JS map entry that finds the string and its id, and the string again in `strings` at commit. */
const DICT_ENTRY_OVERHEAD = 64;
const POINT_COLUMN_COUNT = LAKE_COLUMNS.filter((c) => c.origin === 'point').length;
const GATEWAY_INDEX = LAKE_COLUMNS.findIndex((c) => c.name === 'gateway_id');
const STREAM_INDEX = LAKE_COLUMNS.findIndex((c) => c.name === 'stream');
// stageRows copies point column c of a batch into staged column c.
if (POINT_FIELDS.some((f, c) => LAKE_COLUMNS[c]!.name !== f.name)) throw new Error('the lake columns do not begin with the point fields in their order');
const INGESTED_INDEX = LAKE_COLUMNS.findIndex((c) => c.name === 'ingested_at');
// commitOrder sorts by a dictionary string, then the event time: the files' order.
const SORT_STRING_INDEX = LAKE_COLUMNS.findIndex((c) => c.name === SORT_COLUMNS[0]);
if (STAGE_COLUMNS[SORT_STRING_INDEX]?.kind !== 'dict' || LAKE_COLUMNS.findIndex((c) => c.name === SORT_COLUMNS[1]) !== TS_COLUMN) throw new Error(`the files' sort order (${SORT_COLUMNS.join(', ')}) is not a string, then ts`);


/** Points staged for one commit: typed arrays of its rows, its dictionary, and what they hold. */
export interface StageBuffer extends ScannedBuffer {
  /** Names the buffer to the counter of rejected messages (sink/rejects.ts). */
  readonly table: string;
  readonly dict: Map<string, number>;
  dictBytes: number;
  blocks: Block[];
  /** Per column, whether any row staged is null. */
  readonly nulls: boolean[];
  sealed: boolean;
  order: Uint32Array | null;
  files: FileRows[];
  strings: string[];
  points: number;
  /** What this commit took, for the quality metrics its record carries. */
  readonly counts: OpenCommitCounts;
  /** Batch sequence numbers per gateway, to be acknowledged once the commit lands. */
  readonly batches: Map<string, number[]>;
  /** The (drone_id, stream, seq) staged here, for dedupe until the commit lands. */
  readonly pointKeys: PointKeys;
  /** Bad input received since the last commit, published with this one. */
  readonly quarantine: QuarantineBuffer;
  /** With the live port after commit: the points to publish once this commit lands. */
  readonly live: LivePoint[];
}

/**
 * Blocks of closed buffers, for the next buffers to fill. A sink's buffers take turns, so it
 * allocates its blocks about once, not once per commit: each array is an allocation
 * outside the heap, which V8 answers with collections, and new pages to fault in.
 * Invariant 6: at most sparedRows rows are kept (keepStageBlocks: the sink's bound on staged
 * rows), so the blocks held, spare and in use, stay within the most it staged at once.
 */
const spareBlocks: Block[] = [];
let sparedRows = 2 ** 19;

/** Lets closed buffers keep blocks of up to `bytes` of staged rows for reuse: a sink's --max-staged-mib. */
export function keepStageBlocks(bytes: number): void {
  sparedRows = Math.max(sparedRows, Math.floor(bytes / STAGED_ROW_BYTES));
}

function releaseBlocks(blocks: readonly Block[]): void {
  for (const block of blocks) {
    if ((spareBlocks.length + 1) * BLOCK_ROWS > sparedRows) return;
    for (const validity of block.validity) validity.fill(0xff);
    spareBlocks.push(block);
  }
}

/**
 * A closed buffer's order (sealStageBuffer), for the next to fill, as its blocks are: one
 * array, the longest yet, so within the most rows the sink staged at once (invariant 6).
 */
let spareOrder: Uint32Array | null = null;

let nextBufferId = 1;

/** A buffer for one commit's points; DuckDB scans it where registerStageScan was called (sink/stage-scan.ts). */
export function createStageBuffer(table: string): StageBuffer {
  const buffer: StageBuffer = {
    id: nextBufferId++,
    table,
    dict: new Map(),
    dictBytes: 0,
    blocks: [],
    nulls: STAGE_COLUMNS.map(() => false),
    sealed: false,
    order: null,
    files: [],
    strings: [],
    points: 0,
    counts: emptyCommitCounts(),
    batches: new Map(),
    pointKeys: new Map(),
    quarantine: newQuarantine(),
    live: [],
  };
  openStageScan(buffer);
  return buffer;
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
  }
  return id;
}

/** Per string column of a batch: its dictionary's ids in this buffer's dictionary, -1 until first staged. */
export type StageDictIds = Array<Int32Array | null>;

export const stageDictIds = (points: PointColumns): StageDictIds => points.columns.map((c) => (c?.dictionary ? new Int32Array(c.dictionary.length).fill(-1) : null));

/**
 * Stages the points `rows[0..count)` of a batch's columns, valid and new, their indexes
 * ascending (as take.ts collects them); `stream` is the batch's, for the points that name
 * none. The hot path: column by column over the rows, typed-array reads and writes in tight
 * loops, no allocation, a string looked up once per batch and dictionary entry.
 */
export function stageRows(buffer: StageBuffer, points: PointColumns, rows: Uint32Array, count: number, dictIds: StageDictIds, stream: number, gatewayId: string, ingestedAt: number): void {
  if (count === 0) return;
  if (buffer.sealed) throw new Error(`stage buffer ${buffer.table} is sealed`);
  const gateway = dictId(buffer, gatewayId);
  // The lake's columns begin with the point's (checked above), so its stream is the point's.
  const streams = points.columns[STREAM_INDEX] ?? null;
  const nulls = buffer.nulls;
  // Rows are ascending indexes of the batch's points: as many as it has means all of them.
  const all = count === points.count;
  for (let from = 0; from < count; ) {
    // As many rows as the last block has room for.
    const start = buffer.points & BLOCK_MASK;
    if (start === 0) buffer.blocks.push(spareBlocks.pop() ?? newBlock());
    const block = buffer.blocks[buffer.points >>> BLOCK_SHIFT]!;
    const take = Math.min(count - from, BLOCK_ROWS - start);
    for (let c = 0; c < POINT_COLUMN_COUNT; c++) {
      // The stream column is written below, each row's own or the batch's.
      if (c === STREAM_INDEX) continue;
      const column = points.columns[c] ?? null;
      const out = block.values[c]!;
      const validity = block.validity[c]!;
      // A null row's value is 0, not what a spare block last held: every staged index, null
      // or not, is then one the scan can hold against its ENUM (sink/stage-scan.ts).
      if (column === null) {
        out.fill(0, start, start + take);
        for (let j = 0; j < take; j++) validity[(start + j) >> 3]! &= ~(1 << ((start + j) & 7));
        nulls[c] = true;
        continue;
      }
      const { values, present } = column;
      const ids = dictIds[c];
      if (ids === null && all) {
        // Every row of the batch, in its order: the values in one copy (an absent one is 0
        // in both), and a validity bit cleared for each absent row.
        out.set(values.subarray(from, from + take), start);
        if (present !== null) {
          for (let j = 0; j < take; j++) {
            const i = from + j;
            if ((present[i >> 3]! & (1 << (i & 7))) === 0) {
              const row = start + j;
              validity[row >> 3]! &= ~(1 << (row & 7));
              nulls[c] = true;
            }
          }
        }
        continue;
      }
      for (let j = 0; j < take; j++) {
        const i = rows[from + j]!;
        const row = start + j;
        if (present !== null && (present[i >> 3]! & (1 << (i & 7))) === 0) {
          out[row] = 0;
          validity[row >> 3]! &= ~(1 << (row & 7));
          nulls[c] = true;
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
    const streamOut = block.values[STREAM_INDEX]!;
    if (streams === null) streamOut.fill(stream, start, start + take);
    else {
      for (let j = 0; j < take; j++) {
        const i = rows[from + j]!;
        streamOut[start + j] = isPresent(streams.present, i) ? streams.values[i]! : stream;
      }
    }
    block.values[GATEWAY_INDEX]!.fill(gateway, start, start + take);
    block.values[INGESTED_INDEX]!.fill(ingestedAt, start, start + take);
    buffer.points += take;
    from += take;
  }
}

/** What a live point waiting for its commit holds: an object of some twenty fields, its strings included. */
const LIVE_ROW_BYTES = 600;

/** An estimate of the memory the buffer holds: staged rows, their strings, bad input and live points waiting for the commit. */
export function stagedBytes(buffer: StageBuffer): number {
  // The rows staged; their last block's room, and spare blocks (keepStageBlocks), come on top.
  return buffer.points * STAGED_ROW_BYTES + buffer.dictBytes + buffer.quarantine.bytes + buffer.live.length * LIVE_ROW_BYTES;
}

/**
 * The sink's buffers: `open` takes the points of each message, and `committing` is the one a
 * commit is writing (its point keys still count for dedupe).
 */
export interface StageBuffers {
  open: StageBuffer;
  committing: StageBuffer | null;
}

/** What the sink holds in memory before commit (invariant 6: bounded by --max-staged-mib). */
export const heldBytes = (buffers: StageBuffers): number => stagedBytes(buffers.open) + (buffers.committing ? stagedBytes(buffers.committing) : 0);

/** Puts the staged rows in the files' order, for DuckDB's scan of them; the buffer takes no more points. */
export function sealStageBuffer(buffer: StageBuffer): void {
  if (buffer.sealed) return;
  buffer.sealed = true;
  // The map's order is the ids' order: an id is the map's size when its string came.
  buffer.strings = [...buffer.dict.keys()];
  const keys = buffer.blocks.map((b) => b.values[SORT_STRING_INDEX]!);
  const times = buffer.blocks.map((b) => b.values[TS_COLUMN]!);
  // The spare order when it is long enough, else one with room for a block more of rows.
  const into = spareOrder !== null && spareOrder.length >= buffer.points ? spareOrder : new Uint32Array(Math.ceil(buffer.points / BLOCK_ROWS + 1) * BLOCK_ROWS);
  if (into === spareOrder) spareOrder = null;
  const { order, files } = commitOrder(keys, times, BLOCK_SHIFT, buffer.points, dictionaryRanks(buffer.strings), into);
  buffer.order = order;
  buffer.files = files;
}

/** Releases a buffer: its scan and its arrays. */
export function closeStageBuffer(buffer: StageBuffer): void {
  buffer.sealed = true;
  closeStageScan(buffer);
  if (buffer.order !== null && buffer.order.length > (spareOrder?.length ?? 0)) spareOrder = buffer.order;
  buffer.order = null;
  releaseBlocks(buffer.blocks);
  buffer.blocks = [];
}
