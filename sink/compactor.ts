import { rm } from 'node:fs/promises';
import { DuckDBInstance } from '@duckdb/node-api';
import type { Logger } from 'pino';
import type { ParsedOptions } from '../deploy/runtime/options';
import { compactLake, type CompactionResult } from './compact';
import type { compactOptions } from './compact-options';
import { DAY_MS, HOUR_MS } from './layout';
import { openLake } from './open-storage';
import { newManifestCache } from './table/manifests';
import { maintainTable, type MaintenanceResult } from './table/maintain';
import { expireSnapshots, tableWriter } from './table/transaction';
import { refuseSecondWriter } from './table/writers';

/** Rows per row group of a compacted file: within the 100k-1M that scans favour, and a few hundred MB to sort. */
export const COMPACTED_ROW_GROUP_ROWS = 262_144;

/**
 * One compaction and maintenance pass from outside the sink, e.g. from cron while sinks
 * run. It may race the sinks' own commits: a replace re-checks its inputs on the version
 * it commits on top of, so every row stays exactly once.
 */
export async function compactOnce(config: ParsedOptions<typeof compactOptions>, log: Logger): Promise<CompactionResult> {
  const writer = `compactor-${process.pid}`;
  const storage = await openLake(config, writer);
  const db = await DuckDBInstance.create(':memory:', { memory_limit: config.duckdbMemory, temp_directory: storage.stagingDir });
  const conn = await db.connect();
  try {
    await refuseSecondWriter(storage, writer, false, log);
    const retentionMs = config.snapshotRetention * HOUR_MS;
    const cache = newManifestCache();
    return await compactLake(
      tableWriter(storage, writer, { snapshotRetentionMs: retentionMs }, cache),
      conn,
      {
        targetBytes: config.compactTargetMib * 1024 * 1024,
        latenessUs: config.lateness * 1e6,
        graceMs: config.compactGrace * 1000,
        snapshotRetentionMs: retentionMs,
        historyRetentionMs: config.historyRetention * DAY_MS,
        rowGroupRows: COMPACTED_ROW_GROUP_ROWS,
      },
      log,
      cache,
    );
  } finally {
    conn.closeSync();
    db.closeSync();
    await rm(storage.stagingDir, { recursive: true, force: true });
    await storage.close();
  }
}

/**
 * Table maintenance alone, with no merging: expires snapshots past the retention (which
 * commits do too, but a table no sink writes to keeps its snapshots until this runs), then
 * removes the files, metadata and checkpoints nothing retained names.
 */
export async function maintainOnce(config: ParsedOptions<typeof compactOptions>, log: Logger): Promise<MaintenanceResult & { expiredSnapshots: number }> {
  const writer = `maintain-${process.pid}`;
  const storage = await openLake(config, writer);
  try {
    await refuseSecondWriter(storage, writer, false, log);
    const snapshotRetentionMs = config.snapshotRetention * HOUR_MS;
    const expiredSnapshots = await expireSnapshots(storage, { snapshotRetentionMs });
    const result = await maintainTable(storage, { graceMs: config.compactGrace * 1000, snapshotRetentionMs, historyRetentionMs: config.historyRetention * DAY_MS }, Date.now(), newManifestCache());
    log.info({ expiredSnapshots, ...result }, 'maintenance done');
    return { expiredSnapshots, ...result };
  } finally {
    await rm(storage.stagingDir, { recursive: true, force: true });
    await storage.close();
  }
}
