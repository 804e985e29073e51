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

/** Glob of every data file, for readers that list the lake. */
export const TELEMETRY_GLOB = `${TELEMETRY_PREFIX}/**/*.parquet`;
