import { existsSync } from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import mqtt from 'mqtt';
import pino from 'pino';
import * as z from 'zod';
import { openMavlinkFile } from '../agent/mavlink/file';
import { startBroker } from '../broker/server';
import { BatchWriter } from '../proto/codec';
import { BROTLI_QUALITY, ColumnarWriter, type Compression } from '../proto/columnar';
import { nowMicros } from '../proto/time';
import type { TelemetryPoint } from '../proto/types';
import { telemetryTopic, telemetryTopicV2, type Wire } from '../proto/topics';
import { sinkConfig } from '../sink/options';
import { startSink, type Sink } from '../sink/sink';
import { simulatedPoints } from './points';
import { startRole } from './procs';
import { figure, type BenchContext, type Figure } from './report';
import { BATCH_POINTS, BENCH_DRONES, BENCH_GATEWAY, decodeAndDrop, encodeBatches, encodeColumnarBatches } from './stages';
import { cpuPerMillion, measureIngest, runFleet, type Measured } from './throughput';

// Wire v1 (row protobuf) and v2 (columnar) side by side in one run: bytes per point, the
// agent's CPU per point, the server side, end to end, and the broker's fan-out to shards.
// The issue's targets are printed next to the ratios; nothing here fails on a figure.

const SECTION = 'wire v1 vs v2';
/** A real ArduPilot VTOL flight, when the fixtures are next to the repository. */
const VTOL = path.resolve('../shared/fixtures/mavlink/vtol.tlog');
const SHARDS = 4;

/** Brotli as v2 applies it, for the v1 figure to compare like with like. */
const brotli = (b: Uint8Array) => zlib.brotliCompressSync(b, { params: { [zlib.constants.BROTLI_PARAM_QUALITY]: BROTLI_QUALITY } }).length;
const total = (batches: Uint8Array[], size: (b: Uint8Array) => number = (b) => b.length) => batches.reduce((n, b) => n + size(b), 0);

async function tlogPoints(file: string): Promise<TelemetryPoint[]> {
  const points: TelemetryPoint[] = [];
  const source = await openMavlinkFile({ file, droneId: (s) => `vtol-sys${s}`, hz: 0, firstSeq: () => 0, realtime: false });
  source.start({ accepting: true, flush: async () => undefined, emit: (p) => points.push({ ...p }) });
  await source.done;
  await source.stop();
  return points;
}

/** Bytes per point of the same points in each encoding, in the agent's 1,000-point batches. */
function sizes(name: string, key: string, points: TelemetryPoint[] | null): Figure[] {
  const per = (bytes: number | null) => (bytes === null || !points ? null : bytes / points.length);
  const v1 = points && encodeBatches(points, BENCH_GATEWAY);
  const v2 = (c: Compression) => (points ? total(encodeColumnarBatches(points, BENCH_GATEWAY, c)) : null);
  const v1Brotli = v1 && total(v1, brotli);
  const v2Brotli = v2('brotli');
  const missing = points ? '' : ' (no file)';
  return [
    figure(SECTION, `wire_${key}_v1_bytes_per_point`, `${name}: v1 row protobuf${missing}`, per(v1 && total(v1)), 'bytes'),
    figure(SECTION, `wire_${key}_v1_brotli_bytes_per_point`, `${name}: v1 + brotli (quality ${BROTLI_QUALITY}, as v2)${missing}`, per(v1Brotli), 'bytes'),
    figure(SECTION, `wire_${key}_v2_bytes_per_point`, `${name}: v2 columnar${missing}`, per(v2('none')), 'bytes'),
    figure(SECTION, `wire_${key}_v2_deflate_bytes_per_point`, `${name}: v2 + deflate${missing}`, per(v2('deflate')), 'bytes'),
    figure(SECTION, `wire_${key}_v2_brotli_bytes_per_point`, `${name}: v2 + brotli (the agent's default)${missing}`, per(v2Brotli), 'bytes'),
    figure(SECTION, `wire_${key}_v2_vs_v1_brotli_ratio`, `${name}: v2 + brotli / v1 + brotli (target <= 0.3)${missing}`, v1Brotli && v2Brotli !== null ? v2Brotli / v1Brotli : null, 'ratio'),
  ];
}

/** CPU seconds of this process for `work`, best of `rounds`. */
function cpuSeconds(rounds: number, work: () => void): number {
  let best = Infinity;
  for (let r = 0; r < rounds; r++) {
    const start = process.cpuUsage();
    work();
    const used = process.cpuUsage(start);
    best = Math.min(best, (used.user + used.system) / 1e6);
  }
  return best;
}

