import { FINITE_FIELDS, INVALID_REASONS, type InvalidReason } from '../../proto/validate';
import { COLUMN_DOCS } from './columns-doc';
import type { SloProperty } from './types';

/** ODCS quality dimensions the rules use. */
export type QualityDimension = 'accuracy' | 'completeness' | 'conformity' | 'timeliness' | 'uniqueness';

/**
 * One quality rule of the product. The contract states it (with a query that checks the
 * lake) and the lineage events report it under the same name, so the two can be joined.
 */
export interface QualityRule {
  name: string;
  dimension: QualityDimension;
  /** The column the rule is about; absent when it spans several. */
  column?: string;
  /** OpenLineage's classification of the check ('not_null', 'unique', ...). */
  assertion: string;
  description: string;
  /** The point rule behind it: the sink quarantines points that break it, so none is stored. */
  reason?: InvalidReason;
}

type PointRule = Omit<QualityRule, 'name' | 'reason'>;

const POINT_RULES: Record<InvalidReason, PointRule> = {
  drone_id_pattern: { dimension: 'conformity', column: 'drone_id', assertion: 'pattern', description: 'drone_id is 1-64 characters of [A-Za-z0-9._-]' },
  seq_range: { dimension: 'conformity', column: 'seq', assertion: 'accepted_range', description: 'seq is an integer from 0 to 2^53 - 1' },
  stream_range: { dimension: 'conformity', column: 'stream', assertion: 'accepted_range', description: 'stream is an integer from 0 to 2^53 - 1' },
  ts_before_2000: { dimension: 'accuracy', column: 'ts', assertion: 'accepted_range', description: 'ts is not before 2000-01-01T00:00:00Z (an older event time is a clock error)' },
  ts_in_future: { dimension: 'accuracy', column: 'ts', assertion: 'accepted_range', description: "ts is at most the sink's max future skew ahead of the sink's clock when it took the point (ingested_at)" },
  not_finite: { dimension: 'conformity', assertion: 'finite', description: `ts is an integer, and ${FINITE_FIELDS.join(', ')} are finite numbers when present` },
  lat_range: { dimension: 'conformity', column: 'lat', assertion: 'accepted_range', description: 'lat is within -90..90 when present' },
  lon_range: { dimension: 'conformity', column: 'lon', assertion: 'accepted_range', description: 'lon is within -180..180 when present' },
  battery_pct_range: { dimension: 'conformity', column: 'battery_pct', assertion: 'accepted_range', description: 'battery_pct is within 0..100 when present' },
  enum_unknown: { dimension: 'conformity', assertion: 'accepted_values', description: 'gps_fix and flight_state hold values the contract names' },
};

const pointRule = (reason: InvalidReason): QualityRule => ({
  name: reason,
  reason,
  ...POINT_RULES[reason],
  description: `${POINT_RULES[reason].description}; points that break it are kept in the quarantine under this name, never stored`,
});

const notNullRule = (column: string): QualityRule => ({
  name: `${column}_not_null`,
  dimension: 'completeness',
  column,
  assertion: 'not_null',
  description: `${column} is never null`,
});

/**
 * The product's quality rules. Freshness is a rule only when the objectives bound it
 * (a `latency` objective), since its threshold is that objective's target.
 */
export function qualityRules(objectives: ReadonlyArray<{ property: SloProperty }>): QualityRule[] {
  const rules: QualityRule[] = [
    ...INVALID_REASONS.map(pointRule),
    {
      name: 'drone_seq_unique',
      dimension: 'uniqueness',
      assertion: 'unique',
      description: '(drone_id, stream, seq) is unique when read through the Iceberg table: a point sent again is dropped as a duplicate',
    },
    ...COLUMN_DOCS.filter((c) => c.required).map((c) => notNullRule(c.name)),
  ];
  if (!objectives.some((o) => o.property === 'latency')) return rules;
  return [
    ...rules,
    { name: 'freshness', dimension: 'timeliness', column: 'ts', assertion: 'freshness', description: 'the newest committed event is no older than the latency objective' },
  ];
}
