import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { startAgent, type Agent } from '../agent/agent';
import { agentOptions } from '../agent/options';
import { startBroker } from '../broker/server';
import { sinkOptions } from '../sink/options';
import { startSink } from '../sink/sink';
import { createLogger } from './log';
import { parseOptions, type ParsedOptions } from './options';
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

/** Broker, sink and a simulated fleet in one process, on loopback with a free port. */
export async function runUp(config: UpConfig, stopSignal: Promise<unknown>): Promise<UpSummary> {
  const started = Date.now();
  const broker = await startBroker({ host: '127.0.0.1', port: 0 }, createLogger(config.logLevel, 'broker'));
  const sink = await startSink(
    parseOptions(sinkOptions, ['--broker', broker.url, '--lake', config.lake, '--flush-interval', String(config.flushInterval)]).options,
    createLogger(config.logLevel, 'sink'),
  );
  // The demo's spools are its own and go away with it, so each run's summary speaks of
  // that run alone: an earlier run's unacked batches are not carried into it.
  const spools = await mkdtemp(path.join(os.tmpdir(), 'dronelake-up-'));
  const agents: Agent[] = [];
  for (let g = 0; g < config.gateways; g++) {
    const drones = Math.floor(config.drones / config.gateways) + (g < config.drones % config.gateways ? 1 : 0);
    const gateway = `gw-${String(g + 1).padStart(3, '0')}`;
    const argv = ['--broker', broker.url, '--gateway', gateway, '--spool', path.join(spools, gateway), '--simulate', String(drones), '--hz', String(config.hz)];
    agents.push(await startAgent(parseOptions(agentOptions, argv).options, createLogger(config.logLevel, 'agent')));
  }

  const generated = () => sum(agents.map((a) => a.stats().pointsIn));
  const progressLine = () => {
    const s = sink.stats();
    const g = generated();
    const secs = ((Date.now() - started) / 1000).toFixed(0).padStart(4);
    process.stderr.write(`[${secs}s] generated ${g}  committed ${s.pointsCommitted}  files ${s.files}  lag ${g - s.pointsCommitted} points\n`);
  };
  const progress = setInterval(progressLine, config.progress * 1000);

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
  clearInterval(progress);
  progressLine();

  await Promise.all(agents.map((a) => a.close()));
  await sink.close();
  await broker.close();
  await rm(spools, { recursive: true, force: true });
  const s = sink.stats();
  return {
    generated: generated(),
    committed: s.pointsCommitted,
    files: s.files,
    lake: sink.lake,
    seconds: (Date.now() - started) / 1000,
    drained,
    invalid: sum(Object.values(s.pointsInvalid)),
    rejected_batches: sum(Object.values(s.batchesRejected)),
    duplicate_batches: s.batchesDuplicate,
    resent_batches: sum(agents.map((a) => a.stats().resent)),
  };
}
