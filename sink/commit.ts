import { rm } from 'node:fs/promises';
import path from 'node:path';
import type { DuckDBConnection } from '@duckdb/node-api';
import { SORT_COLUMNS } from '../proto/columns';
import { MICROS_PER_HOUR, nowMicros } from '../proto/time';
import { latencyBucketSql, type LatencyHistogram } from './latency';
import { partitionOfHour } from './layout';
import { closeStageBuffer, lakeRowsSql, sealStageBuffer, type StageBuffer } from './stage';
import type { LakeStorage } from './storage';

export interface CommittedFile {
  key: string;
  rows: number;
}

const ORDER_BY = SORT_COLUMNS.join(', ');

/**
 * Writes one Parquet file per event-time hour of the buffer, through `conn` (the sink's
 * one commit connection, used by one commit at a time), and publishes each with the
 * storage's create-only step, and adds the commit's event-to-commit latencies to `latency`. On failure, files already published by this commit are
 * removed again, so a retried commit does not store its rows twice.
 */
export async function writeCommit(
  conn: DuckDBConnection,
  buffer: StageBuffer,
  storage: LakeStorage,
  tag: string,
  latency?: LatencyHistogram,
): Promise<CommittedFile[]> {
  sealStageBuffer(buffer);
  const files: CommittedFile[] = [];
  try {
    for (const [hour, rows] of [...buffer.hours].sort((a, b) => a[0] - b[0])) {
      const local = path.join(storage.stagingDir, `${tag}-${hour}.parquet`);
      const from = hour * MICROS_PER_HOUR;
      await conn.run(
        `COPY (${lakeRowsSql(buffer, from, from + MICROS_PER_HOUR)} ORDER BY ${ORDER_BY}) ` +
          `TO '${local.replaceAll("'", "''")}' (FORMAT parquet, COMPRESSION zstd)`,
      );
      const key = `${partitionOfHour(hour)}/part-${tag}.parquet`;
      try {
        await storage.publish(local, key);
      } finally {
        await rm(local, { force: true });
      }
      files.push({ key, rows });
    }
    if (latency) {
      // Measured once the files are visible: that is when a point is committed.
      const reader = await conn.runAndReadAll(
        `SELECT ${latencyBucketSql(nowMicros(), 'ts')} AS bucket, count(*)::INTEGER AS n FROM ${buffer.table} GROUP BY ALL`,
      );
      for (const [bucket, n] of reader.getRows()) latency.add(Number(bucket), Number(n));
    }
  } catch (err) {
    await Promise.allSettled(files.map((f) => storage.remove(f.key)));
    throw err;
  } finally {
    await conn.run(`DROP TABLE IF EXISTS ${buffer.table}`);
    await conn.run(`DROP TABLE IF EXISTS ${buffer.table}_dict`);
    closeStageBuffer(buffer);
  }
  return files;
}
