import { readdir, readFile, truncate, writeFile, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { once } from 'node:events';
import { DuckDBInstance } from '@duckdb/node-api';
import avroJs from 'avro-js/lib/files.js';
import { icebergRead } from 'icebird';
import mqtt from 'mqtt';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { startBroker, type Broker } from '../broker/server';
import { decodeAck, encodeBatch } from '../proto/codec';
import { nowMicros } from '../proto/time';
import { ackTopic, telemetryTopic } from '../proto/topics';
import type { TelemetryPoint } from '../proto/types';
import { commitRecord, emptyCommitCounts, LEGACY_MANIFEST_PREFIX, STATE_EVERY } from '../sink/checkpoint';
import { TELEMETRY_GLOB, TELEMETRY_PREFIX } from '../sink/layout';
import { sinkConfig } from '../sink/options';
import { storageConfig } from '../sink/storage-options';
import { queryLake } from '../sink/query';
import { RangeSet } from '../sink/ranges';
import { startSink, type Sink } from '../sink/sink';
import { localStorage } from '../sink/storage';
import { loadTable, METADATA_PREFIX } from '../sink/table/metadata';
import { TABLE_FIELDS } from '../sink/table/schema';
import { awayFromHourBoundary, cli, cruisePoint, quietLog, tempDir, waitFor } from './helpers';
import { fileFetch, tableMetadata } from './table';
import { testLake } from './lakes';
import pino from 'pino';
import { writeHistory } from '../bench/history';

const HOUR_MS = 3_600_000;
const point = cruisePoint;

const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!().catch(() => undefined);
  vi.unstubAllGlobals();
});

