import { DuckDBInstance } from '@duckdb/node-api';
import PQueue from 'p-queue';
import { LAKE_COLUMNS } from '../proto/columns';
import { QUALITY_PREFIX, QUARANTINE_PREFIX } from './layout';
import { readQuarantineCommits } from './checkpoint';
import { loadTable } from './table/metadata';
import { liveFiles, pickSnapshot } from './table/scan';
import { QUARANTINE_COLUMNS, type QuarantineKind } from './quarantine';
import { openLake, type StorageConfig } from './open-storage';
import { sqlString } from './sql';

export type QueryFormat = 'table' | 'csv' | 'ndjson';


function quarantineView(kind: QuarantineKind, files: string[]): string {
  const columns = Object.entries(QUARANTINE_COLUMNS[kind]);
  const source =
    files.length > 0
      ? `SELECT * FROM read_json([${files.map(sqlString).join(', ')}], format = 'newline_delimited', columns = {${columns.map(([c, t]) => `${c}: '${t}'`).join(', ')}})`
      : `SELECT ${columns.map(([c, t]) => `NULL::${t} AS ${c}`).join(', ')} WHERE false`;
  return `CREATE VIEW quarantined_${kind} AS ${source}`;
}

/** Which snapshot of the table to read: the current one unless a time or an id is given. */
export interface TimeTravel {
  asOfMs?: number;
  snapshotId?: number;
}

/**
 * Runs `sql` on DuckDB with views over one snapshot of the table: `telemetry` over its
 * data files, `quarantined_points` and `quarantined_batches` over the bad input the
 * table's commits kept, and `quality` over the sinks' quality windows. The reader sees
 * whole commits only, and never both the inputs and the output of a compaction
 * (invariant 4). On S3 the files are fetched into the local cache first, since DuckDB
 * here reads local files only.
 */
export async function queryLake(config: StorageConfig, sql: string, onBadRecord: (key: string, err: Error) => void, travel: TimeTravel = {}): Promise<{ columns: string[]; rows: unknown[][] }> {
  const storage = await openLake(config);
  let files: string[];
  const quarantine: Record<QuarantineKind, string[]> = { batches: [], points: [] };
  let qualityFiles: string[];
  try {
    const table = await loadTable(storage);
    const snapshot = table ? pickSnapshot(table.metadata, travel) : null;
    if (!table && (travel.asOfMs !== undefined || travel.snapshotId !== undefined)) throw new Error(`${storage.root} has no table yet: there is nothing to travel back in`);
    const live = await liveFiles(storage, snapshot);
    const upTo = snapshot?.['timestamp-ms'] ?? Infinity;
    const fetches = new PQueue({ concurrency: 8 });
    const fetch = (keys: string[]) => Promise.all(keys.sort().map((key) => fetches.add(() => storage.localPath(key))));
    // The bad input of the commits the snapshot holds.
    const kept: string[] = [];
    if (table) {
      await readQuarantineCommits(storage, table.metadata.properties, onBadRecord, (commits) => {
        for (const c of commits) if (Date.parse(c.committed_at) <= upTo) kept.push(...c.quarantine);
      });
    }
    const windows = (await storage.list(`${QUALITY_PREFIX}/`)).map((o) => o.key).filter((k) => k.endsWith('.json'));
    [files, quarantine.batches, quarantine.points, qualityFiles] = await Promise.all([
      fetch(live.map((f) => f.key)),
      fetch(kept.filter((k) => k.startsWith(`${QUARANTINE_PREFIX}/batches/`))),
      fetch(kept.filter((k) => k.startsWith(`${QUARANTINE_PREFIX}/points/`))),
      fetch(windows),
    ]);
  } finally {
    await storage.close();
  }
  const db = await DuckDBInstance.create(':memory:');
  const conn = await db.connect();
  try {
    await conn.run("SET TimeZone = 'UTC'");
    await conn.run(quarantineView('batches', quarantine.batches));
    await conn.run(quarantineView('points', quarantine.points));
    await conn.run(
      qualityFiles.length > 0
        ? `CREATE VIEW quality AS SELECT * FROM read_json([${qualityFiles.map(sqlString).join(', ')}], format = 'newline_delimited')`
        : `CREATE VIEW quality AS SELECT NULL::VARCHAR AS writer, NULL::VARCHAR AS "from", NULL::VARCHAR AS "to", NULL::BIGINT AS rows WHERE false`,
    );
    await conn.run(
      files.length > 0
        ? // By name: files written before a column was added (stream) read it as null.
          `CREATE VIEW telemetry AS SELECT * FROM read_parquet([${files.map(sqlString).join(', ')}], hive_partitioning = true, union_by_name = true)`
        : // An empty lake still has the lake's columns.
          `CREATE VIEW telemetry AS SELECT ${LAKE_COLUMNS.map((c) => `NULL::${c.sqlType} AS ${c.name}`).join(', ')}, NULL::DATE AS date, NULL::BIGINT AS hour WHERE false`,
    );
    const reader = await conn.runAndReadAll(sql);
    return { columns: reader.columnNames(), rows: reader.getRowsJson() as unknown[][] };
  } finally {
    conn.closeSync();
    db.closeSync();
  }
}

const text = (v: unknown): string => (v === null || v === undefined ? '' : typeof v === 'string' ? v : JSON.stringify(v));

export function formatRows(columns: string[], rows: unknown[][], format: QueryFormat): string {
  if (format === 'ndjson') return rows.map((r) => `${JSON.stringify(Object.fromEntries(columns.map((c, i) => [c, r[i] ?? null])))}\n`).join('');
  if (format === 'csv') {
    const cell = (v: unknown) => {
      const s = text(v);
      return /[",\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
    };
    return [columns, ...rows].map((r) => `${r.map(cell).join(',')}\n`).join('');
  }
  const cells = [columns, ...rows.map((r) => r.map(text))];
  const widths = columns.map((_, i) => Math.max(...cells.map((r) => String(r[i] ?? '').length)));
  const line = (r: unknown[]) => r.map((c, i) => String(c ?? '').padEnd(widths[i]!)).join('  ').trimEnd();
  return `${[line(columns), line(widths.map((w) => '-'.repeat(w))), ...cells.slice(1).map(line)].join('\n')}\n(${rows.length} row${rows.length === 1 ? '' : 's'})\n`;
}