/** The agent's batching: each point into the wire's writer, a batch closed every 1,000 points. */
function batchAll(points: readonly TelemetryPoint[], writer: BatchWriter | ColumnarWriter): void {
  let seq = 0;
  for (const p of points) {
    writer.add(p);
    if (writer.pointCount >= BATCH_POINTS) writer.finish({ gatewayId: BENCH_GATEWAY, batchSeq: seq++, sentAt: nowMicros(), stream: 1 });
  }
  if (writer.pointCount > 0) writer.finish({ gatewayId: BENCH_GATEWAY, batchSeq: seq, sentAt: nowMicros(), stream: 1 });
}

const codecCpu = z.object({ encode: z.number(), decode: z.number() });
/** CPU-us a point of the agent's batching on each wire, and of encoding and decoding v2 with each compression. */
export const EncodingCpuSchema = z.object({ batchingV1: z.number(), batchingV2: z.number(), none: codecCpu, deflate: codecCpu, brotli: codecCpu });
export type EncodingCpu = z.infer<typeof EncodingCpuSchema>;

/** What the `encoding` role measures, in the bench worker it runs in. */
export async function measureEncoding(quick: boolean): Promise<EncodingCpu> {
  const fleet = await simulatedPoints(quick ? 50_000 : 200_000, BENCH_DRONES, BENCH_GATEWAY);
  const perPoint = (seconds: number) => (seconds / fleet.length) * 1e6;
  const rounds = quick ? 1 : 3;
  batchAll(fleet.slice(0, 20_000), new BatchWriter());
  batchAll(fleet.slice(0, 20_000), new ColumnarWriter('brotli'));
  const batchingV1 = perPoint(cpuSeconds(rounds, () => batchAll(fleet, new BatchWriter())));
  const batchingV2 = perPoint(cpuSeconds(rounds, () => batchAll(fleet, new ColumnarWriter('brotli'))));

  // The compression each batch names: the same batches encoded (agent) and decoded (sink)
  // with each, side by side; the CPU past that of uncompressed batches is the compression's.
  // The codecs take turns within each round, after a round that warms them all, so no
  // codec's figure carries the garbage or the cold code another left (measured one codec
  // after the other, the uncompressed decode came out slower than brotli's).
  const codecs = ['none', 'deflate', 'brotli'] as const;
  const encoded = new Map(codecs.map((c) => [c, encodeColumnarBatches(fleet, BENCH_GATEWAY, c)]));
  const best = new Map(codecs.map((c) => [c, { encode: Infinity, decode: Infinity }]));
  for (let r = 0; r <= Math.max(rounds, 2); r++) {
    for (const c of codecs) {
      const encode = cpuSeconds(1, () => encodeColumnarBatches(fleet, BENCH_GATEWAY, c));
      const decode = cpuSeconds(1, () => decodeAndDrop(encoded.get(c)!, BENCH_GATEWAY, 'v2'));
      const b = best.get(c)!;
      // Round 0 warms every codec's code and is not counted.
      if (r > 0) best.set(c, { encode: Math.min(b.encode, encode), decode: Math.min(b.decode, decode) });
    }
  }
  const us = (c: (typeof codecs)[number]) => ({ encode: perPoint(best.get(c)!.encode), decode: perPoint(best.get(c)!.decode) });
  return { batchingV1, batchingV2, none: us('none'), deflate: us('deflate'), brotli: us('brotli') };
}

