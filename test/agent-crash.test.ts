import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { startBroker, type Broker } from '../broker/server';
import { sinkConfig } from '../sink/options';
import { startSink, type Sink } from '../sink/sink';
import { duck, ingestClient, lakeGlob, logLines, quietLog, runCli, tempDir, waitFor, type RunningProcess } from './helpers';


const KILLS = 20;
const DRONES = 5;

describe('the agent under kill -9', () => {
  let broker: Broker;
  let sink: Sink;
  const cleanups: Array<() => Promise<void>> = [];
  const procs: RunningProcess[] = [];
  afterAll(async () => {
    for (const p of procs) p.child.kill('SIGKILL');
    await sink?.close();
    await broker?.close();
    for (const c of cleanups) await c();
  });

  async function startAgent(url: string, spool: string): Promise<{ proc: RunningProcess; http: string }> {
    const proc = runCli(['agent', '--broker', url, '--gateway', 'gw-crash', '--spool', spool, '--http', '127.0.0.1:0', '--linger', '0.05', '--fsync-interval', '5', '--ack-timeout', '2', '--log-level', 'info']);
    procs.push(proc);
    const started = await waitFor('the agent to start', () => logLines(proc.stderr()).find((l) => l['msg'] === 'agent started'));
    return { proc, http: String(started['http']) };
  }

  it(`keeps every point that got a 2xx exactly once across ${KILLS} kills at random instants`, async () => {
    const { dir, remove } = await tempDir('crash');
    cleanups.push(remove);
    const lake = path.join(dir, 'lake');
    const spool = path.join(dir, 'spool');
    broker = await startBroker({ host: '127.0.0.1', port: 0 }, quietLog);
    sink = await startSink(sinkConfig({ broker: broker.url, lake, flushInterval: 0.3 }), quietLog);

    const client = ingestClient('crash-d', DRONES);
    let x = 12345;
    const random = () => (x = (x * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;

    /** Posts until the agent dies or `until` passes; what got no 2xx is sent again later. */
    async function feed(http: string, until: () => boolean): Promise<void> {
      while (!until()) if ((await client.post(http, 40)) === 0) return;
    }

    const deadline = Date.now() + 90_000;
    let recoveredUnacked = 0;
    // Kills that ended a running agent: its process died of the signal (no exit code).
    let kills = 0;
    for (let kill = 0; kill < KILLS && Date.now() < deadline; kill++) {
      const { proc, http } = await startAgent(broker.url, spool);
      const killAt = Date.now() + 100 + random() * 400;
      const feeding = feed(http, () => Date.now() >= killAt + 1000);
      await new Promise((r) => setTimeout(r, killAt - Date.now()));
      proc.child.kill('SIGKILL');
      if ((await proc.exited) === null && proc.child.signalCode === 'SIGKILL') kills++;
      await feeding;
      recoveredUnacked += Number(logLines(proc.stderr()).find((l) => l['msg'] === 'spool open')?.['unacked'] ?? 0);
    }

    // One last, clean run: everything not yet confirmed is sent until it is.
    const { proc, http } = await startAgent(broker.url, spool);
    await feed(http, () => client.pending === 0);
    proc.child.kill('SIGTERM');
    expect(await proc.exited, proc.stderr().slice(-2000)).toBe(0);
    await waitFor('every confirmed point committed', () => sink.stats().pointsCommitted >= client.confirmed.size, 30_000);
    await sink.flush();

    // Every kill of the loop happened, within its time budget, each to a running agent.
    expect(kills).toBe(KILLS);
    const rows = await duck(
      `SELECT drone_id, seq::BIGINT AS seq, count(*)::INTEGER AS n FROM read_parquet('${lakeGlob(lake)}', hive_partitioning = true) GROUP BY ALL`,
    );
    const twice = rows.filter((r) => Number(r['n']) > 1);
    expect(twice).toEqual([]);
    const stored = new Set(rows.map((r) => `${r['drone_id']}/${r['seq']}`));
    const missing = [...client.confirmed].filter((k) => !stored.has(k));
    expect(missing).toEqual([]);
    expect(client.confirmed.size).toBeGreaterThan(KILLS * 40);
    // The kills did land between a batch's append and its ack: restarts found them in the spool.
    expect(recoveredUnacked).toBeGreaterThan(0);
  }, 180_000);
});
