import mqtt from 'mqtt';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startBroker, type Broker } from '../broker/server';
import { decodeAck } from '../proto/codec';
import { nowMicros } from '../proto/time';
import { ackTopic, telemetryTopic, telemetryTopicV2 } from '../proto/topics';
import { FlightState, GpsFix, type TelemetryPoint } from '../proto/types';
import { INVALID_REASONS, type InvalidReason } from '../proto/validate';
import { sinkConfig } from '../sink/options';
import { startSink, type Sink } from '../sink/sink';
import { commitRecords } from './table';
import { quietLog, waitFor, wireMessage, WIRES } from './helpers';
import { BACKENDS, testLake, type TestLake } from './lakes';

const GW = 'gw-test';

function goodPoint(drone: string, seq: number, ts = nowMicros() - 1_000_000): TelemetryPoint {
  return { drone_id: drone, seq, ts, lat: 47.1, lon: 8.2, alt_m: 500, battery_pct: 80, gps_fix: GpsFix.fix3d, satellites: 11, flight_state: FlightState.cruise, armed: true };
}

/** One point breaking each validation rule, by the rule's name. */
function badPoints(): Record<InvalidReason, TelemetryPoint> {
  const base = goodPoint('bad-drone', 0);
  return {
    drone_id_pattern: { ...base, drone_id: 'no spaces allowed' },
    seq_range: { ...base, seq: -5 },
    // 2^53 goes over the wire as a uint64 and is no safe integer when read back.
    stream_range: { ...base, stream: 2 ** 53 },
    ts_before_2000: { ...base, ts: 900_000_000_000_000 },
    ts_in_future: { ...base, ts: nowMicros() + 3_600_000_000 },
    not_finite: { ...base, alt_m: Number.NaN },
    lat_range: { ...base, lat: 91 },
    lon_range: { ...base, lon: 181 },
    battery_pct_range: { ...base, battery_pct: 140 },
    enum_unknown: { ...base, flight_state: 77 },
  };
}

