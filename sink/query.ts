import path from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import { LAKE_COLUMNS } from '../proto/columns';
import { readCommitRecords } from './manifest';

export type QueryFormat = 'table' | 'csv' | 'ndjson';

/**
 * Runs `sql` on DuckDB with a `telemetry` view over the files the manifest names, so the
 * reader sees whole commits only, never a file whose commit record is missing.
 */
export async function queryLake(lake: string, sql: string, onBadRecord: (file: string, err: Error) => void): Promise<{ columns: string[]; rows: unknown[][] }> {
  const records = await readCommitRecords(path.resolve(lake), onBadRecord);
  const files = records.flatMap((r) => r.files.map((f) => path.resolve(lake, f.key)));
  const db = await DuckDBInstance.create(':memory:');
  const conn = await db.connect();
  try {
    await conn.run("SET TimeZone = 'UTC'");
    const quoted = (s: string) => `'${s.replaceAll("'", "''")}'`;
    await conn.run(
      files.length > 0
        ? `CREATE VIEW telemetry AS SELECT * FROM read_parquet([${files.map(quoted).join(', ')}], hive_partitioning = true)`
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
