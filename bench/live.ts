import mqtt from 'mqtt';
import { LIVE_WILDCARD } from '../proto/topics';
import { histogramOf, latencyCounts } from './latency';
import { sample, sleep, startPipeline, stat, type Sample } from './pipeline';
import { figure, type BenchContext, type Figure } from './report';
import { fleetArgs, windows } from './throughput';

const livePoints = (s: Sample): number => Number((s.reports['sink']?.stats['live'] as { points?: number } | null | undefined)?.points ?? 0);

/**
 * The lake with the live port off, on with a consumer that reads, and on with a consumer
 * that stops reading, at one rate well under saturation, in one run. A stuck consumer should
 * not move commit latency or throughput against a reading one: the sink publishes at QoS 0
 * on a connection of its own, and the broker closes the consumer rather than wait for it.
 */
export async function runLive(ctx: BenchContext): Promise<Figure[]> {
  const rate = 10_000;
  const stuckMs = ctx.quick ? 4_000 : 60_000;
  const MODES = ['off', 'reading', 'stuck'] as const;
  type Result = { p50: number | null; p99: number | null; committedPerSec: number; live: number; received: number; slowConsumers: number };
  const empty = (): Result => ({ p50: null, p99: null, committedPerSec: 0, live: 0, received: 0, slowConsumers: 0 });
  const results: Record<(typeof MODES)[number], Result> = { off: empty(), reading: empty(), stuck: empty() };
  for (const mode of MODES) {
    ctx.progress(`live port ${mode === 'off' ? 'off' : mode === 'reading' ? 'on, with a consumer that reads' : 'on, with a consumer that reads nothing'} at ${rate} points/s`);
    const p = await startPipeline(ctx, { role: 'agents', args: fleetArgs(10, rate, { hz: 10 }) }, { sink: { flushInterval: 1, ...(mode !== 'off' && { live: true }) } });
    let consumer: mqtt.MqttClient | null = null;
    let received = 0;
    try {
      if (mode !== 'off') {
        consumer = await mqtt.connectAsync(p.brokerUrl, { clientId: `bench-${mode}-consumer`, reconnectPeriod: 0 });
        consumer.on('message', () => received++);
        await consumer.subscribeAsync(LIVE_WILDCARD, { qos: 0 });
        // From here on the stuck one reads nothing: the broker's writes to it back up.
        if (mode === 'stuck') consumer.stream.pause();
      }
      await sleep(windows(ctx).warmMs + 1000);
      const first = await sample(p);
      await sleep(stuckMs);
      const last = await sample(p);
      const a = latencyCounts(first);
      const window = histogramOf(latencyCounts(last).map((n, i) => n - (a[i] ?? 0)));
      results[mode] = {
        p50: window.quantile(0.5),
        p99: window.quantile(0.99),
        committedPerSec: (stat(last, 'sink', 'pointsCommitted') - stat(first, 'sink', 'pointsCommitted')) / ((last.at - first.at) / 1000),
        live: livePoints(last) - livePoints(first),
        received,
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
    figure('live', 'live_reading_committed_points_per_sec', 'committed, live port on, consumer reading', results.reading.committedPerSec, 'points/s'),
    figure('live', 'live_stuck_committed_points_per_sec', 'committed, live port on, consumer stuck', results.stuck.committedPerSec, 'points/s'),
    figure('live', 'live_off_p99_ms', 'event to commit p99, live port off', results.off.p99, 'ms'),
    figure('live', 'live_reading_p99_ms', 'event to commit p99, live port on, consumer reading', results.reading.p99, 'ms'),
    figure('live', 'live_stuck_p99_ms', 'event to commit p99, live port on, consumer stuck', results.stuck.p99, 'ms'),
    figure('live', 'live_stuck_to_reading_p99_ratio', 'p99 with a stuck consumer / with a reading one', ratio(results.reading.p99, results.stuck.p99), 'x'),
    figure('live', 'live_reading_messages_received', 'messages the reading consumer got (one per drone per commit)', results.reading.received, 'messages'),
    figure('live', 'live_points_published', 'points the live port published in the stuck window', results.stuck.live, 'points'),
    figure('live', 'live_slow_consumers_closed', 'consumers the broker closed for not reading (256 KiB of the live port left unread)', results.stuck.slowConsumers, 'clients'),
  ];
}
