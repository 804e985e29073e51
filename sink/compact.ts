import { createHash } from 'node:crypto';
import { rm, stat } from 'node:fs/promises';
import path from 'node:path';
import type { DuckDBConnection } from '@duckdb/node-api';
import type { Logger } from 'pino';
import { LAKE_COLUMNS, SORT_COLUMNS } from '../proto/columns';
import { MICROS_PER_HOUR } from '../proto/time';
import { PARQUET_WRITE_OPTIONS, TABLE_FILE_OPTIONS } from './write-files';
import { ObjectExistsError, type LakeStorage } from './storage';
import { sqlString } from './sql';
import { dataFileOf, writtenFiles } from './table/data-files';
import { maintainTable, type MaintenanceResult } from './table/maintain';
import { currentSnapshot, type ManifestCache } from './table/manifests';
import { keyUri, loadTable } from './table/metadata';
import { liveFiles, type LiveFile } from './table/scan';
import type { TableWriter } from './table/transaction';
import type { SinkStats } from './stats';
import type { createStoreHealth } from './store-health';

export interface CompactionSettings {
  /** Output files aim at this size; files already this big are left alone. */
  targetBytes: number;
  /** A partition is closed, and may be compacted, this long after its hour ends. */
  latenessUs: number;
  /** Files leave the store at least this long after no retained snapshot names them. */
  graceMs: number;
  /** Snapshots older than this are expired, and the files only they named removed. */
  snapshotRetentionMs: number;
  /** Quality windows and lineage events older than this are removed. */
  historyRetentionMs: number;
  rowGroupRows: number;
}

export interface CompactionResult {
  compactions: number;
  /** Merges not committed because another writer had changed one of their inputs. */
  stale: number;
  inputFiles: number;
  outputFiles: number;
  rows: number;
  bytesIn: number;
  bytesOut: number;
  /** Files removed from the store by the maintenance that follows the merges. */
  deleted: number;
  maintenance: MaintenanceResult;
}

// (drone_id, ts) as the table's sort order says; seq breaks ties, so the same inputs give the same bytes.
const ORDER_BY = [...SORT_COLUMNS, 'seq'].join(', ');
// Every column in the table's current type: files of older versions (seq as UBIGINT, no
// stream column) come out of a merge as the table's schema says.
const COLUMNS_SQL = LAKE_COLUMNS.map((c) => `${c.name}::${c.sqlType} AS ${c.name}`).join(', ');

/** Partitions past their lateness window, with their small files grouped into merges of at most `targetBytes`. */
export function planCompactions(files: LiveFile[], settings: Pick<CompactionSettings, 'targetBytes' | 'latenessUs'>, nowUs: number): Array<{ partition: string; inputs: LiveFile[] }> {
  const byPartition = new Map<string, LiveFile[]>();
  for (const file of files) {
    const hourEnd = (Math.floor(file.max_ts / MICROS_PER_HOUR) + 1) * MICROS_PER_HOUR;
    if (hourEnd + settings.latenessUs > nowUs || file.bytes >= settings.targetBytes) continue;
    const partition = path.posix.dirname(file.key);
    const list = byPartition.get(partition);
    if (list) list.push(file);
    else byPartition.set(partition, [file]);
  }
  const plan: Array<{ partition: string; inputs: LiveFile[] }> = [];
  for (const [partition, list] of [...byPartition].sort((a, b) => (a[0] < b[0] ? -1 : 1))) {
    list.sort((a, b) => (a.key < b.key ? -1 : 1));
    let group: LiveFile[] = [];
    let bytes = 0;
    const close = () => {
      if (group.length >= 2) plan.push({ partition, inputs: group });
      group = [];
      bytes = 0;
    };
    for (const file of list) {
      if (group.length > 0 && bytes + file.bytes > settings.targetBytes) close();
      group.push(file);
      bytes += file.bytes;
    }
    close();
  }
  return plan;
}

export const compactionId = (inputs: string[]): string => createHash('sha256').update([...inputs].sort().join('\n')).digest('hex').slice(0, 24);

/**
 * Merges one group into one sorted file and commits the swap as a `replace` snapshot,
 * which the table takes only while every input is still live. The output's name follows
 * from the inputs: a second compactor of the same files finds the name taken and leaves
 * the group to the first. Returns null when the merge was not committed.
 */
