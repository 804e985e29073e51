import * as z from 'zod';
import { MICROS_PER_HOUR } from '../../proto/time';
import type { DataFile } from './avro';
import { fieldById, fieldIdByName, type IcebergType } from './schema';

/**
 * A Parquet file as a manifest describes it, built from what DuckDB reports while it
 * writes the file (`COPY ... RETURN_STATS`), so no second read of the file is needed.
 */

const statsRowSchema = z.tuple([
  z.string(),
  z.union([z.string(), z.number()]),
  z.union([z.string(), z.number()]),
  z.unknown(),
  z.array(z.object({ key: z.string(), value: z.array(z.object({ key: z.string(), value: z.string() })) })),
  z.unknown(),
]);

/** One file of a `COPY ... RETURN_STATS`: rows and bytes, and each column's statistics by name. */
export interface WrittenFile {
  rows: number;
  bytes: number;
  columns: Map<string, Map<string, string>>;
}

/** The rows DuckDB returns for a `COPY ... (RETURN_STATS)`, one per file written. */
export function writtenFiles(rows: unknown[][]): WrittenFile[] {
  return rows.map((row) => {
    const [, count, bytes, , columns] = statsRowSchema.parse(row);
    return {
      rows: Number(count),
      bytes: Number(bytes),
      // DuckDB quotes each column name as an identifier: `"drone_id"`.
      columns: new Map(columns.map((c) => [c.key.replace(/^"(.*)"$/, '$1'), new Map(c.value.map((s) => [s.key, s.value]))])),
    };
  });
}

const TIMESTAMP = /^(-?\d{4,})-(\d{2})-(\d{2}) (\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?(?:\+00(?::00)?)?$/;

/** Microseconds since the epoch of a timestamp as DuckDB prints one in UTC, or null. */
export function parseTimestampMicros(text: string): bigint | null {
  const m = TIMESTAMP.exec(text);
  if (!m) return null;
  const ms = Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6]));
  if (!Number.isFinite(ms)) return null;
  return BigInt(ms) * 1000n + BigInt((m[7] ?? '').padEnd(6, '0'));
}

// Strings longer than this keep no bounds: a bound must hold exactly, and long ones say little.
const MAX_STRING_BOUND_BYTES = 256;

/** The spec's single-value binary encoding of a bound, or null when the text cannot be one exactly. */
export function encodeBound(type: IcebergType, text: string): Buffer | null {
  switch (type) {
    case 'long': {
      if (!/^-?\d+$/.test(text)) return null;
      const b = Buffer.alloc(8);
      b.writeBigInt64LE(BigInt(text));
      return b;
    }
    case 'int': {
      const b = Buffer.alloc(4);
      b.writeInt32LE(Number(text));
      return b;
    }
    case 'timestamptz': {
      const micros = parseTimestampMicros(text);
      if (micros === null) return null;
      const b = Buffer.alloc(8);
      b.writeBigInt64LE(micros);
      return b;
    }
    case 'double': {
      const value = Number(text);
      if (Number.isNaN(value) || text.trim() === '') return null;
      const b = Buffer.alloc(8);
      b.writeDoubleLE(value);
      return b;
    }
    case 'boolean':
      return text === 'true' ? Buffer.from([1]) : text === 'false' ? Buffer.from([0]) : null;
    case 'string': {
      const b = Buffer.from(text, 'utf8');
      return b.length <= MAX_STRING_BOUND_BYTES ? b : null;
    }
  }
}

/** A long or timestamp bound back as a number (exact below 2^53), or null. */
export function decodeLongBound(bytes: Buffer | undefined): number | null {
  return bytes && bytes.length === 8 ? Number(bytes.readBigInt64LE()) : null;
}

const SORT_ORDER_ID = 1;

/** The manifest's description of a file written at `uri`, from DuckDB's statistics of it. */
export function dataFileOf(uri: string, written: WrittenFile, hour: number): DataFile {
  const sizes: Array<{ key: number; value: number }> = [];
  const values: Array<{ key: number; value: number }> = [];
  const nulls: Array<{ key: number; value: number }> = [];
  const nans: Array<{ key: number; value: number }> = [];
  const lower: Array<{ key: number; value: Buffer }> = [];
  const upper: Array<{ key: number; value: Buffer }> = [];
  for (const [name, stats] of written.columns) {
    const id = fieldIdByName.get(name);
    if (id === undefined) continue;
    const type = fieldById.get(id)!.type;
    const size = stats.get('column_size_bytes');
    if (size !== undefined) sizes.push({ key: id, value: Number(size) });
    const count = stats.get('num_values');
    if (count !== undefined) values.push({ key: id, value: Number(count) });
    const nullCount = stats.get('null_count');
    if (nullCount !== undefined) nulls.push({ key: id, value: Number(nullCount) });
    // DuckDB says whether a column has a NaN, not how many: only "none" is a count.
    if (stats.get('has_nan') === 'false') nans.push({ key: id, value: 0 });
    const min = stats.get('min');
    const max = stats.get('max');
    const lo = min === undefined ? null : encodeBound(type, min);
    const hi = max === undefined ? null : encodeBound(type, max);
    // Both or neither: a bound alone is allowed, but a pair is what pruning uses.
    if (lo && hi) {
      lower.push({ key: id, value: lo });
      upper.push({ key: id, value: hi });
    }
  }
  const byKey = <T extends { key: number }>(list: T[]) => list.sort((a, b) => a.key - b.key);
  return {
    content: 0,
    file_path: uri,
    file_format: 'PARQUET',
    partition: { ts_hour: hour },
    record_count: written.rows,
    file_size_in_bytes: written.bytes,
    column_sizes: byKey(sizes),
    value_counts: byKey(values),
    null_value_counts: byKey(nulls),
    nan_value_counts: byKey(nans),
    lower_bounds: byKey(lower),
    upper_bounds: byKey(upper),
    key_metadata: null,
    split_offsets: null,
    equality_ids: null,
    sort_order_id: SORT_ORDER_ID,
  };
}

const tsFieldId = fieldIdByName.get('ts')!;

/** Event-time bounds of a file (microseconds) from its manifest entry, falling back to its hour. */
export function tsBounds(file: DataFile): { min: number; max: number } {
  const lo = decodeLongBound(file.lower_bounds?.find((b) => b.key === tsFieldId)?.value);
  const hi = decodeLongBound(file.upper_bounds?.find((b) => b.key === tsFieldId)?.value);
  const hour = file.partition.ts_hour ?? 0;
  return { min: lo ?? hour * MICROS_PER_HOUR, max: hi ?? (hour + 1) * MICROS_PER_HOUR - 1 };
}
