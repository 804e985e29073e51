import path from 'node:path';
import { INVALID_REASONS } from '../proto/validate';
import type { QualityMetrics } from './catalog/types';
import { LatencyHistogram } from './latency';
import { TELEMETRY_PREFIX } from './layout';
import { emptyCommitCounts, forEachPointRange, type CommitRecord, type OpenCommitCounts } from './checkpoint';
import { BATCH_REJECT_REASONS } from './stats';

// The product's quality is folded from its commit records into a ledger, each record once
// as it is read. A sink records a quality window every minute: recomputed from every record
// it held, a day of commits at the default 5 s with 200 drones took 25 CPU-seconds a window
// and over a gigabyte of records kept in memory, both growing for as long as it ran. The
// ledger keeps what the metrics need (invariant 6): totals since the first commit, each
// stream's committed seqs as intervals, and a summary of each commit in the spans still
// asked for, which the caller bounds (retainFrom). `dronelake catalog` folds every record
// into a ledger of its own, so the numbers are computed one way.

export interface QualitySpan {
  /** Commits recorded at or after this time (ms since the epoch) count; all when omitted. */
  fromMs?: number;
  /** The end of the span, and the time the metrics are true at. */
  toMs: number;
  /** A gap in a drone's seq younger than this may still be in flight; older, it is missing. */
  settleMs: number;
}

/** What one commit adds to a span's metrics: kept while a span may still take it in. */
interface CommitSummary {
  at: number;
  counts: CommitRecord['counts'];
  rows: number;
  bytes: number;
  /** Rows per partition (date=…/hour=…), in the commit's file order. */
  partitions: Array<[string, number]>;
}

/** Committed seqs [start, end] of one (drone, stream); `at`: the commit time of the range that starts it (a gap below it is as old as that). */
type Interval = [start: number, end: number, at: number];

/** The quality ledger of some commits: see above. Plain data; the functions below keep it. */
export interface QualityLedger {
  /** Metrics are true up to here (exclusive): every commit recorded before it is folded. */
  toMs: number;
  /** Records committed at or after toMs, folded once a span's end passes them. */
  pending: CommitRecord[];
  /** Summaries of the folded commits at or after `horizonMs`, oldest first. */
  recent: CommitSummary[];
  /** Spans may begin no earlier than this: older summaries are gone. */
  horizonMs: number;
  /** Since the first commit. */
  totals: OpenCommitCounts;
  latency: LatencyHistogram;
  rows: number;
  partitions: Map<string, number>;
  /** The first commit's time; Infinity before any. */
  firstAt: number;
  reportedLost: Map<string, number>;
  newestEventUs: number;
  oldestEventUs: number;
  /**
   * Per drone, per stream: the last commit time it had points in, and its committed seqs as
   * sorted intervals, apart by at least one seq. Nested maps, not a `drone/stream` key: a
   * key made per drone and record was a string built and hashed for each (fold's largest
   * cost after parsing).
   */
  streams: Map<string, Map<number, StreamCoverage>>;
}

/** One (drone, stream) in a ledger. */
interface StreamCoverage {
  lastAt: number;
  intervals: Interval[];
}

export function newQualityLedger(): QualityLedger {
  return {
    toMs: -Infinity,
    pending: [],
    recent: [],
    horizonMs: -Infinity,
    totals: emptyCommitCounts(),
    latency: new LatencyHistogram(),
    rows: 0,
    partitions: new Map(),
    firstAt: Infinity,
    reportedLost: new Map(),
    newestEventUs: -Infinity,
    oldestEventUs: Infinity,
    streams: new Map(),
  };
}

const atOf = (c: CommitRecord): number => Date.parse(c.committed_at);

/** Adds one commit's counts to a running total. */
function addCounts(totals: OpenCommitCounts, latency: LatencyHistogram, c: CommitRecord['counts']): void {
  totals.received_points += c.received_points;
  totals.duplicate_points += c.duplicate_points;
  totals.late_points += c.late_points;
  for (const reason of INVALID_REASONS) totals.rejected_points[reason] += c.rejected_points[reason] ?? 0;
  for (const reason of BATCH_REJECT_REASONS) totals.rejected_batches[reason] += c.rejected_batches[reason] ?? 0;
  totals.repeated_rejected_batches += c.repeated_rejected_batches ?? 0;
  for (const [bucket, n] of Object.entries(c.latency_buckets)) latency.add(Number(bucket), n);
}