async function compactGroup(table: TableWriter, conn: DuckDBConnection, partition: string, inputs: LiveFile[], rowGroupRows: number): Promise<{ rows: number; bytes: number } | null> {
  const storage = table.storage;
  const id = compactionId(inputs.map((f) => f.key));
  const key = `${partition}/compact-${id}.parquet`;
  const rows = inputs.reduce((n, f) => n + f.rows, 0);
  const hour = Math.floor(inputs[0]!.min_ts / MICROS_PER_HOUR);
  const local = path.join(storage.stagingDir, `compact-${id}.parquet`);
  const sources = await Promise.all(inputs.map((f) => storage.localPath(f.key)));
  try {
    const stats = await conn.runAndReadAll(
      `COPY (SELECT ${COLUMNS_SQL} FROM read_parquet([${sources.map(sqlString).join(', ')}], hive_partitioning = false, union_by_name = true) ORDER BY ${ORDER_BY}) ` +
        `TO ${sqlString(local)} (${PARQUET_WRITE_OPTIONS}, ROW_GROUP_SIZE ${rowGroupRows}, ${TABLE_FILE_OPTIONS})`,
    );
    const written = writtenFiles(stats.getRowsJson() as unknown[][]);
    // Invariant 1: the swap holds exactly the rows it replaces, or it does not happen.
    if (written.length !== 1 || written[0]!.rows !== rows) throw new Error(`compaction ${id} wrote ${written.map((w) => w.rows).join('+')} rows, its inputs hold ${rows}`);
    const bytes = (await stat(local)).size;
    try {
      await storage.publish(local, key);
    } catch (err) {
      if (err instanceof ObjectExistsError) return null;
      throw err;
    }
    const committed = await table.replace(
      inputs.map((f) => f.uri),
      [dataFileOf(keyUri(storage, key), { ...written[0]!, bytes }, hour)],
      { 'dronelake.compaction': id },
    );
    return committed ? { rows, bytes } : null;
  } finally {
    await rm(local, { force: true });
  }
}

/** One compaction pass over the whole table: plan from the current snapshot, merge, commit, then maintenance. */
export async function compactLake(table: TableWriter, conn: DuckDBConnection, settings: CompactionSettings, log: Logger, cache?: ManifestCache): Promise<CompactionResult> {
  const storage: LakeStorage = table.storage;
  const result: CompactionResult = { compactions: 0, stale: 0, inputFiles: 0, outputFiles: 0, rows: 0, bytesIn: 0, bytesOut: 0, deleted: 0, maintenance: { dataFiles: 0, metadataFiles: 0, checkpoints: 0, historyFiles: 0 } };
  const current = await loadTable(storage);
  const files = current ? await liveFiles(storage, currentSnapshot(current.metadata), cache) : [];
  for (const { partition, inputs } of planCompactions(files, settings, Date.now() * 1000)) {
    log.debug({ partition, inputs: inputs.length }, 'compaction started');
    const done = await compactGroup(table, conn, partition, inputs, settings.rowGroupRows);
    if (done === null) {
      result.stale++;
      log.info({ partition, inputs: inputs.length }, 'compaction not committed: another writer changed its inputs first');
      continue;
    }
    result.compactions++;
    result.inputFiles += inputs.length;
    result.outputFiles++;
    result.rows += done.rows;
    result.bytesIn += inputs.reduce((n, f) => n + f.bytes, 0);
    result.bytesOut += done.bytes;
    log.info({ partition, inputs: inputs.length, rows: done.rows, bytes: done.bytes }, 'compacted');
  }
  result.maintenance = await maintainTable(storage, { graceMs: settings.graceMs, snapshotRetentionMs: settings.snapshotRetentionMs, historyRetentionMs: settings.historyRetentionMs }, Date.now(), cache);
  result.deleted = result.maintenance.dataFiles;
  return result;
}

/** The sink's compaction: a pass every `intervalMs` (0: only when asked), one at a time. */
export interface CompactionSchedule {
  /** Runs a pass now, or waits for the one running; never rejects (a failure is counted and logged). */
  now(): Promise<void>;
  /** Stops the timer and interrupts a pass in progress. */
  stop(): Promise<void>;
}

export function scheduleCompaction(
  table: TableWriter,
  conn: DuckDBConnection,
  settings: CompactionSettings,
  intervalMs: number,
  parts: { stats: SinkStats; storeHealth: ReturnType<typeof createStoreHealth>; closing: () => boolean; log: Logger; cache: ManifestCache },
): CompactionSchedule {
  const { stats, storeHealth, log } = parts;
  let compacting: Promise<void> | null = null;
  const now = (): Promise<void> => {
    compacting ??= compactLake(table, conn, settings, log, parts.cache)
      .then((result) => {
        // A pass that went through shows the store works, when there is nothing to commit too.
        storeHealth.succeeded();
        stats.compactions += result.compactions;
        stats.compactionsStale += result.stale;
        stats.filesCompacted += result.inputFiles;
        stats.filesDeleted += result.deleted;
      })
      .catch((err: Error) => {
        // A compaction that fails part way leaves at most an orphan output, which a later
        // pass sweeps; one interrupted by close() is no error.
        if (parts.closing()) return;
        stats.compactionErrors++;
        storeHealth.failed(err);
        log.error({ err: err.message }, 'compaction failed; the next pass tries again');
      })
      .finally(() => {
        compacting = null;
      });
    return compacting;
  };
  const timer = intervalMs > 0 ? setInterval(() => void now(), intervalMs) : null;
  return {
    now,
    async stop() {
      if (timer) clearInterval(timer);
      if (compacting) {
        // A merge can take minutes; what it leaves half done is swept by a later pass.
        conn.interrupt();
        await compacting;
      }
    },
  };
}
