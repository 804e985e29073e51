import path from 'node:path';
import type { BenchContext } from './report';
import { startRole, type RoleArgs, type RoleHandle, type RoleReport } from './procs';

/** Broker, sink and agents, each a process of its own, as in production. */
export interface Pipeline {
  brokerUrl: string;
  broker: RoleHandle | null;
  sink: RoleHandle;
  load: RoleHandle;
  stop(): Promise<Record<string, RoleReport>>;
  kill(): void;
}

let runs = 0;

export async function startPipeline(
  ctx: BenchContext,
  load: { role: string; args: RoleArgs },
  options: { brokerUrl?: string; sink?: RoleArgs; beforeLoad?: (brokerUrl: string) => Promise<void> } = {},
): Promise<Pipeline> {
  const broker = options.brokerUrl ? null : startRole('broker', {});
  const started: RoleHandle[] = broker ? [broker] : [];
  try {
    const brokerUrl = options.brokerUrl ?? String((await broker!.ready)['url']);
    const lake = path.join(ctx.tmp, `lake-${runs++}`);
    const sink = startRole('sink', { broker: brokerUrl, lake, clientId: `bench-sink-${runs}`, ...options.sink });
    started.push(sink);
    await sink.ready;
    await options.beforeLoad?.(brokerUrl);
    const generator = startRole(load.role, { broker: brokerUrl, spoolRoot: path.join(ctx.tmp, `spool-${runs}`), ...load.args });
    started.push(generator);
    await generator.ready;
    return {
      brokerUrl,
      broker,
      sink,
      load: generator,
      async stop() {
        const reports: Record<string, RoleReport> = {};
        reports['load'] = await generator.stop();
        reports['sink'] = await sink.stop();
        if (broker) reports['broker'] = await broker.stop();
        return reports;
      },
      kill: () => started.forEach((r) => r.kill()),
    };
  } catch (err) {
    started.forEach((r) => r.kill());
    throw err;
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface Sample {
  at: number;
  reports: Record<string, RoleReport>;
}

export async function sample(p: Pipeline): Promise<Sample> {
  const handles: Array<[string, RoleHandle | null]> = [
    ['broker', p.broker],
    ['sink', p.sink],
    ['load', p.load],
  ];
  const reports: Record<string, RoleReport> = {};
  for (const [name, h] of handles) if (h) reports[name] = await h.report();
  return { at: performance.now(), reports };
}

export const stat = (s: Sample, role: string, key: string): number => Number(s.reports[role]?.stats[key] ?? 0);
export const cpu = (s: Sample, role: string): number => s.reports[role]?.cpuSeconds ?? 0;
