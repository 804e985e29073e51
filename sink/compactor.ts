import { rm } from 'node:fs/promises';
import { DuckDBInstance } from '@duckdb/node-api';
import type { Logger } from 'pino';
import type { ParsedOptions } from '../deploy/options';
import { compactLake, type CompactionResult } from './compact';
import type { compactOptions } from './compact-options';
import { openLake } from './open-storage';

/** Rows per row group of a compacted file: within the 100k-1M that scans favour, and a few hundred MB to sort. */
export const COMPACTED_ROW_GROUP_ROWS = 262_144;

/**
 * One compaction pass from outside the sink, e.g. from cron while sinks run. It may race
 * the sinks' own compactors: the manifest protocol keeps every row exactly once.
 */
export async function compactOnce(config: ParsedOptions<typeof compactOptions>, log: Logger): Promise<CompactionResult> {
  const storage = await openLake(config, `compactor-${process.pid}`);
  const db = await DuckDBInstance.create(':memory:', { memory_limit: config.duckdbMemory, temp_directory: storage.stagingDir });
  const conn = await db.connect();
  try {
    return await compactLake(
      storage,
      conn,
      {
        targetBytes: config.compactTargetMib * 1024 * 1024,
        latenessUs: config.lateness * 1e6,
        graceMs: config.compactGrace * 1000,
        rowGroupRows: COMPACTED_ROW_GROUP_ROWS,
      },
      log,
    );
  } finally {
    conn.closeSync();
    db.closeSync();
    await rm(storage.stagingDir, { recursive: true, force: true });
    await storage.close();
  }
}
