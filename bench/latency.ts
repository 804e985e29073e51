import { figure, type BenchContext, type Figure } from './report';
import { sample, sleep, startPipeline, stat, type Pipeline } from './pipeline';
import { startRole, type RoleArgs } from './procs';
import { fleetArgs, runEndToEnd, windows } from './throughput';
import { LatencyHistogram } from '../sink/latency';

/** The sink's latency counts of a window, as a histogram, so its quantiles are the sink's own. */
export function histogramOf(counts: number[]): LatencyHistogram {
  const h = new LatencyHistogram();
  counts.forEach((n, bucket) => n > 0 && h.add(bucket, n));
  return h;
}

export const latencyCounts = (s: Awaited<ReturnType<typeof sample>>): number[] =>
  ((s.reports['sink']?.stats['latencyMs'] as { counts: Array<number | null> } | undefined)?.counts ?? []).map((n) => n ?? 0);

async function maxRate(ctx: BenchContext): Promise<number> {
  const known = ctx.earlier('e2e_points_per_sec');
  if (known !== null) return known;
  const figures = await runEndToEnd(ctx);
  return Number(figures.find((f) => f.key === 'e2e_points_per_sec')!.value);
}

/** Event-to-commit latency at half the highest sustained rate, with default settings. */
export async function runLatency(ctx: BenchContext): Promise<Figure[]> {
  const rate = Math.round((await maxRate(ctx)) / 2);
  ctx.progress(`latency at ${rate} points/s`);
  // The full run keeps the sink's default 5 s flush interval; the quick one commits every
  // second so that its short window holds several commits.
  const sinkArgs: RoleArgs = ctx.quick ? { flushInterval: 1 } : {};
  const p = await startPipeline(ctx, { role: 'agents', args: fleetArgs(10, rate, { hz: 10 }) }, { sink: sinkArgs });
  try {
    // Past the first commits, whose latency includes start-up.
    await sleep(ctx.quick ? 1500 : 10_000);
    const first = await sample(p);
    await sleep(ctx.quick ? 2000 : 20_000);
    const last = await sample(p);
    const a = latencyCounts(first);
    const window = histogramOf(latencyCounts(last).map((n, i) => n - (a[i] ?? 0)));
    await p.stop();
    return [
      figure('latency', 'latency_rate_points_per_sec', 'offered rate (half the maximum)', rate, 'points/s'),
      figure('latency', 'latency_flush_interval_seconds', 'sink flush interval', ctx.quick ? 1 : 5, 's'),
      figure('latency', 'latency_p50_ms', 'event to commit, p50', window.quantile(0.5), 'ms'),
      figure('latency', 'latency_p99_ms', 'event to commit, p99', window.quantile(0.99), 'ms'),
    ];
  } finally {
    p.kill();
  }
}

/** Seconds until no more than `slack` generated points are uncommitted, or NaN at the timeout. */
async function waitForCatchUp(p: Pipeline, committedBefore: number, slack: number, timeoutMs: number): Promise<number> {
  const started = performance.now();
  for (;;) {
    const s = await sample(p);
    if (stat(s, 'load', 'pointsIn') - committedBefore - stat(s, 'sink', 'pointsCommitted') <= slack) return (performance.now() - started) / 1000;
    if (performance.now() - started > timeoutMs) return Number.NaN;
    await sleep(200);
  }
}

/**
 * A sink outage at a fixed rate: the agents hold the backlog, and once the sink is back
 * the backlog drains while live points keep coming.
 */
export async function runCatchUp(ctx: BenchContext): Promise<Figure[]> {
  const rate = ctx.quick ? 20_000 : 50_000;
  const outageMs = ctx.quick ? 2000 : 60_000;
  const clientId = 'bench-sink-catchup';
  const sinkArgs = { clientId, flushInterval: 1 };
  const p = await startPipeline(ctx, { role: 'agents', args: fleetArgs(10, rate, { hz: 10, spoolMaxBytes: 2 ** 31 }) }, { sink: sinkArgs });
  let sink = p.sink;
  try {
    await sleep(windows(ctx).warmMs + (ctx.quick ? 1000 : 5000));
    ctx.progress(`sink down for ${outageMs / 1000} s at ${rate} points/s`);
    const outageStarted = performance.now();
    const beforeStop = await sink.stop();
    const committedBefore = Number(beforeStop.stats['pointsCommitted']);
    await sleep(outageMs);
    const lake = `${ctx.tmp}/lake-catchup`;
    // The same session: the broker has queued telemetry for it while it was away.
    sink = startRole('sink', { broker: p.brokerUrl, lake, ...sinkArgs });
    await sink.ready;
    const restarted = performance.now();
    const outageSeconds = (restarted - outageStarted) / 1000;
    const generatedAtRestart = Number((await p.load.report()).stats["pointsIn"]);
    const backlog = generatedAtRestart - committedBefore;
    const pipeline: Pipeline = { ...p, sink };
    // Caught up when no more than two seconds of live data (two flush intervals) are uncommitted.
    const drainSeconds = await waitForCatchUp(pipeline, committedBefore, rate * 2, 10 * outageMs + 60_000);
    const after = await sample(pipeline);
    const drainRate = stat(after, 'sink', 'pointsCommitted') / ((performance.now() - restarted) / 1000);
    await p.load.stop();
    await sink.stop();
    if (p.broker) await p.broker.stop();
    return [
      figure('catch-up', 'catchup_outage_seconds', 'sink outage (stop to ready again)', outageSeconds, 's'),
      figure('catch-up', 'catchup_live_points_per_sec', 'live rate', rate, 'points/s'),
      figure('catch-up', 'catchup_backlog_points', 'backlog when the sink came back', backlog, 'points'),
      figure('catch-up', 'catchup_drain_seconds', 'time to drain the backlog', drainSeconds, 's'),
      figure('catch-up', 'catchup_drain_rate_multiple', 'drain rate as a multiple of the live rate', drainRate / rate, 'x'),
    ];
  } finally {
    p.kill();
    sink.kill();
  }
}
