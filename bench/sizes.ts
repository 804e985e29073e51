import { mkdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { BatchWriter, decodeBatch } from '../proto/codec';
import { LAKE_COLUMNS } from '../proto/columns';
import { nowMicros } from '../proto/time';
import type { TelemetryPoint } from '../proto/types';
import { writeFiles } from '../sink/write-files';
import { sqlString } from '../sink/sql';
import { STAGING_PREFIX } from '../sink/layout';
import { createStageBuffer } from '../sink/stage';
import { localStorage } from '../sink/storage';
import { figure, type BenchContext, type Figure } from './report';
import { simulatedPoints } from './points';
import { BATCH_POINTS, BENCH_DRONES, BENCH_GATEWAY, decodeBatches, encodeBatches, sinkDatabase, stageBatches } from './stages';

const SECTION = 'sizes';

/** RFC 3339 in UTC with all six fractional digits, so the text keeps the lake's microseconds. */
function rfc3339Micros(us: number): string {
  const iso = new Date(Math.floor(us / 1000)).toISOString();
  return `${iso.slice(0, 20)}${String(us % 1_000_000).padStart(6, '0')}Z`;
}

/** One lake row as a JSON line: enums by name, times as text, nulls left out. */
function ndjsonLine(p: TelemetryPoint, gatewayId: string, ingestedAt: number): string {
  const sinkValues: Record<string, unknown> = { gateway_id: gatewayId, ingested_at: ingestedAt };
  const row: Record<string, unknown> = {};
  for (const column of LAKE_COLUMNS) {
    const v = column.origin === 'point' ? p[column.name as keyof TelemetryPoint] : sinkValues[column.name];
    if (v == null) continue;
    if (column.kind === 'enum') row[column.name] = column.enumNames![v as number];
    else if (column.kind === 'timestamp') row[column.name] = rfc3339Micros(v as number);
    else row[column.name] = v;
  }
  return `${JSON.stringify(row)}\n`;
}

/** Bytes per point of the same rows on the wire, as bare protobuf, in the lake and as NDJSON. */
export async function runSizes(ctx: BenchContext): Promise<Figure[]> {
  const count = ctx.quick ? 100_000 : 500_000;
  ctx.progress(`sizes: simulating ${count.toLocaleString('en-US')} points of ${BENCH_DRONES} drones`);
  const points = await simulatedPoints(count, BENCH_DRONES, BENCH_GATEWAY);

  const batches = encodeBatches(points, BENCH_GATEWAY);
  const wireBytes = batches.reduce((n, b) => n + b.length, 0);

  const body = new BatchWriter();
  for (const p of points) body.add(p);
  const protobufBytes = body.finishPoints().length;

  // Both the lake and the NDJSON get the decoded points, as the sink would hold them.
  const decoded = batches.map((b) => decodeBatch(b));
  let ndjsonBytes = 0;
  let parquetBytes = 0;
  let parquetV1Bytes = 0;
  const { db, conn } = await sinkDatabase();
  try {
    const buffer = createStageBuffer('stage_sizes');
    stageBatches(buffer, decodeBatches(batches, BENCH_GATEWAY, 'v1'));
    for (const batch of decoded) {
      const ingestedAt = nowMicros();
      for (const p of batch.points) ndjsonBytes += Buffer.byteLength(ndjsonLine(p, batch.gateway_id, ingestedAt));
    }
    const storage = await localStorage(path.join(ctx.tmp, 'sizes-lake'), STAGING_PREFIX);
    await mkdir(storage.stagingDir, { recursive: true });
    const { files } = await writeFiles(conn, buffer, storage, 'bench-sizes');
    for (const f of files) parquetBytes += (await stat(path.join(storage.root, f.key))).size;
    ctx.progress(`sizes: ${files.length} Parquet file(s), ${parquetBytes.toLocaleString('en-US')} bytes`);
    // The same rows with the Parquet V1 encodings the lake used before (PLAIN doubles), for the ratio.
    const v1 = path.join(ctx.tmp, 'sizes-v1.parquet');
    const written = files.map((f) => sqlString(path.join(storage.root, f.key))).join(', ');
    await conn.run(`COPY (SELECT * FROM read_parquet([${written}]) ORDER BY drone_id, ts) TO ${sqlString(v1)} (FORMAT parquet, COMPRESSION zstd)`);
    parquetV1Bytes = (await stat(v1)).size;
  } finally {
    conn.closeSync();
    db.closeSync();
  }

  return [
    figure(SECTION, 'wire_bytes_per_point', `wire: ${BATCH_POINTS}-point Batch messages`, wireBytes / count, 'bytes'),
    figure(SECTION, 'protobuf_bytes_per_point', 'protobuf: batch body, no envelope', protobufBytes / count, 'bytes'),
    figure(SECTION, 'parquet_bytes_per_point', 'Parquet: one sink commit (ZSTD, V2 encodings)', parquetBytes / count, 'bytes'),
    figure(SECTION, 'parquet_v1_bytes_per_point', 'Parquet: the same rows with V1 encodings (PLAIN doubles), as before', parquetV1Bytes / count, 'bytes'),
    figure(SECTION, 'parquet_v2_vs_v1_ratio', 'Parquet V2 size / V1 size', parquetBytes / parquetV1Bytes, 'ratio'),
    figure(SECTION, 'ndjson_bytes_per_point', 'NDJSON: lake columns, nulls omitted', ndjsonBytes / count, 'bytes'),
    figure(SECTION, 'parquet_vs_ndjson_ratio', 'Parquet size / NDJSON size', parquetBytes / ndjsonBytes, 'ratio'),
  ];
}
