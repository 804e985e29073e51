import { rm, statfs, writeFile } from 'node:fs/promises';
import path from 'node:path';
import mqtt from 'mqtt';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { startBroker, type Broker } from '../broker/server';
import { decodeAck, encodeBatch } from '../proto/codec';
import { nowMicros } from '../proto/time';
import { ackTopic, telemetryTopic } from '../proto/topics';
import { GpsFix, type TelemetryPoint } from '../proto/types';
import { sinkConfig } from '../sink/options';
import { startSink, type Sink } from '../sink/sink';
import { awayFromHourBoundary, duck, lakeGlob, quietLog, tempDir, waitFor } from './helpers';
import { mountTmpfs, tmpfsUnavailable } from './tmpfs';

const noTmpfs = await tmpfsUnavailable();

const GW = 'gw-staging';
const BATCHES = 30;
const POINTS = 200;

describe.skipIf(noTmpfs !== null)('the sink with its staging directory on a disk that fills', () => {
  let broker: Broker | null = null;
  let sink: Sink | null = null;
  let gateway: mqtt.MqttClient | null = null;
  const cleanups: Array<() => Promise<void>> = [];
  afterEach(async () => {
    await gateway?.endAsync();
    await sink?.close();
    sink = null;
    await broker?.close();
    broker = null;
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  it(`stops taking messages and says why (log, /health, metrics), then resumes without loss when room returns${noTmpfs ? ` (skipped: cannot mount a tmpfs: ${noTmpfs})` : ''}`, async () => {
    await awayFromHourBoundary();
    const { dir, remove } = await tempDir('staging-full');
    cleanups.push(remove);
    // The lake, and so its staging directory, on an 8 MiB tmpfs.
    const mounted = await mountTmpfs(dir, '8m');
    if ('reason' in mounted) throw new Error(mounted.reason);
    cleanups.push(mounted.unmount);
    const lake = path.join(dir, 'lake');
    broker = await startBroker({ host: '127.0.0.1', port: 0 }, quietLog);
    const logged: Array<Record<string, unknown>> = [];
    const capture = { write: (line: string) => void logged.push(JSON.parse(line) as Record<string, unknown>) };
    sink = await startSink(sinkConfig({ broker: broker.url, lake, flushInterval: 0.2, http: '127.0.0.1:0' }), pino({ level: 'info' }, capture));
    gateway = await mqtt.connectAsync(broker.url, { clientId: `${GW}-1` });
    const acked = new Set<number>();
    gateway.on('message', (_t, payload) => {
      for (const seq of decodeAck(payload).batch_seqs) acked.add(Number(seq));
    });
    await gateway.subscribeAsync(ackTopic(GW), { qos: 1 });
    const points = (b: number): TelemetryPoint[] =>
      Array.from({ length: POINTS }, (_, i) => ({ drone_id: `d-${i % 5}`, seq: b * 40 + Math.floor(i / 5), ts: nowMicros() - 5_000_000 + i, lat: 47 + i / 1000, lon: 8 + b / 100, alt_m: i, battery_pct: 50, gps_fix: GpsFix.fix3d }));
    const payloads = Array.from({ length: BATCHES }, (_, b) => Buffer.from(encodeBatch({ gateway_id: GW, batch_seq: b, sent_at: nowMicros(), points: points(b), dropped_points: 0, stream: 3 })));
    let released = 0;
    const sendUnacked = async () => {
      for (let b = 0; b < released; b++) if (!acked.has(b)) await gateway!.publishAsync(telemetryTopic(GW), payloads[b]!, { qos: 1 });
    };
    const health = async () => (await (await fetch(`${sink!.http}/health`)).json()) as { status: string; staging: { status: string; dir: string } };
    const metric = async (name: string) => Number((await (await fetch(`${sink!.http}/metrics`)).text()).split('\n').find((l) => l.startsWith(`${name} `))?.split(' ')[1]);

    released = 5;
    await waitFor('the first batches acked', async () => {
      await sendUnacked();
      return acked.size === 5;
    });
    // The disk fills: commits fail, and the sink stops taking messages.
    const fs = await statfs(dir);
    const filler = path.join(dir, 'filler');
    await writeFile(filler, Buffer.alloc(fs.bavail * fs.bsize - 8 * 1024));
    released = BATCHES;
    await waitFor('the sink to stop taking messages', async () => {
      await sendUnacked();
      return (await health()).status === 'staging_full';
    }, 30_000);
    const full = logged.filter((l) => l['msg'] === 'staging directory is full; not taking messages until it has room');
    expect(full.length).toBe(1);
    expect(String(full[0]!['err'])).toMatch(/No space left on device|ENOSPC/);
    expect((await health()).staging.status).toBe('full');
    expect(await metric('dronelake_sink_staging_full')).toBe(1);
    expect(await metric('dronelake_sink_commit_errors_total')).toBeGreaterThan(0);
    const ackedWhileFull = acked.size;
    // It takes nothing while full: what it holds is one message, unacknowledged.
    const received = sink.stats().batchesReceived;
    await sendUnacked();
    await new Promise((r) => setTimeout(r, 1500));
    expect(sink.stats().batchesReceived).toBeLessThanOrEqual(received + 1);
    expect(acked.size).toBe(ackedWhileFull);

    // Room returns: the sink resumes, and every batch ends up in the lake exactly once.
    await rm(filler);
    await waitFor('every batch acked', async () => {
      await sendUnacked();
      return acked.size === BATCHES;
    }, 60_000);
    expect((await health()).status).toBe('ok');
    expect(await metric('dronelake_sink_staging_full')).toBe(0);
    expect(logged.some((l) => l['msg'] === 'staging directory has room again; taking messages')).toBe(true);
    const rows = await duck(`SELECT drone_id, seq::BIGINT AS seq, count(*)::INTEGER AS n FROM read_parquet('${lakeGlob(lake)}', hive_partitioning = true) GROUP BY ALL`);
    expect(rows.filter((r) => Number(r['n']) > 1)).toEqual([]);
    expect(rows.length).toBe(BATCHES * POINTS);
  }, 120_000);
});
