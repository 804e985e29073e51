import path from 'node:path';
import { INVALID_REASONS } from '../proto/validate';
import type { QualityMetrics } from './catalog/types';
import { LatencyHistogram } from './latency';
import { TELEMETRY_PREFIX } from './layout';
import { emptyCommitCounts, forEachPointRange, type CommitRecord } from './checkpoint';
import { BATCH_REJECT_REASONS } from './stats';

export interface QualitySpan {
  /** Commits recorded at or after this time (ms since the epoch) count; all when omitted. */
  fromMs?: number;
  /** The end of the span, and the time the metrics are true at. */
  toMs: number;
  /** A gap in a drone's seq younger than this may still be in flight; older, it is missing. */
  settleMs: number;
}

const sum = (record: Record<string, number>): number => Object.values(record).reduce((a, b) => a + b, 0);

/**
 * Gaps in the committed seqs of every (drone, stream) as of `toMs`, split by age. Gaps lie
 * within a stream, never between two: a drone's seq in one gateway's stream says nothing
 * of its seq in another's. A gap's age runs from the commit of the first point above it:
 * before that nobody could know it was a gap.
 */
function seqGaps(commits: CommitRecord[], toMs: number, settleMs: number): { settled: number; young: number } {
  const byStream = new Map<string, Array<[number, number, number]>>();
  for (const commit of commits) {
    const at = Date.parse(commit.committed_at);
    forEachPointRange(commit, (drone, stream, ranges) => {
      const key = `${drone}/${stream}`;
      let list = byStream.get(key);
      if (!list) byStream.set(key, (list = []));
      for (const [from, to] of ranges) list.push([from, to, at]);
    });
  }
  let settled = 0;
  let young = 0;
  for (const ranges of byStream.values()) {
    ranges.sort((a, b) => a[0] - b[0]);
    let covered = ranges[0]![1];
    for (const [from, to, at] of ranges.slice(1)) {
      if (from > covered + 1) {
        if (toMs - at >= settleMs) settled += from - covered - 1;
        else young += from - covered - 1;
      }
      covered = Math.max(covered, to);
    }
  }
  return { settled, young };
}

/** How many streams each drone's committed points came in, over some commits. */
function streamsPerDrone(commits: CommitRecord[]): Map<string, number> {
  const streams = new Map<string, Set<number>>();
  for (const commit of commits) {
    forEachPointRange(commit, (drone, stream) => {
      let set = streams.get(drone);
      if (!set) streams.set(drone, (set = new Set()));
      set.add(stream);
    });
  }
  return new Map([...streams].map(([drone, set]) => [drone, set.size]));
}

/** The quality of the commits in a span, folded from their records (oldest to newest, any order). */
export function qualityOf(allCommits: CommitRecord[], span: QualitySpan): QualityMetrics {
  const upTo = allCommits.filter((c) => Date.parse(c.committed_at) < span.toMs);
  const inSpan = span.fromMs === undefined ? upTo : upTo.filter((c) => Date.parse(c.committed_at) >= span.fromMs!);
  const totals = emptyCommitCounts();
  const latency = new LatencyHistogram();
  const partitions: Record<string, number> = {};
  let rows = 0;
  for (const commit of inSpan) {
    const c = commit.counts;
    totals.received_points += c.received_points;
    totals.duplicate_points += c.duplicate_points;
    totals.late_points += c.late_points;
    for (const reason of INVALID_REASONS) totals.rejected_points[reason] += c.rejected_points[reason] ?? 0;
    for (const reason of BATCH_REJECT_REASONS) totals.rejected_batches[reason] += c.rejected_batches[reason] ?? 0;
    totals.repeated_rejected_batches += c.repeated_rejected_batches ?? 0;
    for (const [bucket, n] of Object.entries(c.latency_buckets)) latency.add(Number(bucket), n);
    for (const file of commit.files) {
      rows += file.rows;
      const partition = path.posix.relative(TELEMETRY_PREFIX, path.posix.dirname(file.key));
      partitions[partition] = (partitions[partition] ?? 0) + file.rows;
    }
  }
  // Losses and gaps are states of the whole product as of the span's end, not events in it.
  const reportedLost = new Map<string, number>();
  let newestEventUs = -Infinity;
  for (const commit of upTo) {
    for (const [gateway, n] of Object.entries(commit.counts.dropped_reported)) reportedLost.set(gateway, Math.max(reportedLost.get(gateway) ?? 0, n));
    for (const file of commit.files) newestEventUs = Math.max(newestEventUs, file.max_ts);
  }
  const lost = [...reportedLost.values()].reduce((a, b) => a + b, 0);
  const gaps = seqGaps(upTo, span.toMs, span.settleMs);
  const perDrone = streamsPerDrone(inSpan);
  const several = [...perDrone].filter(([, n]) => n > 1).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const rejectedPoints = sum(totals.rejected_points);
  const rejectedBatches = sum(totals.rejected_batches);
  const received = totals.received_points + rejectedBatches;
  const fromMs = span.fromMs ?? (inSpan.length > 0 ? Math.min(...inSpan.map((c) => Date.parse(c.committed_at))) : span.toMs);
  const seconds = Math.max(0.001, (span.toMs - fromMs) / 1000);
  return {
    from: new Date(fromMs).toISOString(),
    to: new Date(span.toMs).toISOString(),
    rows,
    received_points: totals.received_points,
    missing_entries: Math.max(0, gaps.settled - lost),
    drones: perDrone.size,
    streams: [...perDrone.values()].reduce((a, b) => a + b, 0),
    streams_by_drone: Object.fromEntries(several),
    reported_lost: lost,
    in_flight: gaps.young,
    rejected_points: rejectedPoints,
    rejected_points_by_reason: totals.rejected_points,
    undecodable_batches: rejectedBatches,
    rejected_batches_by_reason: totals.rejected_batches,
    rejected_batch_repeats: totals.repeated_rejected_batches,
    error_rate: received === 0 ? 0 : (rejectedPoints + rejectedBatches) / received,
    duplicates_dropped: totals.duplicate_points,
    late_points: totals.late_points,
    freshness_seconds: Number.isFinite(newestEventUs) ? Math.max(0, span.toMs / 1000 - newestEventUs / 1e6) : null,
    latency_p50_ms: latency.quantile(0.5),
    latency_p99_ms: latency.quantile(0.99),
    throughput_rows_per_second: rows / seconds,
    partitions,
  };
}
