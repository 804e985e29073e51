import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ackedSeqs } from '../agent/acks';
import { startBroker, type Broker } from '../broker/server';
import { encodeAck } from '../proto/codec';
import { ackTopic } from '../proto/topics';
import { publishAcks } from '../sink/acks';
import { quietLog, waitFor } from './helpers';

// The last step of a commit (invariant 2): the sink tells each gateway which of its batches
// are in the lake, and the agent reads that, and only that, from its own ack topic. A real
// broker on loopback and real MQTT clients.

describe('sink step: acks', () => {
  let broker: Broker;
  let sink: mqtt.MqttClient;
  let observer: mqtt.MqttClient;
  const received: { topic: string; payload: Buffer }[] = [];
  beforeAll(async () => {
    broker = await startBroker({ host: '127.0.0.1', port: 0 }, quietLog);
    sink = await mqtt.connectAsync(broker.url, { clientId: 'acks-sink-acks', reconnectPeriod: 0 });
    observer = await mqtt.connectAsync(broker.url, { clientId: 'acks-observer', reconnectPeriod: 0 });
    observer.on('message', (topic, payload) => received.push({ topic, payload }));
    await observer.subscribeAsync(ackTopic('+'), { qos: 1 });
  });
  afterAll(async () => {
    await sink?.endAsync();
    await observer?.endAsync();
    await broker?.close();
  });

  it("publishes one ack per gateway, on the gateway's topic, naming exactly its batches", async () => {
    const published = await publishAcks(sink, new Map([['gw-a', [4, 5, 9]], ['gw-b', [1]]]));
    expect(published).toBe(2);
    await waitFor('both acks', () => received.length >= 2, 10_000);
    const byTopic = new Map(received.map((m) => [m.topic, m.payload]));
    expect([...byTopic.keys()].sort()).toEqual(['dronelake/v1/ack/gw-a', 'dronelake/v1/ack/gw-b']);
    expect(ackedSeqs(byTopic.get('dronelake/v1/ack/gw-a')!, 'gw-a')).toEqual([4, 5, 9]);
    expect(ackedSeqs(byTopic.get('dronelake/v1/ack/gw-b')!, 'gw-b')).toEqual([1]);
    // An agent frees nothing on another gateway's ack, nor on bytes that are not an ack.
    expect(ackedSeqs(byTopic.get('dronelake/v1/ack/gw-b')!, 'gw-a')).toBe('ack for gateway "gw-b"');
    const garbage = ackedSeqs(Uint8Array.from([0xff, 0xff, 0xff]), 'gw-a');
    expect(typeof garbage).toBe('string');
    expect(garbage).not.toBe('');
  });

  it('publishes nothing for a commit that holds no batch', async () => {
    expect(await publishAcks(sink, new Map())).toBe(0);
  });

  it('counts what a client that is ending refuses as unpublished, and never throws: the commit has landed', async () => {
    const ending = await mqtt.connectAsync(broker.url, { clientId: 'acks-ending', reconnectPeriod: 0 });
    const ended = ending.endAsync();
    expect(await publishAcks(ending, new Map([['gw-e', [1]]]))).toBe(0);
    await ended;
  });

  it('reads an ack as the contract encodes it', () => {
    const payload = encodeAck({ gateway_id: 'gw-c', batch_seqs: [0, 2 ** 40], committed_at: 1 });
    expect(ackedSeqs(payload, 'gw-c')).toEqual([0, 2 ** 40]);
  });
});
