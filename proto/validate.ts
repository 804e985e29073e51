import { DRONE_COLUMN, isPresent, POINT_FIELDS, SEQ_COLUMN, STREAM_COLUMN, TS_COLUMN, type ColumnValues, type PointColumns } from './columnar';
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

/** The ranges of measurements, checked after every measurement is known to be finite. */
const RANGES = [
  { field: 'lat', min: -90, max: 90, reason: 'lat_range' },
  { field: 'lon', min: -180, max: 180, reason: 'lon_range' },
  { field: 'battery_pct', min: 0, max: 100, reason: 'battery_pct_range' },
] as const satisfies ReadonlyArray<{ field: (typeof FINITE_FIELDS)[number]; min: number; max: number; reason: InvalidReason }>;

const ENUMS = [
  { field: 'gps_fix', names: GPS_FIX_NAMES },
  { field: 'flight_state', names: FLIGHT_STATE_NAMES },
] as const satisfies ReadonlyArray<{ field: keyof TelemetryPoint; names: readonly string[] }>;

/** The rules of a point's identity and time, in the order they are checked. */
function identityRule(droneIdOk: boolean, seq: number, stream: number | null | undefined, ts: number, nowUs: number, maxFutureSkewUs: number): InvalidReason | null {
  if (!droneIdOk) return 'drone_id_pattern';
  if (!Number.isSafeInteger(seq) || seq < 0) return 'seq_range';
  if (stream != null && !isStreamId(stream)) return 'stream_range';
  if (!Number.isSafeInteger(ts)) return 'not_finite';
  if (ts < MIN_TS_MICROS) return 'ts_before_2000';
  if (ts > nowUs + maxFutureSkewUs) return 'ts_in_future';
  return null;
}

const isDroneId = (id: unknown): boolean => typeof id === 'string' && ID_PATTERN.test(id);

/**
 * The first rule a point breaks, or null when it is valid. `nowUs` and `maxFutureSkewUs`
 * bound event times from above; there is no bound on age, so old flight logs import.
 */
export function invalidReason(p: TelemetryPoint, nowUs: number, maxFutureSkewUs: number): InvalidReason | null {
  const identity = identityRule(isDroneId(p.drone_id), p.seq, p.stream, p.ts, nowUs, maxFutureSkewUs);
  if (identity) return identity;
  for (const field of FINITE_FIELDS) {
    const v = p[field];
    if (v != null && !Number.isFinite(v)) return 'not_finite';
  }
  for (const { field, min, max, reason } of RANGES) {
    const v = p[field];
    if (v != null && (v < min || v > max)) return reason;
  }
  for (const { field, names } of ENUMS) {
    const v = p[field];
    if (v != null && names[v] === undefined) return 'enum_unknown';
  }
  return null;
}

const columnOf = (field: string): number => POINT_FIELDS.findIndex((f) => f.name === field);
const FINITE_COLUMNS = FINITE_FIELDS.map(columnOf);
const RANGE_COLUMNS = RANGES.map((r) => ({ ...r, column: columnOf(r.field) }));
// dense: every number from 0 to the last names a value, so bounds within them say every value does.
const ENUM_COLUMNS = ENUMS.map((e) => ({ ...e, column: columnOf(e.field), dense: Array.from(e.names, (name) => name !== undefined).every(Boolean) }));

/** For each entry of a batch's drone dictionary, whether it is a valid drone id: checked once per batch, not per point. */
export const validDroneIds = (points: PointColumns): Uint8Array => Uint8Array.from(points.columns[DRONE_COLUMN]!.dictionary!, (id) => (isDroneId(id) ? 1 : 0));

/**
 * invalidReason for point i of a batch's columns, read in place (the sink's hot path):
 * `stream` is the point's own or its batch's, `droneIdsOk` validDroneIds of the batch.
 */
