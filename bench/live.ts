import mqtt from 'mqtt';
import * as z from 'zod';
import { livePointCount } from '../proto/live';
import { LIVE_WILDCARD } from '../proto/topics';
import { histogramOf, latencyCounts } from './latency';
import { sleep, startPipeline, stat, type Pipeline, type Sample } from './pipeline';
import { figure, type BenchContext, type Figure } from './report';
import { fleetArgs, windows } from './throughput';

// What the roles report of the port, checked: they come from other processes.
const SinkLive = z.object({ points: z.number(), mqttPublishedPoints: z.number(), mqttDroppedPoints: z.number() });
const ConsumerDrops = z.object({ messages: z.record(z.string(), z.number()), points: z.record(z.string(), z.number()), closed: z.number() });

const total = (r: Record<string, number>): number => Object.values(r).reduce((a, b) => a + b, 0);

/** The port's counts in a sample: points it took, put on MQTT or dropped before (its queue full), and what the broker dropped for its consumers. */
function portCounts(s: Sample): { accepted: number; published: number; sinkDropped: number; droppedPoints: number; droppedMessages: number; closed: number } {
  const live = SinkLive.safeParse(s.reports['sink']?.stats['live']);
  const drops = ConsumerDrops.safeParse(s.reports['broker']?.stats['consumerDrops']);
  return {
    accepted: live.success ? live.data.points : 0,
    sinkDropped: live.success ? live.data.mqttDroppedPoints : 0,
    published: live.success ? live.data.mqttPublishedPoints : 0,
    droppedPoints: drops.success ? total(drops.data.points) : 0,
    droppedMessages: drops.success ? total(drops.data.messages) : 0,
    closed: drops.success ? drops.data.closed : 0,
  };
}

/** The broker and the sink only: the load may have stopped. */
async function sampleRoles(p: Pipeline): Promise<Sample> {
  const reports: Sample['reports'] = { sink: await p.sink.report() };
  if (p.broker) reports['broker'] = await p.broker.report();
  return { at: performance.now(), reports };
}

/**
 * Once the load stops: the sink's last commit, then the consumer's reading what reached its
 * socket, until received + dropped == published holds and nothing moves, or 60 s pass.
 */
async function settle(p: Pipeline, received: () => number): Promise<Sample> {
  const deadline = Date.now() + 60_000;
  let last = await sampleRoles(p);
  for (;;) {
    await sleep(1500);
    const next = await sampleRoles(p);
    const c = portCounts(next);
    const still = stat(next, 'sink', 'pointsCommitted') === stat(last, 'sink', 'pointsCommitted') && c.published === portCounts(last).published;
    last = next;
    if ((still && received() + c.droppedPoints === c.published) || Date.now() > deadline) return last;
  }
}

/**
 * The lake with the live port off, on with a consumer that reads, and on with a consumer
 * that reads nothing for a minute (4 s with --quick) and then reads again, at one rate well
 * under saturation, side by side in one run. The stuck consumer should not move commit
 * latency or throughput: the sink publishes at QoS 0 on a connection of its own, and the
 * broker drops for the consumer what does not fit its socket, counted, rather than wait.
 * Each consumer subscribes before the load starts, so every point the port publishes is
 * for it: received + dropped should equal published, exactly. Then the reading consumer at
 * higher rates, for the highest at which the port still publishes every accepted point.
 */
