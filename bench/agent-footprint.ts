import path from 'node:path';
import { figure, type BenchContext, type Figure } from './report';
import { sleep } from './pipeline';
import { startRole, type RoleHandle } from './procs';
import { fleetArgs, windows } from './throughput';

/**
 * The agent alone: its CPU per point and its memory, with a stand-in that acks every batch
 * on arrival, so neither the sink nor the lake sets the pace.
 */
async function measureAgent(ctx: BenchContext, pointsPerSec: number) {
  const started: RoleHandle[] = [];
  try {
    const broker = startRole('broker', {});
    started.push(broker);
    const url = String((await broker.ready)['url']);
    const acker = startRole('acker', { broker: url });
    started.push(acker);
    await acker.ready;
    const agents = startRole('agents', { broker: url, spoolRoot: path.join(ctx.tmp, `agent-spool-${pointsPerSec}`), ...fleetArgs(1, pointsPerSec, pointsPerSec < 50_000 ? { hz: 10 } : {}) });
    started.push(agents);
    await agents.ready;
    // Quick runs measure three agents, so each gets half the usual window.
    const { warmMs, measureMs } = ctx.quick ? { warmMs: 500, measureMs: 1000 } : windows(ctx);
    await sleep(warmMs);
    const a = await agents.report();
    await sleep(measureMs);
    const b = await agents.report();
    const points = Number(b.stats['pointsIn']) - Number(a.stats['pointsIn']);
    const cpuSeconds = b.cpuSeconds - a.cpuSeconds;
    for (const r of started.reverse()) await r.stop();
    return { pointsPerSec: points / (measureMs / 1000), perCore: points / cpuSeconds, cpuPerMillion: (cpuSeconds / points) * 1e6, rss: b.maxRssBytes };
  } finally {
    started.forEach((r) => r.kill());
  }
}

export async function runAgentFootprint(ctx: BenchContext): Promise<Figure[]> {
  const figures: Figure[] = [];
  const atRate: Array<Awaited<ReturnType<typeof measureAgent>>> = [];
  for (const rate of [10_000, 100_000]) {
    ctx.progress(`agent alone at ${rate} points/s`);
    const m = await measureAgent(ctx, rate);
    atRate.push(m);
    const k = `${rate / 1000}k`;
    figures.push(figure('agent', `agent_rss_bytes_at_${k}`, `peak resident memory at ${k} points/s`, m.rss, 'bytes'));
    figures.push(figure('agent', `agent_cpu_seconds_per_million_at_${k}`, `CPU per million points at ${k} points/s`, m.cpuPerMillion, 's'));
  }
  // A quick run takes the CPU cost per point at 100k points/s instead of saturating an agent.
  const max = ctx.quick ? atRate[1]! : (ctx.progress('agent alone, as fast as it goes'), await measureAgent(ctx, 1_500_000));
  figures.unshift(
    figure('agent', 'agent_points_per_sec_per_core', `points per CPU second (simulate, batch, publish, acks)${ctx.quick ? ', at 100k points/s' : ''}`, max.perCore, 'points/s'),
    figure('agent', 'agent_points_per_sec', `points per second, one agent process${ctx.quick ? ', at 100k points/s' : ''}`, max.pointsPerSec, 'points/s'),
  );
  return figures;
}
