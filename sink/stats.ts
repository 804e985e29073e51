import { INVALID_REASONS, type InvalidReason } from '../proto/validate';
import type { LiveStats } from './live';
import type { StagingState } from './staging-space';
import type { StoreHealth } from './store-health';

/** Why a whole batch was turned away. */
export const BATCH_REJECT_REASONS = ['undecodable', 'gateway_mismatch', 'batch_seq_range'] as const;
export type BatchRejectReason = (typeof BATCH_REJECT_REASONS)[number];

export interface SinkStats {
  batchesReceived: number;
  /** Messages of gateways another shard owns, left to it. */
  batchesOtherShards: number;
  batchesRejected: Record<BatchRejectReason, number>;
  /** Copies of messages already rejected within the repeat window (see rejects.ts), not quarantined again. */
  batchesRejectedRepeats: number;
  batchesEmpty: number;
  batchesDuplicate: number;
  batchesCommitted: number;
  pointsReceived: number;
  pointsInvalid: Record<InvalidReason, number>;
  /** Points whose (drone_id, stream, seq) was already committed or staged. */
  pointsDuplicate: number;
  /** Point streams whose dedupe state left memory after --stream-idle hours without a commit. */
  streamsEvicted: number;
  pointsCommitted: number;
  pointsStaged: number;
  /** Points that arrived for a partition already closed. */
  pointsLate: number;
  files: number;
  /** NDJSON files published under the quarantine path. */
  quarantineFiles: number;
  commits: number;
  commitErrors: number;
  acksPublished: number;
  compactions: number;
  /** Compactions not committed because another writer changed one of their inputs first. */
  compactionsStale: number;
  /** Table commits (appends, replaces) that landed, and attempts that lost the race for a version and tried again. */
  tableCommits: number;
  tableCommitRetries: number;
  filesCompacted: number;
  /** Compaction inputs past their grace period and orphans, removed from the store. */
  filesDeleted: number;
  compactionErrors: number;
  /** Points each gateway's spool reported dropped (policy drop-oldest): a known loss, not a missing entry. */
  gatewayDroppedPoints: Record<string, number>;
}

/** A count of zero for each key. */
export const zeroes = <K extends string>(keys: readonly K[]): Record<K, number> =>
  Object.fromEntries(keys.map((k) => [k, 0])) as Record<K, number>;

export function emptySinkStats(): SinkStats {
  return {
    batchesReceived: 0,
    batchesOtherShards: 0,
    batchesRejected: zeroes(BATCH_REJECT_REASONS),
    batchesRejectedRepeats: 0,
    batchesEmpty: 0,
    batchesDuplicate: 0,
    batchesCommitted: 0,
    pointsReceived: 0,
    pointsInvalid: zeroes(INVALID_REASONS),
    pointsDuplicate: 0,
    streamsEvicted: 0,
    pointsCommitted: 0,
    pointsStaged: 0,
    pointsLate: 0,
    files: 0,
    quarantineFiles: 0,
    commits: 0,
    commitErrors: 0,
    acksPublished: 0,
    compactions: 0,
    compactionsStale: 0,
    tableCommits: 0,
    tableCommitRetries: 0,
    filesCompacted: 0,
    filesDeleted: 0,
    compactionErrors: 0,
    gatewayDroppedPoints: {},
  };
}

/** What sink.stats() returns: the counters, and the state read when asked; metrics.ts exports it at scrape time. */
export type SinkSnapshot = SinkStats & {
  startupReads: number;
  store: StoreHealth;
  staging: StagingState;
  stagedBytes: number;
  streams: number;
  live: LiveStats | null;
  latencyMs: { p50: number | null; p99: number | null; points: number; counts: number[] };
};
