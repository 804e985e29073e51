import { rm } from 'node:fs/promises';
import path from 'node:path';
import type { DuckDBConnection } from '@duckdb/node-api';
import { LAKE_COLUMNS, SORT_COLUMNS } from '../proto/columns';
import { MICROS_PER_HOUR } from '../proto/time';
import { partitionOfHour } from './layout';
import { closeStageBuffer, lakeExpression, type StageBuffer } from './stage';
import type { LakeStorage } from './storage';

export interface CommittedFile {
  key: string;
  rows: number;
}

const SELECT_LIST = LAKE_COLUMNS.map(lakeExpression).join(', ');
const ORDER_BY = SORT_COLUMNS.join(', ');

/**
 * Writes one Parquet file per event-time hour of the buffer, through `conn` (the sink's
 * one commit connection, used by one commit at a time), and publishes each with the
 * storage's create-only step. On failure, files already published by this commit are
 * removed again, so a retried commit does not store its rows twice.
 */
export async function writeCommit(
  conn: DuckDBConnection,
  buffer: StageBuffer,
  storage: LakeStorage,
  tag: string,
): Promise<CommittedFile[]> {
  closeStageBuffer(buffer);
  const files: CommittedFile[] = [];
  try {
    for (const [hour, rows] of [...buffer.hours].sort((a, b) => a[0] - b[0])) {
      const local = path.join(storage.stagingDir, `${tag}-${hour}.parquet`);
      const from = hour * MICROS_PER_HOUR;
      await conn.run(
        `COPY (SELECT ${SELECT_LIST} FROM ${buffer.table} WHERE ts >= ${from} AND ts < ${from + MICROS_PER_HOUR} ORDER BY ${ORDER_BY}) ` +
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
  } catch (err) {
    await Promise.allSettled(files.map((f) => storage.remove(f.key)));
    throw err;
  } finally {
    await conn.run(`DROP TABLE IF EXISTS ${buffer.table}`);
  }
  return files;
}
