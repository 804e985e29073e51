import mqtt from 'mqtt';
import { parse as parseYaml } from 'yaml';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startBroker, type Broker } from '../broker/server';
import { encodeBatch } from '../proto/codec';
import { nowMicros } from '../proto/time';
import { telemetryTopic } from '../proto/topics';
import { GpsFix, type TelemetryPoint } from '../proto/types';
import { CONTRACT_KEY, LINEAGE_PREFIX, PRODUCT_KEY, QUALITY_PREFIX, SAMPLE_KEY, SLO_STATUS_KEY } from '../sink/layout';
import { commitRecords } from './table';
import { sinkConfig } from '../sink/options';
import { catalogDocuments } from '../sink/catalog/documents';
import { catalogReport } from '../sink/catalog/read';
import { ledgerOf, qualityOf } from '../sink/quality';
import { startSink, type Sink } from '../sink/sink';
import { QUALITY_STATE_PREFIX } from '../sink/quality-state';
import type { KeyRange, LakeStorage } from '../sink/storage';
import pino from 'pino';
import { awayFromHourBoundary, cli, quietLog, waitFor } from './helpers';
import { testLake, type TestLake } from './lakes';
import { loadValidators } from './schemas';

const GW = 'gw-quality';
const HOUR_US = 3_600_000_000;

const point = (drone: string, seq: number, ts = nowMicros() - 2_000_000): TelemetryPoint => ({ drone_id: drone, seq, ts, lat: 47.2, lon: 8.1, battery_pct: 70, gps_fix: GpsFix.fix3d });
const range = (drone: string, from: number, to: number, ts?: number) => Array.from({ length: to - from + 1 }, (_, i) => point(drone, from + i, ts));

