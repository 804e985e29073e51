import { createHash } from 'node:crypto';
import { rm, stat } from 'node:fs/promises';
import path from 'node:path';
import type { DuckDBConnection } from '@duckdb/node-api';
import type { Logger } from 'pino';
import { SORT_COLUMNS } from '../proto/columns';
import { MICROS_PER_HOUR } from '../proto/time';
import { PARQUET_WRITE_OPTIONS } from './commit';
import { TELEMETRY_PREFIX } from './layout';
import { compactionRecordKey, publishRecord, type CompactionRecord, type FileEntry, type ManifestCache, readManifest, warnBadRecord, type Snapshot } from './manifest';
import { ObjectExistsError, type LakeStorage } from './storage';
import { sqlString } from './sql';

export interface CompactionSettings {
  /** Output files aim at this size; files already this big are left alone. */
  targetBytes: number;
  /** A partition is closed, and may be compacted, this long after its hour ends. */
  latenessUs: number;
  /** Files leave the store this long after they left the live set (or were written, for orphans). */
  graceMs: number;
  rowGroupRows: number;
}

export interface CompactionResult {
  compactions: number;
  inputFiles: number;
  outputFiles: number;
  rows: number;
  bytesIn: number;
  bytesOut: number;
  /** Files removed from the store: compaction inputs past the grace period and orphans. */
  deleted: number;
}

// (drone_id, ts) as the brief asks; seq breaks ties, so the same inputs give the same bytes.
const ORDER_BY = [...SORT_COLUMNS, 'seq'].join(', ');

/** Partitions past their lateness window, with their small files grouped into merges of at most `targetBytes`. */
export function planCompactions(snapshot: Snapshot, settings: CompactionSettings, nowUs: number): Array<{ partition: string; inputs: FileEntry[] }> {
  const byPartition = new Map<string, FileEntry[]>();
  for (const file of snapshot.live.values()) {
    const hourEnd = (Math.floor(file.max_ts / MICROS_PER_HOUR) + 1) * MICROS_PER_HOUR;
    if (hourEnd + settings.latenessUs > nowUs || file.bytes >= settings.targetBytes) continue;
    const partition = path.posix.dirname(file.key);
    const files = byPartition.get(partition);
    if (files) files.push(file);
    else byPartition.set(partition, [file]);
  }
  const plan: Array<{ partition: string; inputs: FileEntry[] }> = [];
  for (const [partition, files] of [...byPartition].sort((a, b) => (a[0] < b[0] ? -1 : 1))) {
    files.sort((a, b) => (a.key < b.key ? -1 : 1));
    let group: FileEntry[] = [];
    let bytes = 0;
    const close = () => {
      if (group.length >= 2) plan.push({ partition, inputs: group });
      group = [];
      bytes = 0;
    };
    for (const file of files) {
      if (group.length > 0 && bytes + file.bytes > settings.targetBytes) close();
      group.push(file);
      bytes += file.bytes;
    }
    close();
  }
  return plan;
}

export const compactionId = (inputs: string[]): string => createHash('sha256').update([...inputs].sort().join('\n')).digest('hex').slice(0, 24);

async function countRows(conn: DuckDBConnection, localPath: string): Promise<number> {
  const reader = await conn.runAndReadAll(`SELECT count(*)::BIGINT FROM read_parquet(${sqlString(localPath)})`);
  return Number(reader.getRows()[0]![0]);
}

/**
 * Merges one group into one sorted file and records the swap. Its names follow from the
 * inputs, so a compactor that crashed or raced over the same files left, or writes, the
 * very same output; that output is reused once its row count is checked.
 */
