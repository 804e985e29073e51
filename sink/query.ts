import path from 'node:path';
import { DuckDBInstance, type DuckDBConnection } from '@duckdb/node-api';
import PQueue from 'p-queue';
import { LAKE_COLUMNS } from '../proto/columns';
import { QUALITY_PREFIX, QUARANTINE_PREFIX } from './layout';
import { readQuarantineCommits } from './checkpoint';
import { loadTable } from './table/metadata';
import { liveFiles, pickSnapshot } from './table/scan';
import { QUARANTINE_COLUMNS, type QuarantineKind } from './quarantine';
import { openLake, type StorageConfig } from './open-storage';
import { sqlString } from './sql';
import { isS3Lake } from './catalog/lake-url';

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

/** The views a query may name. */
const VIEWS = ['telemetry', 'quarantined_batches', 'quarantined_points', 'quality'] as const;
type View = (typeof VIEWS)[number];
const isView = (name: string): name is View => (VIEWS as readonly string[]).includes(name);

/** Every `table_name` in DuckDB's parse of a statement (json_serialize_sql), lower-cased. */
function tableNames(node: unknown, into: Set<string>): Set<string> {
  if (Array.isArray(node)) for (const item of node) tableNames(item, into);
  else if (typeof node === 'object' && node !== null) {
    for (const [key, value] of Object.entries(node)) {
      if (key === 'table_name' && typeof value === 'string') into.add(value.toLowerCase());
      else tableNames(value, into);
    }
  }
  return into;
}

/**
 * The lake's views `sql` names, by DuckDB's own parser. All of them for a statement that
 * names none (SHOW TABLES, a query of duckdb_views()) or that the parser cannot serialise
 * (anything but SELECT), which then runs as it would with every view there.
 */
async function viewsNamed(conn: DuckDBConnection, sql: string): Promise<Set<View>> {
  const parsed = (await conn.runAndReadAll(`SELECT json_serialize_sql(${sqlString(sql)})`)).getRows()[0]?.[0];
  let tree: unknown = null;
  try {
    tree = JSON.parse(String(parsed));
  } catch {
    // Not JSON: treated as a statement it cannot serialise.
  }
  const failed = typeof tree !== 'object' || tree === null || !('error' in tree) || tree.error !== false;
  const views = failed ? [] : [...tableNames(tree, new Set())].filter(isView);
  return new Set(views.length > 0 ? views : VIEWS);
}

/**
 * Runs `sql` on DuckDB with views over one snapshot of the table: `telemetry` over its
 * data files, `quarantined_points` and `quarantined_batches` over the bad input the
 * table's commits kept, and `quality` over the sinks' quality windows. The reader sees
 * whole commits only, and never both the inputs and the output of a compaction
 * (invariant 4). On S3 the files are fetched into the local cache first, since DuckDB
 * here reads local files only. Only the views the statement names are made: a query of
 * the telemetry listed and read every quality window the lake ever recorded (a minute a
 * sink, kept for good), and every commit record, before it ran.
 */
export async function queryLake(config: StorageConfig, sql: string, onBadRecord: (key: string, err: Error) => void, travel: TimeTravel = {}): Promise<{ columns: string[]; rows: unknown[][] }> {
  const db = await DuckDBInstance.create(':memory:');
  const conn = await db.connect();
  try {
    const named = await viewsNamed(conn, sql);
    const storage = await openLake(config);
    const localRoot = isS3Lake(storage.root) ? null : storage.root;
    let files: string[] = [];
    const quarantine: Record<QuarantineKind, string[]> = { batches: [], points: [] };
    let qualityFiles: string[] = [];
    try {
      const table = await loadTable(storage);
      const snapshot = table ? pickSnapshot(table.metadata, travel) : null;
      if (!table && (travel.asOfMs !== undefined || travel.snapshotId !== undefined)) throw new Error(`${storage.root} has no table yet: there is nothing to travel back in`);
      const upTo = snapshot?.['timestamp-ms'] ?? Infinity;
      const fetches = new PQueue({ concurrency: 8 });
      const fetch = (keys: string[]) => Promise.all(keys.sort().map((key) => fetches.add(() => storage.localPath(key))));
      // The bad input of the commits the snapshot holds.
      const kept: string[] = [];
      if (table && (named.has('quarantined_batches') || named.has('quarantined_points'))) {
        await readQuarantineCommits(storage, table.metadata.properties, onBadRecord, (commits) => {
          for (const c of commits) if (Date.parse(c.committed_at) <= upTo) kept.push(...c.quarantine);
        });
      }
      const live = named.has('telemetry') ? await liveFiles(storage, snapshot) : [];
      // A local lake's windows are read where they lie, through a glob DuckDB expands itself
      // (below); an S3 lake's are fetched first, since this DuckDB reads local files only.
      const windows = named.has('quality') && !localRoot ? (await storage.list(`${QUALITY_PREFIX}/`)).map((o) => o.key).filter((k) => k.endsWith('.json')) : [];
      [files, quarantine.batches, quarantine.points, qualityFiles] = await Promise.all([
        fetch(live.map((f) => f.key)),
        fetch(kept.filter((k) => k.startsWith(`${QUARANTINE_PREFIX}/batches/`))),
        fetch(kept.filter((k) => k.startsWith(`${QUARANTINE_PREFIX}/points/`))),
        fetch(windows),
      ]);
    } finally {
      await storage.close();
    }
    await conn.run("SET TimeZone = 'UTC'");
    if (named.has('quarantined_batches')) await conn.run(quarantineView('batches', quarantine.batches));
    if (named.has('quarantined_points')) await conn.run(quarantineView('points', quarantine.points));
    if (named.has('quality')) {
      // On a local lake, a glob: no list of a file name per window in the statement (90 days
      // of a window a minute a sink), and a filter on the `date` directory reads only its days.
      const glob = localRoot ? sqlString(path.join(localRoot, QUALITY_PREFIX, 'date=*', 'window-*.json')) : null;
      // DuckDB refuses a glob that matches nothing: one match is enough to know.
      const globbed = glob !== null && (await conn.runAndReadAll(`SELECT 1 FROM glob(${glob}) LIMIT 1`)).getRows().length > 0 ? glob : null;
      const source = globbed ?? (qualityFiles.length > 0 ? `[${qualityFiles.map(sqlString).join(', ')}]` : null);
      await conn.run(
        source !== null
          ? `CREATE VIEW quality AS SELECT * FROM read_json(${source}, format = 'newline_delimited', hive_partitioning = true)`
          : `CREATE VIEW quality AS SELECT NULL::VARCHAR AS writer, NULL::VARCHAR AS "from", NULL::VARCHAR AS "to", NULL::BIGINT AS rows, NULL::DATE AS date WHERE false`,
      );
    }
    if (named.has('telemetry')) {
      await conn.run(
        files.length > 0
          ? // By name: files written before a column was added (stream) read it as null.
            `CREATE VIEW telemetry AS SELECT * FROM read_parquet([${files.map(sqlString).join(', ')}], hive_partitioning = true, union_by_name = true)`
          : // An empty lake still has the lake's columns.
            `CREATE VIEW telemetry AS SELECT ${LAKE_COLUMNS.map((c) => `NULL::${c.sqlType} AS ${c.name}`).join(', ')}, NULL::DATE AS date, NULL::BIGINT AS hour WHERE false`,
      );
    }
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
