import { FLIGHT_STATE_NAMES, GPS_FIX_NAMES } from './schema';
import { isStreamId } from './stream';
import { ID_PATTERN } from './topics';
import type { TelemetryPoint } from './types';

/** 2000-01-01T00:00:00Z in microseconds: older event times are clock errors, not flights. */
export const MIN_TS_MICROS = 946_684_800_000_000;

/** The rules a point must meet. Each name is the reason a rejected point is counted under. */
export const INVALID_REASONS = [
  'drone_id_pattern',
  'seq_range',
  'stream_range',
  'ts_before_2000',
  'ts_in_future',
  'not_finite',
  'lat_range',
  'lon_range',
  'battery_pct_range',
  'enum_unknown',
] as const;
export type InvalidReason = (typeof INVALID_REASONS)[number];

/** The measurements that must be finite numbers when present, in the order they are checked. */
export const FINITE_FIELDS = [
  'lat',
  'lon',
  'alt_m',
  'rel_alt_m',
  'ground_speed_mps',
  'vertical_speed_mps',
  'heading_deg',
  'battery_pct',
  'battery_voltage_v',
] as const satisfies readonly (keyof TelemetryPoint)[];

/**
 * The first rule a point breaks, or null when it is valid. `nowUs` and `maxFutureSkewUs`
 * bound event times from above; there is no bound on age, so old flight logs import.
 */
export function invalidReason(p: TelemetryPoint, nowUs: number, maxFutureSkewUs: number): InvalidReason | null {
  if (typeof p.drone_id !== 'string' || !ID_PATTERN.test(p.drone_id)) return 'drone_id_pattern';
  if (!Number.isSafeInteger(p.seq) || p.seq < 0) return 'seq_range';
  if (p.stream != null && !isStreamId(p.stream)) return 'stream_range';
  if (!Number.isSafeInteger(p.ts)) return 'not_finite';
  if (p.ts < MIN_TS_MICROS) return 'ts_before_2000';
  if (p.ts > nowUs + maxFutureSkewUs) return 'ts_in_future';
  for (const field of FINITE_FIELDS) {
    const v = p[field];
    if (v != null && !Number.isFinite(v)) return 'not_finite';
  }
  if (p.lat != null && (p.lat < -90 || p.lat > 90)) return 'lat_range';
  if (p.lon != null && (p.lon < -180 || p.lon > 180)) return 'lon_range';
  if (p.battery_pct != null && (p.battery_pct < 0 || p.battery_pct > 100)) return 'battery_pct_range';
  if (p.gps_fix != null && GPS_FIX_NAMES[p.gps_fix] === undefined) return 'enum_unknown';
  if (p.flight_state != null && FLIGHT_STATE_NAMES[p.flight_state] === undefined) return 'enum_unknown';
  return null;
}
