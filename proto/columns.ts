import protobuf from 'protobufjs/light';
import { FLIGHT_STATE_NAMES, FlightStateEnum, GPS_FIX_NAMES, GpsFixEnum, PointType } from './schema';

/** How a column's values are carried from a decoded point into the lake. */
export type ColumnKind = 'string' | 'uint64' | 'timestamp' | 'double' | 'uint32' | 'bool' | 'enum';

export interface LakeColumn {
  name: string;
  kind: ColumnKind;
  /** DuckDB type of the column in the Parquet files. */
  sqlType: string;
  /** For enums: the short name of each value, by number; stored as text. */
  enumNames?: readonly string[];
  /** Where the value comes from: the point on the wire, or the sink that stores it. */
  origin: 'point' | 'sink';
}

const SQL_TYPE: Record<ColumnKind, string> = {
  string: 'VARCHAR',
  // Signed: seq and stream are at most 2^53 (the seq_range and stream_range rules), and
  // Iceberg, Spark and Trino have no unsigned 64-bit type to read UBIGINT as.
  uint64: 'BIGINT',
  // TIMESTAMPTZ is written as Parquet TIMESTAMP(MICROS, isAdjustedToUTC=true).
  timestamp: 'TIMESTAMPTZ',
  double: 'DOUBLE',
  // Signed, and wide enough for every uint32: consumers subtract counts (`satellites -
  // lag(satellites)`), which overflows in an unsigned type as soon as a count falls.
  uint32: 'BIGINT',
  bool: 'BOOLEAN',
  enum: 'VARCHAR',
};

function enumNamesOf(field: protobuf.Field): readonly string[] {
  if (field.resolvedType === GpsFixEnum) return GPS_FIX_NAMES;
  if (field.resolvedType === FlightStateEnum) return FLIGHT_STATE_NAMES;
  throw new Error(`proto field ${field.name}: enum ${field.type} has no lake mapping`);
}

/** The mapping rule: every int64 in a Point is a microsecond UTC time. */
function kindOf(field: protobuf.Field): ColumnKind {
  field.resolve();
  if (field.resolvedType instanceof protobuf.Enum) return 'enum';
  switch (field.type) {
    case 'string':
      return 'string';
    case 'uint64':
      return 'uint64';
    case 'int64':
      return 'timestamp';
    case 'double':
      return 'double';
    case 'uint32':
      return 'uint32';
    case 'bool':
      return 'bool';
    default:
      throw new Error(`proto field ${field.name}: type ${field.type} has no lake mapping`);
  }
}

function pointColumn(field: protobuf.Field): LakeColumn {
  const kind = kindOf(field);
  const column: LakeColumn = { name: field.name, kind, sqlType: SQL_TYPE[kind], origin: 'point' };
  if (kind === 'enum') column.enumNames = enumNamesOf(field);
  return column;
}

/** Columns of the telemetry table, in file order: the point's fields, then the sink's. */
export const LAKE_COLUMNS: readonly LakeColumn[] = [
  ...PointType.fieldsArray.slice().sort((a, b) => a.id - b.id).map(pointColumn),
  { name: 'gateway_id', kind: 'string', sqlType: 'VARCHAR', origin: 'sink' },
  { name: 'ingested_at', kind: 'timestamp', sqlType: 'TIMESTAMPTZ', origin: 'sink' },
];

/** Sort order of rows in every file. */
export const SORT_COLUMNS = ['drone_id', 'ts'] as const;
