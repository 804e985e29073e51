import { MICROS_PER_HOUR } from '../proto/time';

// The lake's addressable paths, relative to its root (a directory or s3://bucket/prefix).
export const TELEMETRY_PREFIX = 'drones/telemetry/v1';
export const CATALOG_PREFIX = 'drones/_catalog';
export const QUARANTINE_PREFIX = 'drones/_quarantine';
/** Outside the data path, and `_`-prefixed so Hive-style readers skip it. */
export const STAGING_PREFIX = 'drones/_staging';

/** Hive partition directory of an event-time hour (hours since the epoch, UTC). */
export function partitionOfHour(hour: number): string {
  const iso = new Date(hour * (MICROS_PER_HOUR / 1000)).toISOString();
  return `${TELEMETRY_PREFIX}/date=${iso.slice(0, 10)}/hour=${iso.slice(11, 13)}`;
}

/**
 * Kafka Connect's rule: a file's name follows from what it holds, here which commit of
 * which sink, so the run after a crash writes the crashed commit's names again.
 */
export const commitTag = (writer: string, number: number): string => `${writer}-${String(number).padStart(10, '0')}`;
/** The commit a file named `part-{tag}.{ext}` belongs to, or null. */
export function commitOfFile(key: string): { writer: string; number: number } | null {
  const m = /\/part-(.+)-(\d{10})\.[a-z]+$/.exec(key);
  return m ? { writer: m[1]!, number: Number(m[2]) } : null;
}

/** Glob of every data file, for readers that list the lake. */
export const TELEMETRY_GLOB = `${TELEMETRY_PREFIX}/**/*.parquet`;

// The catalog: what describes the product, next to it.
export const CONTRACT_KEY = `${CATALOG_PREFIX}/contract.odcs.yaml`;
export const PRODUCT_KEY = `${CATALOG_PREFIX}/product.odps.yaml`;
export const SLO_STATUS_KEY = `${CATALOG_PREFIX}/slo-status.json`;
export const SAMPLE_KEY = `${CATALOG_PREFIX}/sample/telemetry-sample.parquet`;
export const EXAMPLE_QUERY_KEY = `${CATALOG_PREFIX}/example-query.sql`;
/** Quality windows and lineage events, one file each, by UTC date. */
export const QUALITY_PREFIX = `${CATALOG_PREFIX}/quality`;
export const LINEAGE_PREFIX = `${CATALOG_PREFIX}/lineage`;

/** An hour: the span of an `hour=` partition. */
export const HOUR_MS = 3_600_000;
/** A UTC day: the span of a `date=` directory. */
export const DAY_MS = 24 * HOUR_MS;
/** The UTC date of `ms`, `YYYY-MM-DD`: the `date=` directory the catalog's files of that day lie under. */
export const utcDate = (ms: number): string => new Date(ms).toISOString().slice(0, 10);
/** The UTC dates a span of time touches, oldest first. */
export function utcDates(fromMs: number, toMs: number): string[] {
  const dates: string[] = [];
  for (let t = Math.floor(fromMs / DAY_MS) * DAY_MS; t <= toMs; t += DAY_MS) dates.push(utcDate(t));
  return dates;
}
/** The directory of the quality windows that end on the UTC day of `ms`: a window lies under the day of its end. */
export const qualityDayPrefix = (ms: number): string => `${QUALITY_PREFIX}/date=${utcDate(ms)}/`;

/** `20261125T130000123Z`: a time in a file name, to the millisecond, sortable, with no characters a store or shell minds. */
export const compactTime = (ms: number): string => new Date(ms).toISOString().replace(/[-:.]/g, '');
/** The window end a quality or lineage file name carries, or null. */
export function timeOfName(key: string): number | null {
  const m = /-(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})(\d{3})Z\.json$/.exec(key);
  return m ? Date.UTC(+m[1]!, +m[2]! - 1, +m[3]!, +m[4]!, +m[5]!, +m[6]!, +m[7]!) : null;
}

/** The Iceberg table's metadata: `v{N}.metadata.json`, the highest N current, and `version-hint.text` (a hint only). */
export const TABLE_METADATA_PREFIX = `${TELEMETRY_PREFIX}/metadata`;
