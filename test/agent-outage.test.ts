import { readdir, readFile, truncate, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { startBroker, type Broker } from '../broker/server';
import { sinkConfig } from '../sink/options';
import { startSink, type Sink } from '../sink/sink';
import { duck, freePort, ingestClient, lakeGlob, logLines, quietLog, runCli, scrapeSample, tempDir, waitFor, type RunningProcess } from './helpers';

const DRONES = 4;

describe('the agent through outages and a power cut', () => {
  let broker: Broker | null = null;
  let sink: Sink | null = null;
  const procs: RunningProcess[] = [];
  const cleanups: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const p of procs) p.child.kill('SIGKILL');
    await sink?.close();
    await broker?.close();
    for (const c of cleanups) await c();
  });

  const startAgent = async (url: string, spool: string, extra: string[] = []) => {
    const proc = runCli(['agent', '--broker', url, '--gateway', 'gw-out', '--spool', spool, '--http', '127.0.0.1:0', '--linger', '0.05', '--ack-timeout', '2', '--reconnect-min', '0.1', '--reconnect-max', '1', '--log-level', 'info', ...extra]);
    procs.push(proc);
    const started = await waitFor('the agent to start', () => logLines(proc.stderr()).find((l) => l['msg'] === 'agent started'));
    return { proc, http: String(started['http']) };
  };
  const sinkOn = (url: string, lake: string) => startSink(sinkConfig({ broker: url, lake, flushInterval: 0.3 }), quietLog);
  const lakeKeys = async (lake: string) => {
    const rows = await duck(`SELECT drone_id, seq::BIGINT AS seq, count(*)::INTEGER AS n FROM read_parquet('${lakeGlob(lake)}', hive_partitioning = true) GROUP BY ALL`);
    return { twice: rows.filter((r) => Number(r['n']) > 1), keys: new Set(rows.map((r) => `${r['drone_id']}/${r['seq']}`)) };
  };

  it('keeps taking points while the broker and then the sink are down, and delivers them all once they are back', async () => {
    const { dir, remove } = await tempDir('outage');
    cleanups.push(remove);
    const lake = path.join(dir, 'lake');
    const port = await freePort();
    broker = await startBroker({ host: '127.0.0.1', port }, quietLog);
    sink = await sinkOn(broker.url, lake);
    const { proc, http } = await startAgent(broker.url, path.join(dir, 'spool'));
    const client = ingestClient('out-d', DRONES);
    for (let i = 0; i < 10; i++) expect(await client.post(http, 20)).toBe(200);

    // The broker goes away: the agent still takes points into its spool.
    await sink.close();
    sink = null;
    await broker.close();
    broker = null;
    for (let i = 0; i < 10; i++) expect(await client.post(http, 20)).toBe(200);
    broker = await startBroker({ host: '127.0.0.1', port }, quietLog);
    sink = await sinkOn(broker.url, lake);
    for (let i = 0; i < 10; i++) expect(await client.post(http, 20)).toBe(200);

    // The sink goes away and comes back.
    await sink.close();
    sink = null;
    for (let i = 0; i < 10; i++) expect(await client.post(http, 20)).toBe(200);
    sink = await sinkOn(broker.url, lake);

    proc.child.kill('SIGTERM');
    expect(await proc.exited, proc.stderr().slice(-1500)).toBe(0);
    // The broker's outage is logged as one, however many reconnects it took.
    const lines = logLines(proc.stderr());
    const said = (msg: string) => lines.filter((l) => l['msg'] === msg);
    expect(said('the connection to the broker was lost; reconnecting')).toHaveLength(1);
    expect(said('the broker is unreachable; retrying')).toHaveLength(1);
    expect(said('the broker is still unreachable; retrying')).toHaveLength(0);
    expect(said('reconnected to the broker')).toHaveLength(1);
    expect(said('reconnected to the broker')[0]!['attempts']).toBeGreaterThanOrEqual(1);
    // The first connect is announced; the reconnect is the outage's end, not a second start.
    expect(said('agent connected')).toHaveLength(1);
    await sink.flush();
    const { twice, keys } = await lakeKeys(lake);
    expect(twice).toEqual([]);
    expect(client.confirmed.size).toBe(800);
    expect([...client.confirmed].filter((k) => !keys.has(k))).toEqual([]);
  }, 120_000);

  it('stops at once on SIGINT while the broker is away, and sends what its spool kept at the next start', async () => {
    const { dir, remove } = await tempDir('stop-offline');
    cleanups.push(remove);
    const lake = path.join(dir, 'lake');
    const spool = path.join(dir, 'spool');
    const port = await freePort();
    const first = await startAgent(`mqtt://127.0.0.1:${port}`, spool);
    const client = ingestClient('out-d', DRONES);
    for (let i = 0; i < 5; i++) expect(await client.post(first.http, 20)).toBe(200);
    const stopAt = Date.now();
    first.proc.child.kill('SIGINT');
    // Exit 1: stopped with batches unacked. Before, the stop waited out its 10 s drain for a broker that was not there.
    expect(await first.proc.exited).toBe(1);
    expect(Date.now() - stopAt).toBeLessThan(5000);
    const stopped = logLines(first.proc.stderr()).find((l) => l['msg'] === 'stopped before every batch was committed');
    expect(Number(stopped?.['pendingBatches'])).toBeGreaterThan(0);

    broker = await startBroker({ host: '127.0.0.1', port }, quietLog);
    sink = await sinkOn(broker.url, lake);
    const second = await startAgent(broker.url, spool);
    await waitFor('the spool to drain', async () => (await scrapeSample(second.http, 'dronelake_agent_spool_batches')) === 0, 30_000);
    second.proc.child.kill('SIGINT');
    expect(await second.proc.exited, second.proc.stderr().slice(-1500)).toBe(0);
    await sink.flush();
    const { twice, keys } = await lakeKeys(lake);
    expect(twice).toEqual([]);
    expect(keys.size).toBe(100);
    expect([...client.confirmed].filter((k) => !keys.has(k))).toEqual([]);
  }, 60_000);

  it('reopens a spool cut and scrambled by a power loss, and counts what it had to skip', async () => {
    const { dir, remove } = await tempDir('powercut');
    cleanups.push(remove);
    const lake = path.join(dir, 'lake');
    const spool = path.join(dir, 'spool');
    broker = await startBroker({ host: '127.0.0.1', port: 0 }, quietLog);
    // No sink yet: every batch stays in the spool.
    const first = await startAgent(broker.url, spool, ['--fsync-interval', '0']);
    const client = ingestClient('out-d', DRONES);
    for (let i = 0; i < 30; i++) expect(await client.post(first.http, 20)).toBe(200);
    first.proc.child.kill('SIGKILL');
    await first.proc.exited;

    // Power loss: the last segment loses its tail mid-record, and a byte in the middle flips.
    const segments = (await readdir(spool)).filter((f) => f.startsWith('seg-')).sort();
    const last = path.join(spool, segments[segments.length - 1]!);
    const bytes = await readFile(last);
    const flipAt = Math.floor(bytes.length / 2);
    bytes[flipAt] = bytes[flipAt]! ^ 0xff;
    await writeFile(last, bytes);
    await truncate(last, bytes.length - 7);

    sink = await sinkOn(broker.url, lake);
    const second = await startAgent(broker.url, spool);
    const opened = logLines(second.proc.stderr()).find((l) => l['msg'] === 'spool open')!;
    const recovery = opened['recovery'] as Record<string, number>;
    expect(recovery['truncatedBytes']).toBeGreaterThan(0);
    expect(recovery['corruptRecords']).toBe(1);
    second.proc.child.kill('SIGTERM');
    expect(await second.proc.exited, second.proc.stderr().slice(-1500)).toBe(0);
    await sink.flush();

    // Exactly two batches of 20 points were in the damaged bytes; everything else arrives once.
    const { twice, keys } = await lakeKeys(lake);
    expect(twice).toEqual([]);
    const lost = [...client.confirmed].filter((k) => !keys.has(k));
    expect(lost.length).toBe(40);
    expect(keys.size).toBe(client.confirmed.size - 40);
  }, 120_000);

  it('blocks when the spool is full (503, Retry-After), then takes the retries once the sink drains it', async () => {
    const { dir, remove } = await tempDir('full-block');
    cleanups.push(remove);
    const lake = path.join(dir, 'lake');
    const port = await freePort();
    // No broker yet: nothing is acked, so the spool fills.
    // Wire v1: the bound holds bytes of either wire, and v1's larger batches reach it within the posts below.
    const { proc, http } = await startAgent(`mqtt://127.0.0.1:${port}`, path.join(dir, 'spool'), ['--spool-max-bytes', String(1024 * 1024), '--wire', 'v1']);
    const client = ingestClient('out-d', DRONES);
    let status = 200;
    for (let i = 0; i < 400 && status === 200; i++) status = await client.post(http, 200);
    expect(status).toBe(503);
    const full = await fetch(`${http}/v1/points`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '[]' });
    expect(full.status).toBe(503);
    expect(full.headers.get('retry-after')).toBe('1');
    expect(await scrapeSample(http, 'dronelake_agent_spool_bytes')).toBeLessThanOrEqual(1024 * 1024);
    expect(await scrapeSample(http, 'dronelake_agent_dropped_points_total')).toBe(0);

    broker = await startBroker({ host: '127.0.0.1', port }, quietLog);
    sink = await sinkOn(broker.url, lake);
    await waitFor('the retried points to be taken', async () => (await client.post(http, 0)) === 200 && client.pending === 0, 30_000);
    proc.child.kill('SIGTERM');
    expect(await proc.exited, proc.stderr().slice(-1500)).toBe(0);
    await sink.flush();
    const { twice, keys } = await lakeKeys(lake);
    expect(twice).toEqual([]);
    expect([...client.confirmed].filter((k) => !keys.has(k))).toEqual([]);
    expect(keys.size).toBe(client.confirmed.size);
  }, 120_000);

  it('drops the oldest batches when told to, counts them, and reports the loss to the sink', async () => {
    const { dir, remove } = await tempDir('full-drop');
    cleanups.push(remove);
    const lake = path.join(dir, 'lake');
    const port = await freePort();
    // Wire v1, as above: its batches outgrow the bound within the posts below.
    const { proc, http } = await startAgent(`mqtt://127.0.0.1:${port}`, path.join(dir, 'spool'), ['--spool-max-bytes', String(1024 * 1024), '--spool-full', 'drop-oldest', '--wire', 'v1']);
    const client = ingestClient('out-d', DRONES);
    for (let i = 0; i < 200; i++) expect(await client.post(http, 200)).toBe(200);
    const dropped = await scrapeSample(http, 'dronelake_agent_dropped_points_total');
    expect(dropped).toBeGreaterThan(0);
    expect(dropped % 200).toBe(0);

    broker = await startBroker({ host: '127.0.0.1', port }, quietLog);
    sink = await sinkOn(broker.url, lake);
    // One more batch after the drops carries the count to the sink.
    expect(await client.post(http, 200)).toBe(200);
    proc.child.kill('SIGTERM');
    expect(await proc.exited, proc.stderr().slice(-1500)).toBe(0);
    await sink.flush();
    const { twice, keys } = await lakeKeys(lake);
    expect(twice).toEqual([]);
    expect(keys.size).toBe(client.confirmed.size - dropped);
    expect(sink.stats().gatewayDroppedPoints['gw-out']).toBe(dropped);
  }, 120_000);

  it('reports unhealthy once the oldest unacked batch is older than the threshold, and healthy again after the ack', async () => {
    const { dir, remove } = await tempDir('health');
    cleanups.push(remove);
    const port = await freePort();
    const { proc, http } = await startAgent(`mqtt://127.0.0.1:${port}`, path.join(dir, 'spool'), ['--health-max-unacked-age', '1']);
    const health = async () => {
      const res = await fetch(`${http}/health`);
      return { status: res.status, body: (await res.json()) as Record<string, unknown> };
    };
    expect(await health()).toMatchObject({ status: 200, body: { status: 'ok', oldestUnackedAgeSeconds: null, connected: false } });
    const client = ingestClient('out-d', DRONES);
    expect(await client.post(http, 10)).toBe(200);
    const unhealthy = await waitFor('the batch to grow old', async () => {
      const h = await health();
      return h.status === 503 ? h : undefined;
    }, 10_000);
    expect(unhealthy.body['status']).toBe('unhealthy');
    expect(unhealthy.body['oldestUnackedAgeSeconds'] as number).toBeGreaterThan(1);

    broker = await startBroker({ host: '127.0.0.1', port }, quietLog);
    sink = await sinkOn(broker.url, path.join(dir, 'lake'));
    await waitFor('the agent to be healthy again', async () => (await health()).status === 200, 30_000);
    expect((await fetch(`${http}/nowhere`)).status).toBe(404);
    proc.child.kill('SIGTERM');
    expect(await proc.exited).toBe(0);
  }, 60_000);
});
