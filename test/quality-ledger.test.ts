import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { INVALID_REASONS } from '../proto/validate';
import type { QualityMetrics } from '../sink/catalog/types';
import { emptyCommitCounts, forEachPointRange, type CommitRecord } from '../sink/checkpoint';
import { LatencyHistogram } from '../sink/latency';
import { TELEMETRY_PREFIX } from '../sink/layout';
import { addCommits, advance, committedBytes, newQualityLedger, qualityOf, retainFrom, type QualitySpan } from '../sink/quality';
import { DAY_MS } from '../sink/layout';
import { productStatus, sloTargets } from '../sink/slo';
import { parseState, stateJson } from '../sink/quality-state';
import { BATCH_REJECT_REASONS } from '../sink/stats';

// The quality ledger (sink/quality.ts) folds each commit record once, as a sink reads them
// over days. Its numbers must be exactly those of the whole history, recomputed: the
// reference below recomputes them from every record on each window, as the sink did before
// the ledger, and the two are compared window by window over three days of commits from
// three sinks, records turning up late, seqs with gaps, overlaps and late fills.

const HOUR_MS = 3_600_000;
const atOf = (c: CommitRecord) => Date.parse(c.committed_at);

/** Every metric, recomputed from all the records: the reference. */
function referenceQuality(allCommits: CommitRecord[], span: QualitySpan): QualityMetrics {
  const upTo = allCommits.filter((c) => atOf(c) < span.toMs);
  const inSpan = span.fromMs === undefined ? upTo : upTo.filter((c) => atOf(c) >= span.fromMs!);
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
  const reportedLost = new Map<string, number>();
  let newestEventUs = -Infinity;
  for (const commit of upTo) {
    for (const [gateway, n] of Object.entries(commit.counts.dropped_reported)) reportedLost.set(gateway, Math.max(reportedLost.get(gateway) ?? 0, n));
    for (const file of commit.files) newestEventUs = Math.max(newestEventUs, file.max_ts);
  }
  const lost = [...reportedLost.values()].reduce((a, b) => a + b, 0);
  // Every range of every stream, sorted by its first seq; a gap is as old as the commit of the range above it.
  const byStream = new Map<string, Array<[number, number, number]>>();
  for (const commit of upTo) {
    forEachPointRange(commit, (drone, stream, ranges) => {
      const list = byStream.get(`${drone}/${stream}`) ?? [];
      byStream.set(`${drone}/${stream}`, list);
      for (const [from, to] of ranges) list.push([from, to, atOf(commit)]);
    });
  }
  let settled = 0;
  let young = 0;
  for (const ranges of byStream.values()) {
    ranges.sort((a, b) => a[0] - b[0]);
    let covered = ranges[0]![1];
    for (const [from, to, at] of ranges.slice(1)) {
      if (from > covered + 1) {
        if (span.toMs - at >= span.settleMs) settled += from - covered - 1;
        else young += from - covered - 1;
      }
      covered = Math.max(covered, to);
    }
  }
  const streams = new Map<string, Set<number>>();
  for (const commit of inSpan) forEachPointRange(commit, (drone, stream) => streams.set(drone, (streams.get(drone) ?? new Set()).add(stream)));
  const perDrone = new Map([...streams].map(([drone, set]) => [drone, set.size]));
  const several = [...perDrone].filter(([, n]) => n > 1).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const sum = (record: Record<string, number>) => Object.values(record).reduce((a, b) => a + b, 0);
  const rejectedPoints = sum(totals.rejected_points);
  const rejectedBatches = sum(totals.rejected_batches);
  const received = totals.received_points + rejectedBatches;
  const fromMs = span.fromMs ?? (inSpan.length > 0 ? Math.min(...inSpan.map(atOf)) : span.toMs);
  return {
    from: new Date(fromMs).toISOString(),
    to: new Date(span.toMs).toISOString(),
    rows,
    received_points: totals.received_points,
    missing_entries: Math.max(0, settled - lost),
    drones: perDrone.size,
    streams: [...perDrone.values()].reduce((a, b) => a + b, 0),
    streams_by_drone: Object.fromEntries(several),
    reported_lost: lost,
    in_flight: young,
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
    throughput_rows_per_second: rows / Math.max(0.001, (span.toMs - fromMs) / 1000),
    partitions,
  };
}

const median = (values: number[]): number | null => {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};

