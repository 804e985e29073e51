import { execFile } from 'node:child_process';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import mqtt from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { startBroker, type Broker } from '../broker/server';
import { encodeBatch } from '../proto/codec';
import { nowMicros } from '../proto/time';
import { telemetryTopic } from '../proto/topics';
import { GpsFix } from '../proto/types';
import { QUARANTINE_PREFIX } from '../sink/layout';
import { sinkConfig } from '../sink/options';
import { createRejectMemory } from '../sink/rejects';
import { startSink, type Sink } from '../sink/sink';
import { quietLog, tempDir, waitFor } from './helpers';

const run = promisify(execFile);
const GW = 'gw-rejects';

describe('the memory of rejected messages', () => {
  it('says first once per distinct topic and bytes, expires after its window, holds at most its capacity, and forgets a failed commit', () => {
    const memory = createRejectMemory(1000, 3);
    const bytes = (n: number) => Uint8Array.of(n, n, n);
    expect(memory.first('t/a', bytes(1), 0, 'stage_0')).toBe(true);
    expect(memory.first('t/a', bytes(1), 10, 'stage_0')).toBe(false);
    // The same bytes on another gateway's topic are another message.
    expect(memory.first('t/b', bytes(1), 20, 'stage_0')).toBe(true);
    expect(memory.first('t/a', bytes(2), 30, 'stage_1')).toBe(true);
    // The commit of stage_1 failed: its message was never quarantined, so its next copy counts.
    memory.forget('stage_1');
    expect(memory.first('t/a', bytes(2), 40, 'stage_2')).toBe(true);
    // Past the window, a copy is a first again.
    expect(memory.first('t/a', bytes(1), 1000, 'stage_3')).toBe(true);
    // Capacity 3: a fourth distinct message evicts the oldest remembered.
    expect(memory.first('t/c', bytes(3), 1001, 'stage_3')).toBe(true);
    expect(memory.first('t/d', bytes(4), 1002, 'stage_3')).toBe(true);
    expect(memory.first('t/a', bytes(2), 1003, 'stage_3')).toBe(true);
  });
});

describe('undecodable messages sent again', () => {
  let broker: Broker | null = null;
  let sink: Sink | null = null;
  let gateway: mqtt.MqttClient | null = null;
  const cleanups: Array<() => Promise<void>> = [];
  afterEach(async () => {
    await gateway?.endAsync();
    await sink?.close();
    await broker?.close();
    for (const c of cleanups.splice(0)) await c();
  });

  it('are quarantined and counted once per distinct payload; re-sends and redeliveries count as repeats', async () => {
    const { dir, remove } = await tempDir('rejects');
    cleanups.push(remove);
    const lake = path.join(dir, 'lake');
    broker = await startBroker({ host: '127.0.0.1', port: 0 }, quietLog);
    sink = await startSink(sinkConfig({ broker: broker.url, lake, flushInterval: 600, http: '127.0.0.1:0' }), quietLog);
    gateway = await mqtt.connectAsync(broker.url, { clientId: `${GW}-1` });
    const topic = telemetryTopic(GW);
    const good = encodeBatch({ gateway_id: GW, batch_seq: 1, sent_at: nowMicros(), points: [{ drone_id: 'd-1', seq: 0, ts: nowMicros() - 1_000_000, lat: 47, lon: 8, gps_fix: GpsFix.fix3d }] });
    // Three distinct broken batches: two cut inside the gateway id, one of bytes no protobuf reader takes.
    const broken = [good.subarray(0, 5), good.subarray(0, 8), Buffer.alloc(11, 0xff)];
    const send = async (payload: Uint8Array) => gateway!.publishAsync(topic, Buffer.from(payload), { qos: 1 });
    // The gateway re-sends the first one after every ack timeout: 5 copies in all.
    for (let i = 0; i < 5; i++) await send(broken[0]!);
    await send(broken[1]!);
    await send(broken[2]!);
    await send(broken[1]!);
    // A copy from another client, byte for byte as the broker redelivers one.
    const copy = path.join(dir, 'copy.bin');
    await writeFile(copy, broken[2]!);
    const { port } = new URL(broker.url);
    await run('mosquitto_pub', ['-h', '127.0.0.1', '-p', port, '-i', `${GW}-pub`, '-q', '1', '-t', topic, '-f', copy]);
    await send(good);
    await waitFor('every message taken', () => sink!.stats().batchesReceived === 10);
    await sink.flush();

    const stats = sink.stats();
    expect(stats.batchesRejected.undecodable).toBe(3);
    expect(stats.batchesRejectedRepeats).toBe(6);
    expect(stats.pointsCommitted).toBe(1);
    const metrics = await (await fetch(`${sink.http}/metrics`)).text();
    expect(metrics).toMatch(/^dronelake_sink_batches_rejected_repeats_total 6$/m);
    expect(metrics).toMatch(/^dronelake_sink_batches_rejected_total\{reason="undecodable"\} 3$/m);

    // The quarantine holds each distinct payload once, byte for byte.
    const quarantined: string[] = [];
    const batchesDir = path.join(lake, QUARANTINE_PREFIX, 'batches');
    for (const entry of await readdir(batchesDir, { recursive: true, withFileTypes: true })) {
      if (!entry.isFile()) continue;
      const text = await readFile(path.join(entry.parentPath, entry.name), 'utf8');
      for (const line of text.split('\n').filter(Boolean)) quarantined.push((JSON.parse(line) as { payload_base64: string }).payload_base64);
    }
    expect(quarantined.sort()).toEqual(broken.map((b) => Buffer.from(b).toString('base64')).sort());

    // Quality: 3 undecodable batches over 1 point and 3 batches; the 6 repeats apart.
    await sink.catalog.closeWindow();
    const quality = sink.catalog.status()?.quality;
    expect(quality).toMatchObject({ undecodable_batches: 3, rejected_batch_repeats: 6, received_points: 1 });
    expect(quality?.error_rate).toBeCloseTo(3 / 4, 10);
  }, 60_000);
});
