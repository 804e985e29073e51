import { rm, stat } from 'node:fs/promises';
import path from 'node:path';
import type { DuckDBConnection } from '@duckdb/node-api';
import { TS_COLUMN } from '../proto/columnar';
import { nowMicros } from '../proto/time';
import { latencyCounter, type LatencyHistogram } from './latency';
import { partitionOfHour } from './layout';
import type { FileEntry } from './checkpoint';
import type { DataFile } from './table/avro';
import { dataFileOf, writtenFiles } from './table/data-files';
import { keyUri } from './table/metadata';
import { FIELD_IDS_SQL } from './table/schema';
import { closeStageBuffer, sealStageBuffer, type StageBuffer } from './stage';
import { BLOCK_ROWS } from './stage-columns';
import { lakeRowsSql, stringBounds } from './stage-scan';
import { sqlString } from './sql';
import { publishOwn, type LakeStorage } from './storage';

/**
 * How every lake file is written, commits and compactions alike. Parquet V2 encodings
 * (DELTA_BINARY_PACKED for integers and timestamps, BYTE_STREAM_SPLIT for doubles): on a
 * compacted hour of the simulated fleet, its values quantized as autopilots send them, they
 * take 0.92 of the bytes of V1's dictionaries and PLAIN; on one commit's small file 1.25,
 * and on the real flight log vtol.tlog 1.19 (`npm run bench -- --only lake,sizes`). The
 * lake keeps compacted files. DuckDB reads them in every lake test, hyparquet in
 * test/pipeline.test.ts and the bench.
 *
 * The other knobs DuckDB has, measured on the same hour (bench `lake`): ZSTD level 9 0.989
 * of the bytes, level 19 0.924 for 7.6 times the write time (on 300,000 points); DICTIONARY_SIZE_LIMIT
 * 65536 0.987, but 1.40 on vtol.tlog, where it puts every column of a small file in a
 * dictionary; row groups of 1,048,576 rows 0.945, but a point lookup then reads row groups
 * four times larger. None is worth its cost; the columns' types decide the rest (exact
 * DECIMALs for the seven columns on MAVLink's grids: 0.73).
 */
export const PARQUET_WRITE_OPTIONS = 'FORMAT parquet, COMPRESSION zstd, PARQUET_VERSION V2';
/**
 * What a table file's COPY adds: each column's Iceberg field id in the Parquet schema,
 * and the statistics the table's manifest needs, reported by DuckDB as it writes.
 */
export const TABLE_FILE_OPTIONS = `${FIELD_IDS_SQL}, RETURN_STATS`;
/** Rows in a row group of DuckDB's Parquet writer, by default: a commit's files have them. */
export const DUCKDB_ROW_GROUP_ROWS = 122_880;
/** The ZSTD level of a commit's files (commitFileOptions says why). */
export const COMMIT_ZSTD_LEVEL = 'COMPRESSION_LEVEL 1';
/**
 * What a commit's COPY of a file of `rows` rows adds: dictionaries of at most 4,096 values,
 * and ZSTD at level 1.
 *
 * DuckDB's default limit, a fifth of a row group's rows (24,576 for a full one), gives
 * each column of a row group a hash table of 1 MiB to fill and probe, and two lookups a
 * value to each column that stays a dictionary (heading's 19,000 values, on the simulated
 * fleet): writing a commit of it took 0.63-0.82 CPU-us a point, and 0.53-0.62 with this
 * limit (1,000,000 points, five rounds each, taking turns; `npm run bench -- --only stages`
 * prints both). The price is 29.8 bytes a point against 28.2, heading's dictionary lost,
 * and only until the hour is compacted, which writes with DuckDB's defaults. A file of
 * fewer than 20,480 rows keeps DuckDB's own limit: set as a number, the limit is no
 * longer a fifth of the rows, and a small file would put every column in a dictionary.
 *
 * ZSTD at level 1 instead of DuckDB's 3 writes the same 500,000 staged points in 0.427-0.450
 * CPU-us a point instead of 0.462-0.481 (medians of ten to sixteen writes each, taking
 * turns, in three runs), for 30.11 bytes a point instead of 29.77; level -1 saves 0.06 but
 * takes 33.75 bytes, and no compression 48.5 (`npm run bench -- --only stages` prints level
 * 3 beside the commit's). Compaction writes at the default level, for the files it keeps.
 */
