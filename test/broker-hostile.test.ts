import { randomBytes } from 'node:crypto';
import net from 'node:net';
import type mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBroker, type Broker } from '../broker/server';
import { ackTopic, telemetryTopic, TELEMETRY_WILDCARD } from '../proto/topics';
import { closed, connect, connectPacket, granted, makeRegistry, metric, rawClient, stuckSubscriber, tryConnect, within } from './broker-helpers';
import { decodeAck, encodeBatch } from '../proto/codec';
import { nowMicros } from '../proto/time';
import { sinkConfig } from '../sink/options';
import { startSink } from '../sink/sink';
import { quietLog, scrape, tempDir, waitFor } from './helpers';
import { testLake } from './lakes';

const GATEWAYS = 1000;
const gw = (i: number) => `gw-${String(i).padStart(4, '0')}`;

/**
 * One broker with a registry of a thousand gateways and a sink, under attack from raw
 * sockets and misbehaving clients, while a well-behaved gateway keeps sending telemetry
 * to a sink-identity subscriber and getting the sink's acks back.
 */
describe('broker under hostile clients', () => {
  let broker: Broker;
  let secrets: Map<string, string>;
  let cleanup: () => Promise<void>;
  let good: mqtt.MqttClient;
  let sink: mqtt.MqttClient;
  let sinkAcks: mqtt.MqttClient;
  const atSink: string[] = [];
  const atGood: string[] = [];
  let round = 0;
  const login = (id: string, clientId = `${id}-h`) => ({ clientId, username: id, password: secrets.get(id)! });

  /** The well-behaved gateway's telemetry reaches the sink, and the sink's ack reaches the gateway, each within 5 s. */
  async function roundTrip(): Promise<void> {
    const n = round++;
    await good.publishAsync(telemetryTopic(gw(0)), `telemetry ${n}`, { qos: 1 });
    await waitFor(`telemetry ${n} at the sink`, () => atSink.includes(`telemetry ${n}`), 5000);
    await sinkAcks.publishAsync(ackTopic(gw(0)), `ack ${n}`, { qos: 1 });
    await waitFor(`ack ${n} at the gateway`, () => atGood.includes(`ack ${n}`), 5000);
  }

  beforeAll(async () => {
    const dir = await tempDir('broker-hostile');
    cleanup = dir.remove;
    ({ secrets } = await makeRegistry(dir.dir, [...Array.from({ length: GATEWAYS }, (_, i) => [gw(i), 'gateway'] as const), ['dronelake-sink', 'sink']]));
    broker = await startBroker({ host: '127.0.0.1', port: 0, registry: `${dir.dir}/registry.json`, http: '127.0.0.1:0', connectTimeout: 1 }, quietLog);
    sink = await connect(broker.url, login('dronelake-sink', 'dronelake-sink'));
    await sink.subscribeAsync(TELEMETRY_WILDCARD, { qos: 1 });
    sink.on('message', (_t, payload) => atSink.push(payload.toString()));
    sinkAcks = await connect(broker.url, login('dronelake-sink', 'dronelake-sink-acks'));
    good = await connect(broker.url, login(gw(0), `${gw(0)}-good`));
    await good.subscribeAsync(ackTopic(gw(0)), { qos: 1 });
    good.on('message', (_t, payload) => atGood.push(payload.toString()));
    await roundTrip();
  });

  afterAll(async () => {
    await Promise.all([good, sink, sinkAcks].map((c) => c?.endAsync(true)));
    await broker?.close();
    await cleanup();
  });

  it('closes connections that send random bytes', async () => {
    const errorsBefore = broker.stats().connectionErrors;
    const clients = await Promise.all(Array.from({ length: 20 }, () => rawClient(broker.port, randomBytes(8192))));
    await within('the broker to close them', Promise.all(clients.map((c) => c.closed)), 10_000);
    expect(broker.stats().connectionErrors).toBeGreaterThanOrEqual(errorsBefore + 20);
    await roundTrip();
  });

  it('closes a half-open connection after --connect-timeout, and a silent client after 1.5 keepalives', async () => {
    const started = Date.now();
    const silent = await rawClient(broker.port);
    const partial = await rawClient(broker.port, connectPacket(login(gw(1))).subarray(0, 9));
    await within('the half-open connections to be closed', Promise.all([silent.closed, partial.closed]), 10_000);
    expect(Date.now() - started).toBeGreaterThanOrEqual(900);

    const quiet = await rawClient(broker.port, connectPacket({ ...login(gw(1)), keepalive: 1 }));
    expect(await quiet.connack).toBe(0);
    const connackedAt = Date.now();
    await within('the silent client to be closed', quiet.closed, 10_000);
    expect(Date.now() - connackedAt).toBeGreaterThanOrEqual(1400);
    // A keepalive above --max-keepalive is refused with 2, a code MQTT 3.1.1 defines (keepalive 0
    // is accepted: test/broker-conformance.test.ts).
    expect(await (await rawClient(broker.port, connectPacket({ ...login(gw(1)), keepalive: 301 }))).connack).toBe(2);
    await roundTrip();
  });

  it('closes a connection at the header of an oversized packet, and keeps serving the others', async () => {
    const before = broker.stats().oversizedPackets;
    // Before any CONNECT: a PUBLISH that announces 100 MiB, of which nothing follows.
    const announced = await rawClient(broker.port, Buffer.from([0x30, 0x80, 0x80, 0x80, 0x32]));
    await within('the oversized announcement to be closed', announced.closed, 10_000);

    const big = await connect(broker.url, login(gw(2)));
    const gone = closed(big);
    big.publish(telemetryTopic(gw(2)), Buffer.alloc(2 * 1024 * 1024, 1), { qos: 1 });
    await gone;
    expect(broker.stats().oversizedPackets).toBe(before + 2);

    // Just under the 1 MiB default passes.
    const fits = await connect(broker.url, login(gw(3)));
    await fits.publishAsync(telemetryTopic(gw(3)), Buffer.alloc(1024 * 1024 - 100, 2), { qos: 1 });
    await waitFor('the large message at the sink', () => atSink.some((p) => p.length === 1024 * 1024 - 100));
    await fits.endAsync();
    await roundTrip();
  });

  it('refuses a flood of 500 CONNECTs with bad or no credentials, and stays up', async () => {
    const before = Object.values(broker.stats().authFailures).reduce((a, b) => a + b, 0);
    const deadline = Date.now() + 30_000;
    const codes: Array<number | null> = [];
    for (let wave = 0; wave < 10 && Date.now() < deadline; wave++) {
      const attempts = Array.from({ length: 50 }, async (_, i) => {
        const n = wave * 50 + i;
        const id = gw(100 + (n % 50));
        const packet = [
          connectPacket({ clientId: `${id}-flood-${n}` }),
          connectPacket({ clientId: `nobody-${n}`, username: `nobody-${n}`, password: 'x' }),
          connectPacket({ clientId: `${id}-flood-${n}`, username: id, password: 'not-the-secret' }),
        ][n % 3]!;
        const c = await rawClient(broker.port, packet);
        const code = await c.connack;
        c.socket.destroy();
        return code;
      });
      codes.push(...(await Promise.all(attempts)));
    }
    expect(codes).toHaveLength(500);
    expect(codes.filter((c) => c === 5)).toHaveLength(167);
    expect(codes.filter((c) => c === 4)).toHaveLength(333);
    expect(Object.values(broker.stats().authFailures).reduce((a, b) => a + b, 0)).toBe(before + 500);
    await roundTrip();
  });

  it('holds a thousand gateway connections at once and still delivers', async () => {
    const baseline = broker.stats().clients;
    const sockets: net.Socket[] = [];
    try {
      for (let wave = 0; wave < GATEWAYS / 100; wave++) {
        const opened = await Promise.all(
          Array.from({ length: 100 }, async (_, i) => {
            const c = await rawClient(broker.port, connectPacket(login(gw(wave * 100 + i), `${gw(wave * 100 + i)}-many`)));
            sockets.push(c.socket);
            return c.connack;
          }),
        );
        expect(opened.every((code) => code === 0)).toBe(true);
      }
      await waitFor('a thousand clients', () => broker.stats().clients === baseline + GATEWAYS);
      await roundTrip();
    } finally {
      for (const s of sockets) s.destroy();
    }
    await waitFor('the thousand gone', () => broker.stats().clients === baseline);
  });

  it('cuts off a gateway that stops reading its acks at once, not after --drain-timeout', async () => {
    const socket = await stuckSubscriber(broker.port, login(gw(4)), ackTopic(gw(4)));

    const started = Date.now();
    const ack = Buffer.alloc(8192, 3);
    for (let sent = 0; broker.stats().slowConsumers === 0; sent++) {
      if (sent >= 5000) throw new Error('40 MB of acks and the gateway was not cut off');
      await sinkAcks.publishAsync(ackTopic(gw(4)), ack, { qos: 1 });
    }
    // Far sooner than the 60 s --drain-timeout, during which its deliveries would pile up.
    expect(Date.now() - started).toBeLessThan(20_000);
    await roundTrip();
    socket.destroy();
  });

  it('denies and counts what the access rules forbid, and shows it all in /metrics', async () => {
    const rogue = await connect(broker.url, login(gw(5)));
    expect(await granted(rogue, ['#', '$SYS/#', ackTopic(gw(6))])).toEqual([128, 128, 128]);
    const gone = closed(rogue);
    rogue.publish('$SYS/broker/fake', 'x', { qos: 1 });
    await gone;
    expect(await tryConnect(broker.url, { ...login(gw(6)), clientId: 'dronelake-sink' })).toBe(5);
    await roundTrip();

    const text = await scrape(broker.httpUrl!);
    const failures = (reason: string) => metric(text, `dronelake_broker_auth_failures_total{reason="${reason}"}`);
    expect(failures('missing_credentials')).toBe(167);
    expect(failures('unknown_identity')).toBe(167);
    expect(failures('bad_password')).toBe(166);
    expect(failures('client_id_not_owned')).toBe(1);
    expect(metric(text, 'dronelake_broker_acl_denials_total{action="subscribe"}')).toBe(3);
    expect(metric(text, 'dronelake_broker_acl_denials_total{action="publish"}')).toBe(1);
    expect(metric(text, 'dronelake_broker_oversized_packets_total')).toBeGreaterThanOrEqual(2);
    expect(metric(text, 'dronelake_broker_slow_consumer_disconnects_total')).toBe(1);
    // 20 random, 2 half-open, 1 oversized announcement; the refused keepalive counts as an auth failure.
    expect(metric(text, 'dronelake_broker_connection_errors_total')).toBeGreaterThanOrEqual(23);
    expect(failures('keepalive_too_long')).toBe(1);
    expect(metric(text, 'dronelake_broker_connections_total')).toBeGreaterThanOrEqual(GATEWAYS + 5);
    expect((await fetch(`${broker.httpUrl}/health`)).status).toBe(200);
  });

  it('after all that, carries the well-behaved gateway\'s batch to a real sink, into the lake, and its commit ack back', async () => {
    const lake = await testLake('local');
    const real = await startSink(
      sinkConfig({ broker: broker.url, ...lake.config, clientId: 'dronelake-sink-lake', username: 'dronelake-sink', password: secrets.get('dronelake-sink')!, flushInterval: 0.2 }),
      quietLog,
    );
    try {
      const points = Array.from({ length: 50 }, (_, i) => ({ drone_id: 'd-good', seq: i, ts: nowMicros() - 1_000_000, lat: 47, lon: 8 }));
      await good.publishAsync(telemetryTopic(gw(0)), Buffer.from(encodeBatch({ gateway_id: gw(0), batch_seq: 7, sent_at: nowMicros(), points })), { qos: 1 });
      const acked = new Set<number>();
      // The round trips above publish plain-text "ack N" on the same topic; the rest are commit acks.
      good.on('message', (_topic, payload) => {
        if (!payload.toString().startsWith('ack ')) decodeAck(payload).batch_seqs.forEach((s) => acked.add(s));
      });
      await waitFor('the commit ack of batch 7', () => acked.has(7));
      expect(await lake.query('SELECT count(*)::INTEGER AS n FROM telemetry')).toEqual([{ n: 50 }]);
    } finally {
      await real.close();
      await lake.remove();
    }
  });
});