describe('quality metrics, objectives and the catalog, from injected faults', () => {
  let broker: Broker;
  let sink: Sink;
  let gateway: mqtt.MqttClient;
  let lake: TestLake;
  let batchSeq = 0;

  beforeEach(async () => {
    // Windows end on the hour, and fresh points must not turn late: keep clear of a boundary.
    await awayFromHourBoundary();
    lake = await testLake('local');
    broker = await startBroker({ host: '127.0.0.1', port: 0 }, quietLog);
    const config = sinkConfig({
      broker: broker.url, ...lake.config, flushInterval: 600, lateness: 0, missingAfter: 0, qualityWindow: 3600,
      sloErrorRate: 0.04, sloFreshness: 600, http: '127.0.0.1:0',
    });
    sink = await startSink(config, quietLog);
    gateway = await mqtt.connectAsync(broker.url, { clientId: `${GW}-1` });
  }, 120_000);

  afterEach(async () => {
    await gateway.endAsync();
    await sink.close();
    await broker.close();
    await lake.remove();
  });

  async function send(payloads: Uint8Array[]): Promise<void> {
    const before = sink.stats().batchesReceived;
    for (const p of payloads) await gateway.publishAsync(telemetryTopic(GW), Buffer.from(p), { qos: 1 });
    await waitFor('every message taken', () => sink.stats().batchesReceived === before + payloads.length);
    await sink.flush();
  }
  const batch = (points: TelemetryPoint[], dropped = 0) => encodeBatch({ gateway_id: GW, batch_seq: batchSeq++, sent_at: nowMicros(), points, dropped_points: dropped });
  const catalogJson = async () => {
    const r = await cli(['catalog', ...lake.args, '--json']);
    expect(r.code, r.stderr).toBe(0);
    return JSON.parse(r.stdout) as { quality: Record<string, number | null>; slos: Array<{ property: string; target: number; actual: number | null; met: boolean }> };
  };

  it('publishes the exact missing entries, errors, duplicates and late points, and flips the error-rate objective', async () => {
    // Drone X skips seq 100-149; drone Y sends 30 points three hours old, after newer ones.
    await send([batch(range('d-x', 0, 99)), batch(range('d-x', 150, 299)), batch(range('d-y', 0, 9)), batch(range('d-y', 10, 39, nowMicros() - 3 * HOUR_US))]);
    // Twenty points of X again, in a batch of their own: a client retrying.
    await send([batch(range('d-x', 0, 19))]);
    await sink.catalog.closeWindow();

    let report = await catalogJson();
    expect(report.quality).toMatchObject({ rows: 290, missing_entries: 50, reported_lost: 0, in_flight: 0, rejected_points: 0, undecodable_batches: 0, error_rate: 0, duplicates_dropped: 20, late_points: 30 });
    expect(report.quality['freshness_seconds']).toBeGreaterThan(0);
    expect(report.quality['freshness_seconds']).toBeLessThan(60);
    const errorRate = () => report.slos.find((s) => s.property === 'errorRate')!;
    expect(errorRate()).toMatchObject({ target: 0.04, actual: 0, met: true });

    // Known invalid points and an undecodable batch push the error rate past 4 %.
    const invalid = [...range('d-z', 0, 9).map((p) => ({ ...p, lat: 91 })), ...range('d-z', 10, 14).map((p) => ({ ...p, battery_pct: 140 }))];
    const whole = batch(range('d-z', 15, 24));
    await send([batch(invalid), whole.subarray(0, 20)]);
    await sink.catalog.closeWindow();
    report = await catalogJson();
    // 15 rejected points and 1 rejected batch, over the 325 points of decodable batches and that batch.
    expect(report.quality).toMatchObject({ rows: 290, rejected_points: 15, undecodable_batches: 1, duplicates_dropped: 20, late_points: 30 });
    expect(report.quality['error_rate']).toBeCloseTo(16 / 326, 10);
    expect(errorRate()).toMatchObject({ met: false });
    expect(errorRate().actual).toBeCloseTo(16 / 326, 10);

    // An agent reports 7 points its full spool dropped: a known loss, no longer missing.
    await send([batch(range('d-x', 300, 309), 7)]);
    await sink.catalog.closeWindow();
    report = await catalogJson();
    expect(report.quality).toMatchObject({ rows: 300, missing_entries: 43, reported_lost: 7 });

    // A gap younger than the settle time is in flight, not missing.
    const storage = await lake.open();
    try {
      const commits = await commitRecords(storage);
      expect(qualityOf(ledgerOf(commits), { toMs: Date.now(), settleMs: 3_600_000 })).toMatchObject({ missing_entries: 0, in_flight: 50 });

      // The sink serves the same status it wrote, and the quality windows are there for any engine.
      const latest = (await (await fetch(`${sink.http}/quality/latest`)).json()) as { quality: { rows: number }; slos: unknown[] };
      expect(latest.quality.rows).toBe(300);
      expect(latest.slos).toHaveLength(6);
      const windows = await lake.query('SELECT sum(rows)::INTEGER AS rows, sum(rejected_points)::INTEGER AS rejected, sum(late_points)::INTEGER AS late FROM quality');
      expect(windows).toEqual([{ rows: 300, rejected: 15, late: 30 }]);

      // Every document and event validates against the official schemas.
      const validators = loadValidators();
      const contract = parseYaml((await storage.read(CONTRACT_KEY))!.toString('utf8')) as object;
      const product = parseYaml((await storage.read(PRODUCT_KEY))!.toString('utf8')) as object;
      const events = await Promise.all(
        (await storage.list(`${LINEAGE_PREFIX}/`)).map(async (o) => JSON.parse((await storage.read(o.key))!.toString('utf8')) as { eventType: string }),
      );
      expect(events.map((e) => e.eventType).sort()).toEqual(['RUNNING', 'RUNNING', 'RUNNING', 'START']);
      expect((await storage.list(`${QUALITY_PREFIX}/`)).length).toBe(3);
      expect(await storage.read(SLO_STATUS_KEY)).not.toBeNull();
      expect(await storage.read(SAMPLE_KEY)).not.toBeNull();
      if (validators) {
        expect(validators.contract(contract)).toEqual([]);
        expect(validators.product(product)).toEqual([]);
        for (const event of events) expect(validators.runEvent(event)).toEqual([]);
      } else {
        console.warn('skipped schema validation of the catalog: ../shared/schemas is not there');
      }
    } finally {
      await storage.close();
    }
  });

  it('resumes the product’s ledger after a restart from the state its last window saved, and gives the numbers every record gives', async () => {
    await send([batch(range('d-r', 0, 99))]);
    await sink.catalog.closeWindow();
    await send([batch(range('d-r', 150, 199)), batch(range('d-q', 0, 4).map((p) => ({ ...p, lat: 91 })))]);
    // The last window saves the ledger as the sink stops.
    await sink.close();
    const lines: Array<Record<string, unknown>> = [];
    const log = pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) });
    sink = await startSink(sinkConfig({ broker: broker.url, ...lake.config, flushInterval: 600, lateness: 0, missingAfter: 0, qualityWindow: 3600 }), log);
    await send([batch(range('d-r', 200, 209))]);
    await sink.catalog.closeWindow();
    const resumed = lines.find((l) => l['msg'] === 'quality ledger resumed from a saved state');
    // Two commits before the stop, both in the state: the new run read none of their records.
    expect(Object.values(resumed?.['commits'] as Record<string, number>)).toEqual([2]);
    const status = sink.catalog.status()!.quality;
    expect(status).toMatchObject({ rows: 160, received_points: 165, missing_entries: 50, rejected_points: 5 });
    // A reader of every record, the saved states hidden from it, gives the same numbers.
    const storage = await lake.open();
    try {
      const noStates: LakeStorage = Object.assign(Object.create(storage) as LakeStorage, {
        list: (prefix: string, range?: KeyRange) => (prefix.startsWith(QUALITY_STATE_PREFIX) ? Promise.resolve([]) : storage.list(prefix, range)),
      });
      const every = await catalogReport(noStates, (key, err) => expect.fail(`${key}: ${err.message}`), Date.parse(status.to));
      const exact = (q: typeof status) => ({ rows: q.rows, received_points: q.received_points, missing_entries: q.missing_entries, in_flight: q.in_flight, rejected_points: q.rejected_points, duplicates_dropped: q.duplicates_dropped, drones: q.drones, partitions: q.partitions, latency_p99_ms: q.latency_p99_ms });
      expect(exact(every.quality)).toEqual(exact(status));
    } finally {
      await storage.close();
    }
  });

  it('serves, from a catalog reader that reads each commit record once, the report a reader of every record computes', async () => {
    const storage = await lake.open();
    try {
      const onBad = (key: string, err: Error) => {
        throw new Error(`${key}: ${err.message}`);
      };
      const docs = catalogDocuments(storage, onBad);
      const same = async () => {
        const nowMs = Date.now();
        const served = await docs.report(nowMs);
        const fresh = await catalogReport(storage, onBad, nowMs);
        expect({ quality: served.quality, slos: served.slos, throughput: served.throughput }).toEqual({ quality: fresh.quality, slos: fresh.slos, throughput: fresh.throughput });
        expect(docs.quarantineKeys()).toEqual((await commitRecords(storage)).flatMap((c) => c.quarantine));
        return served;
      };
      await send([batch(range('d-x', 0, 99))]);
      await sink.catalog.closeWindow();
      expect((await same()).quality).toMatchObject({ rows: 100, missing_entries: 0 });
      // More commits: a gap, invalid points and a resend, read by the same reader.
      await send([batch(range('d-x', 150, 199)), batch(range('d-z', 0, 4).map((p) => ({ ...p, lat: 91 }))), batch(range('d-x', 0, 9))]);
      await sink.catalog.closeWindow();
      expect((await same()).quality).toMatchObject({ rows: 150, missing_entries: 50, rejected_points: 5, duplicates_dropped: 10 });
      // Nothing new: the reader's numbers move with the time alone.
      await same();
    } finally {
      await storage.close();
    }
  });
});