/** What each objective reads of the records, recomputed from all of them: the reference (availability reads the windows, not the records). */
function referenceActuals(commits: CommitRecord[], settleMs: number, nowMs: number): Record<string, number | null> {
  const hour = referenceQuality(commits, { fromMs: nowMs - HOUR_MS, toMs: nowMs, settleMs });
  const first = commits.reduce((t, c) => Math.min(t, atOf(c)), nowMs);
  const times = commits.map(atOf).filter((t) => t > nowMs - HOUR_MS).sort((a, b) => a - b);
  const oldest = Math.min(...commits.flatMap((c) => c.files.map((f) => f.min_ts)));
  return {
    throughput: hour.rows / Math.max(1, Math.min(HOUR_MS, nowMs - first) / 1000),
    errorRate: referenceQuality(commits, { fromMs: nowMs - DAY_MS, toMs: nowMs, settleMs }).error_rate,
    frequency: median(times.slice(1).map((t, i) => (t - times[i]!) / 1000)),
    latency: referenceQuality(commits, { toMs: nowMs, settleMs }).freshness_seconds,
    retention: Number.isFinite(oldest) ? (nowMs - oldest / 1000) / DAY_MS : null,
  };
}

const TARGETS = sloTargets({ availabilityPct: 99, minThroughput: 5, maxErrorRate: 0.01, maxCommitIntervalSeconds: 300, maxFreshnessSeconds: 900, retentionDays: 1 });

