import { spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { figure, type BenchContext, type Figure } from './report';
import { cpu, sample, sleep, startPipeline, stat, type Pipeline, type Sample } from './pipeline';
import type { RoleArgs } from './procs';

/** Offered load far above what one box can take: the agents' bounded pending bytes then set the pace. */
const OFFERED_PER_SEC = 1_500_000;
const HZ = 500;

export const windows = (ctx: BenchContext) => ({ warmMs: ctx.quick ? 1000 : 4000, measureMs: ctx.quick ? 1500 : 12_000 });

/** The first seconds of an overloaded fleet are its agents filling their pending bytes at once. */
const saturatedWarmMs = (ctx: BenchContext) => (ctx.quick ? 2500 : 8000);

/**
 * Sink settings for throughput runs: commits often enough that a short window spans
 * several of them. The rate a sink sustains hardly depends on it; latency does.
 */
export const throughputSink = (ctx: BenchContext): RoleArgs => ({ flushInterval: ctx.quick ? 0.5 : 1 });

/**
 * Agents for `pointsPerSec` over `gateways`. Each holds at most 8 MiB of unacknowledged
 * batches unless told otherwise, which bounds the lag; on stop they close without
 * waiting for the backlog.
 */
export function fleetArgs(gateways: number, pointsPerSec: number, extra: RoleArgs = {}): RoleArgs {
  const hz = Number(extra['hz'] ?? HZ);
  return { gateways, drones: Math.max(gateways, Math.round(pointsPerSec / hz)), hz, prefix: `gw${gateways}`, logLevel: 'warn', spoolMaxBytes: 8 * 2 ** 20, drainMs: 0, ...extra };
}

export interface Measured {
  pointsPerSec: number;
  lagPoints: number;
  first: Sample;
  last: Sample;
  committed: number;
  /** Points the load (agents, or the replaying generator) took in over the window. */
  generated: number;
}

/** Committed points per second over the measuring window, after a warm-up. */
export async function measure(ctx: BenchContext, p: Pipeline, generatedKey: string, warmMs = windows(ctx).warmMs): Promise<Measured> {
  const { measureMs } = windows(ctx);
  await sleep(warmMs);
  const first = await sample(p);
  await sleep(measureMs);
  const last = await sample(p);
  const committed = stat(last, 'sink', 'pointsCommitted') - stat(first, 'sink', 'pointsCommitted');
  const seconds = (last.at - first.at) / 1000;
  return {
    pointsPerSec: committed / seconds,
    lagPoints: stat(last, 'load', generatedKey) - stat(last, 'sink', 'pointsCommitted'),
    first,
    last,
    committed,
    generated: stat(last, 'load', generatedKey) - stat(first, 'load', generatedKey),
  };
}

export function footprint(m: Measured, section: string, suffix: string): Figure[] {
  const rss = (role: string) => m.last.reports[role]?.maxRssBytes ?? null;
  return [
    figure(section, `broker_cpu_seconds_per_million${suffix}`, 'broker CPU per million points', cpuPerMillion(m, 'broker'), 's'),
    figure(section, `sink_cpu_seconds_per_million${suffix}`, 'sink CPU per million points', cpuPerMillion(m, 'sink'), 's'),
    figure(section, `agent_cpu_seconds_per_million${suffix}`, 'agents CPU per million points', cpuPerMillion(m, 'load'), 's'),
    figure(section, `broker_peak_rss_bytes${suffix}`, 'broker peak resident memory', rss('broker'), 'bytes'),
    figure(section, `sink_peak_rss_bytes${suffix}`, 'sink peak resident memory', rss('sink'), 'bytes'),
    figure(section, `agent_peak_rss_bytes${suffix}`, 'agents peak resident memory', rss('load'), 'bytes'),
  ];
}

export async function runFleet(ctx: BenchContext, gateways: number, brokerUrl?: string, extra: RoleArgs = {}): Promise<Measured> {
  const args = fleetArgs(gateways, OFFERED_PER_SEC, { spoolMaxBytes: (ctx.quick ? 2 : 8) * 2 ** 20, ...extra });
  const p = await startPipeline(ctx, { role: 'agents', args }, { sink: throughputSink(ctx), ...(brokerUrl ? { brokerUrl } : {}) });
  try {
    const m = await measure(ctx, p, 'pointsIn', saturatedWarmMs(ctx));
    await p.stop();
    return m;
  } finally {
    p.kill();
  }
}

/** End to end at 1, 10 and 100 gateways: simulated fleets through agents, broker and sink. */
export async function runEndToEnd(ctx: BenchContext): Promise<Figure[]> {
  const figures: Figure[] = [];
  let best: Measured | null = null;
  for (const gateways of ctx.quick ? [10] : [1, 10, 100]) {
    ctx.progress(`end to end, ${gateways} gateway(s)`);
    const m = await runFleet(ctx, gateways);
    figures.push(figure('end to end', `e2e_points_per_sec_${gateways}gw`, `sustained, ${gateways} gateway(s)`, m.pointsPerSec, 'points/s'));
    figures.push(figure('end to end', `e2e_lag_points_${gateways}gw`, `lag at the end, ${gateways} gateway(s)`, m.lagPoints, 'points'));
    if (!best || m.pointsPerSec > best.pointsPerSec) best = m;
    if (gateways === 10) figures.push(...footprint(m, 'footprint', ''));
  }
  if (ctx.quick) {
    for (const g of [1, 100]) figures.push(figure('end to end', `e2e_points_per_sec_${g}gw`, `sustained, ${g} gateway(s) (full run only)`, null, 'points/s'));
  }
  figures.unshift(figure('end to end', 'e2e_points_per_sec', 'sustained, best of the gateway counts', best!.pointsPerSec, 'points/s'));
  return figures;
}

/**
 * Broker and sink fed by a light generator that replays batches of `wire`. v2 batches go
 * uncompressed: the generator re-encodes every batch on the same cores, and compressing
 * each would make it, not the server, the bottleneck.
 */
export async function measureIngest(ctx: BenchContext, wire: 'v1' | 'v2'): Promise<Measured> {
  const args = { gateways: 10, window: ctx.quick ? 16 : 64, batchPoints: 1000, wire, compression: 'none' };
  const p = await startPipeline(ctx, { role: 'replay', args }, { sink: throughputSink(ctx) });
  try {
    const m = await measure(ctx, p, 'pointsSent');
    await p.stop();
    return m;
  } finally {
    p.kill();
  }
}

/**
 * A process's CPU per point it handled over the window: the load's per point it took in,
 * the broker's and the sink's per point committed. The load does its work on a point
 * whether or not the sink has committed it by the window's end: per point committed, v2's
 * agents, which outran the sink by 4-7 % and left the rest in their spools, were charged
 * for the sink's lag (0.68 against 0.65 µs a point).
 */
export const cpuPerMillion = (m: Measured, role: string): number => ((cpu(m.last, role) - cpu(m.first, role)) / (role === 'load' ? m.generated : m.committed)) * 1e6;

/** Broker and sink fed by a light generator that replays pre-encoded v1 batches; the wire section runs both wires. */
export async function runIngest(ctx: BenchContext): Promise<Figure[]> {
  const m = await measureIngest(ctx, 'v1');
  return [
    figure('server side', 'ingest_points_per_sec', 'broker + sink, replayed batches of 1000', m.pointsPerSec, 'points/s'),
    figure('server side', 'ingest_sink_cpu_seconds_per_million', 'sink CPU per million points', cpuPerMillion(m, 'sink'), 's'),
    figure('server side', 'ingest_broker_cpu_seconds_per_million', 'broker CPU per million points', cpuPerMillion(m, 'broker'), 's'),
  ];
}

async function freePort(): Promise<number> {
  const server = net.createServer().listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((r) => server.close(r));
  return port;
}

async function hasMosquitto(): Promise<boolean> {
  return new Promise((resolve) => {
    const child = spawn('mosquitto', ['-h'], { stdio: 'ignore' });
    child.on('error', () => resolve(false));
    child.on('exit', () => resolve(true));
  });
}

/** The same agents and sink with Mosquitto in place of Aedes: what the broker costs. */
export async function runMosquitto(ctx: BenchContext): Promise<Figure[]> {
  const label = 'end to end, 10 gateways, Mosquitto broker';
  if (!(await hasMosquitto())) {
    ctx.progress('mosquitto is not installed (apt-get install mosquitto): baseline skipped');
    return [figure('baselines', 'mosquitto_e2e_points_per_sec', `${label} (not installed)`, null, 'points/s')];
  }
  const port = await freePort();
  const conf = path.join(ctx.tmp, 'mosquitto.conf');
  await writeFile(conf, `listener ${port} 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 100000\nmax_inflight_messages 0\n`);
  const mosquitto = spawn('mosquitto', ['-c', conf], { stdio: 'ignore' });
  try {
    await sleep(300);
    const m = await runFleet(ctx, 10, `mqtt://127.0.0.1:${port}`);
    return [figure('baselines', 'mosquitto_e2e_points_per_sec', label, m.pointsPerSec, 'points/s')];
  } finally {
    mosquitto.kill('SIGTERM');
  }
}
