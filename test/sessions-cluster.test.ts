import { once } from 'node:events';
import net from 'node:net';
import path from 'node:path';
import { Redis, type RedisOptions } from 'ioredis';
import mqtt from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { REDIS_OPTIONS } from '../broker/backends';
import { startBroker, type Broker } from '../broker/server';
import { encodeBatch } from '../proto/codec';
import { nowMicros } from '../proto/time';
import { TELEMETRY_WILDCARD, telemetryTopic } from '../proto/topics';
import { GpsFix } from '../proto/types';
import { sinkConfig } from '../sink/options';
import { startSink, type Sink } from '../sink/sink';
import { freePort, logLines, observedBatch, quietLog, runCli, scrapeSample, tempDir, TELEMETRY_FILTERS, waitFor, type RunningProcess } from './helpers';
import { testLake, type TestLake } from './lakes';
import { capturedLog } from './broker-helpers';
import { HAS_REDIS, REDIS_SKIP, startRedis } from './redis';

const points = (drone: string, from: number, n: number) =>
  Array.from({ length: n }, (_, i) => ({ drone_id: drone, seq: from + i, ts: nowMicros() - 1_000_000, lat: 47, lon: 8, battery_pct: 60, gps_fix: GpsFix.fix3d }));

/** The lines of a captured broker log with message `msg`. */
const logged = ({ lines }: { lines: Array<Record<string, unknown>> }, msg: string) => lines.filter((l) => l['msg'] === msg);
const REDIS_LOST = 'the Redis connection failed; reconnecting';
const REDIS_BACK = 'the Redis connection is back';
/** A clustered broker's Redis connections, by the names its log gives them. */
const REDIS_LINKS = ['bus-publish', 'bus-subscribe', 'sessions'];
/** Whether every one of `logs` has line `msg` once for each Redis connection. */
const everyLogged = (logs: ReadonlyArray<{ lines: Array<Record<string, unknown>> }>, msg: string) => logs.every((log) => logged(log, msg).length === REDIS_LINKS.length);