export const commitFileOptions = (rows: number): string => `${commitDictionaryLimit(rows)}, ${COMMIT_ZSTD_LEVEL}`;
/** The dictionary limit of commitFileOptions alone. */
export const commitDictionaryLimit = (rows: number): string => `DICTIONARY_SIZE_LIMIT ${Math.min(4096, Math.floor(Math.min(rows, DUCKDB_ROW_GROUP_ROWS) / 5))}`;

/** The COPY that writes file `index` of a sealed buffer to `file` as a table file, with `options` (the Parquet writer's). */
export const fileCopySql = (buffer: StageBuffer, index: number, file: string, options: string): string =>
  `COPY (${lakeRowsSql(buffer, index)}) TO ${sqlString(file)} (${options}, ${TABLE_FILE_OPTIONS})`;

const dataFileName = (tag: string): string => `part-${tag}.parquet`;

/** Written Parquet files: as the commit record counts them, and as the table's manifest describes them. */
export interface WrittenFiles {
  files: FileEntry[];
  dataFiles: DataFile[];
}

/**
 * Writes one Parquet file per event-time hour of the buffer, through `conn` (the sink's
 * one commit connection, used by one commit at a time), publishes each with the storage's
 * create-only step, and adds the commit's event-to-commit latencies to `latency`. On
 * failure, files already published by this commit are removed again, so a retried commit
 * does not store its rows twice.
 */
export async function writeFiles(
  conn: DuckDBConnection,
  buffer: StageBuffer,
  storage: LakeStorage,
  tag: string,
  latency?: LatencyHistogram,
): Promise<WrittenFiles> {
  sealStageBuffer(buffer);
  const files: FileEntry[] = [];
  const dataFiles: DataFile[] = [];
  try {
    for (const [index, { hour, from, to, minTs, maxTs }] of buffer.files.entries()) {
      const rows = to - from;
      const local = path.join(storage.stagingDir, `${tag}-${hour}.parquet`);
      const stats = await conn.runAndReadAll(fileCopySql(buffer, index, local, `${PARQUET_WRITE_OPTIONS}, ${commitFileOptions(rows)}`));
      const key = `${partitionOfHour(hour)}/${dataFileName(tag)}`;
      let bytes: number;
      try {
        bytes = (await stat(local)).size;
        await publishOwn(storage, local, key);
      } finally {
        await rm(local, { force: true });
      }
      files.push({ key, rows, bytes, min_ts: minTs, max_ts: maxTs });
      const written = writtenFiles(stats.getRowsJson() as unknown[][]);
      if (written.length !== 1 || written[0]!.rows !== rows) throw new Error(`${key}: DuckDB reports ${written.map((w) => w.rows).join('+')} rows written, the commit staged ${rows}`);
      // DuckDB reports no bounds for the columns it wrote from ENUMs: the scan's own.
      for (const [column, [min, max]] of stringBounds(buffer, index)) {
        const reported = written[0]!.columns.get(column);
        if (reported && !reported.has('min') && !reported.has('max')) reported.set('min', min).set('max', max);
      }
      dataFiles.push(dataFileOf(keyUri(storage, key), { ...written[0]!, bytes }, hour));
    }
    if (latency) {
      // Measured once the files are visible: that is when a point is committed.
      const committedAt = nowMicros();
      const count = latencyCounter(latency, committedAt);
      buffer.blocks.forEach((block, b) => count(block.values[TS_COLUMN]!, 0, Math.min(BLOCK_ROWS, buffer.points - b * BLOCK_ROWS)));
    }
  } catch (err) {
    await Promise.allSettled(files.map((f) => storage.remove(f.key)));
    throw err;
  } finally {
    closeStageBuffer(buffer);
  }
  return { files, dataFiles };
}