describe('the quality ledger', () => {
  it('gives the numbers of the whole history recomputed, window by window, over three days of three sinks\' commits', () => {
    let seed = 20261206;
    const random = () => ((seed = (seed * 48271) % 2147483647) / 2147483647);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!;
    const t0 = Date.UTC(2026, 0, 1);
    const writers = ['sink-a', 'sink-b', 'sink-c'];
    const drones = ['d-1', 'd-2', 'd-3', 'd-4', 'd-5'];
    const next = new Map<string, number>();
    // Commits every 1-8 minutes from each sink, each turning up 0-40 minutes after it was made.
    const made: Array<{ record: CommitRecord; visibleMs: number }> = [];
    for (const [w, writer] of writers.entries()) {
      let number = 0;
      for (let at = t0 + w * 7_001; at < t0 + 3 * DAY_MS; at += Math.floor(60_000 + random() * 420_000)) {
        const counts = emptyCommitCounts();
        counts.received_points = Math.floor(random() * 500);
        counts.duplicate_points = Math.floor(random() * 5);
        counts.late_points = random() < 0.1 ? Math.floor(random() * 20) : 0;
        counts.rejected_points[pick(INVALID_REASONS)] = random() < 0.2 ? Math.floor(random() * 4) : 0;
        counts.rejected_batches[pick(BATCH_REJECT_REASONS)] = random() < 0.05 ? 1 : 0;
        counts.repeated_rejected_batches = random() < 0.05 ? 2 : 0;
        if (random() < 0.05) counts.dropped_reported[pick(['gw-1', 'gw-2'])] = Math.floor(random() * 100);
        for (let b = 0; b < 3; b++) counts.latency_buckets[String(Math.floor(random() * 30))] = Math.floor(1 + random() * 50);
        const streams: Record<string, Record<string, Array<[number, number]>>> = {};
        const points: Record<string, Array<[number, number]>> = {};
        for (const drone of drones) {
          if (random() < 0.3) continue;
          const stream = random() < 0.8 ? 100 + w : 7;
          const key = `${drone}/${stream}`;
          const from = next.get(key) ?? 0;
          // Mostly the next seqs; now and then a gap, a resend over old seqs, or a late fill below.
          const start = random() < 0.1 ? from + Math.floor(random() * 40) : random() < 0.05 ? Math.max(0, from - 30) : random() < 0.05 ? Math.floor(random() * from) : from;
          const to = start + Math.floor(random() * 50);
          next.set(key, Math.max(from, to + 1));
          const ranges: Array<[number, number]> = random() < 0.2 ? [[start, start + 3], [start + 6, to + 6]] : [[start, to]];
          if (random() < 0.1) points[drone] = ranges;
          else (streams[drone] ??= {})[String(stream)] = ranges;
        }
        const hour = new Date(at).toISOString();
        const minTs = (at - Math.floor(random() * HOUR_MS)) * 1000;
        const record: CommitRecord = {
          version: 1,
          kind: 'commit',
          writer,
          number: ++number,
          committed_at: new Date(at).toISOString(),
          files: [{ key: `telemetry/date=${hour.slice(0, 10)}/hour=${hour.slice(11, 13)}/part-${writer}-${number}.parquet`, rows: Math.floor(random() * 400), bytes: Math.floor(random() * 9000), min_ts: minTs, max_ts: minTs + Math.floor(random() * 60e6) }],
          quarantine: [],
          batches: {},
          points,
          streams,
          counts,
        };
        made.push({ record, visibleMs: at + (random() < 0.1 ? Math.floor(random() * 40 * 60_000) : 0) });
      }
    }
    expect(made.length).toBeGreaterThan(2_000);

    // The sink's way: windows of 30 minutes, each reading the records that turned up since.
    const windowMs = 30 * 60_000;
    const settleMs = 10 * 60_000;
    let all = newQualityLedger();
    const own = newQualityLedger();
    const seen = new Set<CommitRecord>();
    const windowEnds: number[] = [];
    let windowStart = t0;
    retainFrom(own, windowStart);
    let compared = 0;
    let savedWithPending = 0;
    for (let end = t0 + windowMs; end <= t0 + 3 * DAY_MS + windowMs; end += windowMs) {
      const fresh = made.filter((m) => m.visibleMs < end + 5_000 && !seen.has(m.record)).map((m) => m.record);
      for (const r of fresh) seen.add(r);
      // As the publisher reads them: time moved on and the day's horizon set first, then the
      // records in chunks, each folded as it comes (those committed after `end` wait).
      advance(own, end);
      advance(all, end);
      retainFrom(all, end - DAY_MS);
      for (let from = 0; from < fresh.length; from += 7) {
        const chunk = fresh.slice(from, from + 7);
        addCommits(all, chunk);
        addCommits(own, chunk.filter((r) => r.writer === 'sink-a'));
      }
      const visible = [...seen].sort((a, b) => atOf(a) - atOf(b));
      const ownVisible = visible.filter((r) => r.writer === 'sink-a');

      expect(qualityOf(own, { fromMs: windowStart, toMs: end, settleMs })).toEqual(referenceQuality(ownVisible, { fromMs: windowStart, toMs: end, settleMs }));
      expect(committedBytes(own, windowStart)).toBe(ownVisible.filter((c) => atOf(c) >= windowStart && atOf(c) < end).reduce((n, c) => n + c.files[0]!.bytes, 0));
      windowEnds.push(end);
      const status = productStatus(all, TARGETS, { endsMs: windowEnds, windowMs }, settleMs, end);
      expect(status.quality).toEqual(referenceQuality(visible, { toMs: end, settleMs }));
      const actuals = Object.fromEntries(status.slos.filter((s) => s.property !== 'availability').map((s) => [s.property, s.actual]));
      expect(actuals).toEqual(referenceActuals(visible, settleMs, end));
      windowStart = end;
      retainFrom(own, windowStart);
      compared++;
      // Now and then the product's ledger goes through its saved form, as a restart or a
      // reader resumes it (sink/quality-state.ts): every later window must still agree.
      if (compared % 37 === 0 || all.pending.length > 0) {
        if (all.pending.length > 0) savedWithPending++;
        all = parseState(JSON.parse(JSON.stringify(stateJson('sink-a', end, new Map([['sink-a', compared]]), all)))).ledger;
      }
    }
    expect(compared).toBe(3 * 48 + 1);
    // Records committed after a window's end, read before it, went through the saved form too.
    expect(savedWithPending).toBeGreaterThan(0);
    // Gaps, late fills, losses and several streams all came up: the comparison covered them.
    const last = qualityOf(all, { toMs: all.toMs, settleMs });
    expect(last.missing_entries).toBeGreaterThan(0);
    expect(last.reported_lost).toBeGreaterThan(0);
    expect(Object.keys(last.streams_by_drone).length).toBeGreaterThan(0);
    // Each stream's seqs stay merged into intervals with a gap between each two, so the
    // ledger grows with the gaps, not with the commits.
    for (const byStream of all.streams.values()) {
      for (const { intervals } of byStream.values()) for (let i = 1; i < intervals.length; i++) expect(intervals[i]![0]).toBeGreaterThan(intervals[i - 1]![1] + 1);
    }
    // A day of summaries, not three.
    expect(all.recent.length).toBeLessThan(made.length / 2);
  });

  it('refuses, in one line, a span that ends before the last or begins before what it kept', () => {
    const ledger = newQualityLedger();
    qualityOf(ledger, { toMs: 2_000_000, settleMs: 0 });
    expect(() => qualityOf(ledger, { toMs: 1_000_000, settleMs: 0 })).toThrow('quality ledger: a span ending at 1970-01-01T00:16:40.000Z, before the last one (1970-01-01T00:33:20.000Z)');
    retainFrom(ledger, 1_500_000);
    expect(() => qualityOf(ledger, { fromMs: 1_000_000, toMs: 2_000_000, settleMs: 0 })).toThrow('quality ledger: a span from 1970-01-01T00:16:40.000Z, before its horizon');
  });
});
