import type { SloProperty, SloStatus } from './types';

// The objectives and figures in the words people read, for `dronelake catalog` and the
// product page alike (it is bundled into the page's script: no imports but types).

export const DIRECTION: Record<SloProperty, 'min' | 'max'> = { availability: 'min', throughput: 'min', errorRate: 'max', frequency: 'max', latency: 'max', retention: 'min' };

/** A number as the catalog prints it: whole numbers as they are, others to `digits` places. */
export const num = (v: number | null, digits = 3): string => (v === null ? '-' : Number.isInteger(v) ? String(v) : v.toFixed(digits));

/** A ratio as a percentage with two places, as the catalog prints error rates. */
export const percent = (ratio: number | null): string => (ratio === null ? '-' : `${num(ratio * 100, 2)} %`);

/** A span of time as people say it: 4.7 s, 12 min, 3.5 h, 2.0 d. */
export function duration(seconds: number | null): string {
  if (seconds === null) return '-';
  if (seconds < 300) return `${num(seconds, 1)} s`;
  if (seconds < 5400) return `${num(seconds / 60, 0)} min`;
  if (seconds < 172_800) return `${num(seconds / 3600, 1)} h`;
  return `${num(seconds / 86_400, 1)} d`;
}

/**
 * How each objective reads to a consumer: a name, the promise in words with its unit, and
 * what the lake shows now. The contract keeps ODCS's property names (`latency` is what ODCS
 * calls how old the newest data may be); people read "freshness".
 */
export const OBJECTIVES: Record<SloProperty, { name: string; promise: (target: number) => string; now: (actual: number | null) => string }> = {
  latency: { name: 'freshness', promise: (t) => `newest row at most ${duration(t)} old`, now: duration },
  availability: { name: 'availability', promise: (t) => `sink up at least ${num(t, 1)} % of the last 24 h`, now: (a) => `${num(a, 1)} %` },
  throughput: { name: 'throughput', promise: (t) => `at least ${num(t, 1)} rows/s over the last hour`, now: (a) => `${num(a, 1)} rows/s` },
  errorRate: { name: 'error rate', promise: (t) => `at most ${num(t * 100, 2)} % of input rejected, last 24 h`, now: percent },
  frequency: { name: 'commit interval', promise: (t) => `a commit at least every ${duration(t)}`, now: (a) => `${duration(a)} (median, last hour)` },
  retention: { name: 'retention', promise: (t) => `rows kept at least ${duration(t * 86_400)}; none are deleted`, now: (a) => (a === null ? 'no rows yet' : `oldest row ${duration(a * 86_400)} old`) },
};

/** An objective whose target nothing can miss (at least 0) was not set: it is not shown as one. */
export const isSet = (s: SloStatus): boolean => !(s.target <= 0 && DIRECTION[s.property] === 'min');

export const objectiveStatus = (s: SloStatus): 'met' | 'no data' | 'BREACHED' => (s.met ? 'met' : s.actual === null ? 'no data' : 'BREACHED');
