/** A SQL string literal: DuckDB takes file paths and names this way, quotes doubled. */
export const sqlString = (s: string): string => `'${s.replaceAll("'", "''")}'`;
