import mqtt from 'mqtt';
import { LIVE_WILDCARD } from '../proto/topics';
import { LatencyHistogram } from '../sink/latency';
import { sample, sleep, startPipeline, stat, type Sample } from './pipeline';
import { figure, type BenchContext, type Figure } from './report';
import { fleetArgs, windows } from './throughput';

const latencyCounts = (s: Sample): number[] =>
  ((s.reports['sink']?.stats['latencyMs'] as { counts: Array<number | null> } | undefined)?.counts ?? []).map((n) => n ?? 0);

const livePoints = (s: Sample): number => Number((s.reports['sink']?.stats['live'] as { points?: number } | null | undefined)?.points ?? 0);

/**
 * The lake with the live port on and a consumer that stops reading, against the lake with
 * the port off, at one rate in one run: commit latency and throughput should not move,
 * since the sink publishes at QoS 0 and the broker, not the sink, holds the consumer's backlog.
 */
export async function runLive(ctx: BenchContext): Promise<Figure[]> {
  const rate = ctx.quick ? 20_000 : 50_000;
  const stuckMs = ctx.quick ? 4_000 : 60_000;
  const results: Record<'off' | 'stuck', { p50: number | null; p99: number | null; committedPerSec: number; live: number; slowConsumers: number }> = {
    off: { p50: null, p99: null, committedPerSec: 0, live: 0, slowConsumers: 0 },
    stuck: { p50: null, p99: null, committedPerSec: 0, live: 0, slowConsumers: 0 },
  };
  for (const mode of ['off', 'stuck'] as const) {
    ctx.progress(`live port ${mode === 'off' ? 'off' : 'on, with a consumer that reads nothing'} at ${rate} points/s`);
    const p = await startPipeline(ctx, { role: 'agents', args: fleetArgs(10, rate, { hz: 10 }) }, { sink: { flushInterval: 1, ...(mode === 'stuck' && { live: true }) } });
    let consumer: mqtt.MqttClient | null = null;
    try {
      if (mode === 'stuck') {
        consumer = await mqtt.connectAsync(p.brokerUrl, { clientId: 'bench-stuck-consumer', reconnectPeriod: 0 });
        await consumer.subscribeAsync(LIVE_WILDCARD, { qos: 0 });
        // From here on it reads nothing: the broker's writes to it back up.
        consumer.stream.pause();
      }
      await sleep(windows(ctx).warmMs + 1000);
      const first = await sample(p);
      await sleep(stuckMs);
      const last = await sample(p);
      const a = latencyCounts(first);
      const window = new LatencyHistogram();
      latencyCounts(last).forEach((n, bucket) => window.add(bucket, n - (a[bucket] ?? 0)));
      results[mode] = {
        p50: window.quantile(0.5),
        p99: window.quantile(0.99),
        committedPerSec: (stat(last, 'sink', 'pointsCommitted') - stat(first, 'sink', 'pointsCommitted')) / ((last.at - first.at) / 1000),
        live: livePoints(last) - livePoints(first),
        slowConsumers: stat(last, 'broker', 'slowConsumers'),
      };
      await p.stop();
    } finally {
      consumer?.end(true);
      p.kill();
    }
  }
  const ratio = (a: number | null, b: number | null): number | null => (a && b ? b / a : null);
  return [
    figure('live', 'live_rate_points_per_sec', 'offered rate', rate, 'points/s'),
    figure('live', 'live_stuck_seconds', 'the consumer reads nothing for', stuckMs / 1000, 's'),
    figure('live', 'live_off_committed_points_per_sec', 'committed, live port off', results.off.committedPerSec, 'points/s'),
    figure('live', 'live_stuck_committed_points_per_sec', 'committed, live port on, consumer stuck', results.stuck.committedPerSec, 'points/s'),
    figure('live', 'live_off_p99_ms', 'event to commit p99, live port off', results.off.p99, 'ms'),
    figure('live', 'live_stuck_p99_ms', 'event to commit p99, live port on, consumer stuck', results.stuck.p99, 'ms'),
    figure('live', 'live_stuck_to_off_p99_ratio', 'p99 with a stuck consumer / without the port', ratio(results.off.p99, results.stuck.p99), 'x'),
    figure('live', 'live_points_published', 'points the live port published meanwhile', results.stuck.live, 'points'),
    figure('live', 'live_slow_consumers_closed', 'consumers the broker closed for not reading (256 KiB of the live port left unread)', results.stuck.slowConsumers, 'clients'),
  ];
}
