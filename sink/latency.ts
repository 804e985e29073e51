/**
 * Event-to-commit latency: counts in buckets whose bounds grow by 2^(1/4) from 1 ms,
 * so any percentile is known to within 19 % at any scale, in a few dozen numbers.
 */
export const BUCKETS_PER_DOUBLING = 4;

/** The bucket of the latency of a point with event time `tsUs`, committed at `commitUs` (both microseconds). */
export const latencyBucket = (commitUs: number, tsUs: number): number => Math.max(0, Math.floor(Math.log2(Math.max(1, (commitUs - tsUs) / 1000)) * BUCKETS_PER_DOUBLING));

/** Upper bound, in milliseconds, of a bucket. */
export const bucketUpperMs = (bucket: number): number => 2 ** ((bucket + 1) / BUCKETS_PER_DOUBLING);

export class LatencyHistogram {
  readonly counts: number[] = [];
  total = 0;

  add(bucket: number, count: number): void {
    this.counts[bucket] = (this.counts[bucket] ?? 0) + count;
    this.total += count;
  }

  /** The latency (ms, a bucket's upper bound) below which fraction `q` of points lie; null when empty. */
  quantile(q: number): number | null {
    if (this.total === 0) return null;
    const rank = q * this.total;
    let seen = 0;
    for (let b = 0; b < this.counts.length; b++) {
      seen += this.counts[b] ?? 0;
      if (seen >= rank) return bucketUpperMs(b);
    }
    return bucketUpperMs(this.counts.length - 1);
  }
}