/**
 * Adds the seqs [from, to], committed at `at`, to a stream's intervals. Ranges that touch
 * or overlap merge. A gap lies below every interval but the lowest, and its age runs from
 * the commit of the first point above it: the interval's start, from the earliest commit
 * that holds it.
 */
function cover(intervals: Interval[], from: number, to: number, at: number): void {
  // The first interval that ends at or above from - 1 (binary search: intervals are sorted).
  let lo = 0;
  let hi = intervals.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (intervals[mid]![1] < from - 1) lo = mid + 1;
    else hi = mid;
  }
  let last = lo;
  while (last < intervals.length && intervals[last]![0] <= to + 1) last++;
  if (last === lo) {
    intervals.splice(lo, 0, [from, to, at]);
    return;
  }
  const first = intervals[lo]!;
  const start = Math.min(from, first[0]);
  const startAt = from < first[0] ? at : from === first[0] ? Math.min(at, first[2]) : first[2];
  intervals.splice(lo, last - lo, [start, Math.max(to, intervals[last - 1]![1]), startAt]);
}

function fold(ledger: QualityLedger, commit: CommitRecord): void {
  const at = atOf(commit);
  const c = commit.counts;
  addCounts(ledger.totals, ledger.latency, c);
  let rows = 0;
  let bytes = 0;
  const partitions: Array<[string, number]> = [];
  for (const file of commit.files) {
    rows += file.rows;
    bytes += file.bytes;
    const partition = path.posix.relative(TELEMETRY_PREFIX, path.posix.dirname(file.key));
    partitions.push([partition, file.rows]);
    ledger.partitions.set(partition, (ledger.partitions.get(partition) ?? 0) + file.rows);
    ledger.newestEventUs = Math.max(ledger.newestEventUs, file.max_ts);
  }
  ledger.rows += rows;
  ledger.firstAt = Math.min(ledger.firstAt, at);
  for (const [gateway, n] of Object.entries(c.dropped_reported)) ledger.reportedLost.set(gateway, Math.max(ledger.reportedLost.get(gateway) ?? 0, n));
  forEachPointRange(commit, (drone, stream, ranges) => {
    let byStream = ledger.streams.get(drone);
    if (!byStream) ledger.streams.set(drone, (byStream = new Map()));
    let coverage = byStream.get(stream);
    if (!coverage) byStream.set(stream, (coverage = { lastAt: at, intervals: [] }));
    else coverage.lastAt = Math.max(coverage.lastAt, at);
    for (const [from, to] of ranges) cover(coverage.intervals, from, to, at);
  });
  if (at >= ledger.horizonMs) {
    // Kept in commit-time order: records of several sinks come in any order.
    const summary: CommitSummary = { at, counts: c, rows, bytes, partitions };
    let i = ledger.recent.length;
    while (i > 0 && ledger.recent[i - 1]!.at > at) i--;
    ledger.recent.splice(i, 0, summary);
  }
}

/** Takes commit records in, each once, in any order; those committed at or after the ledger's time wait for it. */
export function addCommits(ledger: QualityLedger, commits: readonly CommitRecord[]): void {
  for (const commit of commits) {
    // The oldest file's events, for the retention objective: every record counts, pending or not.
    for (const file of commit.files) ledger.oldestEventUs = Math.min(ledger.oldestEventUs, file.min_ts);
    if (atOf(commit) < ledger.toMs) fold(ledger, commit);
    else ledger.pending.push(commit);
  }
}

/**
 * Moves the ledger's time on to `toMs`, folding the records committed before it. A reader
 * moves it to a span's end before it reads the span's records, so that each record folds as
 * it comes and only those committed later wait in `pending` (invariant 6: a first read after
 * a restart is a week of records).
 */
export function advance(ledger: QualityLedger, toMs: number): void {
  if (toMs < ledger.toMs) throw new Error(`quality ledger: a span ending at ${new Date(toMs).toISOString()}, before the last one (${new Date(ledger.toMs).toISOString()})`);
  ledger.toMs = toMs;
  const due = ledger.pending.filter((c) => atOf(c) < toMs);
  if (due.length === 0) return;
  ledger.pending = ledger.pending.filter((c) => atOf(c) >= toMs);
  for (const commit of due.sort((a, b) => atOf(a) - atOf(b))) fold(ledger, commit);
}

