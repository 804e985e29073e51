import { LAKE_COLUMNS, type LakeColumn } from '../proto/columns';

/**
 * How each lake column is held while staged: fixed-width values in a typed array, so that
 * DuckDB takes a vector of them with one memcpy (sink/stage.ts says why).
 */
export type StageKind = 'f64' | 'u32' | 'u8' | 'bool' | 'dict';

const STAGE_KIND: Record<LakeColumn['kind'], StageKind> = {
  string: 'dict',
  uint64: 'f64',
  timestamp: 'f64',
  double: 'f64',
  uint32: 'u32',
  bool: 'bool',
  enum: 'u8',
};

/** The bytes a value of each kind takes in its typed array. */
export const STAGE_BYTES: Record<StageKind, number> = { f64: 8, u32: 4, u8: 1, bool: 1, dict: 4 };

export const STAGE_COLUMNS = LAKE_COLUMNS.map((column) => ({ column, kind: STAGE_KIND[column.kind] }));

/** A block's rows: a power of two, so a row's block and place are a shift and a mask. */
export const BLOCK_SHIFT = 14;
export const BLOCK_ROWS = 1 << BLOCK_SHIFT;
export const BLOCK_MASK = BLOCK_ROWS - 1;

type Values = Float64Array | Uint32Array | Uint8Array;

/**
 * BLOCK_ROWS staged rows: every column's values, and DuckDB's validity mask of each (bit i
 * set when row i is not null). A buffer holds its rows in blocks, so it grows without
 * copying, and blocks pass from one buffer to the next (sink/stage.ts).
 */
export interface Block {
  readonly values: readonly Values[];
  readonly validity: readonly Uint8Array[];
}

const newValues = (kind: StageKind): Values => (kind === 'f64' ? new Float64Array(BLOCK_ROWS) : kind === 'u32' || kind === 'dict' ? new Uint32Array(BLOCK_ROWS) : new Uint8Array(BLOCK_ROWS));

/** A block whose every row is valid until its bits are cleared. */
export const newBlock = (): Block => ({
  values: STAGE_COLUMNS.map(({ kind }) => newValues(kind)),
  validity: STAGE_COLUMNS.map(() => new Uint8Array(BLOCK_ROWS / 8).fill(0xff)),
});
