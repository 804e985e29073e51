import type mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addIdentity, readRegistry, writeRegistry } from '../broker/registry';
import { startBroker, type Broker } from '../broker/server';
import { ackTopic, bucketOf, TELEMETRY_BUCKETS, telemetryTopic, telemetryTopicV2, TELEMETRY_V2_WILDCARD, TELEMETRY_WILDCARD } from '../proto/topics';
import { capturedLog, closed, connect, granted, HAS_MOSQUITTO, makeRegistry, metric, mosquitto, TEST_COST, tryConnect } from './broker-helpers';
import { quietLog, scrape, tempDir, waitFor } from './helpers';

const IDS = [
  ['gw-a', 'gateway'],
  ['gw-b', 'gateway'],
  ['gw', 'gateway'],
  ['dronelake-sink', 'sink'],
] as const;

describe('broker identities and access rules', () => {
  let broker: Broker;
  let secrets: Map<string, string>;
  let file: string;
  let cleanup: () => Promise<void>;
  let logs: Array<Record<string, unknown>>;
  let sink: mqtt.MqttClient;
  const received: Array<{ topic: string; payload: string }> = [];
  const clients: mqtt.MqttClient[] = [];
  const as = async (id: string, clientId = `${id}-t${clients.length}`, extra: mqtt.IClientOptions = {}) => {
    const client = await connect(broker.url, { clientId, username: id, password: secrets.get(id)!, ...extra });
    clients.push(client);
    return client;
  };
  const secret = (id: string) => secrets.get(id)!;
  const mqttArgs = (id: string, clientId: string, password = secret(id)) => ['-h', '127.0.0.1', '-p', String(broker.port), '-i', clientId, '-u', id, '-P', password];

  beforeAll(async () => {
    const dir = await tempDir('broker-auth');
    cleanup = dir.remove;
    ({ file, secrets } = await makeRegistry(dir.dir, [...IDS]));
    const captured = capturedLog();
    logs = captured.lines;
    broker = await startBroker({ host: '127.0.0.1', port: 0, registry: file }, captured.log);
    sink = await as('dronelake-sink', 'dronelake-sink');
    await sink.subscribeAsync(TELEMETRY_WILDCARD, { qos: 1 });
    await sink.subscribeAsync(TELEMETRY_V2_WILDCARD, { qos: 1 });
    sink.on('message', (topic, payload) => received.push({ topic, payload: payload.toString() }));
  });

  afterAll(async () => {
    await Promise.all(clients.map((c) => c.endAsync(true)));
    await broker.close();
    await cleanup();
  });

  it('refuses wrong passwords, unknown gateways and missing credentials, and logs each refusal', async () => {
    expect(await tryConnect(broker.url, { clientId: 'gw-a-1', username: 'gw-a', password: 'not-the-secret' })).toBe(4);
    expect(await tryConnect(broker.url, { clientId: 'gw-a-1', username: 'gw-a', password: secret('gw-b') })).toBe(4);
    expect(await tryConnect(broker.url, { clientId: 'gw-zzz-1', username: 'gw-zzz', password: secret('gw-a') })).toBe(4);
    expect(await tryConnect(broker.url, { clientId: 'gw-a-1' })).toBe(5);
    expect(await tryConnect(broker.url, { clientId: 'gw-a-1', username: 'gw-a' })).toBe(4);
    expect(await tryConnect(broker.url, { clientId: '' })).toBe(5);
    const refusals = logs.filter((l) => l['msg'] === 'connection refused').map((l) => [l['clientId'], l['reason']]);
    expect(refusals).toEqual(
      expect.arrayContaining([
        ['gw-a-1', 'bad_password'],
        ['gw-zzz-1', 'unknown_identity'],
        ['gw-a-1', 'missing_credentials'],
      ]),
    );
    expect(broker.stats().authFailures).toMatchObject({ bad_password: 3, unknown_identity: 1, missing_credentials: 2 });
  });

  it("takes a client id that is the identity's id, or that id, a dash and any suffix, and no other", async () => {
    for (const clientId of ['gw-a', 'gw-a-1', 'gw-a-telemetry']) expect((await as('gw-a', clientId)).connected, clientId).toBe(true);
    // `gw` is registered too, but gw-a's client ids stay gw-a's, and nobody takes the sink's.
    for (const [id, clientId] of [
      ['gw', 'gw-a-1'],
      ['gw-a', 'gw-b-1'],
      ['gw-a', 'gwa'],
      ['gw-a', 'dronelake-sink'],
      ['gw-a', 'dronelake-sink-acks'],
      ['gw', 'dronelake-sink'],
    ] as const) {
      expect(await tryConnect(broker.url, { clientId, username: id, password: secret(id) }), `${id} as ${clientId}`).toBe(5);
    }
    expect(sink.connected).toBe(true);
    for (const c of clients.splice(1)) await c.endAsync();
  });

  it('lets a gateway publish only its own telemetry: a publish to another gateway never reaches a subscriber', async () => {
    const a = await as('gw-a');
    const b = await as('gw-b');
    const denied = broker.stats().aclDenials.publish;
    const gone = closed(a);
    a.publish(telemetryTopic('gw-b'), 'forged by gw-a', { qos: 1 });
    await gone;
    expect(broker.stats().aclDenials.publish).toBe(denied + 1);
    // Retained, even on its own topic: the contract never retains.
    const a2 = await as('gw-a');
    const gone2 = closed(a2);
    a2.publish(telemetryTopic('gw-a'), 'retained', { qos: 1, retain: true });
    await gone2;
    expect(broker.stats().aclDenials.publish).toBe(denied + 2);

    await b.publishAsync(telemetryTopic('gw-b'), 'from gw-b', { qos: 1 });
    await waitFor('gw-b telemetry at the sink', () => received.some((m) => m.payload === 'from gw-b'));
    expect(received.filter((m) => m.topic === telemetryTopic('gw-b')).map((m) => m.payload)).toEqual(['from gw-b']);
    expect(received.some((m) => m.payload === 'retained')).toBe(false);
    expect(logs.find((l) => l['msg'] === 'denied by the access rules' && l['action'] === 'publish')).toMatchObject({ identity: 'gw-a', topic: telemetryTopic('gw-b') });
  });

  it('lets a gateway publish v2 telemetry only in its own bucket, under its own id', async () => {
    const denied = broker.stats().aclDenials.publish;
    const otherBucket = `dronelake/v2/telemetry/${(bucketOf('gw-a') + 1) % TELEMETRY_BUCKETS}/gw-a`;
    for (const [n, forged] of [otherBucket, telemetryTopicV2('gw-b')].entries()) {
      const a = await as('gw-a');
      const gone = closed(a);
      a.publish(forged, 'forged v2', { qos: 1 });
      await gone;
      expect(broker.stats().aclDenials.publish).toBe(denied + n + 1);
    }
    const a = await as('gw-a');
    await a.publishAsync(telemetryTopicV2('gw-a'), 'v2 from gw-a', { qos: 1 });
    await waitFor('gw-a v2 telemetry at the sink', () => received.some((m) => m.payload === 'v2 from gw-a'));
    expect(received.filter((m) => m.payload === 'forged v2')).toEqual([]);
  });

  it("refuses a gateway's subscriptions to another gateway's acks and to the telemetry, and delivers its own acks", async () => {
    const a = await as('gw-a');
    expect(await granted(a, [ackTopic('gw-b'), TELEMETRY_WILDCARD, '#', ackTopic('gw-a')])).toEqual([128, 128, 128, 1]);
    const b = await as('gw-b');
    expect((await b.subscribeAsync(ackTopic('gw-b'), { qos: 1 }))[0]!.qos).toBe(1);
    const acks: string[] = [];
    a.on('message', (topic, payload) => acks.push(`${topic} ${payload.toString()}`));
    const sinkAcks = await as('dronelake-sink', 'dronelake-sink-acks');
    await sinkAcks.publishAsync(ackTopic('gw-b'), 'for gw-b', { qos: 1 });
    await sinkAcks.publishAsync(ackTopic('gw-a'), 'for gw-a', { qos: 1 });
    await waitFor('gw-a ack', () => acks.length > 0);
    expect(acks).toEqual([`${ackTopic('gw-a')} for gw-a`]);
    expect(a.connected).toBe(true);
  });

  it("keeps the sink's rights for the sink: it reads telemetry and acks, but sends no telemetry and reads no acks", async () => {
    const s = await as('dronelake-sink', 'dronelake-sink-x');
    expect(await granted(s, [ackTopic('+'), ackTopic('gw-a'), telemetryTopic('gw-a'), '$SYS/#'])).toEqual([128, 128, 1, 128]);
    const gone = closed(s);
    s.publish(telemetryTopic('gw-a'), 'sink pretending', { qos: 1 });
    await gone;
    expect(received.some((m) => m.payload === 'sink pretending')).toBe(false);
  });

  it.skipIf(!HAS_MOSQUITTO)(`refuses mosquitto_pub with a wrong password, without credentials, or with the sink client id, and denies its subscriptions${HAS_MOSQUITTO ? '' : ' (skipped: mosquitto_pub is not on PATH; apt-get install mosquitto-clients)'}`, async () => {
    const wrong = await mosquitto('mosquitto_pub', [...mqttArgs('gw-a', 'gw-a-m', 'wrong'), '-t', telemetryTopic('gw-a'), '-m', 'x', '-q', '1']);
    expect(wrong.code).not.toBe(0);
    expect(wrong.stderr).toContain('Connection Refused: bad user name or password');
    const anonymous = await mosquitto('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(broker.port), '-i', 'gw-a-m', '-t', telemetryTopic('gw-a'), '-m', 'x', '-q', '1']);
    expect(anonymous.code).not.toBe(0);
    expect(anonymous.stderr).toContain('Connection Refused: not authorised');
    const unknown = await mosquitto('mosquitto_pub', [...mqttArgs('gw-q', 'gw-q-m', secret('gw-a')), '-t', telemetryTopic('gw-q'), '-m', 'x', '-q', '1']);
    expect(unknown.stderr).toContain('Connection Refused: bad user name or password');
    const asSink = await mosquitto('mosquitto_sub', [...mqttArgs('gw-a', 'dronelake-sink'), '-t', TELEMETRY_WILDCARD, '-C', '1', '-W', '5']);
    expect(asSink.code).not.toBe(0);
    expect(asSink.stderr).toContain('Connection Refused: not authorised');
    expect(sink.connected).toBe(true);

    const others = await mosquitto('mosquitto_sub', [...mqttArgs('gw-a', 'gw-a-m'), '-t', ackTopic('gw-b'), '-C', '1', '-W', '5']);
    expect(others.stderr).toContain('All subscription requests were denied');
    const telemetry = await mosquitto('mosquitto_sub', [...mqttArgs('gw-a', 'gw-a-m'), '-t', TELEMETRY_WILDCARD, '-C', '1', '-W', '5']);
    expect(telemetry.stderr).toContain('All subscription requests were denied');
  });

  it.skipIf(!HAS_MOSQUITTO)(`delivers mosquitto_pub's own telemetry to the sink, and never what it sends to another gateway's topic${HAS_MOSQUITTO ? '' : ' (skipped: mosquitto_pub is not on PATH; apt-get install mosquitto-clients)'}`, async () => {
    const denials = broker.stats().aclDenials.publish;
    const forged = await mosquitto('mosquitto_pub', [...mqttArgs('gw-a', 'gw-a-m'), '-t', telemetryTopic('gw-b'), '-m', 'forged by mosquitto', '-q', '0']);
    expect(forged.code).toBe(0); // QoS 0: it cannot know; the broker closed its connection.
    await waitFor('the denial', () => broker.stats().aclDenials.publish === denials + 1);
    const own = await mosquitto('mosquitto_pub', [...mqttArgs('gw-a', 'gw-a-m'), '-t', telemetryTopic('gw-a'), '-m', 'from mosquitto', '-q', '1']);
    expect(own.code, own.stderr).toBe(0);
    await waitFor('mosquitto telemetry at the sink', () => received.some((m) => m.payload === 'from mosquitto'));
    // The forged one came first and was denied: it is not behind the genuine one either.
    expect(received.some((m) => m.payload === 'forged by mosquitto')).toBe(false);
  });


  it('reloads the registry when its file changes: a new gateway needs no restart, a removed one is cut off', async () => {
    const b = await as('gw-b');
    const registry = await readRegistry(file);
    const newSecret = await addIdentity(registry, 'gw-new', 'gateway', TEST_COST);
    registry.delete('gw-b');
    const bGone = closed(b);
    await writeRegistry(file, registry);
    const fresh = await waitFor('gw-new admitted', async () => {
      const r = await tryConnect(broker.url, { clientId: 'gw-new-1', username: 'gw-new', password: newSecret });
      return typeof r === 'number' ? false : r;
    });
    clients.push(fresh);
    await bGone;
    expect(await tryConnect(broker.url, { clientId: 'gw-b-2', username: 'gw-b', password: secret('gw-b') })).toBe(4);
    expect(broker.stats().identities).toBe(4);

    // A broken file is reported and the registry in force stays.
    const { writeFile } = await import('node:fs/promises');
    await writeFile(file, '{"version": 1, "identities": ');
    await waitFor('the reload failure', () => broker.stats().registryReloadFailures === 1);
    expect(logs.some((l) => l['msg'] === 'registry reload failed; the previous registry stays in force')).toBe(true);
    expect(await tryConnect(broker.url, { clientId: 'gw-new-2', username: 'gw-new', password: newSecret })).not.toBeTypeOf('number');
  });
});

describe('broker limits per identity', () => {
  it('holds at most --max-connections-per-identity connections per identity; the same client id takes over its own', async () => {
    const { dir, remove } = await tempDir('broker-limit');
    const { file, secrets } = await makeRegistry(dir, [['gw-a', 'gateway']]);
    const broker = await startBroker({ host: '127.0.0.1', port: 0, registry: file, maxConnectionsPerIdentity: 2 }, quietLog);
    const as = (clientId: string) => tryConnect(broker.url, { clientId, username: 'gw-a', password: secrets.get('gw-a')! });
    try {
      const one = (await as('gw-a-1')) as mqtt.MqttClient;
      const two = (await as('gw-a-2')) as mqtt.MqttClient;
      expect(await as('gw-a-3')).toBe(3);
      const oneGone = closed(one);
      const again = (await as('gw-a-1')) as mqtt.MqttClient;
      expect(again.connected).toBe(true);
      await oneGone;
      await two.endAsync();
      const three = (await as('gw-a-3')) as mqtt.MqttClient;
      expect(three.connected).toBe(true);
      expect(broker.stats().authFailures.too_many_connections).toBe(1);
      await Promise.all([again.endAsync(), three.endAsync(), one.endAsync(true)]);
    } finally {
      await broker.close();
      await remove();
    }
  });
});

describe('broker metrics', () => {
  it('counts each refusal and denial of a controlled scenario under its reason, and answers /health', async () => {
    const { dir, remove } = await tempDir('broker-metrics');
    const { file, secrets } = await makeRegistry(dir, [
      ['gw-a', 'gateway'],
      ['dronelake-sink', 'sink'],
    ]);
    const broker = await startBroker({ host: '127.0.0.1', port: 0, registry: file, http: '127.0.0.1:0' }, quietLog);
    try {
      expect(await (await fetch(`${broker.httpUrl}/health`)).json()).toEqual({ listening: true, clients: 0, identities: 2, store: 'memory', sessionsRestored: 0, storeLinksDown: [] });
      expect(await tryConnect(broker.url, { clientId: 'gw-a-1', username: 'gw-a', password: 'wrong' })).toBe(4);
      expect(await tryConnect(broker.url, { clientId: 'gw-x-1', username: 'gw-x', password: 'wrong' })).toBe(4);
      expect(await tryConnect(broker.url, { clientId: 'gw-a-1' })).toBe(5);
      expect(await tryConnect(broker.url, { clientId: 'dronelake-sink', username: 'gw-a', password: secrets.get('gw-a')! })).toBe(5);

      const sink = await connect(broker.url, { clientId: 'dronelake-sink', username: 'dronelake-sink', password: secrets.get('dronelake-sink')! });
      await sink.subscribeAsync(TELEMETRY_WILDCARD, { qos: 1 });
      const got = new Promise((resolve) => sink.once('message', resolve));
      const gw = await connect(broker.url, { clientId: 'gw-a-1', username: 'gw-a', password: secrets.get('gw-a')! });
      expect(await granted(gw, [ackTopic('gw-b'), TELEMETRY_WILDCARD])).toEqual([128, 128]);
      await gw.publishAsync(telemetryTopic('gw-a'), Buffer.alloc(100), { qos: 1 });
      await got;
      const gone = closed(gw);
      gw.publish(telemetryTopic('gw-b'), 'x', { qos: 1 });
      await gone;

      const text = await waitFor('gw-a gone from the metrics', async () => {
        const t = await scrape(broker.httpUrl!);
        return metric(t, 'dronelake_broker_connected_clients') === 1 && t;
      });
      const failures = (reason: string) => metric(text, `dronelake_broker_auth_failures_total{reason="${reason}"}`);
      expect([failures('bad_password'), failures('unknown_identity'), failures('missing_credentials'), failures('client_id_not_owned'), failures('too_many_connections')]).toEqual([1, 1, 1, 1, 0]);
      const denials = (action: string) => metric(text, `dronelake_broker_acl_denials_total{action="${action}"}`);
      expect([denials('publish'), denials('subscribe'), denials('deliver')]).toEqual([1, 2, 0]);
      expect(metric(text, 'dronelake_broker_connections_total')).toBe(2);
      expect(metric(text, 'dronelake_broker_messages_in_total')).toBe(1);
      expect(metric(text, 'dronelake_broker_messages_out_total')).toBe(1);
      expect(metric(text, 'dronelake_broker_payload_bytes_in_total')).toBe(100);
      expect(metric(text, 'dronelake_broker_registry_identities')).toBe(2);
      await sink.endAsync();
    } finally {
      await broker.close();
      await remove();
    }
  });
});