describe('broker with a subscriber that stops reading', () => {
  it('holds up neither other subscribers nor itself the broker, before or after it leaves', async () => {
    const broker = await startBroker({ host: '127.0.0.1', port: 0 }, quietLog);
    const clients: mqtt.MqttClient[] = [];
    try {
      const stuck = await stuckSubscriber(broker.port, { clientId: 'stuck' }, 'flood');

      const other = await connect(broker.url, { clientId: 'other' });
      clients.push(other);
      const heard: string[] = [];
      other.on('message', (_t, p) => heard.push(p.toString()));
      await other.subscribeAsync('calm', { qos: 1 });
      const publisher = await connect(broker.url, { clientId: 'publisher' });
      clients.push(publisher);

      // Thousands of deliveries wait on the stuck socket; a message to someone else still goes through.
      const payload = Buffer.alloc(8192, 1);
      for (let i = 0; i < 8000; i++) await publisher.publishAsync('flood', payload, { qos: 1 });
      await publisher.publishAsync('calm', 'still here', { qos: 1 });
      await waitFor('the calm message', () => heard.includes('still here'), 5000);

      // When it goes, its pending deliveries are dropped without taking the broker down.
      stuck.destroy();
      await waitFor('the stuck client gone', () => broker.stats().clients === 2);
      await publisher.publishAsync('calm', 'after', { qos: 1 });
      await waitFor('the message after', () => heard.includes('after'), 5000);
    } finally {
      await Promise.all(clients.map((c) => c.endAsync(true)));
      await broker.close();
    }
  });
});
