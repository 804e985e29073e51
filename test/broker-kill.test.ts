import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { sinkConfig } from '../sink/options';
import { startSink, type Sink } from '../sink/sink';
import { duck, freePort, ingestClient, lakeGlob, logLines, quietLog, runCli, scrapeSample, tempDir, waitFor, type RunningProcess } from './helpers';
import { HAS_REDIS, REDIS_SKIP, startRedis } from './redis';

const KILLS = 5;

describe(`the broker under kill -9, ${KILLS} times in a run`, () => {
  let sink: Sink | null = null;
  const procs: RunningProcess[] = [];
  const cleanups: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const p of procs.splice(0)) {
      p.child.kill('SIGKILL');
      await p.exited;
    }
    await sink?.close();
    sink = null;
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  const started = async (proc: RunningProcess, msg: string) => {
    procs.push(proc);
    return waitFor(msg, () => logLines(proc.stderr()).find((l) => l['msg'] === msg), 30_000);
  };
  async function run(backend: string[]) {
    const { dir, remove } = await tempDir('broker-kill');
    cleanups.push(remove);
    const lake = path.join(dir, 'lake');
    const port = await freePort();
    const startBroker = () => started(runCli(['broker', '--port', String(port), ...backend, '--log-level', 'info']), 'broker listening');
    await startBroker();
    let broker = procs[procs.length - 1]!;
    const url = `mqtt://127.0.0.1:${port}`;
    sink = await startSink(sinkConfig({ broker: url, lake, flushInterval: 0.3 }), quietLog);
    const agentLine = await started(
      runCli(['agent', '--broker', url, '--gateway', 'gw-bkill', '--spool', path.join(dir, 'spool'), '--http', '127.0.0.1:0', '--linger', '0.05', '--ack-timeout', '2', '--reconnect-min', '0.1', '--reconnect-max', '0.5', '--log-level', 'info']),
      'agent started',
    );
    const http = String(agentLine['http']);
    const client = ingestClient('bkill-d', 4);
    const feed = async (ms: number) => {
      const until = Date.now() + ms;
      while (Date.now() < until) await client.post(http, 40);
    };

    for (let kill = 0; kill < KILLS; kill++) {
      await feed(700);
      broker.child.kill('SIGKILL');
      await broker.exited;
      // The agent keeps taking points into its spool while the broker is down.
      await feed(200);
      await startBroker();
      broker = procs[procs.length - 1]!;
    }
    await feed(500);
    expect(await client.post(http, 0)).toBe(200);
    expect(client.pending).toBe(0);
    await waitFor('every batch acked', async () => (await scrapeSample(http, 'dronelake_agent_spool_batches')) === 0, 60_000);
    // The counters show the kills: the agent reconnected after each one.
    const reconnects = await scrapeSample(http, 'dronelake_agent_reconnects_total');
    expect(reconnects).toBeGreaterThanOrEqual(KILLS);
    const resent = await scrapeSample(http, 'dronelake_agent_batches_resent_total');
    await sink.flush();
    const rows = await duck(`SELECT drone_id, seq::BIGINT AS seq, count(*)::INTEGER AS n FROM read_parquet('${lakeGlob(lake)}', hive_partitioning = true) GROUP BY ALL`);
    const keys = new Set(rows.map((r) => `${r['drone_id']}/${r['seq']}`));
    return { confirmed: client.confirmed, twice: rows.filter((r) => Number(r['n']) > 1), keys, counters: { reconnects, resent } };
  }

  /** Every point that got a 2xx is in the lake, once. */
  function exactlyOnce(backend: string, { confirmed, twice, keys, counters }: Awaited<ReturnType<typeof run>>): void {
    expect(twice).toEqual([]);
    expect([...confirmed].filter((k) => !keys.has(k))).toEqual([]);
    expect(keys.size).toBe(confirmed.size);
    expect(confirmed.size).toBeGreaterThan(0);
    console.log(JSON.stringify({ backend, kills: KILLS, points: confirmed.size, ...counters }));
  }

  it('with sessions on disk (--persistence level): 0 lost, 0 duplicated', async () => {
    const { dir, remove } = await tempDir('broker-kill-data');
    cleanups.push(remove);
    exactlyOnce('level', await run(['--data-dir', dir]));
  }, 120_000);

  it.skipIf(!HAS_REDIS)(`with the Redis cluster backend: 0 lost, 0 duplicated${REDIS_SKIP}`, async () => {
    const redis = await startRedis();
    cleanups.push(redis.stop);
    exactlyOnce('redis', await run(['--cluster', redis.url]));
  }, 120_000);
});