async function compactGroup(storage: LakeStorage, conn: DuckDBConnection, partition: string, inputs: FileEntry[], rowGroupRows: number): Promise<CompactionRecord> {
  const id = compactionId(inputs.map((f) => f.key));
  const key = `${partition}/compact-${id}.parquet`;
  const rows = inputs.reduce((n, f) => n + f.rows, 0);
  const local = path.join(storage.stagingDir, `compact-${id}.parquet`);
  const sources = await Promise.all(inputs.map((f) => storage.localPath(f.key)));
  let bytes: number;
  try {
    await conn.run(
      `COPY (SELECT * FROM read_parquet([${sources.map(sqlString).join(', ')}], hive_partitioning = false, union_by_name = true) ORDER BY ${ORDER_BY}) ` +
        `TO ${sqlString(local)} (${PARQUET_WRITE_OPTIONS}, ROW_GROUP_SIZE ${rowGroupRows})`,
    );
    const written = await countRows(conn, local);
    if (written !== rows) throw new Error(`compaction ${id} wrote ${written} rows, its inputs hold ${rows}`);
    bytes = (await stat(local)).size;
    try {
      await storage.publish(local, key);
    } catch (err) {
      if (!(err instanceof ObjectExistsError)) throw err;
      const existing = await countRows(conn, await storage.localPath(key));
      if (existing !== rows) throw new Error(`${key} exists with ${existing} rows, expected ${rows}`);
    }
  } finally {
    await rm(local, { force: true });
  }
  const record: CompactionRecord = {
    version: 1,
    kind: 'compaction',
    id,
    committed_at: new Date().toISOString(),
    partition,
    inputs: inputs.map((f) => f.key),
    outputs: [{ key, rows, bytes, min_ts: Math.min(...inputs.map((f) => f.min_ts)), max_ts: Math.max(...inputs.map((f) => f.max_ts)) }],
  };
  try {
    await publishRecord(storage, compactionRecordKey(id), record);
  } catch (err) {
    // Another compactor recorded this very swap first: the lake holds it once either way.
    if (!(err instanceof ObjectExistsError)) throw err;
  }
  return record;
}

/**
 * How old a file no record names must be before it is removed. Such a file may belong to
 * a commit in flight, published and about to be recorded, so this floor does not follow
 * a short grace period.
 */
const UNRECORDED_MIN_AGE_MS = 15 * 60 * 1000;

/**
 * Removes data files that are not live, once readers that listed them before they left
 * the live set had the grace period to finish:
 * - compaction inputs, counted from the swap;
 * - outputs of compactions that lost a race, counted from their writing;
 * - files no record names (a crashed commit's or compaction's), from their writing,
 *   and never before UNRECORDED_MIN_AGE_MS.
 */
async function sweep(storage: LakeStorage, snapshot: Snapshot, graceMs: number, nowMs: number): Promise<number> {
  let deleted = 0;
  for (const object of await storage.list(`${TELEMETRY_PREFIX}/`)) {
    if (snapshot.live.has(object.key) || !object.key.endsWith('.parquet')) continue;
    const retired = snapshot.retiredAt.get(object.key);
    const age = nowMs - (retired ?? object.modifiedMs);
    const minAge = retired !== undefined || snapshot.referenced.has(object.key) ? graceMs : Math.max(graceMs, UNRECORDED_MIN_AGE_MS);
    if (age < minAge) continue;
    await storage.remove(object.key);
    deleted++;
  }
  return deleted;
}

/** One compaction pass over the whole lake: plan from the manifest, merge, record, sweep. */
export async function compactLake(
  storage: LakeStorage,
  conn: DuckDBConnection,
  settings: CompactionSettings,
  log: Logger,
  cache?: ManifestCache,
): Promise<CompactionResult> {
  const onBad = warnBadRecord(log);
  const result: CompactionResult = { compactions: 0, inputFiles: 0, outputFiles: 0, rows: 0, bytesIn: 0, bytesOut: 0, deleted: 0 };
  const plan = planCompactions(await readManifest(storage, onBad, cache), settings, Date.now() * 1000);
  for (const { partition, inputs } of plan) {
    log.debug({ partition, inputs: inputs.length }, 'compaction started');
    const record = await compactGroup(storage, conn, partition, inputs, settings.rowGroupRows);
    result.compactions++;
    result.inputFiles += inputs.length;
    result.outputFiles += record.outputs.length;
    result.rows += record.outputs.reduce((n, f) => n + f.rows, 0);
    result.bytesIn += inputs.reduce((n, f) => n + f.bytes, 0);
    result.bytesOut += record.outputs.reduce((n, f) => n + f.bytes, 0);
    log.info({ partition, inputs: inputs.length, rows: record.outputs[0]!.rows, bytes: record.outputs[0]!.bytes }, 'compacted');
  }
  // Re-read, so the sweep sees this pass's swaps and everything committed meanwhile.
  result.deleted = await sweep(storage, await readManifest(storage, onBad, cache), settings.graceMs, Date.now());
  return result;
}