export function invalidReasonAt(points: PointColumns, i: number, stream: number, droneIdsOk: Uint8Array, nowUs: number, maxFutureSkewUs: number): InvalidReason | null {
  const columns = points.columns;
  const droneOk = droneIdsOk[columns[DRONE_COLUMN]!.values[i]!] === 1;
  const identity = identityRule(droneOk, columns[SEQ_COLUMN]!.values[i]!, stream, columns[TS_COLUMN]!.values[i]!, nowUs, maxFutureSkewUs);
  if (identity) return identity;
  for (const c of FINITE_COLUMNS) {
    const column = columns[c];
    if (column && isPresent(column.present, i) && !Number.isFinite(column.values[i]!)) return 'not_finite';
  }
  for (const { column: c, min, max, reason } of RANGE_COLUMNS) {
    const column = columns[c];
    if (!column || !isPresent(column.present, i)) continue;
    const v = column.values[i]!;
    if (v < min || v > max) return reason;
  }
  for (const { column: c, names } of ENUM_COLUMNS) {
    const column = columns[c];
    if (column && isPresent(column.present, i) && names[column.values[i]!] === undefined) return 'enum_unknown';
  }
  return null;
}

/**
 * The points of a batch that may break a rule, found a column at a time (the sink's hot
 * path: a tight loop per rule instead of every rule per point), or null when none may.
 * A marked point is only a suspect: invalidReasonAt names its rule, or clears it (a value
 * the point does not have reads as 0 here, and may be marked for nothing).
 */
export function suspectPoints(points: PointColumns, batchStream: number, droneIdsOk: Uint8Array, nowUs: number, maxFutureSkewUs: number): Uint8Array | null {
  const n = points.count;
  const columns = points.columns;
  let marks: Uint8Array | null = null;
  const mark = (i: number): void => {
    (marks ??= new Uint8Array(n))[i] = 1;
  };
  if (droneIdsOk.includes(0)) {
    const drones = columns[DRONE_COLUMN]!.values;
    for (let i = 0; i < n; i++) if (droneIdsOk[drones[i]!] !== 1) mark(i);
  }
  // A column whose bounds, as decoding found them, meet a rule is not walked for it: the
  // bounds are NaN where not known, and an integer column's known bounds mean whole values.
  const seq = columns[SEQ_COLUMN]!;
  if (!within(seq, 0, Number.MAX_SAFE_INTEGER)) for (let i = 0; i < n; i++) if (!Number.isSafeInteger(seq.values[i]!) || seq.values[i]! < 0) mark(i);
  if (!isStreamId(batchStream)) for (let i = 0; i < n; i++) mark(i);
  const streams = columns[STREAM_COLUMN];
  if (streams && !within(streams, 0, Number.MAX_SAFE_INTEGER)) for (let i = 0; i < n; i++) if (!isStreamId(streams.values[i]!)) mark(i);
  const ts = columns[TS_COLUMN]!;
  const latest = nowUs + maxFutureSkewUs;
  if (!within(ts, MIN_TS_MICROS, latest)) {
    for (let i = 0; i < n; i++) {
      const t = ts.values[i]!;
      if (!Number.isSafeInteger(t) || t < MIN_TS_MICROS || t > latest) mark(i);
    }
  }
  for (const c of FINITE_COLUMNS) {
    const column = columns[c];
    if (column && !within(column, -Number.MAX_VALUE, Number.MAX_VALUE)) for (let i = 0; i < n; i++) if (!Number.isFinite(column.values[i]!)) mark(i);
  }
  for (const { column: c, min, max } of RANGE_COLUMNS) {
    const column = columns[c];
    if (column && !within(column, min, max)) for (let i = 0; i < n; i++) if (column.values[i]! < min || column.values[i]! > max) mark(i);
  }
  for (const { column: c, names, dense } of ENUM_COLUMNS) {
    const column = columns[c];
    if (column && !(dense && within(column, 0, names.length - 1))) for (let i = 0; i < n; i++) if (names[column.values[i]!] === undefined) mark(i);
  }
  return marks;
}

/** Whether every value of `column` lies in [min, max] by its bounds (never when they are not known). */
const within = (column: ColumnValues, min: number, max: number): boolean => column.min >= min && column.max <= max;
