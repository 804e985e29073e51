import type { QualityMetrics, SloProperty, SloStatus, SloTarget } from './catalog/types';
import { DAY_MS, HOUR_MS } from './layout';
import { commitTimesSince, qualityOf, type QualityLedger } from './quality';

/** The objectives as the sink's options set them; the contract publishes them. */
export interface SloConfig {
  availabilityPct: number;
  minThroughput: number;
  maxErrorRate: number;
  maxCommitIntervalSeconds: number;
  maxFreshnessSeconds: number;
  retentionDays: number;
}

export function sloTargets(config: SloConfig): SloTarget[] {
  return [
    { property: 'availability', target: config.availabilityPct, unit: '%', direction: 'min', description: 'share of the last 24 hours in which the sink recorded quality windows (it was up and committing)' },
    { property: 'throughput', target: config.minThroughput, unit: 'rows/s', direction: 'min', description: 'rows committed per second over the last hour (since the first commit, if that is later)' },
    { property: 'errorRate', target: config.maxErrorRate, unit: 'ratio', direction: 'max', description: '(rejected points + rejected batches) / (received points + rejected batches) over the last 24 hours' },
    { property: 'frequency', target: config.maxCommitIntervalSeconds, unit: 's', direction: 'max', description: 'median time between consecutive commits over the last hour' },
    { property: 'latency', target: config.maxFreshnessSeconds, unit: 's', direction: 'max', description: 'freshness: age of the newest committed event' },
    { property: 'retention', target: config.retentionDays, unit: 'd', direction: 'min', description: 'data is kept at least this long; dronelake deletes no live data, so this is met while the lake is kept' },
  ];
}

/** What the product delivered, per objective, as of `nowMs`. */
export interface SloInputs {
  day: QualityMetrics;
  hour: QualityMetrics;
  /** The whole product up to now, for freshness. */
  now: QualityMetrics;
  /** Every commit on record, for the commit times, the first commit and the oldest events. */
  ledger: QualityLedger;
  /** End times (ms) of the quality windows recorded, and the window length. */
  windowEndsMs: number[];
  windowMs: number;
  nowMs: number;
}

function median(values: number[]): number | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/**
 * Rows per second over the last hour, or since the first commit when the product is
 * younger: a product two minutes old is not held to rows spread over an hour it did not run.
 */
export function throughputOf(hour: QualityMetrics, ledger: QualityLedger, nowMs: number): { rowsPerSecond: number; windowSeconds: number } {
  const first = Math.min(ledger.firstAt, nowMs);
  const windowSeconds = Math.max(1, Math.min(HOUR_MS, nowMs - first) / 1000);
  return { rowsPerSecond: hour.rows / windowSeconds, windowSeconds };
}

function actualOf(property: SloProperty, inputs: SloInputs): number | null {
  switch (property) {
    case 'availability': {
      const since = inputs.nowMs - DAY_MS;
      const recorded = inputs.windowEndsMs.filter((t) => t > since);
      if (recorded.length === 0) return null;
      // Only windows since the product's first one can be expected.
      const first = Math.max(since, Math.min(...recorded) - inputs.windowMs);
      const expected = Math.max(1, Math.floor((inputs.nowMs - first) / inputs.windowMs));
      return Math.min(100, (100 * recorded.length) / expected);
    }
    case 'throughput':
      return throughputOf(inputs.hour, inputs.ledger, inputs.nowMs).rowsPerSecond;
    case 'errorRate':
      return inputs.day.error_rate;
    case 'frequency': {
      const times = commitTimesSince(inputs.ledger, inputs.nowMs - HOUR_MS);
      return median(times.slice(1).map((t, i) => (t - times[i]!) / 1000));
    }
    case 'latency':
      return inputs.now.freshness_seconds;
    case 'retention': {
      const oldest = inputs.ledger.oldestEventUs;
      return Number.isFinite(oldest) ? (inputs.nowMs - oldest / 1000) / DAY_MS : null;
    }
  }
}

/** Each objective against what was delivered: met, or breached and by how much. An objective with no data yet is not met. */
export function evaluateSlos(targets: SloTarget[], inputs: SloInputs): SloStatus[] {
  return targets.map(({ property, target, unit, direction }) => {
    const actual = actualOf(property, inputs);
    if (property === 'retention') return { property, target, actual, unit, met: true, breach: 0 };
    if (actual === null) return { property, target, actual, unit, met: false, breach: 0 };
    const breach = direction === 'max' ? Math.max(0, actual - target) : Math.max(0, target - actual);
    return { property, target, actual, unit, met: breach === 0, breach };
  });
}

/**
 * The product's quality as a whole, and its objectives, as of `nowMs`: what the sink
 * publishes and `dronelake catalog` prints, computed the same way from the commit checkpoints'
 * ledger (sink/quality.ts), which keeps spans of up to a day.
 */
export function productStatus(
  ledger: QualityLedger,
  targets: SloTarget[],
  windows: { endsMs: number[]; windowMs: number },
  settleMs: number,
  nowMs: number,
): { quality: QualityMetrics; slos: SloStatus[]; throughput: { rowsPerSecond: number; windowSeconds: number } } {
  const quality = qualityOf(ledger, { toMs: nowMs, settleMs });
  const hour = qualityOf(ledger, { fromMs: nowMs - HOUR_MS, toMs: nowMs, settleMs });
  const slos = evaluateSlos(targets, {
    day: qualityOf(ledger, { fromMs: nowMs - DAY_MS, toMs: nowMs, settleMs }),
    hour,
    now: quality,
    ledger,
    windowEndsMs: windows.endsMs,
    windowMs: windows.windowMs,
    nowMs,
  });
  return { quality, slos, throughput: throughputOf(hour, ledger, nowMs) };
}
