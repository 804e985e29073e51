import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import pino from 'pino';
import { afterEach } from 'vitest';
import { decodeBatch, encodeBatch } from '../proto/codec';
import { columnsOfPoints, decodeColumnar, encodeColumnar, pointAt } from '../proto/columnar';
import { TELEMETRY_V2_WILDCARD, TELEMETRY_WILDCARD, telemetryTopic, telemetryTopicV2, wireOfTopic, type Wire } from '../proto/topics';
import { FlightState, GpsFix, type TelemetryBatch, type TelemetryPoint } from '../proto/types';
import { decodeTelemetry, type TakenBatch } from '../sink/decode';
import { TELEMETRY_GLOB } from '../sink/layout';
import { stageDictIds, stageRows, type StageBuffer } from '../sink/stage';

export const ROOT = path.resolve(import.meta.dirname, '..');
export const CLI = path.join(ROOT, 'dist', 'cli.js');

export const quietLog = pino({ level: 'silent' });

/** A valid point of a drone in cruise, at event time `tsUs` (microseconds). */
export const cruisePoint = (drone: string, seq: number, tsUs: number): TelemetryPoint => ({
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

export async function tempDir(prefix: string): Promise<{ dir: string; remove: () => Promise<void> }> {
  const dir = await mkdtemp(path.join(tmpdir(), `dronelake-${prefix}-`));
  return { dir, remove: () => rm(dir, { recursive: true, force: true }) };
}

/** Polls `probe` until it returns a value other than undefined/false, or fails at the deadline. */
export async function waitFor<T>(what: string, probe: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A TCP port free on loopback right now, for a server that must come back on the same port. */
export async function freePort(): Promise<number> {
  const server = net.createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as net.AddressInfo;
  await new Promise((r) => server.close(r));
  return port;
}

/**
 * Waits until the next UTC hour is more than 75 s away and the last one more than 15 s
 * behind, for tests whose points, stamped a few seconds in the past, must stay in the
 * current hour (just after a boundary they fall in the hour before, which has closed).
 * At most 90 s of waiting, as the tests' hook timeouts allow.
 */
export const awayFromHourBoundary = (): Promise<true> =>
  waitFor('an hour boundary more than 75 s ahead and 15 s behind', () => {
    const intoHour = Date.now() % 3_600_000;
    return (intoHour > 15_000 && 3_600_000 - intoHour > 75_000) || undefined;
  }, 100_000);

export interface RunningProcess {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  exited: Promise<number | null>;
}

/** Starts the built CLI with `args`. */
export function runCli(args: string[], env: NodeJS.ProcessEnv = {}): RunningProcess {
  const child = spawn(process.execPath, [CLI, ...args], { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  return { child, stdout: () => out, stderr: () => err, exited };
}

/** Runs the CLI to completion. */
export async function cli(args: string[], timeoutMs = 60_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const p = runCli(args);
  const timer = setTimeout(() => p.child.kill('SIGKILL'), timeoutMs);
  const code = await p.exited;
  clearTimeout(timer);
  return { code, stdout: p.stdout(), stderr: p.stderr() };
}

/** Pino JSON log lines of a process's stderr. */
export function logLines(stderr: string): Array<Record<string, unknown>> {
  return stderr
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** Runs SQL on a fresh in-memory DuckDB and returns rows as JSON-friendly objects. */
export async function duck(sql: string): Promise<Array<Record<string, unknown>>> {
  const db = await DuckDBInstance.create(':memory:');
  const conn = await db.connect();
  try {
    await conn.run("SET TimeZone = 'UTC'");
    const reader = await conn.runAndReadAll(sql);
    return reader.getRowObjectsJson() as Array<Record<string, unknown>>;
  } finally {
    conn.closeSync();
    db.closeSync();
  }
}

export const lakeGlob = (lake: string): string => `${lake}/${TELEMETRY_GLOB}`;

/**
 * A client of the agent's ingest API that remembers which points got a 2xx, and sends
 * whatever got none again with its next request, as a well-behaved producer does.
 */
export function ingestClient(dronePrefix: string, drones: number, eventTimeMs: (seq: number) => number = () => Date.now() - 500) {
  const nextSeq = new Array<number>(drones).fill(0);
  const confirmed = new Set<string>();
  let unconfirmed: Array<{ drone_id: string; seq: number }> = [];
  return {
    confirmed,
    get pending(): number {
      return unconfirmed.length;
    },
    /** Posts the unconfirmed points and `n` new ones; the HTTP status, or 0 when the agent could not be reached. */
    async post(http: string, n: number): Promise<number> {
      const fresh = Array.from({ length: n }, (_, i) => {
        const d = i % drones;
        const seq = nextSeq[d]!++;
        return { drone_id: `${dronePrefix}${d}`, seq, ts: eventTimeMs(seq), lat: 47.5, lon: 8.5, battery_pct: 50, gps_fix: '3d' };
      });
      const points = [...unconfirmed, ...fresh];
      unconfirmed = [];
      try {
        const res = await fetch(`${http}/v1/points`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(points) });
        await res.text();
        if (res.status === 200) for (const p of points) confirmed.add(`${p.drone_id}/${p.seq}`);
        else unconfirmed = points;
        return res.status;
      } catch {
        unconfirmed = points;
        return 0;
      }
    },
  };
}

/** A small seeded PRNG (mulberry32), so a failing run can be replayed by its seed. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Both wires: v2, the agent's default, and v1, still taken from old agents and third parties. */
export const WIRES = ['v2', 'v1'] as const satisfies readonly Wire[];

/** A batch as a gateway of either wire publishes it: its topic and payload. */
export function wireMessage(wire: Wire, batch: TelemetryBatch): { topic: string; payload: Buffer } {
  if (wire === 'v1') return { topic: telemetryTopic(batch.gateway_id), payload: Buffer.from(encodeBatch(batch)) };
  const head = { gatewayId: batch.gateway_id, batchSeq: batch.batch_seq, sentAt: batch.sent_at, droppedPoints: batch.dropped_points ?? 0, stream: batch.stream ?? 0 };
  return { topic: telemetryTopicV2(batch.gateway_id), payload: Buffer.from(encodeColumnar(head, columnsOfPoints(batch.points))) };
}

/** A v2 batch of `points` as the sink takes it off its topic: encoded, then decoded. */
export function taken(gateway: string, batchSeq: number, stream: number, points: TelemetryPoint[], sentAt = 0): TakenBatch {
  const { topic, payload } = wireMessage('v2', { gateway_id: gateway, batch_seq: batchSeq, sent_at: sentAt, stream, points });
  const decoded = decodeTelemetry(topic, payload);
  if (!decoded.ok) throw new Error(decoded.detail);
  return decoded.batch;
}

/** Stages every point of a batch, each in its own stream or the batch's, as the sink does. */
export function stageAll(buffer: StageBuffer, batch: TakenBatch, ingestedAt: number): void {
  const { count } = batch.points;
  stageRows(buffer, batch.points, Uint32Array.from({ length: count }, (_, i) => i), count, stageDictIds(batch.points), batch.stream, batch.gateway_id, ingestedAt);
}

/** What a passive observer subscribes to: every gateway's telemetry, of either wire. */
export const TELEMETRY_FILTERS = { [TELEMETRY_V2_WILDCARD]: { qos: 1 }, [TELEMETRY_WILDCARD]: { qos: 1 } } as const;

/** A telemetry message of either wire, as an observer reads it: its batch's stream and its points. */
export function observedBatch(topic: string, payload: Uint8Array): { stream: number; points: TelemetryPoint[] } {
  if (wireOfTopic(topic) === 'v1') {
    const batch = decodeBatch(payload);
    return { stream: batch.stream ?? 0, points: batch.points };
  }
  const batch = decodeColumnar(payload);
  return { stream: batch.stream, points: Array.from({ length: batch.points.count }, (_, i) => pointAt(batch.points, i)) };
}

/** The value of one sample in a /metrics text, e.g. `dronelake_agent_spool_bytes` or `name{label="v"}`; undefined when absent. */
export function sampleOf(text: string, sample: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${sample} `));
  return line === undefined ? undefined : Number(line.slice(sample.length + 1));
}

/** A component's /metrics text, served at `http`. */
export async function scrape(http: string): Promise<string> {
  return (await fetch(`${http}/metrics`)).text();
}

/** One sample of a component's /metrics at `http`; NaN while it has none. */
export async function scrapeSample(http: string, sample: string): Promise<number> {
  return sampleOf(await scrape(http), sample) ?? Number.NaN;
}

/**
 * A list of cleanups that run after each test of the calling describe block (or file), the
 * newest first, and empty for the next test: `cleanups.push(() => broker.close())`.
 */
export function cleanupsAfterEach(): Array<() => Promise<unknown> | unknown> {
  const cleanups: Array<() => Promise<unknown> | unknown> = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });
  return cleanups;
}
