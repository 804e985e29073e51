import { BOOLEAN, DOUBLE, UINTEGER, UTINYINT, type DuckDBType } from '@duckdb/node-api';
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

/** Each kind's DuckDB type, and the bytes a value takes in its typed array and in DuckDB's vector alike. */
export const STAGE_TYPE: Record<StageKind, { duck: DuckDBType; bytes: number }> = {
  f64: { duck: DOUBLE, bytes: 8 },
  u32: { duck: UINTEGER, bytes: 4 },
  u8: { duck: UTINYINT, bytes: 1 },
  bool: { duck: BOOLEAN, bytes: 1 },
  dict: { duck: UINTEGER, bytes: 4 },
};

export const STAGE_COLUMNS = LAKE_COLUMNS.map((column) => ({ column, kind: STAGE_KIND[column.kind] }));

/** One staged column of a buffer's rows. */
export interface ColumnBuffer {
  kind: StageKind;
  values: Float64Array | Uint32Array | Uint8Array;
  /** DuckDB's validity mask: bit i set when row i is not null. */
  validity: Uint8Array;
  /** Whether any row is null, so a scan of a column without nulls copies no validity bit. */
  nulls: boolean;
}

export const newValues = (kind: StageKind, rows: number): ColumnBuffer['values'] =>
  kind === 'f64' ? new Float64Array(rows) : kind === 'u32' || kind === 'dict' ? new Uint32Array(rows) : new Uint8Array(rows);

/** Validity bits for `rows` rows, every one valid until cleared. */
export const newValidity = (rows: number): Uint8Array => new Uint8Array(Math.ceil(rows / 8)).fill(0xff);
