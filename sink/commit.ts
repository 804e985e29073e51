import { rm, stat } from 'node:fs/promises';
import path from 'node:path';
import type { DuckDBConnection } from '@duckdb/node-api';
import { SORT_COLUMNS } from '../proto/columns';
import { MICROS_PER_HOUR, nowMicros } from '../proto/time';
import { latencyBucketSql, type LatencyHistogram } from './latency';
import { partitionOfHour, QUARANTINE_PREFIX, TELEMETRY_PREFIX } from './layout';
import type { FileEntry } from './manifest';
import { closeStageBuffer, lakeRowsSql, sealStageBuffer, type StageBuffer } from './stage';

/**
 * How every lake file is written, commits and compactions alike. Parquet V2 encodings
 * (DELTA_BINARY_PACKED for integers and timestamps, BYTE_STREAM_SPLIT for doubles): on a
 * compacted hour of the simulated fleet, its values quantized as autopilots send them, they
 * take 0.92 of the bytes of V1's dictionaries and PLAIN; on one commit's small file 1.25,
 * and on the real flight log vtol.tlog 1.08 (`npm run bench -- --only lake,sizes`). The
 * lake keeps compacted files. DuckDB reads them in every lake test, hyparquet in
 * test/pipeline.test.ts and the bench.
 */
export const PARQUET_WRITE_OPTIONS = 'FORMAT parquet, COMPRESSION zstd, PARQUET_VERSION V2';
import type { LakeStorage } from './storage';
import { sqlString } from './sql';

const ORDER_BY = SORT_COLUMNS.join(', ');

/**
 * Kafka Connect's rule: a file's name follows from what it holds, here which commit of
 * which sink, so the run after a crash writes the crashed commit's names again.
 */
export const commitTag = (writer: string, number: number): string => `${writer}-${String(number).padStart(10, '0')}`;
const dataFileName = (tag: string): string => `part-${tag}.parquet`;

/**
 * Removes files of `writer`'s commits numbered above `lastRecorded`: a crash between
 * publishing files and recording the commit left them, no record names them, and their
 * batches were never acked, so the agents send them again.
 */
export async function removeOwnOrphans(storage: LakeStorage, writer: string, lastRecorded: number): Promise<number> {
  const own = new RegExp(`/part-${writer.replace(/[.]/g, '\\.')}-(\\d{10})\\.(parquet|ndjson)$`);
  let removed = 0;
  for (const prefix of [`${TELEMETRY_PREFIX}/`, `${QUARANTINE_PREFIX}/`]) {
    for (const object of await storage.list(prefix)) {
      const match = own.exec(object.key);
      if (match && Number(match[1]) > lastRecorded) {
        await storage.remove(object.key);
        removed++;
      }
    }
  }
  return removed;
}

/**
 * Writes one Parquet file per event-time hour of the buffer, through `conn` (the sink's
 * one commit connection, used by one commit at a time), publishes each with the storage's
 * create-only step, and adds the commit's event-to-commit latencies to `latency`. On
 * failure, files already published by this commit are removed again, so a retried commit
 * does not store its rows twice.
 */
export async function writeCommit(
  conn: DuckDBConnection,
  buffer: StageBuffer,
  storage: LakeStorage,
  tag: string,
  latency?: LatencyHistogram,
): Promise<FileEntry[]> {
  sealStageBuffer(buffer);
  const files: FileEntry[] = [];
  try {
    const bounds = await conn.runAndReadAll(
      `SELECT floor(ts / ${MICROS_PER_HOUR})::BIGINT, min(ts)::BIGINT, max(ts)::BIGINT FROM ${buffer.table} GROUP BY ALL`,
    );
    const tsRange = new Map(bounds.getRows().map(([hour, min, max]) => [Number(hour), [Number(min), Number(max)] as const]));
    for (const [hour, rows] of [...buffer.hours].sort((a, b) => a[0] - b[0])) {
      const local = path.join(storage.stagingDir, `${tag}-${hour}.parquet`);
      const from = hour * MICROS_PER_HOUR;
      await conn.run(
        `COPY (${lakeRowsSql(buffer, from, from + MICROS_PER_HOUR)} ORDER BY ${ORDER_BY}) ` +
          `TO ${sqlString(local)} (${PARQUET_WRITE_OPTIONS})`,
      );
      const key = `${partitionOfHour(hour)}/${dataFileName(tag)}`;
      let bytes: number;
      try {
        bytes = (await stat(local)).size;
        await storage.publish(local, key);
      } finally {
        await rm(local, { force: true });
      }
      const [minTs, maxTs] = tsRange.get(hour)!;
      files.push({ key, rows, bytes, min_ts: minTs, max_ts: maxTs });
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
