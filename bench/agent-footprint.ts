import { spawn } from 'node:child_process';
import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { figure, type BenchContext, type Figure } from './report';
import { sleep } from './pipeline';
import { peakRssBytes, startRole, type RoleHandle } from './procs';
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

const CLI = path.join(path.dirname(new URL(import.meta.url).pathname), 'cli.js');
const MiB = 1024 * 1024;

/** The node flags the gateway's systemd unit gives the agent (its `Environment=NODE_OPTIONS=`). */
async function gatewayNodeFlags(): Promise<string[]> {
  const unit = await readFile(new URL('../deploy/gateway/dronelake-agent.service', import.meta.url), 'utf8');
  const flags = /^Environment=NODE_OPTIONS=(.*)$/m.exec(unit)?.[1];
  if (flags === undefined) throw new Error('deploy/gateway/dronelake-agent.service sets no NODE_OPTIONS');
  return flags.split(/\s+/).filter(Boolean);
}

/**
 * Peak RSS of `node ARGS` after `seconds`, the process on its own as an operator runs it:
 * the built CLI, not a bench worker that carries the sink and DuckDB along.
 */
async function processPeak(args: string[], seconds: number): Promise<number> {
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'ignore'] });
  try {
    await sleep(seconds * 1000);
    if (child.pid === undefined || child.exitCode !== null) throw new Error(`node ${args.join(' ')} exited early`);
    return peakRssBytes(child.pid);
  } finally {
    child.kill('SIGKILL');
  }
}

/**
 * The agent's memory as a gateway sizes it (what the issue sets: idle, 1,000 points/s, the
 * end of a broker outage at 1,000 points/s with the default spool), each beside node's own
 * empty process on the same machine.
 */
async function gatewayFootprint(ctx: BenchContext): Promise<Figure[]> {
  const run = (name: string, extra: string[]) => [CLI, 'agent', '--gateway', `gw-foot-${name}`, '--spool', path.join(ctx.tmp, `foot-${name}`), '--log-level', 'warn', ...extra];
  const settle = ctx.quick ? 5 : 20;
  const outageSeconds = ctx.quick ? 60 : 600;
  ctx.progress('node empty process');
  const empty = await processPeak(['-e', 'setInterval(() => {}, 1000)'], settle);
  // Each beside the same agent with the flags the gateway's systemd unit adds.
  const unitFlags = await gatewayNodeFlags();
  // As the unit runs it: the unit's flags, and the options from a YAML file (--config), which loads the YAML parser.
  const asUnit = async (name: string, options: string): Promise<string[]> => {
    const file = path.join(ctx.tmp, `foot-${name}.yaml`);
    await writeFile(file, `gateway: gw-foot-${name}\nspool: ${path.join(ctx.tmp, `foot-${name}`)}\nlogLevel: warn\n${options}`);
    return [...unitFlags, CLI, 'agent', '--config', file];
  };
  ctx.progress('agent idle, no broker');
  const [idle, idleUnit, idleConfig] = await Promise.all([
    processPeak(run('idle', ['--broker', 'mqtt://127.0.0.1:9']), settle),
    processPeak([...unitFlags, ...run('idle-unit', ['--broker', 'mqtt://127.0.0.1:9'])], settle),
    processPeak(await asUnit('config', 'broker: mqtt://127.0.0.1:9\n'), settle),
  ]);
  const broker = startRole('broker', {});
  const acker = startRole('acker', { broker: String((await broker.ready)['url']) });
  let atRate: number;
  let atRateUnit: number;
  let atRateConfig: number;
  try {
    await acker.ready;
    ctx.progress('agent at 1,000 points/s, acked');
    const brokerUrl = String((await broker.ready)['url']);
    const rateArgs = (name: string) => run(name, ['--broker', brokerUrl, '--simulate', '100', '--hz', '10']);
    [atRate, atRateUnit, atRateConfig] = await Promise.all([
      processPeak(rateArgs('rate'), settle * 2),
      processPeak([...unitFlags, ...rateArgs('rate-unit')], settle * 2),
      processPeak(await asUnit('rate-config', `broker: ${brokerUrl}\nsimulate: 100\nhz: 10\n`), settle * 2),
    ]);
  } finally {
    await acker.stop();
    await broker.stop();
  }
  ctx.progress(`agent at 1,000 points/s through a ${outageSeconds} s broker outage`);
  const outage = await processPeak(run('outage', ['--broker', 'mqtt://127.0.0.1:9', '--simulate', '100', '--hz', '10']), outageSeconds);
  // What the outage left on disk, for the gateway guide's disk row: the spool's files, over
  // the points made (100 drones at 10 Hz for the outage's length).
  const spoolDir = path.join(ctx.tmp, 'foot-outage');
  const spoolBytes = (await Promise.all((await readdir(spoolDir)).map(async (f) => (await stat(path.join(spoolDir, f))).size))).reduce((a, b) => a + b, 0);
  const beside = (label: string) => `${label} (node's empty process: ${(empty / MiB).toFixed(1)} MiB)`;
  return [
    figure('agent', 'node_empty_rss_bytes', "node's own empty process, peak resident memory", empty, 'bytes'),
    figure('agent', 'agent_idle_rss_bytes', beside('agent idle (no source, no broker), peak resident memory'), idle, 'bytes'),
    figure('agent', 'agent_idle_rss_bytes_unit', beside(`agent idle, with the gateway unit's ${unitFlags.join(' ')}, peak resident memory`), idleUnit, 'bytes'),
    figure('agent', 'agent_idle_rss_bytes_unit_config', beside(`agent idle as the gateway unit runs it (--config FILE, ${unitFlags.join(' ')}), peak resident memory`), idleConfig, 'bytes'),
    figure('agent', 'agent_rss_bytes_at_1k', beside('agent at 1,000 points/s (100 drones at 10 Hz), acked, peak resident memory'), atRate, 'bytes'),
    figure('agent', 'agent_rss_bytes_at_1k_unit', beside(`agent at 1,000 points/s, with the gateway unit's ${unitFlags.join(' ')}, peak resident memory`), atRateUnit, 'bytes'),
    figure('agent', 'agent_rss_bytes_at_1k_unit_config', beside(`agent at 1,000 points/s as the gateway unit runs it (--config FILE, ${unitFlags.join(' ')}), peak resident memory`), atRateConfig, 'bytes'),
    figure('agent', 'agent_rss_bytes_after_outage', beside(`agent at the end of a ${outageSeconds} s broker outage at 1,000 points/s, default spool, peak resident memory`), outage, 'bytes'),
    figure('agent', 'agent_spool_bytes_after_outage', `the spool on disk at the end of that outage`, spoolBytes, 'bytes'),
    figure('agent', 'agent_spool_bytes_per_point', `the spool on disk per point of that outage (${(outageSeconds * 1000).toLocaleString('en-US')} points)`, spoolBytes / (outageSeconds * 1000), 'bytes'),
  ];
}

export async function runAgentFootprint(ctx: BenchContext): Promise<Figure[]> {
  const figures = await gatewayFootprint(ctx);
  const empty = figures[0]?.value;
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
  figures.push(
    figure('agent', 'agent_rss_bytes_at_saturation', `peak resident memory as fast as it goes${ctx.quick ? ' (quick: at 100k points/s)' : ''}, in a bench worker that also loads the sink (node's empty process: ${(Number(empty) / MiB).toFixed(1)} MiB)`, max.rss, 'bytes'),
  );
  return figures;
}
