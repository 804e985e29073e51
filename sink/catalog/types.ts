import type { InvalidReason } from '../../proto/validate';
import type { BatchRejectReason } from '../stats';

/**
 * The drones product's quality over one span of time: a window of the sink's history, or
 * the whole product. Counts are exact: they are folded from the commit checkpoints the table holds,
 * which hold what each commit took, so they survive crashes and never count twice.
 */
export interface QualityMetrics {
  /** ISO 8601 bounds of the span; for the whole product, the first and last commit. */
  from: string;
  to: string;
  /** Rows committed to the lake. */
  rows: number;
  /** Points the sink took from decodable batches (valid, invalid and duplicate). */
  received_points: number;
  /** Gaps in drones' committed `seq` that have stayed open longer than the settle time, beyond what agents reported lost. */
  missing_entries: number;
  /** Points agents reported dropping (a full spool with policy drop-oldest): a known loss, not a missing entry. */
  /** Drones with points committed in the span, and the point streams they came in (see the row key). */
  drones: number;
  streams: number;
  /** The drones whose points came in more than one stream in the span (a roaming drone, a replaced spool), with their stream count; every other drone had one. */
  streams_by_drone: Record<string, number>;
  reported_lost: number;
  /** Gaps younger than the settle time: points that may still be in flight (a spool draining, a re-send). */
  in_flight: number;
  /** Points kept in the quarantine, in total and by the rule they broke. */
  rejected_points: number;
  rejected_points_by_reason: Record<InvalidReason, number>;
  /** Whole messages that were not a batch of their gateway, in total and by reason. */
  undecodable_batches: number;
  rejected_batches_by_reason: Record<BatchRejectReason, number>;
  /** Copies of those messages received again within the repeat window (a re-send, a redelivery): counted here, not in the error rate. */
  rejected_batch_repeats: number;
  /** (rejected points + rejected batches) / (received points + rejected batches): a batch that cannot be read counts once. */
  error_rate: number;
  /** Points whose (drone_id, stream, seq) was already in the lake or staged: true re-sends. */
  duplicates_dropped: number;
  /** Points that arrived for a partition already closed. */
  late_points: number;
  /** Age of the newest committed event at `to`, seconds; null when nothing is committed. */
  freshness_seconds: number | null;
  /** Event-to-commit latency percentiles, milliseconds; null when nothing is committed. */
  latency_p50_ms: number | null;
  latency_p99_ms: number | null;
  /** Rows per second over the span. */
  throughput_rows_per_second: number;
  /** Rows per hour partition committed in the span (`date=YYYY-MM-DD/hour=HH`). */
  partitions: Record<string, number>;
}

/** The SLA properties the contract names (ODCS `slaProperties[].property`). */
export const SLO_PROPERTIES = ['availability', 'throughput', 'errorRate', 'frequency', 'latency', 'retention'] as const;
export type SloProperty = (typeof SLO_PROPERTIES)[number];

/** One service-level objective of the contract, as configured. */
export interface SloTarget {
  property: SloProperty;
  /** The objective's value, in `unit`. */
  target: number;
  unit: string;
  /** Whether the actual value must stay at or below the target ('max') or at or above it ('min'). */
  direction: 'max' | 'min';
  description: string;
}

/** One objective, evaluated. */
export interface SloStatus {
  property: SloProperty;
  target: number;
  actual: number | null;
  unit: string;
  met: boolean;
  /** How far the actual value is past the target (0 when met), in `unit`. */
  breach: number;
}

/** Who owns and supports the product, from the sink's config. */
export interface ProductOwnership {
  team: string;
  owner: string;
  /** A URL or mailto: where consumers get help. */
  support: string;
}

/** Where the product's data can be read, for the contract's `servers` and the descriptor's ports. */
export interface ProductLocation {
  /** The lake root: a directory or s3://bucket/prefix. */
  lake: string;
  /** S3 endpoint for S3-compatible stores, when not AWS. */
  s3Endpoint?: string | undefined;
}