describe('broker sessions and clustering', () => {
  const brokers: Broker[] = [];
  const sinks: Sink[] = [];
  const procs: RunningProcess[] = [];
  const cleanups: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const p of procs.splice(0)) p.child.kill('SIGKILL');
    for (const s of sinks.splice(0)) await s.close();
    for (const b of brokers.splice(0)) await b.close();
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  const sinkOn = async (url: string, lake: TestLake) => {
    const sink = await startSink(sinkConfig({ broker: url, ...lake.config, clientId: 'session-sink', flushInterval: 0.2 }), quietLog);
    sinks.push(sink);
    return sink;
  };
  const stopSink = async (sink: Sink) => {
    sinks.splice(sinks.indexOf(sink), 1);
    await sink.close();
  };
  const stopBroker = async (broker: Broker) => {
    brokers.splice(brokers.indexOf(broker), 1);
    await broker.close();
  };
  const count = async (lake: TestLake) => Number((await lake.query('SELECT count(*) AS n FROM telemetry'))[0]!['n']);

  it.each(['level', 'memory'] as const)('with %s persistence, a broker restart while the sink is away keeps (or loses) what was queued for it', async (persistence) => {
    const { dir, remove } = await tempDir('sessions');
    cleanups.push(remove);
    const lake = await testLake('local');
    cleanups.push(lake.remove);
    const dataDir = path.join(dir, 'broker');
    let broker = await startBroker({ host: '127.0.0.1', port: 0, persistence, dataDir }, quietLog);
    brokers.push(broker);
    const port = broker.port;

    // The sink subscribes once, with its persistent session, and goes away.
    await stopSink(await sinkOn(broker.url, lake));
    const gateway = await mqtt.connectAsync(broker.url, { clientId: 'gw-sess-1' });
    for (let b = 0; b < 5; b++) {
      const batch = encodeBatch({ gateway_id: 'gw-sess', batch_seq: b, sent_at: nowMicros(), points: points('d-sess', b * 100, 100) });
      await gateway.publishAsync(telemetryTopic('gw-sess'), Buffer.from(batch), { qos: 1 });
    }
    await gateway.endAsync();

    await stopBroker(broker);
    broker = await startBroker({ host: '127.0.0.1', port, persistence, dataDir }, quietLog);
    brokers.push(broker);
    const sink = await sinkOn(broker.url, lake);
    // A marker sent after the sink is back: queued messages come before it.
    const late = await mqtt.connectAsync(broker.url, { clientId: 'gw-mark-1' });
    await late.publishAsync(telemetryTopic('gw-mark'), Buffer.from(encodeBatch({ gateway_id: 'gw-mark', batch_seq: 0, sent_at: nowMicros(), points: points('d-mark', 0, 1) })), { qos: 1 });
    await late.endAsync();
    await waitFor('the marker batch', () => sink.stats().batchesReceived >= (persistence === 'level' ? 6 : 1));
    await sink.flush();
    expect(sink.stats().batchesReceived).toBe(persistence === 'level' ? 6 : 1);
    expect(await count(lake)).toBe(persistence === 'level' ? 501 : 1);
  });

  it.skipIf(!HAS_REDIS).each([
    ['', false],
    [', through a Redis restart in mid-stream', true],
  ] as const)(`runs two brokers over Redis: a gateway on one reaches the sink on the other, exactly once, and gets its acks back%s${REDIS_SKIP}`, async (_name, restart) => {
    let redis = await startRedis();
    cleanups.push(() => redis.stop());
    const { dir, remove } = await tempDir('cluster');
    cleanups.push(remove);
    const lake = await testLake('local');
    cleanups.push(lake.remove);
    const logs = [capturedLog('info'), capturedLog('info')];
    const a = await startBroker({ host: '127.0.0.1', port: 0, cluster: redis.url }, logs[0]!.log);
    brokers.push(a);
    const b = await startBroker({ host: '127.0.0.1', port: 0, cluster: redis.url }, logs[1]!.log);
    brokers.push(b);

    // What the gateway sends, seen on its own broker.
    const sent = new Set<string>();
    const observer = await mqtt.connectAsync(a.url, { clientId: 'cluster-observer' });
    cleanups.push(() => observer.endAsync());
    observer.on('message', (topic, payload) => observedBatch(topic, payload).points.forEach((p) => sent.add(`${p.drone_id}/${p.seq}`)));
    await observer.subscribeAsync(TELEMETRY_FILTERS);

    const sink = await sinkOn(b.url, lake);
    const agent = runCli(['agent', '--broker', a.url, '--gateway', 'gw-cluster', '--spool', path.join(dir, 'spool'), '--simulate', '5', '--hz', '20', '--linger', '0.1', '--ack-timeout', '3']);
    procs.push(agent);
    await waitFor('the agent to start', () => logLines(agent.stderr()).some((l) => l['msg'] === 'agent started'));
    await waitFor('200 points over the wire', () => sent.size >= 200);
    if (restart) {
      // Redis goes away while the gateway sends, and returns empty, as one without
      // persistence does. The brokers' Redis clients hold what is published meanwhile.
      await redis.stop();
      await waitFor('both brokers to log the outage', () => everyLogged(logs, REDIS_LOST));
      const before = sent.size;
      redis = await startRedis(redis.port);
      await waitFor('both brokers to log that Redis is back', () => everyLogged(logs, REDIS_BACK));
      await waitFor('200 more points over the wire', () => sent.size >= before + 200);
    }
    // The agent exits 0 only once the sink, on the other broker, acked every batch.
    agent.child.kill('SIGTERM');
    expect(await agent.exited, agent.stderr().slice(-2000)).toBe(0);
    await sink.flush();

    const rows = await lake.query('SELECT count(*)::INTEGER AS n, count(DISTINCT (drone_id, seq))::INTEGER AS k FROM telemetry');
    expect(rows[0]).toEqual({ n: sent.size, k: sent.size });
  });

  it.skipIf(!HAS_REDIS)(`outlives a Redis restart: two clustered brokers log the outage once each connection, name it in /health and /metrics, keep running, and route again once Redis is back${REDIS_SKIP}`, async () => {
    let redis = await startRedis();
    cleanups.push(() => redis.stop());
    const logs = [capturedLog('info'), capturedLog('info')];
    const [a, b] = await Promise.all(logs.map(({ log }) => startBroker({ host: '127.0.0.1', port: 0, cluster: redis.url, http: '127.0.0.1:0' }, log)));
    // What an operator sees of the outage, besides the log: /health names the connections down, /metrics counts them.
    const seen = async (broker: Broker) => {
      const health: unknown = await (await fetch(`${broker.httpUrl}/health`)).json();
      return { status: health, gauge: await scrapeSample(broker.httpUrl!, 'dronelake_broker_store_links_down') };
    };
    brokers.push(a!, b!);
    expect(await seen(a!)).toMatchObject({ status: { listening: true, storeLinksDown: [] }, gauge: 0 });
    const heard: string[] = [];
    const listener = await mqtt.connectAsync(b!.url, { clientId: 'redis-restart-listener' });
    cleanups.push(() => listener.endAsync());
    listener.on('message', (_topic, payload) => heard.push(payload.toString()));
    await listener.subscribeAsync('redis-restart/+', { qos: 1 });
    const talker = await mqtt.connectAsync(a!.url, { clientId: 'redis-restart-talker' });
    cleanups.push(() => talker.endAsync());
    // Published until heard: a subscription reaches the other broker through Redis a moment after its SUBACK.
    const routed = (message: string) => waitFor(`"${message}" from one broker to the other`, async () => {
      if (!heard.includes(message)) await talker.publishAsync('redis-restart/x', message, { qos: 1 });
      return heard.includes(message);
    });
    await routed('before');

    await redis.stop();
    const lost = (i: number) => logged(logs[i]!, REDIS_LOST);
    await waitFor('both brokers to log the outage', () => everyLogged(logs, REDIS_LOST));
    for (const broker of [a!, b!]) expect(await seen(broker)).toEqual({ status: expect.objectContaining({ listening: true, storeLinksDown: ['bus-publish', 'bus-subscribe', 'sessions'] }), gauge: 3 });
    // Every connection tries again while Redis is away: a listener on its port takes the
    // attempts and closes them, until each of the six has come back at least twice more.
    let attempts = 0;
    const refuser = net.createServer((socket) => {
      attempts++;
      socket.destroy();
    });
    refuser.listen(redis.port, '127.0.0.1');
    await once(refuser, 'listening');
    await waitFor('12 more attempts to reach Redis', () => attempts >= 12);
    await new Promise((r) => refuser.close(r));
    redis = await startRedis(redis.port);
    const back = (i: number) => logged(logs[i]!, REDIS_BACK);
    await waitFor('both brokers to log that Redis is back', () => everyLogged(logs, REDIS_BACK));
    await routed('after');
    for (const broker of [a!, b!]) expect(await seen(broker)).toMatchObject({ status: { listening: true, storeLinksDown: [] }, gauge: 0 });
    for (const i of [0, 1]) {
      // One line per connection (sessions, and the bus's two), not one per failed attempt.
      expect(lost(i).map((l) => l['connection']).sort()).toEqual(['bus-publish', 'bus-subscribe', 'sessions']);
      expect(back(i).map((l) => l['connection']).sort()).toEqual(['bus-publish', 'bus-subscribe', 'sessions']);
    }
    expect(heard.filter((m) => m === 'after')).toHaveLength(1);
  });

  it.skipIf(!HAS_REDIS)(`the bus's Redis connections take a SUBSCRIBE sent just after they connect, where ioredis's defaults fail their ready check${REDIS_SKIP}`, async () => {
    const redis = await startRedis();
    cleanups.push(redis.stop);
    // A connection that subscribes on the turn after its 'connect', as a broker's bus does
    // when a client subscribes while the connection comes up: the ready check's errors, if any.
    const trial = (options: RedisOptions) =>
      new Promise<string[]>((resolve) => {
        const conn = new Redis(redis.url, options);
        const errors: string[] = [];
        conn.on('error', (err: Error) => errors.push(err.message));
        conn.once('connect', () => setImmediate(() => void conn.subscribe('bus').catch(() => undefined)));
        conn.once('ready', () => {
          conn.disconnect();
          resolve(errors);
        });
      });
    const failed = async (options: RedisOptions) => {
      let n = 0;
      for (let i = 0; i < 10; i++) if ((await trial(options)).length > 0) n++;
      return n;
    };
    // The control: ioredis's defaults fail, so the trial does reach the race.
    expect(await failed({})).toBeGreaterThan(0);
    expect(await failed(REDIS_OPTIONS)).toBe(0);
  });
});
