import { readdir, readFile, truncate, writeFile, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { once } from 'node:events';
import { DuckDBInstance } from '@duckdb/node-api';
import avroJs from 'avro-js/lib/files.js';
import { icebergRead } from 'icebird';
import mqtt from 'mqtt';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { startBroker, type Broker } from '../broker/server';
import { parseOptions } from '../deploy/options';
import { decodeAck, encodeBatch } from '../proto/codec';
import { nowMicros } from '../proto/time';
import { ackTopic, telemetryTopic } from '../proto/topics';
import { FlightState, GpsFix, type TelemetryPoint } from '../proto/types';
import { checkpointKey, commitRecord, emptyCommitCounts, LEGACY_MANIFEST_PREFIX, positionValue, STATE_EVERY, stateKey, stateRecord, writerProperty } from '../sink/checkpoint';
import { BatchLedger, PointLedger, type PointKeys } from '../sink/dedupe';
import { TELEMETRY_GLOB, TELEMETRY_PREFIX } from '../sink/layout';
import { sinkOptions } from '../sink/options';
import { queryLake } from '../sink/query';
import { RangeSet } from '../sink/ranges';
import { startSink, type Sink } from '../sink/sink';
import { localStorage } from '../sink/storage';
import { newManifestCache } from '../sink/table/manifests';
import { loadTable, METADATA_PREFIX } from '../sink/table/metadata';
import { TABLE_FIELDS } from '../sink/table/schema';
import { tableWriter } from '../sink/table/transaction';
import { awayFromHourBoundary, cli, quietLog, tempDir, waitFor } from './helpers';
import { fileFetch, tableMetadata } from './table';

const HOUR_MS = 3_600_000;
const point = (drone: string, seq: number, tsUs: number): TelemetryPoint => ({
  drone_id: drone,
  seq,
  ts: tsUs,
  lat: 47 + seq / 1e5,
  lon: 8,
  alt_m: 400,
  battery_pct: 70,
  gps_fix: GpsFix.fix3d,
  satellites: 10,
  flight_state: FlightState.cruise,
  armed: true,
});

const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!().catch(() => undefined);
  vi.unstubAllGlobals();
});

/** A broker, a sink on a local lake that commits only when told, and a gateway connection that collects acks. */
async function pipeline(extra: string[] = []) {
  const tmp = await tempDir('iceberg');
  cleanups.push(tmp.remove);
  const lake = path.join(tmp.dir, 'lake');
  const broker: Broker = await startBroker({ host: '127.0.0.1', port: 0 }, quietLog);
  cleanups.push(() => broker.close());
  const sink: Sink = await startSink(
    parseOptions(sinkOptions, ['--broker', broker.url, '--lake', lake, '--flush-interval', '600', '--lateness', '0', '--compact-interval', '0', '--compact-grace', '600', ...extra]).options,
    quietLog,
  );
  cleanups.push(() => sink.close());
  const gw = 'gw-ice';
  const gateway = await mqtt.connectAsync(broker.url, { clientId: gw });
  cleanups.push(() => gateway.endAsync());
  const acked = new Set<number>();
  gateway.on('message', (_t, payload) => decodeAck(payload).batch_seqs.forEach((s) => acked.add(s)));
  await gateway.subscribeAsync(ackTopic(gw), { qos: 1 });
  /** Sends one batch and commits it on its own; resolves when it is acked. */
  const commitBatch = async (seq: number, points: TelemetryPoint[]) => {
    const received = sink.stats().batchesReceived;
    await gateway.publishAsync(telemetryTopic(gw), Buffer.from(encodeBatch({ gateway_id: gw, batch_seq: seq, sent_at: nowMicros(), points })), { qos: 1 });
    await waitFor(`batch ${seq} taken`, () => sink.stats().batchesReceived > received || undefined);
    await sink.flush();
    await waitFor(`the ack of batch ${seq}`, () => acked.has(seq));
  };
  return { lake, broker, sink, commitBatch, table: `file://${lake}/${TELEMETRY_PREFIX}` };
}

/** Rows an independent Iceberg reader (icebird, over `fetch`) finds in the table, or in one metadata version of it. */
async function icebirdRows(tableUrl: string, version?: number): Promise<Array<Record<string, unknown>>> {
  vi.stubGlobal('fetch', fileFetch(fetch));
  return icebergRead({ tableUrl, ...(version !== undefined && { metadataFileName: `v${version}.metadata.json` }) });
}