/** A broker, a sink on a local lake that commits only when told, and a gateway connection that collects acks. */
async function pipeline() {
  const tmp = await tempDir('iceberg');
  cleanups.push(tmp.remove);
  const lake = path.join(tmp.dir, 'lake');
  const broker: Broker = await startBroker({ host: '127.0.0.1', port: 0 }, quietLog);
  cleanups.push(() => broker.close());
  const sink: Sink = await startSink(
    sinkConfig({ broker: broker.url, lake, flushInterval: 600, lateness: 0, compactInterval: 0, compactGrace: 600 }),
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
      Number((await queryLake(storageConfig({ lake }), 'SELECT count(*) FROM telemetry', () => undefined, travel)).rows[0]![0]);
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

describe('two writers on one table', () => {
  it('land every commit of two shards committing at once, rebasing the loser of each race, and count the retries', async () => {
    const tmp = await tempDir('iceberg-race');
    cleanups.push(tmp.remove);
    const lake = path.join(tmp.dir, 'lake');
    const broker = await startBroker({ host: '127.0.0.1', port: 0 }, quietLog);
    cleanups.push(() => broker.close());
    const sinks: Sink[] = [];
    for (const shard of ['0/2', '1/2']) {
      const sink = await startSink(sinkConfig({ broker: broker.url, lake, shard, flushInterval: 0.05, compactInterval: 0, http: '127.0.0.1:0' }), quietLog);
      sinks.push(sink);
      cleanups.push(() => sink.close());
    }
    const ids = ['gw-race-a', 'gw-race-b', 'gw-race-c', 'gw-race-d'];
    const acked = new Map(ids.map((id) => [id, new Set<number>()]));
    const clients = await Promise.all(
      ids.map(async (id) => {
        const c = await mqtt.connectAsync(broker.url, { clientId: id });
        cleanups.push(() => c.endAsync());
        c.on('message', (_t, payload) => decodeAck(payload).batch_seqs.forEach((s) => acked.get(id)!.add(s)));
        await c.subscribeAsync(ackTopic(id), { qos: 1 });
        return c;
      }),
    );
    const retries = () => sinks.reduce((n, s) => n + s.stats().tableCommitRetries, 0);
    // Batches until a race happened, bounded in count and time; each batch is its own commit or nearly.
    let sent = 0;
    const deadline = Date.now() + 20_000;
    while ((retries() === 0 || sent < 20) && sent < 400 && Date.now() < deadline) {
      sent++;
      await Promise.all(
        clients.map((c, i) =>
          c.publishAsync(telemetryTopic(ids[i]!), Buffer.from(encodeBatch({ gateway_id: ids[i]!, batch_seq: sent, sent_at: nowMicros(), points: Array.from({ length: 10 }, (_, p) => point(`${ids[i]}-d`, sent * 10 + p, nowMicros() - 1_000_000)) })), { qos: 1 }),
        ),
      );
      await waitFor(`batch ${sent} acked by every gateway`, () => [...acked.values()].every((s) => s.has(sent)));
    }
    expect(retries()).toBeGreaterThan(0);
    // Every commit landed: the table keeps each append snapshot, and holds every acked row once.
    const storage = await localStorage(lake, 'drones/_staging/test');
    const metadata = await tableMetadata(storage);
    const appends = metadata.snapshots.filter((s) => s.summary.operation === 'append').length;
    expect(appends).toBe(sinks.reduce((n, s) => n + s.stats().tableCommits, 0));
    const rows = await icebirdRows(`file://${lake}/${TELEMETRY_PREFIX}`);
    expect(rows).toHaveLength(ids.length * sent * 10);
    expect(keysOf(rows).size).toBe(ids.length * sent * 10);
    // The retries are a metric.
    const metrics = await Promise.all(sinks.map(async (s) => (await fetch(`${s.http}/metrics`)).text()));
    const counted = metrics.map((m) => Number(/^dronelake_sink_table_commit_retries_total (\d+)/m.exec(m)?.[1]));
    expect(counted.reduce((a, b) => a + b, 0)).toBe(retries());
  }, 60_000);
});

describe('a sink starting on a long history', () => {
  it('reads the same number of objects with 138 and with 3,082 commits behind it, and still dedupes against all of them', async () => {
    const reads: number[] = [];
    for (const commits of [STATE_EVERY * 2 + 10, STATE_EVERY * 48 + 10]) {
      const tmp = await tempDir('iceberg-history');
      cleanups.push(tmp.remove);
      const lake = path.join(tmp.dir, 'lake');
      await writeHistory(lake, commits);
      const broker = await startBroker({ host: '127.0.0.1', port: 0 }, quietLog);
      const sink = await startSink(sinkConfig({ broker: broker.url, lake, flushInterval: 600, compactInterval: 0 }), quietLog);
      reads.push(sink.stats().startupReads);
      // It takes messages: a batch and points of the history come back as duplicates, new ones are stored.
      const client = await mqtt.connectAsync(broker.url, { clientId: 'gw-hist' });
      const acked = new Set<number>();
      client.on('message', (_t, payload) => decodeAck(payload).batch_seqs.forEach((s) => acked.add(s)));
      await client.subscribeAsync(ackTopic('gw-hist'), { qos: 1 });
      const send = (seq: number, pts: TelemetryPoint[]) => client.publishAsync(telemetryTopic('gw-hist'), Buffer.from(encodeBatch({ gateway_id: 'gw-hist', batch_seq: seq, sent_at: nowMicros(), stream: 7, points: pts })), { qos: 1 });
      await send(1, [point('d-hist', 10, nowMicros())]);
      await send(commits + 1, [point('d-hist', 15, nowMicros()), point('d-hist', commits * 10 + 100, nowMicros())]);
      await waitFor('both batches taken', () => sink.stats().batchesReceived === 2 || undefined);
      await sink.flush();
      await waitFor('the new batch acked', () => acked.has(commits + 1));
      expect(sink.stats()).toMatchObject({ batchesDuplicate: 1, pointsDuplicate: 1, pointsCommitted: 1 });
      await client.endAsync();
      await sink.close();
      await broker.close();
    }
    expect(reads[0]).toBeGreaterThan(0);
    expect(reads[1]).toBe(reads[0]);
  }, 120_000);
});

describe('damaged table metadata', () => {
  it('gives one clear line and a non-zero exit for a truncated metadata file or manifest list, and never starts a sink on it', async () => {
    const { lake, commitBatch, broker } = await pipeline();
    await commitBatch(1, Array.from({ length: 20 }, (_, i) => point('d-bad', i, nowMicros())));
    const storage = await localStorage(lake, 'drones/_staging/test');
    const table = (await loadTable(storage))!;
    const current = path.join(lake, METADATA_PREFIX, `v${table.version}.metadata.json`);
    const good = await readFile(current);

    // A manifest list cut short.
    const list = (await tableMetadata(storage)).snapshots.at(-1)!['manifest-list'].replace('file://', '');
    const listBytes = await readFile(list);
    await truncate(list, 40);
    let run = await cli(['query', '--lake', lake, 'SELECT count(*) FROM telemetry']);
    expect(run.code).toBe(1);
    expect(run.stderr.trim().split('\n')).toHaveLength(1);
    expect(run.stderr).toMatch(/query failed: .*snap-.*\.avro: not a readable Avro file/);
    await writeFile(list, listBytes);

    // The current metadata version cut short.
    await truncate(current, good.length - 30);
    run = await cli(['query', '--lake', lake, 'SELECT count(*) FROM telemetry']);
    expect(run.code).toBe(1);
    expect(run.stderr.trim().split('\n')).toHaveLength(1);
    expect(run.stderr).toContain(`v${table.version}.metadata.json: not valid JSON`);
    expect(run.stderr).toContain('damaged or truncated');
    await expect(
      startSink(sinkConfig({ broker: broker.url, lake, clientId: 'second' }), quietLog),
    ).rejects.toThrow(/metadata\.json: not valid JSON .* damaged or truncated/);

    // An id no JavaScript number holds exactly is refused, not rounded.
    await writeFile(current, good.toString().replace(/"current-snapshot-id": \d+/, '"current-snapshot-id": 9223372036854775807'));
    run = await cli(['query', '--lake', lake, 'SELECT count(*) FROM telemetry']);
    expect(run.code).toBe(1);
    expect(run.stderr).toContain('9223372036854775807 is beyond 2^53');
    await writeFile(current, good);
    run = await cli(['query', '--lake', lake, '--format', 'csv', 'SELECT count(*) AS n FROM telemetry']);
    expect(run.stdout).toBe('n\n20\n');
  }, 60_000);
});

describe('a lake written with the JSON manifest', () => {
  it('is adopted by `dronelake migrate` with no row lost or doubled, compactions included, and only once', async () => {
    const tmp = await tempDir('iceberg-migrate');
    cleanups.push(tmp.remove);
    const lake = path.join(tmp.dir, 'lake');
    const hour = Math.floor(Date.now() / HOUR_MS) - 5;
    const dir = path.join(lake, TELEMETRY_PREFIX, `date=${new Date(hour * HOUR_MS).toISOString().slice(0, 10)}/hour=${new Date(hour * HOUR_MS).toISOString().slice(11, 13)}`);
    await mkdir(dir, { recursive: true });
    await mkdir(path.join(lake, LEGACY_MANIFEST_PREFIX), { recursive: true });
    const db = await DuckDBInstance.create(':memory:');
    const conn = await db.connect();
    const tsUs = hour * HOUR_MS * 1000;
    // Three commits of 100 rows (seq as UBIGINT, as then), and a compaction of the first two into one file.
    const write = async (name: string, from: number, to: number) =>
      conn.run(`COPY (SELECT 'd-mig' AS drone_id, s::UBIGINT AS seq, make_timestamptz(${tsUs} + s) AS ts, 47.0 AS lat, 'gw-mig' AS gateway_id, make_timestamptz(${tsUs}) AS ingested_at FROM range(${from}, ${to}) t(s)) TO '${path.join(dir, name)}' (FORMAT parquet)`);
    const key = (name: string) => path.relative(lake, path.join(dir, name));
    const file = (name: string, from: number, to: number) => ({ key: key(name), rows: to - from, bytes: 1, min_ts: tsUs + from, max_ts: tsUs + to - 1 });
    for (let n = 1; n <= 3; n++) {
      await write(`part-old-${n}.parquet`, (n - 1) * 100, n * 100);
      const record = { ...commitRecord('old-sink', n, [file(`part-old-${n}.parquet`, (n - 1) * 100, n * 100)], [], new Map([['gw-mig', [n]]]), new Map([['d-mig', new Map([[0, (() => { const r = new RangeSet(); for (let s = (n - 1) * 100; s < n * 100; s++) r.add(s); return r; })()]])]]), emptyCommitCounts()), committed_at: new Date(Date.now() - (4 - n) * 60_000).toISOString() };
      await writeFile(path.join(lake, LEGACY_MANIFEST_PREFIX, `commit-old-sink-${String(n).padStart(10, '0')}.json`), JSON.stringify(record));
    }
    await write('compact-abc.parquet', 0, 200);
    await writeFile(
      path.join(lake, LEGACY_MANIFEST_PREFIX, 'compaction-abc.json'),
      JSON.stringify({ version: 1, kind: 'compaction', id: 'abc', committed_at: new Date().toISOString(), partition: path.relative(lake, dir), inputs: [key('part-old-1.parquet'), key('part-old-2.parquet')], outputs: [file('compact-abc.parquet', 0, 200)] }),
    );
    conn.closeSync();
    db.closeSync();

    const run = await cli(['migrate', '--lake', lake]);
    expect(run.code).toBe(0);
    expect(JSON.parse(run.stdout)).toEqual({ records: 4, files: 2, rows: 300, writers: 1 });
    expect(await readdir(path.join(lake, LEGACY_MANIFEST_PREFIX))).toEqual([]);
    const rows = await icebirdRows(`file://${lake}/${TELEMETRY_PREFIX}`);
    expect(rows).toHaveLength(300);
    expect(keysOf(rows).size).toBe(300);
    const counted = await cli(['query', '--lake', lake, '--format', 'csv', 'SELECT count(*) AS n, count(DISTINCT seq) AS k FROM telemetry']);
    expect(counted.stdout).toBe('n,k\n300,300\n');
    const again = await cli(['migrate', '--lake', lake]);
    expect(JSON.parse(again.stdout)).toMatchObject({ records: 0, note: 'nothing to adopt: the lake has no JSON manifest' });
  }, 60_000);
});

describe('a store that ignores If-None-Match', () => {
  it('is named in one line and in /health, and takes one writer only: a shard, or a second sink while the first commits, is refused', async () => {
    const lake = await testLake('s3');
    cleanups.push(() => lake.remove());
    const broker = await startBroker({ host: '127.0.0.1', port: 0 }, quietLog);
    cleanups.push(() => broker.close());
    const lines: string[] = [];
    const log = pino({ level: 'warn' }, { write: (line: string) => lines.push(line) });
    const sink = await startSink(sinkConfig({ broker: broker.url, ...lake.config, flushInterval: 600, compactInterval: 0, http: '127.0.0.1:0' }), log);
    cleanups.push(() => sink.close());
    expect(lines.filter((l) => l.includes('does not refuse a second create'))).toHaveLength(1);
    expect(((await (await fetch(`${sink.http}/health`)).json()) as { create_only: boolean }).create_only).toBe(false);
    await expect(startSink(sinkConfig({ broker: broker.url, ...lake.config, shard: '0/2' }), quietLog)).rejects.toThrow(
      /the store ignores If-None-Match, so shards would overwrite each other's table commits/,
    );
    // Once the first has committed, a second writer under another name is refused too.
    const client = await mqtt.connectAsync(broker.url, { clientId: 'gw-probe' });
    cleanups.push(() => client.endAsync());
    await client.publishAsync(telemetryTopic('gw-probe'), Buffer.from(encodeBatch({ gateway_id: 'gw-probe', batch_seq: 1, sent_at: nowMicros(), points: [point('d-probe', 1, nowMicros())] })), { qos: 1 });
    await waitFor('the batch taken', () => sink.stats().batchesReceived === 1 || undefined);
    await sink.flush();
    expect(sink.stats().tableCommits).toBe(1);
    await expect(startSink(sinkConfig({ broker: broker.url, ...lake.config, clientId: 'second-sink' }), quietLog)).rejects.toThrow(
      /dronelake-sink committed to the table \d+ s ago, and the store ignores If-None-Match/,
    );
  }, 60_000);
});
