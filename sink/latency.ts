/**
 * Event-to-commit latency: counts in buckets whose bounds grow by 2^(1/4) from 1 ms,
 * so any percentile is known to within 19 % at any scale, in a few dozen numbers.
 */
export const BUCKETS_PER_DOUBLING = 4;

/** The bucket of the latency of a point with event time `tsUs`, committed at `commitUs` (both microseconds). */
export const latencyBucket = (commitUs: number, tsUs: number): number => Math.max(0, Math.floor(Math.log2(Math.max(1, (commitUs - tsUs) / 1000)) * BUCKETS_PER_DOUBLING));

/**
 * The event times, in whole microseconds, whose points committed at `commitUs` fall in
 * `bucket`: [first, last], found by bisection on latencyBucket itself, which never rises
 * as the time does. So a count by these bounds is the count latencyBucket gives.
 */
function bucketTimes(commitUs: number, bucket: number): readonly [number, number] {
  // The least time whose bucket is at most `bucket`, and the greatest whose bucket is at least it.
  let lo = -(2 ** 53);
  let hi = Math.ceil(commitUs);
  while (lo < hi) {
    const mid = Math.floor((lo + hi) / 2);
    if (latencyBucket(commitUs, mid) <= bucket) hi = mid;
    else lo = mid + 1;
  }
  const first = lo;
  hi = 2 ** 53;
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (latencyBucket(commitUs, mid) >= bucket) lo = mid;
    else hi = mid - 1;
  }
  return [first, lo];
}

/**
 * What adds to `histogram` the latencies of points committed at `commitUs`, given their
 * event times `times[from..to)`. Points next to each other in a file mostly share a
 * bucket, so each is counted against the last one's bounds (bucketTimes, found once a
 * bucket): a logarithm per point cost 1.7 % of the sink's CPU.
 */
export function latencyCounter(histogram: LatencyHistogram, commitUs: number): (times: ArrayLike<number>, from: number, to: number) => void {
  const boundsOf = new Map<number, readonly [number, number]>();
  return (times, from, to) => {
    let bucket = -1;
    let first = 0;
    let last = -1;
    let count = 0;
    for (let i = from; i < to; i++) {
      const t = times[i]!;
      if (t >= first && t <= last) {
        count++;
        continue;
      }
      if (count > 0) histogram.add(bucket, count);
      bucket = latencyBucket(commitUs, t);
      let bounds = boundsOf.get(bucket);
      if (bounds === undefined) boundsOf.set(bucket, (bounds = bucketTimes(commitUs, bucket)));
      [first, last] = bounds;
      count = 1;
    }
    if (count > 0) histogram.add(bucket, count);
  };
}

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