const keysOf = (rows: Array<Record<string, unknown>>) => new Set(rows.map((r) => `${String(r['drone_id'])}/${String(r['stream'])}/${String(r['seq'])}`));

describe('the lake as an Iceberg table', () => {
  it('is read by an independent reader with exactly the acknowledged rows: after commits, through a compaction, and back in time', async () => {
    await awayFromHourBoundary();
    const { lake, sink, commitBatch, table } = await pipeline();
    const nowHour = Math.floor(Date.now() / HOUR_MS) * HOUR_MS;
    await commitBatch(1, Array.from({ length: 40 }, (_, i) => point('d-live', i, Date.now() * 1000)));
    const old = (seq: number) => point(`d-old-${seq % 3}`, seq, (nowHour - 3 * HOUR_MS + 60_000 + seq) * 1000);
    await commitBatch(2, Array.from({ length: 250 }, (_, i) => old(i)));
    const storage = await localStorage(lake, 'drones/_staging/test');
    const afterTwo = (await loadTable(storage))!;
    const twoCommits = { version: afterTwo.version, snapshotId: afterTwo.metadata['current-snapshot-id']!, at: Date.now() };
    for (let b = 0; b < 3; b++) await commitBatch(3 + b, Array.from({ length: 250 }, (_, i) => old(250 * (b + 1) + i)));

    const rows = await icebirdRows(table);
    expect(rows).toHaveLength(1040);
    expect(keysOf(rows).size).toBe(1040);

    // A compaction swaps the old hour's four files for one: the reader still counts each row
    // once, while a plain glob sees inputs and output together until the inputs expire.
    await sink.compact();
    expect(sink.stats().compactions).toBe(1);
    const after = await icebirdRows(table);
    expect(after).toHaveLength(1040);
    expect(keysOf(after).size).toBe(1040);
    const db = await DuckDBInstance.create(':memory:');
    const conn = await db.connect();
    const glob = (await conn.runAndReadAll(`SELECT count(*)::INTEGER FROM read_parquet('${lake}/${TELEMETRY_GLOB}')`)).getRows()[0]![0];
    conn.closeSync();
    db.closeSync();
    expect(glob).toBe(1040 + 1000);

    // Time travel: the version after the second commit, as icebird reads it and as `dronelake query` does.
    expect(await icebirdRows(table, twoCommits.version)).toHaveLength(290);
    const count = async (travel: { snapshotId?: number; asOfMs?: number }) =>
      Number((await queryLake({ ...parseOptions(sinkOptions, ['--lake', lake]).options }, 'SELECT count(*) FROM telemetry', () => undefined, travel)).rows[0]![0]);
    expect(await count({ snapshotId: twoCommits.snapshotId })).toBe(290);
    expect(await count({ asOfMs: twoCommits.at })).toBe(290);
    expect(await count({})).toBe(1040);
    const bogus = await cli(['query', '--lake', lake, '--snapshot', '123', 'SELECT 1']);
    expect(bogus.code).toBe(1);
    expect(bogus.stderr).toMatch(/^dronelake: query failed: the table has no snapshot 123 \(expired, or never existed\)/);
    const listed = await cli(['catalog', '--lake', lake, '--json']);
    const report = JSON.parse(listed.stdout) as { table: { snapshots: Array<{ id: number; operation: string }> } };
    expect(report.table.snapshots[0]!.operation).toBe('replace');
    expect(report.table.snapshots.map((s) => s.id)).toContain(twoCommits.snapshotId);
  }, 120_000);

  it('writes manifests and manifest lists that a second Avro decoder reads, with the spec\'s field ids, and Parquet files that carry the schema\'s ids', async () => {
    const { lake, sink, commitBatch } = await pipeline();
    const nowHour = Math.floor(Date.now() / HOUR_MS) * HOUR_MS;
    for (let b = 0; b < 3; b++) await commitBatch(1 + b, Array.from({ length: 100 }, (_, i) => point('d-avro', b * 100 + i, (nowHour - 2 * HOUR_MS + b * 100 + i) * 1000)));
    await sink.compact();
    const dir = path.join(lake, METADATA_PREFIX);
    const avroFiles = (await readdir(dir)).filter((f) => f.endsWith('.avro'));
    // The spec's ids (Iceberg table spec, "Manifests" and "Manifest Lists", format v2).
    const entryIds = { status: 0, snapshot_id: 1, sequence_number: 3, file_sequence_number: 4, data_file: 2 };
    const dataFileIds = { content: 134, file_path: 100, file_format: 101, partition: 102, record_count: 103, file_size_in_bytes: 104, column_sizes: 108, value_counts: 109, null_value_counts: 110, nan_value_counts: 137, lower_bounds: 125, upper_bounds: 128, sort_order_id: 140 };
    const listIds = { manifest_path: 500, manifest_length: 501, partition_spec_id: 502, content: 517, sequence_number: 515, min_sequence_number: 516, added_snapshot_id: 503, added_files_count: 504, existing_files_count: 505, deleted_files_count: 506, added_rows_count: 512, existing_rows_count: 513, deleted_rows_count: 514, partitions: 507 };
    const requiredEntry = ['status', 'data_file'];
    const requiredDataFile = ['content', 'file_path', 'file_format', 'partition', 'record_count', 'file_size_in_bytes'];
    const requiredList = Object.keys(listIds).filter((k) => k !== 'partitions');
    type Field = { name: string; 'field-id'?: number; type: unknown };
    const ids = (fields: Field[]) => Object.fromEntries(fields.map((f) => [f.name, f['field-id']]));
    let manifests = 0;
    let lists = 0;
    for (const file of avroFiles) {
      const full = path.join(dir, file);
      const { meta } = avroJs.extractFileHeader(full)!;
      // It gives its own header keys parsed, and the writer's as bytes.
      const text = (key: string) => {
        const v = meta[key];
        return Buffer.isBuffer(v) ? v.toString() : typeof v === 'string' ? v : JSON.stringify(v);
      };
      const schema = JSON.parse(text('avro.schema')) as { name: string; fields: Field[] };
      const records: Array<Record<string, unknown>> = [];
      const decoder = avroJs.createFileDecoder(full);
      decoder.on('data', (r: Record<string, unknown>) => records.push(r));
      await once(decoder, 'end');
      expect(records.length).toBeGreaterThan(0);
      if (file.startsWith('snap-')) {
        lists++;
        expect(ids(schema.fields)).toMatchObject(listIds);
        expect(text('format-version')).toBe('2');
        for (const r of records) for (const k of requiredList) expect(r[k], `${file} ${k}`).not.toBeNull();
      } else {
        manifests++;
        expect(ids(schema.fields)).toMatchObject(entryIds);
        const dataFile = schema.fields.find((f) => f.name === 'data_file')!.type as { fields: Field[] };
        expect(ids(dataFile.fields)).toMatchObject(dataFileIds);
        expect(Object.fromEntries(['format-version', 'content', 'partition-spec-id'].map((k) => [k, text(k)]))).toEqual({ 'format-version': '2', content: 'data', 'partition-spec-id': '0' });
        expect(JSON.parse(text('schema'))).toMatchObject({ type: 'struct', fields: TABLE_FIELDS });
        for (const r of records) {
          for (const k of requiredEntry) expect(r[k], `${file} ${k}`).not.toBeNull();
          const d = r['data_file'] as Record<string, unknown>;
          for (const k of requiredDataFile) expect(d[k], `${file} data_file.${k}`).not.toBeNull();
          expect(String(d['file_path'])).toMatch(/^file:\/\/.*\.parquet$/);
        }
      }
    }
    expect(manifests).toBeGreaterThanOrEqual(4);
    expect(lists).toBe(4);

    // Each Parquet column carries the table's field id for it.
    const live = (await tableMetadata(await localStorage(lake, 'drones/_staging/test'))).snapshots.length;
    expect(live).toBe(4);
    const db = await DuckDBInstance.create(':memory:');
    const conn = await db.connect();
    const fieldIds = (await conn.runAndReadAll(`SELECT DISTINCT name, field_id::INTEGER FROM parquet_schema('${lake}/${TELEMETRY_GLOB}') WHERE field_id IS NOT NULL ORDER BY 2`)).getRows();
    conn.closeSync();
    db.closeSync();
    expect(fieldIds).toEqual(TABLE_FIELDS.map((f) => [f.name, f.id]).sort((a, b) => Number(a[1]) - Number(b[1])));
  }, 60_000);
});