describe.each(BACKENDS.flatMap((backend) => WIRES.map((wire) => [backend, wire] as const)))('sink on the %s backend, wire %s', (backend, wire) => {
  let broker: Broker;
  let sink: Sink;
  let gateway: mqtt.MqttClient;
  let lake: TestLake;
  const acked: number[] = [];
  const sinkArgs = () => sinkConfig({ broker: broker.url, ...lake.config, flushInterval: 0.3 });

  beforeEach(async () => {
    lake = await testLake(backend);
    broker = await startBroker({ host: '127.0.0.1', port: 0 }, quietLog);
    sink = await startSink(sinkArgs(), quietLog);
    gateway = await mqtt.connectAsync(broker.url, { clientId: `${GW}-1` });
    acked.length = 0;
    gateway.on('message', (_t, payload) => acked.push(...decodeAck(payload).batch_seqs));
    await gateway.subscribeAsync(ackTopic(GW), { qos: 1 });
  });

  afterEach(async () => {
    await gateway.endAsync();
    await sink.close();
    await broker.close();
    await lake.remove();
  });

  const topic = wire === 'v2' ? telemetryTopicV2 : telemetryTopic;
  const publish = (payload: Uint8Array, gatewayId = GW) => gateway.publishAsync(topic(gatewayId), Buffer.from(payload), { qos: 1 });
  const batch = (seq: number, points: TelemetryPoint[], gatewayId = GW) => wireMessage(wire, { gateway_id: gatewayId, batch_seq: seq, sent_at: nowMicros(), points }).payload;
  const lakeRows = async () => Number((await lake.query('SELECT count(*) AS n FROM telemetry'))[0]!['n']);

  it('counts each kind of bad payload, stays up, and keeps writing good data', async () => {
    let x = 7;
    const random = () => (x = (x * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    const randomPayloads = Array.from({ length: 25 }, () => Uint8Array.from({ length: 1 + Math.floor(random() * 300) }, () => Math.floor(random() * 256)));
    for (const p of randomPayloads) await publish(p);

    const whole = batch(1, Array.from({ length: 10 }, (_, i) => goodPoint('d-trunc', i)));
    await publish(whole.subarray(0, Math.floor(whole.length * 0.6)));
    await publish(batch(2, []));
    await publish(batch(3, [goodPoint('d-spoof', 0)], 'gw-other'));
    const bad = badPoints();
    const mixed = [goodPoint('d-mixed', 0), ...Object.values(bad), goodPoint('d-mixed', 1)];
    await publish(batch(4, mixed));
    const later = Array.from({ length: 50 }, (_, i) => goodPoint('d-later', i));
    await publish(batch(5, later));

    const sent = randomPayloads.length + 5;
    await waitFor('every message taken', () => sink.stats().batchesReceived === sent);
    await waitFor('acks for the empty and the good batches', () => [2, 4, 5].every((s) => acked.includes(s)));

    const s = sink.stats();
    const r = s.batchesRejected;
    // Random bytes fail to parse, or parse into something that is not this gateway's batch.
    expect(r.undecodable + r.gateway_mismatch + r.batch_seq_range).toBe(randomPayloads.length + 2);
    expect(r.gateway_mismatch).toBeGreaterThanOrEqual(1);
    expect(r.undecodable).toBeGreaterThanOrEqual(1);
    expect(s.batchesEmpty).toBe(1);
    for (const reason of INVALID_REASONS) expect(s.pointsInvalid[reason], reason).toBe(1);
    expect(s.pointsCommitted).toBe(52);
    expect(await lakeRows()).toBe(52);
    expect(acked).not.toContain(1);
    expect(acked).not.toContain(3);

    // Nothing is dropped silently: every rejected batch and point is in the quarantine.
    await sink.flush();
    const points = await lake.query('SELECT rule, gateway_id, batch_seq, point FROM quarantined_points ORDER BY rule');
    expect(points.map((r) => r['rule'])).toEqual([...INVALID_REASONS].sort());
    expect(new Set(points.map((r) => `${r['gateway_id']}/${r['batch_seq']}`))).toEqual(new Set([`${GW}/4`]));
    // Enums by name where the value has one; the unknown 77 as sent.
    const enumPoint = points.find((r) => r['rule'] === 'enum_unknown')!;
    expect(JSON.parse(enumPoint['point'] as string)).toMatchObject({ drone_id: 'bad-drone', flight_state: 77, gps_fix: '3d' });
    // NaN has no JSON number: it is kept as text.
    const nan = points.find((r) => r['rule'] === 'not_finite')!;
    expect(JSON.parse(nan['point'] as string)).toMatchObject({ alt_m: 'NaN' });

    const batches = await lake.query('SELECT reason, gateway_id, payload_base64 FROM quarantined_batches');
    expect(batches).toHaveLength(randomPayloads.length + 2);
    const truncated = whole.subarray(0, Math.floor(whole.length * 0.6));
    expect(batches.filter((b) => b['payload_base64'] === Buffer.from(truncated).toString('base64')).map((b) => b['reason'])).toEqual(['undecodable']);
    expect(batches.filter((b) => b['reason'] === 'gateway_mismatch' && b['gateway_id'] === GW).length).toBeGreaterThanOrEqual(1);
    expect(sink.stats().quarantineFiles).toBeGreaterThanOrEqual(2);
  });

  it('stores a batch delivered twice only once, and acks it again when it comes back after the commit', async () => {
    const a = batch(10, Array.from({ length: 40 }, (_, i) => goodPoint('d-dup', i)));
    const b = batch(11, Array.from({ length: 30 }, (_, i) => goodPoint('d-dup', 40 + i)));
    await publish(a);
    await publish(b);
    await publish(a);
    await publish(b);
    await waitFor('both batches acked', () => acked.includes(10) && acked.includes(11));
    expect(sink.stats().batchesDuplicate).toBe(2);

    const acksOfA = () => acked.filter((s) => s === 10).length;
    const before = acksOfA();
    await publish(a);
    await waitFor('one more ack for the committed batch', () => acksOfA() === before + 1);
    expect(sink.stats().batchesDuplicate).toBe(3);
    await sink.flush();

    const [row] = await lake.query('SELECT count(*) AS n, count(DISTINCT (drone_id, seq)) AS k FROM telemetry');
    expect(Number(row!['n'])).toBe(70);
    expect(Number(row!['k'])).toBe(70);
  });

  it('stops taking messages while --max-staged-mib is held, and commits early to make room', async () => {
    await sink.close();
    sink = await startSink(sinkConfig({ broker: broker.url, ...lake.config, flushInterval: 600, maxStagedMib: 1 }), quietLog);
    const batches = 24;
    const publishing = Promise.all(
      Array.from({ length: batches }, (_, b) => publish(batch(100 + b, Array.from({ length: 1000 }, (_, i) => goodPoint(`d-flood-${i % 10}`, b * 100 + Math.floor(i / 10)))))),
    );
    let most = 0;
    await waitFor('every batch taken', () => {
      most = Math.max(most, sink.stats().stagedBytes);
      return sink.stats().batchesReceived === batches;
    });
    await publishing;
    // The flush interval is ten minutes: commits before the flush are made early, for room.
    // Waited for, as the last of them may still be under way when the batches are all taken.
    await waitFor('at least three early commits', () => sink.stats().commits >= 3, 10_000);
    await sink.flush();
    await waitFor('every batch acked', () => acked.filter((s) => s >= 100).length === batches);
    // A batch is taken whole before the bound is checked: the bound can be passed by one
    // batch (1,000 points, about 130 KiB staged) at most.
    expect(most).toBeGreaterThan(0);
    expect(most).toBeLessThan(1024 * 1024 + 200 * 1024);
    expect(await lakeRows()).toBe(24_000);
  });

  it('writes points hours apart into their own hour partitions, by event time in UTC', async () => {
    const base = Date.UTC(2019, 6, 4, 23, 30) * 1000;
    await publish(batch(20, [goodPoint('d-old', 0, base), goodPoint('d-old', 1, base + 3_600_000_000), goodPoint('d-old', 2, base + 2 * 3_600_000_000)]));
    await waitFor('ack', () => acked.includes(20));
    const rows = await lake.query('SELECT date, hour, seq FROM telemetry ORDER BY seq');
    expect(rows.map((r) => [r['date'], Number(r['hour'])])).toEqual([
      ['2019-07-04', 23],
      ['2019-07-05', 0],
      ['2019-07-05', 1],
    ]);
  });

  it('after a restart, still knows every batch and point committed before it, from its checkpoints', async () => {
    const first = Array.from({ length: 20 }, (_, i) => goodPoint('d-restart', i));
    await publish(batch(30, first));
    await waitFor('the first ack', () => acked.includes(30));

    await sink.close();
    sink = await startSink(sinkArgs(), quietLog);
    // The agent never heard the ack, say, and sends batch 30 again; a client retried ten points in batch 31.
    const acksOf30 = acked.filter((s) => s === 30).length;
    await publish(batch(30, first));
    await publish(batch(31, [...first.slice(10), ...Array.from({ length: 5 }, (_, i) => goodPoint('d-restart', 20 + i))]));
    await waitFor('batch 30 acked again and batch 31 acked', () => acked.filter((s) => s === 30).length === acksOf30 + 1 && acked.includes(31));
    expect(sink.stats()).toMatchObject({ batchesDuplicate: 1, pointsDuplicate: 10, pointsCommitted: 5 });

    const [row] = await lake.query('SELECT count(*) AS n, count(DISTINCT (drone_id, seq)) AS k FROM telemetry');
    expect(Number(row!['n'])).toBe(25);
    expect(Number(row!['k'])).toBe(25);
    const storage = await lake.open();
    const commits = await commitRecords(storage);
    await storage.close();
    expect(commits.map((c) => c.files.reduce((n, f) => n + f.rows, 0)).reduce((a, b) => a + b, 0)).toBe(25);
    // The second run went on from the first one's commit numbers.
    expect(commits.map((c) => c.number)).toEqual([...commits.keys()].map((i) => i + 1));
  });
});