/** Lets go of the summaries of commits before `fromMs`: no span asked for later begins before it. */
export function retainFrom(ledger: QualityLedger, fromMs: number): void {
  if (fromMs <= ledger.horizonMs) return;
  ledger.horizonMs = fromMs;
  let drop = 0;
  while (drop < ledger.recent.length && ledger.recent[drop]!.at < fromMs) drop++;
  ledger.recent.splice(0, drop);
}

/** The commit times the ledger knows from `fromMs` on, folded or waiting, in order: what the commit-frequency objective reads. */
export function commitTimesSince(ledger: QualityLedger, fromMs: number): number[] {
  if (fromMs < ledger.horizonMs) throw new Error('quality ledger: commit times asked for before its horizon');
  return [...ledger.recent.map((c) => c.at), ...ledger.pending.map(atOf)].filter((t) => t > fromMs).sort((a, b) => a - b);
}

/** The bytes of the files of the commits folded from `fromMs` on. */
export function committedBytes(ledger: QualityLedger, fromMs: number): number {
  if (fromMs < ledger.horizonMs) throw new Error('quality ledger: bytes asked for before its horizon');
  return ledger.recent.reduce((n, c) => (c.at >= fromMs ? n + c.bytes : n), 0);
}

/** Gaps in the committed seqs of every (drone, stream), split by age at `toMs`: gaps lie within a stream, never between two. */
function seqGaps(ledger: QualityLedger, toMs: number, settleMs: number): { settled: number; young: number } {
  let settled = 0;
  let young = 0;
  for (const byStream of ledger.streams.values()) {
    for (const { intervals } of byStream.values()) {
      for (let i = 1; i < intervals.length; i++) {
        const gap = intervals[i]![0] - intervals[i - 1]![1] - 1;
        if (toMs - intervals[i]![2] >= settleMs) settled += gap;
        else young += gap;
      }
    }
  }
  return { settled, young };
}

/** The quality of the commits in a span, as of its end; the ledger's time moves on to it. */
export function qualityOf(ledger: QualityLedger, span: QualitySpan): QualityMetrics {
  advance(ledger, span.toMs);
  let totals = ledger.totals;
  let latency = ledger.latency;
  let rows = ledger.rows;
  let partitions: Record<string, number> = Object.fromEntries(ledger.partitions);
  let fromMs = Number.isFinite(ledger.firstAt) ? ledger.firstAt : span.toMs;
  if (span.fromMs !== undefined) {
    if (span.fromMs < ledger.horizonMs) throw new Error(`quality ledger: a span from ${new Date(span.fromMs).toISOString()}, before its horizon`);
    fromMs = span.fromMs;
    totals = emptyCommitCounts();
    latency = new LatencyHistogram();
    rows = 0;
    partitions = {};
    for (const commit of ledger.recent) {
      if (commit.at < span.fromMs) continue;
      addCounts(totals, latency, commit.counts);
      rows += commit.rows;
      for (const [partition, n] of commit.partitions) partitions[partition] = (partitions[partition] ?? 0) + n;
    }
  }
  // Losses and gaps are states of the whole product as of the span's end, not events in it.
  const lost = [...ledger.reportedLost.values()].reduce((a, b) => a + b, 0);
  const gaps = seqGaps(ledger, span.toMs, span.settleMs);
  const perDrone = new Map<string, number>();
  for (const [drone, byStream] of ledger.streams) {
    let n = 0;
    for (const { lastAt } of byStream.values()) if (span.fromMs === undefined || lastAt >= span.fromMs) n++;
    if (n > 0) perDrone.set(drone, n);
  }
  const several = [...perDrone].filter(([, n]) => n > 1).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const sum = (record: Record<string, number>): number => Object.values(record).reduce((a, b) => a + b, 0);
  const rejectedPoints = sum(totals.rejected_points);
  const rejectedBatches = sum(totals.rejected_batches);
  const received = totals.received_points + rejectedBatches;
  const seconds = Math.max(0.001, (span.toMs - fromMs) / 1000);
  const newestEventUs = ledger.newestEventUs;
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
    rejected_points_by_reason: { ...totals.rejected_points },
    undecodable_batches: rejectedBatches,
    rejected_batches_by_reason: { ...totals.rejected_batches },
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

/** A ledger of `commits` as of nothing yet, every record waiting: how the bench and the tests fold records held in memory. */
export function ledgerOf(commits: readonly CommitRecord[]): QualityLedger {
  const ledger = newQualityLedger();
  addCommits(ledger, commits);
  return ledger;
}
