import type { DuckDBAppender, DuckDBConnection, DuckDBInstance } from '@duckdb/node-api';
import { LAKE_COLUMNS, type LakeColumn } from '../proto/columns';
import { MICROS_PER_HOUR } from '../proto/time';
import type { TelemetryPoint } from '../proto/types';

// Staging types: 64-bit values are staged as DOUBLE (exact below 2^53, which every
// sequence number and microsecond time is) so that appending needs no BigInt per value;
// the commit's SELECT turns them into the lake's types.
const STAGE_TYPE: Record<LakeColumn['kind'], string> = {
  string: 'VARCHAR',
  uint64: 'DOUBLE',
  timestamp: 'DOUBLE',
  double: 'DOUBLE',
  uint32: 'UINTEGER',
  bool: 'BOOLEAN',
  enum: 'VARCHAR',
};

const POINT_COLUMNS = LAKE_COLUMNS.filter((c) => c.origin === 'point');

/** The SQL expression that turns a staged column into its lake type. */
export function lakeExpression(column: LakeColumn): string {
  switch (column.kind) {
    case 'uint64':
      return `${column.name}::UBIGINT AS ${column.name}`;
    case 'timestamp':
      // Integer microseconds in, exact, whatever the session time zone; casting a
      // TIMESTAMP to TIMESTAMPTZ instead would shift it by the zone's offset.
      return `make_timestamptz(${column.name}::BIGINT) AS ${column.name}`;
    default:
      return column.name;
  }
}

/**
 * Points staged for one commit: a DuckDB table, its appender, and what they hold. Each
 * buffer has a connection of its own, because a DuckDB connection runs one statement at
 * a time and the appender flushes through it while other buffers are being committed.
 */
export interface StageBuffer {
  readonly connection: DuckDBConnection;
  readonly table: string;
  readonly appender: DuckDBAppender;
  points: number;
  /** Rows per event-time hour (hours since the epoch): one Parquet file each. */
  readonly hours: Map<number, number>;
  /** Batch sequence numbers per gateway, to be acknowledged once the commit lands. */
  readonly batches: Map<string, number[]>;
}

export async function createStageBuffer(db: DuckDBInstance, table: string): Promise<StageBuffer> {
  const connection = await db.connect();
  const columns = LAKE_COLUMNS.map((c) => `${c.name} ${STAGE_TYPE[c.kind]}`).join(', ');
  await connection.run(`CREATE OR REPLACE TABLE ${table} (${columns})`);
  const appender = await connection.createAppender(table);
  return { connection, table, appender, points: 0, hours: new Map(), batches: new Map() };
}

/** Releases a buffer that will take no more points. */
export function closeStageBuffer(buffer: StageBuffer): void {
  buffer.appender.closeSync();
  buffer.connection.closeSync();
}

export function recordBatch(buffer: StageBuffer, gatewayId: string, batchSeq: number): void {
  const seqs = buffer.batches.get(gatewayId);
  if (seqs) seqs.push(batchSeq);
  else buffer.batches.set(gatewayId, [batchSeq]);
}

/** Appends one valid point. The hot path: no allocation beyond what DuckDB's appender does. */
export function stagePoint(buffer: StageBuffer, p: TelemetryPoint, gatewayId: string, ingestedAt: number): void {
  const a = buffer.appender;
  for (const column of POINT_COLUMNS) {
    const v = p[column.name as keyof TelemetryPoint];
    if (v == null) {
      a.appendNull();
      continue;
    }
    switch (column.kind) {
      case 'string':
        a.appendVarchar(v as string);
        break;
      case 'uint32':
        a.appendUInteger(v as number);
        break;
      case 'bool':
        a.appendBoolean(v as boolean);
        break;
      case 'enum':
        a.appendVarchar(column.enumNames![v as number]!);
        break;
      default:
        a.appendDouble(v as number);
    }
  }
  a.appendVarchar(gatewayId);
  a.appendDouble(ingestedAt);
  a.endRow();
  buffer.points++;
  const hour = Math.floor(p.ts / MICROS_PER_HOUR);
  buffer.hours.set(hour, (buffer.hours.get(hour) ?? 0) + 1);
}
