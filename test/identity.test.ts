import { mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import mqtt from 'mqtt';
import { common, MavLinkProtocolV2 } from 'node-mavlink';
import { afterEach, describe, expect, it } from 'vitest';
import { startAgent, type Agent } from '../agent/agent';
import { agentConfig } from '../agent/options';
import { startBroker, type Broker } from '../broker/server';
import { encodeBatch } from '../proto/codec';
import { ingestStreamOf } from '../proto/stream';
import { nowMicros } from '../proto/time';
import { telemetryTopic } from '../proto/topics';
import type { TelemetryPoint } from '../proto/types';
import { LEGACY_MANIFEST_PREFIX, type CommitRecord } from '../sink/checkpoint';
import { sinkConfig } from '../sink/options';
import { startSink, type Sink } from '../sink/sink';
import { cli, duck, lakeGlob, logLines, observedBatch, quietLog, runCli, tempDir, TELEMETRY_FILTERS, waitFor, type RunningProcess } from './helpers';

// Invariant 3: a point's identity is (drone_id, stream, seq), with one authority per
// stream. These tests replay the events that used to drop real observations as
// "duplicates": a drone roaming between gateways, a wiped spool, a second run on one lake.

/** A .tlog of one vehicle's GLOBAL_POSITION_INT reports: 8-byte big-endian µs timestamp, then the MAVLink 2 packet. */
async function writeTlog(file: string, sysid: number, startUs: number, count: number, hz: number): Promise<void> {
  const protocol = new MavLinkProtocolV2(sysid, 1);
  const records: Buffer[] = [];
  for (let i = 0; i < count; i++) {
    const msg = Object.assign(new common.GlobalPositionInt(), {
      timeBootMs: Math.round((i * 1000) / hz) + 1,
      lat: 473977420 + i * 10,
      lon: 85455940 - i * 10,
      alt: 488120,
      relativeAlt: 30250,
      vx: 300,
      vy: 400,
      vz: -150,
      hdg: 9005,
    });
    const stamp = Buffer.alloc(8);
    stamp.writeBigUInt64BE(BigInt(Math.round(startUs + (i * 1e6) / hz)));
    records.push(stamp, protocol.serialize(msg, i & 0xff));
  }
  await writeFile(file, Buffer.concat(records));
}

/** Runs SQL through `dronelake query` on a local lake and returns its JSON rows. */
async function query(lake: string, sql: string): Promise<Array<Record<string, unknown>>> {
  const r = await cli(['query', '--lake', lake, '--format', 'ndjson', sql]);
  expect(r.code, r.stderr).toBe(0);
  return r.stdout
    .trim()
    .split('\n')
    .filter((l) => l.length > 0)
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

async function catalogQuality(lake: string): Promise<Record<string, unknown>> {
  const r = await cli(['catalog', '--lake', lake, '--json']);
  expect(r.code, r.stderr).toBe(0);
  return (JSON.parse(r.stdout) as { quality: Record<string, unknown> }).quality;
}

describe('point identity', () => {
  const cleanups: Array<() => Promise<unknown>> = [];
  const procs: RunningProcess[] = [];
  afterEach(async () => {
    for (const p of procs.splice(0)) p.child.kill('SIGKILL');
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  async function setUp(name: string) {
    const tmp = await tempDir(`identity-${name}`);
    cleanups.push(tmp.remove);
    const broker = await startBroker({ host: '127.0.0.1', port: 0 }, quietLog);
    cleanups.push(() => broker.close());
    return { dir: tmp.dir, lake: path.join(tmp.dir, 'lake'), broker };
  }

  function sinkProcess(broker: Broker, lake: string): RunningProcess {
    const p = runCli(['sink', '--broker', broker.url, '--lake', lake, '--flush-interval', '0.3', '--missing-after', '0', '--log-level', 'debug']);
    procs.push(p);
    return p;
  }

  it('keeps both flights of a drone that roams from one gateway to another, each point once, across a sink killed mid-way', async () => {
    const { dir, lake, broker } = await setUp('roaming');
    const north = path.join(dir, 'north.tlog');
    const south = path.join(dir, 'south.tlog');
    const hourAgoUs = (Date.now() - 3_600_000) * 1000;
    // Two flights of vehicle 1, both numbered from seq 0 by their gateways' spools.
    await writeTlog(north, 1, hourAgoUs, 1500, 10);
    await writeTlog(south, 1, hourAgoUs + 600e6, 2000, 200);

    let sink = sinkProcess(broker, lake);
    await waitFor('the sink to start', () => logLines(sink.stderr()).some((l) => l['msg'] === 'sink started'));
    const a = await cli(['agent', 'replay', north, '--broker', broker.url, '--gateway', 'gw-north', '--spool', path.join(dir, 'spool-north'), '--mavlink-drones', '1=drone-x', '--json']);
    expect(a.code, a.stderr).toBe(0);
    expect(JSON.parse(a.stdout)).toMatchObject({ points: 1500, committed: 1500, drained: true });

    // The second flight at its recorded pace (10 s), and the sink killed once some of it is committed.
    const b = runCli(['agent', 'replay', south, '--realtime', '--broker', broker.url, '--gateway', 'gw-south', '--spool', path.join(dir, 'spool-south'), '--mavlink-drones', '1=drone-x', '--ack-timeout', '1', '--json']);
    procs.push(b);
    await waitFor('a commit of gw-south', async () => (await duck(`SELECT count(*)::INTEGER AS n FROM read_parquet('${lakeGlob(lake)}') WHERE gateway_id = 'gw-south'`))[0]!['n'] as number > 0 || undefined, 30_000);
    sink.child.kill('SIGKILL');
    await sink.exited;
    sink = sinkProcess(broker, lake);
    expect(await b.exited, b.stderr()).toBe(0);
    expect(JSON.parse(b.stdout())).toMatchObject({ points: 2000, committed: 2000, drained: true });
    sink.child.kill('SIGTERM');
    expect(await sink.exited).toBe(0);

    const [counts] = await query(
      lake,
      `SELECT count(*)::INTEGER AS n, count(DISTINCT (stream, seq))::INTEGER AS keys, count(DISTINCT stream)::INTEGER AS streams,
              count(*) FILTER (gateway_id = 'gw-north')::INTEGER AS north, count(*) FILTER (gateway_id = 'gw-south')::INTEGER AS south,
              count(*) FILTER (seq < 1500)::INTEGER AS colliding_seqs
       FROM telemetry WHERE drone_id = 'drone-x'`,
    );
    // 1500 seqs 0..1499 appear in both streams: the old key (drone_id, seq) kept 2000 of 3500.
    expect(counts).toEqual({ n: 3500, keys: 3500, streams: 2, north: 1500, south: 2000, colliding_seqs: 3000 });
    // Each stream is one gateway's, contiguous from 0.
    const perStream = await query(lake, `SELECT gateway_id, min(seq)::INTEGER AS lo, max(seq)::INTEGER AS hi, count(*)::INTEGER AS n FROM telemetry GROUP BY stream, gateway_id ORDER BY gateway_id`);
    expect(perStream).toEqual([
      { gateway_id: 'gw-north', lo: 0, hi: 1499, n: 1500 },
      { gateway_id: 'gw-south', lo: 0, hi: 1999, n: 2000 },
    ]);
    expect(await catalogQuality(lake)).toMatchObject({ rows: 3500, missing_entries: 0, drones: 1, streams: 2, streams_by_drone: { 'drone-x': 2 } });
  });

  it('stores every point a gateway sends after its spool was wiped', async () => {
    const { dir, lake, broker } = await setUp('wipe');
    const sink = await startSink(sinkConfig({ broker: broker.url, lake, flushInterval: 0.2 }), quietLog);
    cleanups.push(() => sink.close());
    // A passive observer keeps every point that crossed the wire, by its identity.
    const wire = new Map<string, TelemetryPoint>();
    const observer = await mqtt.connectAsync(broker.url, { clientId: 'identity-observer' });
    cleanups.push(() => observer.endAsync());
    observer.on('message', (topic, payload) => {
      const batch = observedBatch(topic, payload);
      for (const p of batch.points) wire.set(`${p.drone_id}/${batch.stream}/${p.seq}`, p);
    });
    await observer.subscribeAsync(TELEMETRY_FILTERS);

    const spool = path.join(dir, 'spool');
    const run = async (): Promise<Agent> => startAgent(agentConfig({ broker: broker.url, gateway: 'gw-wipe', spool, simulate: 4, hz: 20, linger: 0.05 }), quietLog);
    let agent = await run();
    await waitFor('300 points acked', () => agent.stats().pointsAcked >= 300 || undefined);
    await agent.drain(10_000);
    await agent.close();
    const before = wire.size;
    await rm(spool, { recursive: true });

    agent = await run();
    await waitFor('300 more points acked', () => agent.stats().pointsAcked >= 300 || undefined);
    expect(await agent.drain(10_000)).toBe(true);
    const acked = agent.stats().pointsAcked;
    await agent.close();
    await sink.flush();

    const after = [...wire.keys()].slice(before);
    expect(after.length).toBe(acked);
    // The new spool numbered its drones from 0 again: the same seqs as before the wipe.
    expect(Math.min(...after.map((k) => Number(k.split('/')[2])))).toBe(0);
    const rows = await duck(`SELECT drone_id || '/' || stream || '/' || seq AS k FROM read_parquet('${lakeGlob(lake)}')`);
    const inLake = new Set(rows.map((r) => String(r['k'])));
    expect(rows.length).toBe(inLake.size);
    expect(after.filter((k) => !inLake.has(k))).toEqual([]);
    expect(inLake.size).toBe(wire.size);
  });

  it('counts missing entries within a stream only: a planned gap on five drones is 250, a roaming drone none', async () => {
    const { dir, lake, broker } = await setUp('gaps');
    const sink = await startSink(sinkConfig({ broker: broker.url, lake, flushInterval: 0.2, missingAfter: 0 }), quietLog);
    let sinkOpen = true;
    cleanups.push(async () => sinkOpen && (await sink.close()));
    const agents: Agent[] = [];
    for (const gw of ['gw-a', 'gw-b']) {
      const agent = await startAgent(agentConfig({ broker: broker.url, gateway: gw, spool: path.join(dir, gw), http: '127.0.0.1:0', linger: 0.05 }), quietLog);
      agents.push(agent);
      cleanups.push(() => agent.close());
    }
    const post = async (agent: Agent, points: object[]) => {
      const res = await fetch(`${agent.http!.url}/v1/points`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(points) });
      expect(res.status, await res.text()).toBe(200);
    };
    const ts = Date.now() - 60_000;
    // Five drones skip seq 100..149 on gateway A.
    const planned = [];
    for (let d = 0; d < 5; d++) for (let seq = 0; seq < 200; seq++) if (seq < 100 || seq >= 150) planned.push({ drone_id: `gap-${d}`, seq, ts: ts + seq });
    await post(agents[0]!, planned);
    // A roaming drone: seq 0..99 through each gateway, numbered by its ingest client on each.
    const roam = (from: number) => Array.from({ length: 100 }, (_, seq) => ({ drone_id: 'roamer', seq, ts: ts + from + seq }));
    await post(agents[0]!, roam(0));
    await post(agents[1]!, roam(1000));
    for (const agent of agents) expect(await agent.drain(10_000)).toBe(true);
    // Points that name no stream are the client's, in the gateway's ingest stream: a retry
    // through a restarted gateway whose spool was wiped is still the same point.
    await agents[0]!.close();
    const again = await startAgent(agentConfig({ broker: broker.url, gateway: 'gw-a', spool: path.join(dir, 'gw-a-new'), http: '127.0.0.1:0', linger: 0.05 }), quietLog);
    cleanups.push(() => again.close());
    agents[0] = again;
    await post(again, roam(0).slice(0, 10));
    expect(await again.drain(10_000)).toBe(true);
    await sink.flush();
    expect(sink.stats().pointsDuplicate).toBe(10);
    sinkOpen = false;
    await sink.close();

    expect(await catalogQuality(lake)).toMatchObject({ rows: 950, missing_entries: 250, drones: 6, streams: 7, streams_by_drone: { roamer: 2 } });
    const streams = await query(lake, "SELECT DISTINCT stream::BIGINT AS stream FROM telemetry WHERE gateway_id = 'gw-a'");
    expect(streams).toEqual([{ stream: String(ingestStreamOf('gw-a')) }]);
  });

  it('stores every point of a second `dronelake up` on the same lake', async () => {
    const { lake } = await setUp('up-twice');
    const runs = [];
    for (let i = 0; i < 2; i++) {
      const r = await cli(['up', '--drones', '20', '--hz', '10', '--duration', '2', '--flush-interval', '0.5', '--lake', lake, '--json']);
      expect(r.code, r.stderr).toBe(0);
      const summary = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { generated: number; committed: number };
      expect(summary.generated).toBeGreaterThan(200);
      expect(summary.committed).toBe(summary.generated);
      runs.push(summary);
    }
    const [row] = await query(lake, 'SELECT count(*)::INTEGER AS n, count(DISTINCT (drone_id, stream, seq))::INTEGER AS keys, count(DISTINCT stream)::INTEGER AS streams FROM telemetry');
    const total = runs[0]!.committed + runs[1]!.committed;
    // One gateway, a new spool per run: two streams, both numbered from seq 0.
    expect(row).toEqual({ n: total, keys: total, streams: 2 });
  });

  it('quarantines points whose stream is out of range under their own rule, and takes the rest', async () => {
    const { lake, broker } = await setUp('bad-stream');
    const sink = await startSink(sinkConfig({ broker: broker.url, lake, flushInterval: 0.2 }), quietLog);
    cleanups.push(() => sink.close());
    const client = await mqtt.connectAsync(broker.url, { clientId: 'gw-bad' });
    cleanups.push(() => client.endAsync());
    const now = nowMicros() - 1_000_000;
    const point = (seq: number, stream?: number): TelemetryPoint => ({ drone_id: 'bad-stream', seq, ts: now, ...(stream !== undefined && { stream }) });
    // A batch whose stream no JS number holds exactly: all three points break the rule;
    // then a batch with one bad point of its own among two good ones.
    await client.publishAsync(telemetryTopic('gw-bad'), Buffer.from(encodeBatch({ gateway_id: 'gw-bad', batch_seq: 1, sent_at: now, stream: 2 ** 60, points: [point(0), point(1), point(2)] })), { qos: 1 });
    await client.publishAsync(telemetryTopic('gw-bad'), Buffer.from(encodeBatch({ gateway_id: 'gw-bad', batch_seq: 2, sent_at: now, stream: 77, points: [point(0), point(1, 2 ** 53), point(2, 0)] })), { qos: 1 });
    await waitFor('both batches taken', () => sink.stats().batchesReceived === 2 || undefined);
    await sink.flush();
    expect(sink.stats().pointsInvalid.stream_range).toBe(4);
    expect(sink.stats().pointsCommitted).toBe(2);
    const rows = await duck(`SELECT stream::INTEGER AS stream, seq::INTEGER AS seq FROM read_parquet('${lakeGlob(lake)}') ORDER BY seq`);
    expect(rows).toEqual([
      { stream: 77, seq: 0 },
      { stream: 0, seq: 2 },
    ]);
  });

  it('adopts a lake written before streams: its rows are neither lost nor doubled, and old files compact with new ones', async () => {
    const { lake, broker } = await setUp('legacy');
    // What the previous version wrote: a file without the stream column, and a commit
    // record with point ranges per drone alone.
    const hour = new Date(Date.now() - 3 * 3_600_000);
    const day = hour.toISOString().slice(0, 10);
    const hh = hour.toISOString().slice(11, 13);
    const partition = `drones/telemetry/v1/date=${day}/hour=${hh}`;
    const key = `${partition}/dronelake-sink-0000000001-0.parquet`;
    await mkdir(path.join(lake, partition), { recursive: true });
    const tsUs = Math.floor(hour.getTime() / 3_600_000) * 3_600_000_000 + 1_000_000;
    await duck(
      `COPY (SELECT 'old-drone' AS drone_id, s::UBIGINT AS seq, make_timestamptz(${tsUs} + s) AS ts, 47.0 AS lat, 'gw-old' AS gateway_id, make_timestamptz(${tsUs}) AS ingested_at
             FROM range(100) t(s)) TO '${path.join(lake, key)}' (FORMAT parquet)`,
    );
    const record: CommitRecord = {
      version: 1,
      kind: 'commit',
      writer: 'dronelake-sink',
      number: 1,
      committed_at: new Date(Date.now() - 3 * 3_600_000).toISOString(),
      files: [{ key, rows: 100, bytes: 1, min_ts: tsUs, max_ts: tsUs + 99 }],
      quarantine: [],
      batches: { 'gw-old': [[5, 5]] },
      points: { 'old-drone': [[0, 99]] },
      counts: { received_points: 100, duplicate_points: 0, duplicate_batches: 0, late_points: 0, rejected_points: {}, rejected_batches: {}, dropped_reported: {}, latency_buckets: {} },
    };
    // As the sink of an earlier version recorded it, in its JSON manifest: the sink adopts it.
    await mkdir(path.join(lake, LEGACY_MANIFEST_PREFIX), { recursive: true });
    await writeFile(path.join(lake, LEGACY_MANIFEST_PREFIX, 'commit-dronelake-sink-0000000001.json'), JSON.stringify(record));

    const sink = await startSink(sinkConfig({ broker: broker.url, lake, flushInterval: 0.2, lateness: 0, compactInterval: 0, compactGrace: 0 }), quietLog);
    cleanups.push(() => sink.close());
    const client = await mqtt.connectAsync(broker.url, { clientId: 'gw-old' });
    cleanups.push(() => client.endAsync());
    const old = (seq: number): TelemetryPoint => ({ drone_id: 'old-drone', seq, ts: tsUs + seq });
    // An old producer re-sends points 50..149 in a new batch, naming no stream: 50..99 are
    // in the lake already; a new agent sends 0..99 in a stream of its own.
    await client.publishAsync(telemetryTopic('gw-old'), Buffer.from(encodeBatch({ gateway_id: 'gw-old', batch_seq: 6, sent_at: nowMicros(), points: Array.from({ length: 100 }, (_, i) => old(50 + i)) })), { qos: 1 });
    await client.publishAsync(telemetryTopic('gw-old'), Buffer.from(encodeBatch({ gateway_id: 'gw-old', batch_seq: 7, sent_at: nowMicros(), stream: 12345, points: Array.from({ length: 100 }, (_, i) => old(i)) })), { qos: 1 });
    await waitFor('both batches taken', () => sink.stats().batchesReceived === 2 || undefined);
    await sink.flush();
    expect(sink.stats()).toMatchObject({ pointsDuplicate: 50, pointsCommitted: 150 });
    await sink.compact();
    expect(sink.stats().compactions).toBe(1);

    const [counts] = await query(
      lake,
      `SELECT count(*)::INTEGER AS n, count(DISTINCT (coalesce(stream, 0), seq))::INTEGER AS keys,
              count(*) FILTER (stream IS NULL)::INTEGER AS legacy_null, count(*) FILTER (stream = 0)::INTEGER AS legacy_zero, count(*) FILTER (stream = 12345)::INTEGER AS streamed
       FROM telemetry`,
    );
    expect(counts).toEqual({ n: 250, keys: 250, legacy_null: 100, legacy_zero: 50, streamed: 100 });
  });
});