export async function runLive(ctx: BenchContext): Promise<Figure[]> {
  const rate = 10_000;
  const stuckMs = ctx.quick ? 4_000 : 60_000;
  const SWEEP = [20_000, 40_000];
  const sweepMs = ctx.quick ? 4_000 : 20_000;
  type Mode = 'off' | 'reading' | 'stuck';
  type Result = { p50: number | null; p99: number | null; committedPerSec: number; publishedInWindow: number; accepted: number; published: number; sinkDropped: number; received: number; droppedPoints: number; droppedMessages: number; closed: number };

  async function run(mode: Mode, rate: number, windowMs: number): Promise<Result> {
    ctx.progress(`live port ${mode === 'off' ? 'off' : mode === 'reading' ? 'on, with a consumer that reads' : `on, with a consumer that reads nothing for ${windowMs / 1000} s`} at ${rate} points/s`);
    const port: { consumer: mqtt.MqttClient | null; received: number } = { consumer: null, received: 0 };
    const p = await startPipeline(
      ctx,
      { role: 'agents', args: fleetArgs(10, rate, { hz: 10 }) },
      {
        sink: { flushInterval: 1, ...(mode !== 'off' && { live: true }) },
        ...(mode !== 'off' && {
          beforeLoad: async (brokerUrl: string) => {
            const consumer = await mqtt.connectAsync(brokerUrl, { clientId: `bench-${mode}-consumer`, reconnectPeriod: 0 });
            port.consumer = consumer;
            consumer.on('message', (topic, payload) => (port.received += livePointCount(topic, payload)));
            await consumer.subscribeAsync(LIVE_WILDCARD, { qos: 0 });
            // From here on the stuck one reads nothing: the broker's writes to it back up.
            if (mode === 'stuck') consumer.stream.pause();
          },
        }),
      },
    );
    try {
      await sleep(windows(ctx).warmMs + 1000);
      const first = await sampleRoles(p);
      await sleep(windowMs);
      const last = await sampleRoles(p);
      port.consumer?.stream.resume();
      await p.load.stop();
      const settled = await settle(p, () => port.received);
      const a = latencyCounts(first);
      const window = histogramOf(latencyCounts(last).map((n, i) => n - (a[i] ?? 0)));
      const counts = portCounts(settled);
      const result: Result = {
        p50: window.quantile(0.5),
        p99: window.quantile(0.99),
        committedPerSec: (stat(last, 'sink', 'pointsCommitted') - stat(first, 'sink', 'pointsCommitted')) / ((last.at - first.at) / 1000),
        publishedInWindow: portCounts(last).published - portCounts(first).published,
        accepted: counts.accepted,
        published: counts.published,
        sinkDropped: counts.sinkDropped,
        received: port.received,
        droppedPoints: counts.droppedPoints,
        droppedMessages: counts.droppedMessages,
        closed: counts.closed,
      };
      await p.stop();
      return result;
    } finally {
      port.consumer?.end(true);
      p.kill();
    }
  }

  const results = new Map<Mode, Result>();
  for (const mode of ['off', 'reading', 'stuck'] as const) results.set(mode, await run(mode, rate, stuckMs));
  const sweep = new Map<number, Result>([[rate, results.get('reading')!]]);
  for (const higher of SWEEP) sweep.set(higher, await run('reading', higher, sweepMs));
  /** Every point the port took went out and reached the reading consumer. */
  const whole = (x: Result): boolean => x.accepted > 0 && x.sinkDropped === 0 && x.published === x.accepted && x.received === x.accepted;
  const highestWhole = [...sweep].filter(([, x]) => whole(x)).reduce<number | null>((best, [at]) => (best === null || at > best ? at : best), null);
  const r = (mode: Mode): Result | undefined => results.get(mode);
  const ratio = (a: number | null | undefined, b: number | null | undefined): number | null => (a && b ? b / a : null);
  const off = r('off');
  const reading = r('reading');
  const stuck = r('stuck');
  return [
    figure('live', 'live_rate_points_per_sec', 'offered rate', rate, 'points/s'),
    figure('live', 'live_stuck_seconds', 'the stuck consumer reads nothing for', stuckMs / 1000, 's'),
    figure('live', 'live_off_committed_points_per_sec', 'committed, live port off', off?.committedPerSec ?? null, 'points/s'),
    figure('live', 'live_reading_committed_points_per_sec', 'committed, live port on, consumer reading', reading?.committedPerSec ?? null, 'points/s'),
    figure('live', 'live_stuck_committed_points_per_sec', 'committed, live port on, consumer stuck', stuck?.committedPerSec ?? null, 'points/s'),
    figure('live', 'live_reading_to_off_throughput_ratio', 'throughput with a reading consumer / with the port off', ratio(off?.committedPerSec, reading?.committedPerSec), 'x'),
    figure('live', 'live_reading_to_off_p50_ratio', 'p50 with a reading consumer / with the port off', ratio(off?.p50, reading?.p50), 'x'),
    figure('live', 'live_stuck_to_reading_throughput_ratio', 'throughput with a stuck consumer / with a reading one', ratio(reading?.committedPerSec, stuck?.committedPerSec), 'x'),
    figure('live', 'live_stuck_to_off_throughput_ratio', 'throughput with a stuck consumer / with the port off', ratio(off?.committedPerSec, stuck?.committedPerSec), 'x'),
    figure('live', 'live_off_p50_ms', 'event to commit p50, live port off', off?.p50 ?? null, 'ms'),
    figure('live', 'live_reading_p50_ms', 'event to commit p50, live port on, consumer reading', reading?.p50 ?? null, 'ms'),
    figure('live', 'live_stuck_p50_ms', 'event to commit p50, live port on, consumer stuck', stuck?.p50 ?? null, 'ms'),
    figure('live', 'live_off_p99_ms', 'event to commit p99, live port off', off?.p99 ?? null, 'ms'),
    figure('live', 'live_reading_p99_ms', 'event to commit p99, live port on, consumer reading', reading?.p99 ?? null, 'ms'),
    figure('live', 'live_stuck_p99_ms', 'event to commit p99, live port on, consumer stuck', stuck?.p99 ?? null, 'ms'),
    figure('live', 'live_stuck_to_reading_p50_ratio', 'p50 with a stuck consumer / with a reading one', ratio(reading?.p50, stuck?.p50), 'x'),
    figure('live', 'live_stuck_to_reading_p99_ratio', 'p99 with a stuck consumer / with a reading one', ratio(reading?.p99, stuck?.p99), 'x'),
    figure('live', 'live_stuck_window_points', 'points the port published on MQTT while the consumer read nothing', stuck?.publishedInWindow ?? null, 'points'),
    figure('live', 'live_stuck_published_points', 'points the port published on MQTT, whole run (stuck)', stuck?.published ?? null, 'points'),
    figure('live', 'live_stuck_received_points', 'points the stuck consumer received, once reading again', stuck?.received ?? null, 'points'),
    figure('live', 'live_stuck_dropped_points', "points the broker dropped for it (its drop counter)", stuck?.droppedPoints ?? null, 'points'),
    figure('live', 'live_stuck_dropped_messages', 'messages the broker dropped for it', stuck?.droppedMessages ?? null, 'messages'),
    figure('live', 'live_stuck_unaccounted_points', 'published - received - dropped (0: every point accounted for)', stuck ? stuck.published - stuck.received - stuck.droppedPoints : null, 'points'),
    figure('live', 'live_stuck_consumers_closed', 'consumers the broker closed for staying behind', stuck?.closed ?? null, 'clients'),
    figure('live', 'live_reading_sink_dropped_points', 'points the sink did not publish, its queue full (reading)', reading?.sinkDropped ?? null, 'points'),
    figure('live', 'live_stuck_sink_dropped_points', 'points the sink did not publish, its queue full (stuck)', stuck?.sinkDropped ?? null, 'points'),
    figure('live', 'live_reading_dropped_points', 'points the broker dropped for the reading consumer', reading?.droppedPoints ?? null, 'points'),
    figure('live', 'live_reading_unaccounted_points', 'published - received - dropped, reading consumer', reading ? reading.published - reading.received - reading.droppedPoints : null, 'points'),
    ...[...sweep].flatMap(([at, x]) => [
      figure('live', `live_reading_${at}_committed_points_per_sec`, `committed at ${at} points/s offered, consumer reading`, x.committedPerSec, 'points/s'),
      figure('live', `live_reading_${at}_accepted_points`, `points the port took at ${at} points/s, whole run`, x.accepted, 'points'),
      figure('live', `live_reading_${at}_sink_dropped_points`, `points the sink did not publish at ${at} points/s (its queue full)`, x.sinkDropped, 'points'),
      figure('live', `live_reading_${at}_broker_dropped_points`, `points the broker dropped for the reading consumer at ${at} points/s`, x.droppedPoints, 'points'),
      figure('live', `live_reading_${at}_missed_points`, `taken by the port - received by the consumer at ${at} points/s`, x.accepted - x.received, 'points'),
    ]),
    figure('live', 'live_highest_whole_rate_points_per_sec', 'highest offered rate at which the reading consumer got every point the port took', highestWhole, 'points/s'),
  ];
}
