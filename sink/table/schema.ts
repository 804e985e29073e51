import { LAKE_COLUMNS, SORT_COLUMNS, type ColumnKind, type LakeColumn } from '../../proto/columns';
import { PointType } from '../../proto/schema';

/** An Iceberg primitive type, as table metadata spells it. */
export type IcebergType = 'string' | 'long' | 'timestamptz' | 'double' | 'boolean' | 'int';

const ICEBERG_TYPE: Record<ColumnKind, IcebergType> = {
  string: 'string',
  // Stored signed: seq and stream are at most 2^53 (the seq_range and stream_range rules),
  // and Iceberg, Spark and Trino have no unsigned 64-bit type.
  uint64: 'long',
  timestamp: 'timestamptz',
  double: 'double',
  uint32: 'long',
  bool: 'boolean',
  enum: 'string',
};

/**
 * Field ids never change once a table has them. A point's field takes its protobuf field
 * number, which `telemetry.proto` already promises never to reuse; the columns the sink
 * adds take ids from 10001 up, out of the proto's way and of the partition fields' 1000s.
 */
const SINK_FIELD_IDS: Record<string, number> = { gateway_id: 10001, ingested_at: 10002 };

function fieldIdOf(column: LakeColumn): number {
  if (column.origin === 'sink') {
    const id = SINK_FIELD_IDS[column.name];
    if (id === undefined) throw new Error(`lake column ${column.name} has no Iceberg field id`);
    return id;
  }
  const field = PointType.fields[column.name];
  if (!field) throw new Error(`lake column ${column.name} is not a Point field`);
  return field.id;
}

export interface TableField {
  id: number;
  name: string;
  required: boolean;
  type: IcebergType;
}

/** The telemetry table's columns, in file order, with their Iceberg ids and types. */
export const TABLE_FIELDS: readonly TableField[] = LAKE_COLUMNS.map((c) => ({ id: fieldIdOf(c), name: c.name, required: false, type: ICEBERG_TYPE[c.kind] }));

export const fieldIdByName = new Map(TABLE_FIELDS.map((f) => [f.name, f.id]));
export const fieldById = new Map(TABLE_FIELDS.map((f) => [f.id, f]));
export const LAST_COLUMN_ID = Math.max(...TABLE_FIELDS.map((f) => f.id));

export const TABLE_SCHEMA = { type: 'struct' as const, 'schema-id': 0, fields: TABLE_FIELDS };

const tsFieldId = fieldIdByName.get('ts')!;

/**
 * One partition per event-time hour, `hour(ts)`: the same grouping as the `date=/hour=`
 * directories, so every data file lies in one partition, and an engine prunes files by
 * any predicate on `ts` without knowing the directory names.
 */
export const PARTITION_FIELD = { name: 'ts_hour', transform: 'hour', 'source-id': tsFieldId, 'field-id': 1000 } as const;
export const PARTITION_SPEC = { 'spec-id': 0, fields: [PARTITION_FIELD] };
export const LAST_PARTITION_ID = PARTITION_FIELD['field-id'];

/** Rows are sorted by (drone_id, ts) in every file; the table says so, so engines can use it. */
export const SORT_ORDER = {
  'order-id': 1,
  fields: SORT_COLUMNS.map((name) => ({ transform: 'identity', 'source-id': fieldIdByName.get(name)!, direction: 'asc', 'null-order': 'nulls-first' })),
};

/** DuckDB's `FIELD_IDS {...}` clause of a COPY, so every Parquet column carries its Iceberg id. */
export const FIELD_IDS_SQL = `FIELD_IDS {${TABLE_FIELDS.map((f) => `${f.name}: ${f.id}`).join(', ')}}`;