/** Broker deliveries per telemetry message with SHARDS sinks sharing the fleet, on each wire. */
async function deliveriesPerMessage(ctx: BenchContext, wire: Wire): Promise<number> {
  const log = pino({ level: 'silent' });
  const broker = await startBroker({ host: '127.0.0.1', port: 0 }, log);
  const sinks: Sink[] = [];
  const gateways = 16;
  const batches = ctx.quick ? 3 : 10;
  try {
    for (let s = 0; s < SHARDS; s++) {
      sinks.push(await startSink(sinkConfig({ broker: broker.url, lake: path.join(ctx.tmp, `shards-${wire}`), shard: `${s}/${SHARDS}`, flushInterval: 0.2 }), log));
    }
    const client = await mqtt.connectAsync(broker.url, { clientId: `bench-shards-${wire}` });
    const base = broker.stats();
    for (let g = 0; g < gateways; g++) {
      const gatewayId = `gw-fan-${g}`;
      const points = Array.from({ length: 100 }, (_, i): TelemetryPoint => ({ drone_id: `${gatewayId}-d`, seq: i, ts: nowMicros() - 1_000_000, lat: 47, lon: 8 }));
      for (let b = 0; b < batches; b++) {
        const head = { gatewayId, batchSeq: b, sentAt: nowMicros() };
        const payload = wire === 'v2' ? encodeColumnarBatches(points, gatewayId)[0]! : (() => {
          const w = new BatchWriter();
          for (const p of points) w.add(p);
          return w.finish(head);
        })();
        await client.publishAsync(wire === 'v2' ? telemetryTopicV2(gatewayId) : telemetryTopic(gatewayId), Buffer.from(payload), { qos: 1 });
      }
    }
    const sent = gateways * batches;
    const deadline = Date.now() + 30_000;
    while (sinks.reduce((n, s) => n + s.stats().batchesReceived, 0) < sent && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    await client.endAsync();
    // No gateway listens for acks here, so every message out is telemetry.
    return (broker.stats().messagesOut - base.messagesOut) / sent;
  } finally {
    for (const s of sinks) await s.close();
    await broker.close();
  }
}

const WIRES: readonly Wire[] = ['v1', 'v2'];
/** Runs of each wire in a full run's side-by-side comparisons. */
const ROUNDS = 3;

/**
 * `measure` on v1 and v2 in turn, `rounds` times: each wire's runs. The machine's noise
 * only ever slows a run, and one run of each gave server-side ratios from 1.8 to 2.8 on
 * the same code, as other work on the machine came and went; taking turns puts both wires
 * under the same spells of it, and the figures are each wire's best (most, least), as the
 * stages section takes its rounds' best. Every run goes to the progress log, as `describe`
 * gives it.
 */
async function alternate<M>(ctx: BenchContext, rounds: number, name: string, measure: (wire: Wire) => Promise<M>, describe: (m: M) => string): Promise<Record<Wire, M[]>> {
  const runs: Record<Wire, M[]> = { v1: [], v2: [] };
  for (let r = 0; r < rounds; r++) {
    for (const wire of WIRES) {
      const m = await measure(wire);
      ctx.progress(`wire: ${name}, round ${r + 1}/${rounds}, ${wire}: ${describe(m)}`);
      runs[wire].push(m);
    }
  }
  return runs;
}
const perWire = <T>(f: (wire: Wire) => T): Record<Wire, T> => ({ v1: f('v1'), v2: f('v2') });
const most = <M>(runs: readonly M[], f: (m: M) => number): number => Math.max(...runs.map(f));
const least = <M>(runs: readonly M[], f: (m: M) => number): number => Math.min(...runs.map(f));

export async function runWire(ctx: BenchContext): Promise<Figure[]> {
  const figures: Figure[] = [];
  ctx.progress('wire: bytes per point');
  const fleet = await simulatedPoints(ctx.quick ? 50_000 : 200_000, BENCH_DRONES, BENCH_GATEWAY);
  figures.push(...sizes('simulated fleet', 'fleet', fleet));
  const vtol = existsSync(VTOL) ? await tlogPoints(VTOL) : null;
  if (!vtol) ctx.progress(`wire: ${VTOL} not found; its figures are empty`);
  figures.push(...sizes('vtol.tlog (real flight)', 'vtol', vtol));

  // In a process of its own, as an agent's encoding runs: measured in this one, after every
  // other section, the same code ran up to twice as slow, and uncompressed batches cost more
  // than compressed ones (the code and heap the other sections left).
  ctx.progress('wire: agent batching and compression CPU, in a fresh process');
  const encoding = startRole('encoding', { quick: ctx.quick });
  const cpu = EncodingCpuSchema.parse(await encoding.ready);
  await encoding.stop();
  figures.push(
    figure(SECTION, 'agent_encode_v1_points_per_cpu_sec', 'agent batching, v1 (BatchWriter), points per CPU second', 1e6 / cpu.batchingV1, 'points/s'),
    figure(SECTION, 'agent_encode_v2_points_per_cpu_sec', 'agent batching, v2 + brotli, points per CPU second', 1e6 / cpu.batchingV2, 'points/s'),
    // A part of the agent's CPU: the target (3x) is on the whole agent's, agent_v2_vs_v1_cpu below.
    figure(SECTION, 'agent_encode_v2_vs_v1', "agent batching alone, v2 / v1 points per CPU second (a part of the agent's CPU)", cpu.batchingV1 / cpu.batchingV2, 'x'),
  );
  for (const c of ['deflate', 'brotli'] as const) {
    figures.push(
      figure(SECTION, `compression_${c}_agent_us_per_point`, `v2 + ${c}: the agent's compression CPU per point (encode, past uncompressed)`, cpu[c].encode - cpu.none.encode, 'us'),
      figure(SECTION, `compression_${c}_sink_us_per_point`, `v2 + ${c}: the sink's decompression CPU per point (decode, past uncompressed)`, cpu[c].decode - cpu.none.decode, 'us'),
    );
  }

  const rounds = ctx.quick ? 1 : ROUNDS;
  const of = rounds === 1 ? '' : `, best of ${rounds}`;

  ctx.progress(`wire: server side, v1 and v2 taking turns, ${rounds} round(s)`);
  const serverCpu = (m: Measured) => cpuPerMillion(m, 'sink') + cpuPerMillion(m, 'broker');
  const ingest = await alternate(ctx, rounds, 'server side', (wire) => measureIngest(ctx, wire), (m) => `${Math.round(m.pointsPerSec)} points/s, ${serverCpu(m).toFixed(3)} CPU-us a point`);
  const server = perWire((w) => ({ rate: most(ingest[w], (m) => m.pointsPerSec), cpu: least(ingest[w], serverCpu) }));
  for (const wire of WIRES) {
    figures.push(
      figure(SECTION, `ingest_${wire}_points_per_sec`, `server side, ${wire}: broker + sink, replayed batches${wire === 'v2' ? ' (uncompressed)' : ''}${of}`, server[wire].rate, 'points/s'),
      figure(SECTION, `ingest_${wire}_cpu_seconds_per_million`, `server side, ${wire}: broker + sink CPU per million points${of}`, server[wire].cpu, 's'),
    );
  }
  figures.push(figure(SECTION, 'ingest_v2_vs_v1_cpu', `server side, v1 / v2 CPU per point${of} (target >= 3)`, server.v1.cpu / server.v2.cpu, 'x'));
  figures.push(figure(SECTION, 'ingest_v2_vs_v1_rate', `server side, v2 / v1 points per second${of}`, server.v2.rate / server.v1.rate, 'x'));

  ctx.progress(`wire: end to end with 10 gateways, v1 and v2 taking turns, ${rounds} round(s)`);
  const roles = ['load', 'sink', 'broker'] as const;
  const fleets = await alternate(ctx, rounds, 'end to end', (wire) => runFleet(ctx, 10, undefined, { wire }), (m) => `${Math.round(m.pointsPerSec)} points/s, CPU-us a point: ${roles.map((r) => `${r} ${cpuPerMillion(m, r).toFixed(3)}`).join(', ')}`);
  const e2e = perWire((w) => {
    const cpuOf = (role: (typeof roles)[number]) => least(fleets[w], (m) => cpuPerMillion(m, role));
    return { rate: most(fleets[w], (m) => m.pointsPerSec), load: cpuOf('load'), sink: cpuOf('sink'), broker: cpuOf('broker') };
  });
  for (const wire of WIRES) {
    const m = e2e[wire];
    figures.push(
      figure(SECTION, `e2e_${wire}_points_per_sec_10gw`, `end to end, ${wire}, 10 gateways${of}`, m.rate, 'points/s'),
      figure(SECTION, `e2e_${wire}_agent_cpu_us_per_point`, `end to end, ${wire}: agents' CPU per point${of}`, m.load, 'us'),
      figure(SECTION, `e2e_${wire}_sink_cpu_us_per_point`, `end to end, ${wire}: sink CPU per point${of}`, m.sink, 'us'),
      figure(SECTION, `e2e_${wire}_broker_cpu_us_per_point`, `end to end, ${wire}: broker CPU per point${of}`, m.broker, 'us'),
    );
  }
  figures.push(figure(SECTION, 'e2e_v2_vs_v1', `end to end, v2 / v1${of} (target >= 2, and >= 400,000 points/s)`, e2e.v2.rate / e2e.v1.rate, 'x'));
  figures.push(figure(SECTION, 'agent_v2_vs_v1_cpu', `agents' CPU per point end to end, v1 / v2${of} (target >= 3)`, e2e.v1.load / e2e.v2.load, 'x'));

  ctx.progress(`wire: broker deliveries per message with ${SHARDS} shards`);
  for (const wire of WIRES) {
    figures.push(figure(SECTION, `deliveries_per_message_${SHARDS}shards_${wire}`, `broker deliveries per message, ${SHARDS} sink shards, ${wire} (target: v1 ${SHARDS}, v2 1)`, await deliveriesPerMessage(ctx, wire), 'x'));
  }
  return figures;
}
