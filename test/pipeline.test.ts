import { readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { asyncBufferFromFile, parquetReadObjects } from 'hyparquet';
import { compressors } from 'hyparquet-compressors';
import mqtt from 'mqtt';
import { afterAll, describe, expect, it } from 'vitest';
import { decodeColumnar } from '../proto/columnar';
import { FLIGHT_STATE_NAMES, GPS_FIX_NAMES } from '../proto/schema';
import { telemetryTopicV2 } from '../proto/topics';
import type { TelemetryPoint } from '../proto/types';
import { SAMPLE_KEY } from '../sink/layout';
import { duck, lakeGlob, logLines, observedBatch, runCli, tempDir, TELEMETRY_FILTERS, waitFor, type RunningProcess } from './helpers';

async function listParquet(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries.filter((e) => e.isFile() && e.name.endsWith('.parquet')).map((e) => path.join(e.parentPath, e.name));
}

function logged(p: RunningProcess, msg: string): Record<string, unknown> | undefined {
  return logLines(p.stderr()).find((l) => l.msg === msg);
}

describe('agent -> broker -> sink -> Parquet, as separate processes over TCP', () => {
  const procs: RunningProcess[] = [];
  const cleanups: Array<() => Promise<void>> = [];
  afterAll(async () => {
    for (const p of procs) p.child.kill('SIGKILL');
    for (const c of cleanups) await c();
  });

  it('stores exactly the points the agent generated, readable by DuckDB and hyparquet', async () => {
    const { dir: lake, remove } = await tempDir('pipeline');
    const beside = (name: string) => path.join(lake, '..', `${path.basename(lake)}-${name}`);
    cleanups.push(remove, () => rm(beside('broker'), { recursive: true, force: true }), () => rm(beside('spool'), { recursive: true, force: true }));

    // The broker's default: sessions on disk, here beside the lake rather than in the working directory.
    const broker = runCli(['broker', '--port', '0', '--data-dir', beside('broker'), '--log-level', 'info']);
    procs.push(broker);
    const url = (await waitFor('broker to listen', () => logged(broker, 'broker listening')))['url'] as string;

    const sink = runCli(['sink', '--broker', url, '--lake', lake, '--flush-interval', '1', '--log-level', 'info']);
    procs.push(sink);
    await waitFor('sink to start', () => logged(sink, 'sink started'));

    // A passive observer sees every batch on the wire: that is "what was sent".
    const sent = new Map<number, TelemetryPoint[]>();
    const observer = await mqtt.connectAsync(url, { clientId: 'test-observer' });
    cleanups.push(() => observer.endAsync());
    observer.on('message', (topic, payload) => {
      expect(topic).toBe(telemetryTopicV2('gw-it'));
      sent.set(decodeColumnar(payload).batch_seq, observedBatch(topic, payload).points);
    });
    await observer.subscribeAsync(TELEMETRY_FILTERS);

    const agent = runCli(['agent', '--broker', url, '--gateway', 'gw-it', '--spool', beside('spool'), '--simulate', '20', '--hz', '25', '--linger', '0.2', '--log-level', 'info']);
    procs.push(agent);
    const sentPoints = () => [...sent.values()].reduce((n, pts) => n + pts.length, 0);
    await waitFor('3000 points on the wire', () => sentPoints() >= 3000, 30_000);

    agent.child.kill('SIGTERM');
    const agentCode = await agent.exited;
    expect(agentCode, agent.stderr()).toBe(0);
    const stopped = logged(agent, 'agent stopped')!;
    const generated = stopped['pointsIn'] as number;
    expect(stopped['pending']).toBe(0);
    expect(generated).toBeGreaterThanOrEqual(3000);
    expect(sentPoints()).toBe(generated);

    sink.child.kill('SIGTERM');
    broker.child.kill('SIGTERM');
    expect(await sink.exited).toBe(0);
    expect(await broker.exited).toBe(0);

    const glob = lakeGlob(lake);
    const [counts] = await duck(
      `SELECT count(*) AS n, count(DISTINCT (drone_id, seq)) AS distinct_keys, count(DISTINCT drone_id) AS drones,
              min(date) AS first_date, bool_and(gateway_id = 'gw-it') AS gateway_ok
       FROM read_parquet('${glob}', hive_partitioning = true)`,
    );
    expect(Number(counts!['n'])).toBe(generated);
    expect(Number(counts!['distinct_keys'])).toBe(generated);
    expect(Number(counts!['drones'])).toBe(20);
    expect(counts!['gateway_ok']).toBe(true);

    // A sample of points, field by field, against what went over the wire.
    const all = [...sent.values()].flat();
    const sample = all.filter((_, i) => i % Math.floor(all.length / 60) === 0);
    const keys = sample.map((p) => `('${p.drone_id}', ${p.seq})`).join(', ');
    const rows = await duck(
      `SELECT *, epoch_us(ts) AS ts_us FROM read_parquet('${glob}', hive_partitioning = true) WHERE (drone_id, seq) IN (${keys})`,
    );
    expect(rows.length).toBe(sample.length);
    const byKey = new Map(rows.map((r) => [`${r['drone_id']}/${r['seq']}`, r]));
    for (const p of sample) {
      const r = byKey.get(`${p.drone_id}/${p.seq}`)!;
      expect(Number(r['ts_us'])).toBe(p.ts);
      for (const f of ['lat', 'lon', 'alt_m', 'rel_alt_m', 'ground_speed_mps', 'vertical_speed_mps', 'heading_deg', 'battery_pct', 'battery_voltage_v', 'satellites'] as const) {
        expect(r[f] === null ? null : Number(r[f]), f).toBe(p[f] ?? null);
      }
      expect(r['gps_fix']).toBe(p.gps_fix == null ? null : GPS_FIX_NAMES[p.gps_fix]);
      expect(r['flight_state']).toBe(p.flight_state == null ? null : FLIGHT_STATE_NAMES[p.flight_state]);
      expect(r['armed']).toBe(p.armed ?? null);
      expect(r['mission_id']).toBe(p.mission_id ?? null);
      const hour = new Date(p.ts / 1000).toISOString();
      expect(r['date']).toBe(hour.slice(0, 10));
      expect(Number(r['hour'])).toBe(Number(hour.slice(11, 13)));
    }

    // Files are sorted by (drone_id, ts), ZSTD-compressed, with ts a UTC timestamp.
    // Data files sit in their partitions; the one other Parquet file is the catalog's sample.
    const parquet = await listParquet(lake);
    const files = parquet.filter((f) => path.relative(lake, f) !== SAMPLE_KEY);
    expect(files.length).toBeGreaterThan(0);
    expect(parquet.length - files.length).toBeLessThanOrEqual(1);
    for (const f of files) expect(path.relative(lake, f)).toMatch(/^drones\/telemetry\/v1\/date=\d{4}-\d{2}-\d{2}\/hour=\d{2}\/part-[\w-]+\.parquet$/);
    const [meta] = await duck(
      `SELECT bool_and(compression = 'ZSTD') AS zstd FROM parquet_metadata('${glob}')`,
    );
    expect(meta!['zstd']).toBe(true);
    const [tsType] = await duck(`SELECT logical_type FROM parquet_schema('${files[0]}') WHERE name = 'ts'`);
    expect(String(tsType!['logical_type'])).toContain('isAdjustedToUTC=1');

    // A second, independent reader sees the same rows.
    let hyparquetRows = 0;
    const wanted = new Map(sample.map((p) => [`${p.drone_id}/${p.seq}`, p]));
    let matched = 0;
    for (const f of files) {
      const rowsInFile = (await parquetReadObjects({ file: await asyncBufferFromFile(f), compressors })) as Array<Record<string, unknown>>;
      hyparquetRows += rowsInFile.length;
      let previous = '';
      for (const r of rowsInFile) {
        const key = `${r['drone_id'] as string}\u0000${String((r['ts'] as Date).getTime()).padStart(15, '0')}`;
        expect(key >= previous).toBe(true);
        previous = key;
        const p = wanted.get(`${r['drone_id'] as string}/${String(r['seq'])}`);
        if (p) {
          matched++;
          expect(r['lat']).toBe(p.lat ?? null);
          expect(r['battery_pct']).toBe(p.battery_pct ?? null);
        }
      }
    }
    expect(hyparquetRows).toBe(generated);
    expect(matched).toBe(sample.length);
  });
});
