import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { startAgent, type Agent } from '../../agent/agent';
import { agentConfig } from '../../agent/options';
import { startBroker } from '../../broker/server';
import { sinkConfig } from '../../sink/options';
import { startSink, type Sink } from '../../sink/sink';
import { createLogger } from '../runtime/log';
import type { ParsedOptions } from '../runtime/options';
import type { upOptions } from './up-options';

export type UpConfig = ParsedOptions<typeof upOptions>;

export interface UpSummary {
  generated: number;
  committed: number;
  files: number;
  lake: string;
  seconds: number;
  drained: boolean;
  invalid: number;
  rejected_batches: number;
  duplicate_batches: number;
  resent_batches: number;
}

const sum = (xs: number[]): number => xs.reduce((a, b) => a + b, 0);

/**
 * Broker, sink and a simulated fleet in one process, on loopback with a free port. A stop
 * signal at any stage of start-up skips the stages still to come; whatever did start is
 * closed on the way out, on success or failure, so no listener keeps the process alive.
 */
export async function runUp(config: UpConfig, stopSignal: Promise<unknown>): Promise<UpSummary> {
  const started = Date.now();
  let stopping = false;
  void stopSignal.then(() => (stopping = true));
  const log = (component: string) => createLogger(config.logLevel, component, config.logFormat);
  // Closed in reverse order of start: agents, then the sink, then the broker.
  const closers: Array<() => Promise<unknown>> = [];
  const agents: Agent[] = [];
  let sink: Sink | null = null;
  try {
    // The demo's spools are its own and go away with it, so each run's summary speaks of
    // that run alone: an earlier run's unacked batches are not carried into it.
    const spools = await mkdtemp(path.join(os.tmpdir(), 'dronelake-up-'));
    closers.push(() => rm(spools, { recursive: true, force: true }));
    const broker = await startBroker({ host: '127.0.0.1', port: 0 }, log('broker'));
    closers.push(() => broker.close());
    if (!stopping) {
      const opened = await startSink(sinkConfig({ broker: broker.url, lake: config.lake, flushInterval: config.flushInterval }), log('sink'));
      sink = opened;
      closers.push(() => opened.close());
    }
    for (let g = 0; g < config.gateways && !stopping; g++) {
      const drones = Math.floor(config.drones / config.gateways) + (g < config.drones % config.gateways ? 1 : 0);
      const gateway = `gw-${String(g + 1).padStart(3, '0')}`;
      const agent = await startAgent(agentConfig({ broker: broker.url, gateway, spool: path.join(spools, gateway), simulate: drones, hz: config.hz }), log('agent'));
      agents.push(agent);
      closers.push(() => agent.close());
    }
    if (sink === null) return summaryOf(config, started, agents, null, false);
    const drained = await runFleet(config, started, agents, sink, stopSignal);
    return summaryOf(config, started, agents, sink, drained);
  } finally {
    for (const close of closers.reverse()) await close();
  }
}

const generatedBy = (agents: Agent[]) => sum(agents.map((a) => a.stats().pointsIn));

/** Lets the fleet fly until the duration is up or a stop signal comes, then drains it; true if every batch was committed. */
async function runFleet(config: UpConfig, started: number, agents: Agent[], sink: Sink, stopSignal: Promise<unknown>): Promise<boolean> {
  let last = { at: started, committed: 0 };
  const progressLine = () => {
    const s = sink.stats();
    const g = generatedBy(agents);
    const now = Date.now();
    const secs = ((now - started) / 1000).toFixed(0).padStart(4);
    const rate = (s.pointsCommitted - last.committed) / Math.max(0.001, (now - last.at) / 1000);
    last = { at: now, committed: s.pointsCommitted };
    process.stderr.write(`[${secs}s] generated ${g}  committed ${s.pointsCommitted}  files ${s.files}  lag ${g - s.pointsCommitted} points  ${rate.toFixed(0)} points/s\n`);
  };
  const progress = setInterval(progressLine, config.progress * 1000);
  try {
    const timeUp = config.duration > 0 ? new Promise((r) => setTimeout(r, config.duration * 1000).unref()) : new Promise(() => undefined);
    await Promise.race([timeUp, stopSignal]);
    process.stderr.write('stopping the fleet; draining what is in flight\n');

    // Commit as soon as the last batches arrive instead of waiting out the flush interval.
    let draining = true;
    const flusher = (async () => {
      while (draining) {
        await sink.flush();
        await new Promise((r) => setTimeout(r, 200));
      }
    })();
    const drained = (await Promise.all(agents.map((a) => a.drain(config.drainTimeout * 1000)))).every(Boolean);
    draining = false;
    await flusher;
    return drained;
  } finally {
    clearInterval(progress);
    progressLine();
  }
}

function summaryOf(config: UpConfig, started: number, agents: Agent[], sink: Sink | null, drained: boolean): UpSummary {
  const s = sink?.stats();
  return {
    generated: generatedBy(agents),
    committed: s?.pointsCommitted ?? 0,
    files: s?.files ?? 0,
    lake: sink?.lake ?? path.resolve(config.lake),
    seconds: (Date.now() - started) / 1000,
    drained,
    invalid: sum(Object.values(s?.pointsInvalid ?? {})),
    rejected_batches: sum(Object.values(s?.batchesRejected ?? {})),
    duplicate_batches: s?.batchesDuplicate ?? 0,
    resent_batches: sum(agents.map((a) => a.stats().resent)),
  };
}

/** A shell word for `value`: as is when it is plain, else in single quotes. */
const shellWord = (value: string): string => (/^[\w./:@%+=,-]+$/.test(value) ? value : `'${value.replaceAll("'", `'\\''`)}'`);

/** What `up` prints on a terminal: the run's figures, then the commands that look at what it wrote. */
export function formatUpSummary(summary: UpSummary, lakeAsGiven: string): string {
  const lake = shellWord(lakeAsGiven);
  return (
    `generated ${summary.generated}, committed ${summary.committed} in ${summary.files} files under ${summary.lake} ` +
    `(${summary.seconds.toFixed(1)} s; invalid ${summary.invalid}, rejected batches ${summary.rejected_batches}, re-sent batches ${summary.resent_batches})\n` +
    '\nnext, look at the lake:\n' +
    `  npx dronelake query --lake ${lake} "SELECT flight_state, count(*) AS points FROM telemetry GROUP BY ALL ORDER BY ALL"\n` +
    `  npx dronelake catalog --lake ${lake}\n`
  );
}
