import mqtt from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { startBroker, type Broker } from '../broker/server';
import { parseOptions } from '../deploy/runtime/options';
import { decodeAck } from '../proto/codec';
import { nowMicros } from '../proto/time';
import { ackTopic } from '../proto/topics';
import { GpsFix } from '../proto/types';
import { commitRecords } from './table';
import { sinkConfig, sinkOptions } from '../sink/options';
import { shardOf } from '../sink/shard';
import { startSink, type Sink } from '../sink/sink';
import { quietLog, waitFor, wireMessage, WIRES } from './helpers';
import { testLake, type TestLake } from './lakes';

const GATEWAYS = 20;
const BATCHES = 5;
const POINTS = 20;
const gw = (i: number) => `gw-shard-${String(i).padStart(2, '0')}`;

describe('two sinks sharing the fleet by shard', () => {
  let broker: Broker;
  let lake: TestLake;
  const sinks: Sink[] = [];
  const gateways: mqtt.MqttClient[] = [];
  afterEach(async () => {
    for (const g of gateways.splice(0)) await g.endAsync();
    for (const s of sinks.splice(0)) await s.close();
    await broker.close();
    await lake.remove();
  });

  /** A counter of the broker's Prometheus endpoint. */
  const brokerMetric = async (name: string): Promise<number> => {
    const text = await (await fetch(`${broker.httpUrl}/metrics`)).text();
    return Number(new RegExp(`^${name} (\\d+)$`, 'm').exec(text)?.[1]);
  };

  it.each(WIRES)(`wire %s: stores every point of ${GATEWAYS} gateways exactly once, each sink committing and acking only its own gateways; the broker delivers a v2 message once, a v1 message to both`, async (wire) => {
    lake = await testLake('local');
    broker = await startBroker({ host: '127.0.0.1', port: 0, http: '127.0.0.1:0' }, quietLog);
    for (const shard of ['0/2', '1/2']) {
      sinks.push(await startSink(sinkConfig({ broker: broker.url, ...lake.config, shard, flushInterval: 0.2 }), quietLog));
    }
    const owned = [0, 1].map((s) => Array.from({ length: GATEWAYS }, (_, i) => gw(i)).filter((g) => shardOf(g, 2) === s));
    // Both shards have gateways, or the test would show nothing.
    expect(owned.map((o) => o.length).every((n) => n > 0)).toBe(true);

    const acked = new Map<string, Set<number>>();
    for (let i = 0; i < GATEWAYS; i++) {
      const id = gw(i);
      const client = await mqtt.connectAsync(broker.url, { clientId: `${id}-1` });
      gateways.push(client);
      acked.set(id, new Set());
      client.on('message', (_t, payload) => {
        const ack = decodeAck(payload);
        ack.batch_seqs.forEach((s) => acked.get(ack.gateway_id)!.add(s));
      });
      await client.subscribeAsync(ackTopic(id), { qos: 1 });
    }
    await Promise.all(
      gateways.map(async (client, i) => {
        for (let b = 0; b < BATCHES; b++) {
          const points = Array.from({ length: POINTS }, (_, p) => ({ drone_id: `${gw(i)}-d`, seq: b * POINTS + p, ts: nowMicros() - 1_000_000, lat: 47, lon: 8, gps_fix: GpsFix.fix3d }));
          const { topic, payload } = wireMessage(wire, { gateway_id: gw(i), batch_seq: b, sent_at: nowMicros(), points });
          await client.publishAsync(topic, payload, { qos: 1 });
        }
      }),
    );
    await waitFor('every batch acked', () => [...acked.values()].every((s) => s.size === BATCHES));

    // Deliveries per telemetry message, from the broker's counters: every message in is a
    // telemetry batch or an ack, and each ack goes to its one gateway.
    const telemetry = GATEWAYS * BATCHES;
    const acks = (await brokerMetric('dronelake_broker_messages_in_total')) - telemetry;
    const deliveries = (await brokerMetric('dronelake_broker_messages_out_total')) - acks;
    expect(acks).toBeGreaterThan(0);
    expect(deliveries / telemetry).toBe(wire === 'v2' ? 1 : 2);

    const [row] = await lake.query('SELECT count(*)::INTEGER AS n, count(DISTINCT (drone_id, seq))::INTEGER AS k FROM telemetry');
    expect(row).toEqual({ n: GATEWAYS * BATCHES * POINTS, k: GATEWAYS * BATCHES * POINTS });

    // Each sink's commits hold its own gateways only, and it left the others' messages alone.
    const storage = await lake.open();
    try {
      const commits = await commitRecords(storage);
      for (const [s, writer] of ['dronelake-sink-0of2', 'dronelake-sink-1of2'].entries()) {
        const gatewaysCommitted = new Set(commits.filter((c) => c.writer === writer).flatMap((c) => Object.keys(c.batches)));
        expect([...gatewaysCommitted].sort()).toEqual([...owned[s]!].sort());
        // On v2 a shard hears its own buckets only; on v1 it hears and skips the others' too.
        const others = wire === 'v2' ? 0 : owned[1 - s]!.length * BATCHES;
        expect(sinks[s]!.stats()).toMatchObject({ batchesReceived: owned[s]!.length * BATCHES, batchesOtherShards: others, batchesDuplicate: 0 });
      }
    } finally {
      await storage.close();
    }
  });

  it('refuses a shard outside its count with one clear line, the same from the command line and in code', async () => {
    const refusals = [
      ['2/2', '--shard: expected I/N with 0 <= I < N (got "2/2")'],
      ['one', '--shard: expected I/N, e.g. 0/2 (got "one")'],
      ['0/65', '--shard: at most 64 shards: a shard owns whole telemetry buckets (got "0/65")'],
    ] as const;
    for (const [shard, line] of refusals) {
      await expect(parseOptions(sinkOptions, ['--shard', shard])).rejects.toThrow(line);
      expect(() => sinkConfig({ shard })).toThrow(line);
    }
    expect(sinkConfig({ shard: '1/4' }).shard).toEqual({ index: 1, count: 4 });
  });
});
