import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import mqtt from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { startBroker, type Broker } from '../broker/server';
import { decodeAck, encodeBatch } from '../proto/codec';
import { nowMicros } from '../proto/time';
import { ackTopic, telemetryTopic } from '../proto/topics';
import { GpsFix, type TelemetryPoint } from '../proto/types';
import { sinkConfig } from '../sink/options';
import { queryLake } from '../sink/query';
import { startSink, type Sink } from '../sink/sink';
import { storageConfig } from '../sink/storage-options';
import { prng, quietLog, tempDir, waitFor } from './helpers';
import { startS3 } from './s3';

type Fault = 'slowdown' | 'internal' | 'reset' | 'delay';
const FAULTS: Fault[] = ['slowdown', 'internal', 'reset', 'delay'];

const errorXml = (code: string, message: string) =>
  `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>${message}</Message><RequestId>fault</RequestId></Error>`;

/**
 * An HTTP proxy between the sink and the S3 server that answers a share of requests with
 * 503 SlowDown or 500 InternalError, resets the connection, or forwards the request and
 * holds the answer past the client's timeout (the store did the write; the client never
 * hears of it).
 */
async function faultProxy(target: string, seed: number, holdMs: number) {
  const random = prng(seed);
  const upstream = new URL(target);
  const injected: Record<Fault, number> = { slowdown: 0, internal: 0, reset: 0, delay: 0 };
  let rate = 0;
  let requests = 0;
  const server = http.createServer((req, res) => {
    requests++;
    const fault = random() < rate ? FAULTS[Math.floor(random() * FAULTS.length)]! : null;
    if (fault) injected[fault]++;
    if (fault === 'reset') {
      req.socket.destroy();
      return;
    }
    if (fault === 'slowdown' || fault === 'internal') {
      req.resume();
      res.writeHead(fault === 'slowdown' ? 503 : 500, { 'content-type': 'application/xml' });
      res.end(fault === 'slowdown' ? errorXml('SlowDown', 'Please reduce your request rate.') : errorXml('InternalError', 'We encountered an internal error. Please try again.'));
      return;
    }
    const forward = http.request({ host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers }, (answer) => {
      const reply = () => {
        if (res.destroyed) return answer.resume();
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      };
      if (fault === 'delay') setTimeout(reply, holdMs);
      else reply();
    });
    forward.on('error', () => res.destroy());
    req.pipe(forward);
  });
  server.listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    injected,
    get requests() {
      return requests;
    },
    setRate(r: number) {
      rate = r;
    },
    close: () => {
      server.closeAllConnections();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

const GW = 'gw-s3faults';
const BATCHES = 40;
const POINTS = 20;

describe('the sink with an object store that throttles, fails, resets and stalls', () => {
  const cleanups: Array<() => Promise<void>> = [];
  let broker: Broker | null = null;
  let sink: Sink | null = null;
  afterEach(async () => {
    await sink?.close();
    sink = null;
    await broker?.close();
    broker = null;
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  it('retries, acks only what is committed, shows no half commit, counts the errors, reports degraded, and recovers with every point once', async () => {
    const s3 = await startS3();
    cleanups.push(s3.close);
    const proxy = await faultProxy(s3.endpoint, 19, 1500);
    cleanups.push(proxy.close);
    const { dir, remove } = await tempDir('s3-faults');
    cleanups.push(remove);
    const store = (endpoint: string, name: string) => storageConfig({
      lake: `s3://${s3.bucket}/lake`, s3Endpoint: endpoint, s3Region: 'us-east-1', s3PathStyle: true,
      s3AccessKeyId: 'S3RVER', s3SecretAccessKey: 'S3RVER',
      stagingDir: path.join(dir, name, 'staging'), cacheDir: path.join(dir, name, 'cache'),
    });
    broker = await startBroker({ host: '127.0.0.1', port: 0 }, quietLog);
    sink = await startSink(
      sinkConfig({
        broker: broker.url, ...store(proxy.url, 'sink'), s3Timeout: 0.5, flushInterval: 0.2, http: '127.0.0.1:0',
        // Points of an hour long closed, so compaction passes run (and meet faults) too.
        lateness: 0, compactInterval: 0.5, compactGrace: 0,
      }),
      quietLog,
    );
    // The lake as a reader sees it: through the manifest, straight from the store.
    const reader = store(s3.endpoint, 'reader');
    const lakeKeys = async () => {
      const { rows } = await queryLake(reader, 'SELECT drone_id, seq::BIGINT AS seq, count(*)::INTEGER AS n FROM telemetry GROUP BY ALL', (key, err) => {
        throw new Error(`unreadable manifest record ${key}: ${err.message}`);
      });
      return rows.map(([drone, seq, n]) => ({ key: `${String(drone)}/${String(seq)}`, n: Number(n) }));
    };

    // A gateway as the agent is one: it re-sends what is not acked, and trusts only acks.
    const gateway = await mqtt.connectAsync(broker.url, { clientId: `${GW}-1` });
    cleanups.push(() => gateway.endAsync());
    const acked = new Set<number>();
    gateway.on('message', (_topic, payload) => {
      for (const seq of decodeAck(payload).batch_seqs) acked.add(Number(seq));
    });
    await gateway.subscribeAsync(ackTopic(GW), { qos: 1 });
    const hoursAgo = nowMicros() - 3 * 3_600_000_000;
    const points = (b: number): TelemetryPoint[] =>
      Array.from({ length: POINTS }, (_, i) => ({ drone_id: `d-${i % 4}`, seq: b * 5 + Math.floor(i / 4), ts: hoursAgo + b * 1000 + i, lat: 47, lon: 8, battery_pct: 60, gps_fix: GpsFix.fix3d }));
    const payloads = Array.from({ length: BATCHES }, (_, b) => Buffer.from(encodeBatch({ gateway_id: GW, batch_seq: b, sent_at: nowMicros(), points: points(b), dropped_points: 0, stream: 7 })));
    // Batches come a few at a time, so commits go on while the faults last.
    let released = 0;
    const sendUnacked = async () => {
      for (let b = 0; b < released; b++) if (!acked.has(b)) await gateway.publishAsync(telemetryTopic(GW), payloads[b]!, { qos: 1 });
    };
    const health = async () => (await (await fetch(`${sink!.http}/health`)).json()) as { status: string; store: { failuresInARow: number } };
    const metric = async (name: string) => {
      const line = (await (await fetch(`${sink!.http}/metrics`)).text()).split('\n').find((l) => l.startsWith(`${name} `));
      return Number(line?.split(' ')[1]);
    };

    // Faults on 70 % of the requests: with the SDK's 3 attempts a request still fails about one
    // time in three, so commits and compactions fail part way, at random points.
    proxy.setRate(0.7);
    let sawDegraded = false;
    const deadline = Date.now() + 40_000;
    while (Date.now() < deadline && (released < BATCHES || !sawDegraded || sink.stats().commitErrors === 0)) {
      released = Math.min(BATCHES, released + 2);
      await sendUnacked();
      if ((await health()).status === 'degraded') {
        sawDegraded = true;
        expect(await metric('dronelake_sink_store_degraded')).toBe(1);
      }
      // Invariant 2: whatever is acked is in the lake, whole, and once.
      const ackedNow = [...acked];
      const keys = await lakeKeys();
      expect(keys.filter((k) => k.n > 1)).toEqual([]);
      const inLake = new Set(keys.map((k) => k.key));
      for (const b of ackedNow) for (const p of points(b)) expect(inLake.has(`${p.drone_id}/${p.seq}`), `acked batch ${b}`).toBe(true);
      await new Promise((r) => setTimeout(r, 300));
    }
    expect(sawDegraded).toBe(true);
    for (const fault of FAULTS) expect(proxy.injected[fault], `${fault} faults injected`).toBeGreaterThan(0);
    const errorsDuringFaults = await metric('dronelake_sink_commit_errors_total');
    expect(errorsDuringFaults).toBeGreaterThan(0);

    // The store recovers: every batch is committed and acked, every point is in the lake once.
    proxy.setRate(0);
    await waitFor(
      'every batch acked',
      async () => {
        await sendUnacked();
        return acked.size === BATCHES;
      },
      60_000,
    );
    await waitFor('the store to be ok again', async () => (await health()).status === 'ok');
    expect(await metric('dronelake_sink_store_degraded')).toBe(0);
    const keys = await lakeKeys();
    expect(keys.filter((k) => k.n > 1)).toEqual([]);
    expect(keys.length).toBe(BATCHES * POINTS);
    console.log(JSON.stringify({ requests: proxy.requests, injected: proxy.injected, commitErrors: errorsDuringFaults, compactionErrors: sink.stats().compactionErrors, commits: sink.stats().commits, compactions: sink.stats().compactions }));
  }, 120_000);
});
