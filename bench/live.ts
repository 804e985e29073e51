import mqtt from 'mqtt';
import * as z from 'zod';
import { livePointCount } from '../proto/live';
import { LIVE_WILDCARD } from '../proto/topics';
import { histogramOf, latencyCounts } from './latency';
import { sleep, startPipeline, stat, type Pipeline, type Sample } from './pipeline';
import { figure, type BenchContext, type Figure } from './report';
import { fleetArgs, windows } from './throughput';

// What the roles report of the port, checked: they come from other processes.
const SinkLive = z.object({ points: z.number(), mqttDroppedPoints: z.number() });
const ConsumerDrops = z.object({ messages: z.record(z.string(), z.number()), points: z.record(z.string(), z.number()), closed: z.number() });

const total = (r: Record<string, number>): number => Object.values(r).reduce((a, b) => a + b, 0);

/** The port's counts in a sample: points the sink put on MQTT or dropped before (its broker link backed up), and what the broker dropped for its consumers. */
function portCounts(s: Sample): { published: number; sinkDropped: number; droppedPoints: number; droppedMessages: number; closed: number } {
  const live = SinkLive.safeParse(s.reports['sink']?.stats['live']);
  const drops = ConsumerDrops.safeParse(s.reports['broker']?.stats['consumerDrops']);
  return {
    sinkDropped: live.success ? live.data.mqttDroppedPoints : 0,
    published: live.success ? live.data.points - live.data.mqttDroppedPoints : 0,
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
 * for it: received + dropped should equal published, exactly.
 */
export async function runLive(ctx: BenchContext): Promise<Figure[]> {
  const rate = 10_000;
  const stuckMs = ctx.quick ? 4_000 : 60_000;
  const MODES = ['off', 'reading', 'stuck'] as const;
  type Mode = (typeof MODES)[number];
  type Result = { p50: number | null; p99: number | null; committedPerSec: number; publishedInWindow: number; published: number; sinkDropped: number; received: number; droppedPoints: number; droppedMessages: number; closed: number };
  const results = new Map<Mode, Result>();
  for (const mode of MODES) {
    ctx.progress(`live port ${mode === 'off' ? 'off' : mode === 'reading' ? 'on, with a consumer that reads' : `on, with a consumer that reads nothing for ${stuckMs / 1000} s`} at ${rate} points/s`);
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
      await sleep(stuckMs);
      const last = await sampleRoles(p);
      port.consumer?.stream.resume();
      await p.load.stop();
      const settled = await settle(p, () => port.received);
      const a = latencyCounts(first);
      const window = histogramOf(latencyCounts(last).map((n, i) => n - (a[i] ?? 0)));
      const counts = portCounts(settled);
      results.set(mode, {
        p50: window.quantile(0.5),
        p99: window.quantile(0.99),
        committedPerSec: (stat(last, 'sink', 'pointsCommitted') - stat(first, 'sink', 'pointsCommitted')) / ((last.at - first.at) / 1000),
        publishedInWindow: portCounts(last).published - portCounts(first).published,
        published: counts.published,
        sinkDropped: counts.sinkDropped,
        received: port.received,
        droppedPoints: counts.droppedPoints,
        droppedMessages: counts.droppedMessages,
        closed: counts.closed,
      });
      await p.stop();
    } finally {
      port.consumer?.end(true);
      p.kill();
    }
  }
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
    figure('live', 'live_reading_sink_dropped_points', 'points the sink did not publish, its broker link backed up (reading)', reading?.sinkDropped ?? null, 'points'),
    figure('live', 'live_stuck_sink_dropped_points', 'points the sink did not publish, its broker link backed up (stuck)', stuck?.sinkDropped ?? null, 'points'),
    figure('live', 'live_reading_dropped_points', 'points the broker dropped for the reading consumer', reading?.droppedPoints ?? null, 'points'),
    figure('live', 'live_reading_unaccounted_points', 'published - received - dropped, reading consumer', reading ? reading.published - reading.received - reading.droppedPoints : null, 'points'),
  ];
}
