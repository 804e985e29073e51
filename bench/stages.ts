import { mkdir, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { DuckDBInstance, type DuckDBConnection } from '@duckdb/node-api';
import { BatchWriter } from '../proto/codec';
import { ColumnsBuilder, encodeColumnar, type ColumnArena, type Compression } from '../proto/columnar';
import { newStreamId } from '../proto/stream';
import { nowMicros } from '../proto/time';
import { telemetryTopic, telemetryTopicV2, type Wire } from '../proto/topics';
import type { TelemetryPoint } from '../proto/types';
import { invalidReasonAt, suspectPoints, validDroneIds } from '../proto/validate';
import { decodeTelemetry, type TakenBatch } from '../sink/decode';
import { COMMIT_ZSTD_LEVEL, commitDictionaryLimit, fileCopySql, PARQUET_WRITE_OPTIONS, writeFiles } from '../sink/write-files';
import { STAGING_PREFIX } from '../sink/layout';
import { sinkConfig } from '../sink/options';
import { closeStageBuffer, createStageBuffer, sealStageBuffer, stageDictIds, stageRows, type StageBuffer } from '../sink/stage';
import { lakeRowsSql, registerStageScan } from '../sink/stage-scan';
import { localStorage } from '../sink/storage';
import { figure, type BenchContext, type Figure } from './report';
import { forEachSimulatedPoint, simulatedPoints } from './points';

const SECTION = 'stages';
/** The agent's default --batch-points. */
export const BATCH_POINTS = 1000;
export const BENCH_GATEWAY = 'gw-bench';
export const BENCH_DRONES = 200;
// Enough calls for V8 to optimise the hot functions before the clock starts.
const WARMUP_POINTS = 20_000;
// A ceiling is the best round: other processes and GC pauses only ever slow a round down.
const ROUNDS = 3;
const QUICK_ROUNDS = 1;
/** The sink's defaults, so the bench measures what `dronelake sink` runs with. */
export const SINK_DEFAULTS = sinkConfig({});

/**
 * A commit's files written with one of the sink's knobs (sink/write-files.ts) at DuckDB's
 * default instead, the other as the sink sets it: what each knob saves, and costs in bytes.
 */
const WRITE_VARIANTS: ReadonlyArray<{ stage: string; label: string; options: (rows: number) => string }> = [
  { stage: 'parquet_default_dictionaries', label: "parquet with DuckDB's default dictionaries (up to about 24,600 values), not the commit's 4,096", options: () => COMMIT_ZSTD_LEVEL },
  { stage: 'parquet_zstd_level_3', label: "parquet with ZSTD at DuckDB's level 3, not the commit's 1", options: (rows) => `${commitDictionaryLimit(rows)}, COMPRESSION_LEVEL 3` },
];

/** Points into batches exactly as the agent's batcher closes them on a point count. */
export function encodeBatches(points: readonly TelemetryPoint[], gatewayId: string): Uint8Array[] {
  const writer = new BatchWriter();
  const stream = newStreamId();
  const batches: Uint8Array[] = [];
  for (const p of points) {
    writer.add(p);
    if (writer.pointCount >= BATCH_POINTS) batches.push(writer.finish({ gatewayId, batchSeq: batches.length, sentAt: nowMicros(), stream }));
  }
  if (writer.pointCount > 0) batches.push(writer.finish({ gatewayId, batchSeq: batches.length, sentAt: nowMicros(), stream }));
  return batches;
}

/** Points into wire v2 batches of the agent's default size, as its batcher closes them. */
export function encodeColumnarBatches(points: readonly TelemetryPoint[], gatewayId: string, compression: Compression = 'none'): Uint8Array[] {
  const builder = new ColumnsBuilder(BATCH_POINTS);
  const stream = newStreamId();
  const batches: Uint8Array[] = [];
  const close = () => {
    batches.push(encodeColumnar({ gatewayId, batchSeq: batches.length, sentAt: nowMicros(), stream }, builder.view(), compression));
    builder.reset();
  };
  for (const p of points) {
    builder.add(p);
    if (builder.count >= BATCH_POINTS) close();
  }
  if (builder.count > 0) close();
  return batches;
}

/**
 * A decoder of one wire's batches as the sink decodes them off their topic; into an arena,
 * as the sink's, when each batch is let go before the next is decoded.
 */
function decoderOf(gatewayId: string, wire: Wire, arena: ColumnArena | null = null): (payload: Uint8Array) => TakenBatch {
  const topic = wire === 'v2' ? telemetryTopicV2(gatewayId) : telemetryTopic(gatewayId);
  return (payload) => {
    const decoded = decodeTelemetry(topic, payload, arena);
    if (!decoded.ok) throw new Error(`bench batch not decoded: ${decoded.detail}`);
    return decoded.batch;
  };
}

/** Batches of either wire as the sink decodes them off their topic. */
export function decodeBatches(batches: readonly Uint8Array[], gatewayId: string, wire: Wire): TakenBatch[] {
  return batches.map(decoderOf(gatewayId, wire));
}

/**
 * decodeBatches' work as the sink pays it: each batch decoded into one arena and then let
 * go, as the sink stages a batch and drops it. Keeping a million decoded points (136 MB of
 * columns) made every batch's arrays fresh memory, and its page faults and collections
 * tripled the figure. Returns the points decoded.
 */
export function decodeAndDrop(batches: readonly Uint8Array[], gatewayId: string, wire: Wire): number {
  const decode = decoderOf(gatewayId, wire, { values: new Float64Array(0) });
  let points = 0;
  for (const b of batches) points += decode(b).points.count;
  return points;
}

/** An in-memory DuckDB and commit connection, set up as startSink() sets up its own. */
export async function sinkDatabase(): Promise<{ db: DuckDBInstance; conn: DuckDBConnection }> {
  const db = await DuckDBInstance.create(':memory:', {
    threads: String(SINK_DEFAULTS.duckdbThreads),
    memory_limit: SINK_DEFAULTS.duckdbMemory,
  });
  const conn = await db.connect();
  await conn.run("SET TimeZone = 'UTC'");
  await registerStageScan(db);
  return { db, conn };
}

/** Stages every point of the batches, each batch with its own ingestion time as in the sink. */
export function stageBatches(buffer: StageBuffer, batches: readonly TakenBatch[]): void {
  let rows = new Uint32Array(0);
  for (const batch of batches) {
    if (rows.length < batch.points.count) rows = Uint32Array.from({ length: batch.points.count }, (_, i) => i);
    stageRows(buffer, batch.points, rows, batch.points.count, stageDictIds(batch.points), batch.stream, batch.gateway_id, nowMicros());
  }
}

function countInvalid(batches: readonly TakenBatch[]): number {
  const now = nowMicros();
  const skewUs = SINK_DEFAULTS.maxFutureSkew * 1e6;
  let invalid = 0;
  for (const batch of batches) {
    const dronesOk = validDroneIds(batch.points);
    const suspects = suspectPoints(batch.points, batch.stream, dronesOk, now, skewUs);
    if (suspects === null) continue;
    for (let i = 0; i < batch.points.count; i++) if (suspects[i] === 1 && invalidReasonAt(batch.points, i, batch.stream, dronesOk, now, skewUs) !== null) invalid++;
  }
  return invalid;
}

/**
 * Wall time and the process's CPU time (every thread's: DuckDB's workers and libuv's pool
 * too) of `work`. A stage that runs on DuckDB's threads costs more CPU than wall time, and
 * CPU is what the sink's process pays per point.
 */
async function timed<T>(work: () => T | Promise<T>): Promise<{ result: T; seconds: number; cpuSeconds: number }> {
  const start = performance.now();
  const cpu = process.cpuUsage();
  const result = await work();
  const used = process.cpuUsage(cpu);
  return { result, seconds: (performance.now() - start) / 1000, cpuSeconds: (used.user + used.system) / 1e6 };
}

/** Times `work` on each file of a sealed copy of the commit `slice`, the sealing included. */
async function onCopy(name: string, slice: readonly TakenBatch[], work: (copy: StageBuffer, file: number) => Promise<void>): Promise<{ seconds: number; cpuSeconds: number }> {
  const copy = createStageBuffer(name);
  try {
    stageBatches(copy, slice);
    return await timed(async () => {
      sealStageBuffer(copy);
      for (let i = 0; i < copy.files.length; i++) await work(copy, i);
    });
  } finally {
    closeStageBuffer(copy);
  }
}

/**
 * The in-process ceiling of each pipeline stage alone, on the same simulated points:
 * whichever is lowest bounds what one agent or one sink process can carry.
 */
export async function runStages(ctx: BenchContext): Promise<Figure[]> {
  const count = ctx.quick ? 200_000 : 1_000_000;
  ctx.progress(`stages: simulating ${count.toLocaleString('en-US')} points of ${BENCH_DRONES} drones`);
  const points = await simulatedPoints(count, BENCH_DRONES, BENCH_GATEWAY);
  const best: Record<string, number> = {};
  const bestCpu: Record<string, number> = {};
  let round = 0;
  const report = (stage: string, t: { seconds: number; cpuSeconds: number }, check: string) => {
    const rate = count / t.seconds;
    const cpuUs = (t.cpuSeconds / count) * 1e6;
    best[stage] = Math.max(best[stage] ?? 0, rate);
    bestCpu[stage] = Math.min(bestCpu[stage] ?? Infinity, cpuUs);
    ctx.progress(`stages: round ${round + 1}/${ctx.quick ? QUICK_ROUNDS : ROUNDS} ${stage} ${Math.round(rate).toLocaleString('en-US')} points/s, ${cpuUs.toFixed(3)} CPU-us/point (${check})`);
  };

  // Parquet bytes a point of the last round's commits: as the sink writes them, and with each of its knobs at DuckDB's default.
  let commitBytes = 0;
  const variantBytes = new Map<string, number>();
  const { db, conn } = await sinkDatabase();
  try {
    const warm = points.slice(0, WARMUP_POINTS);
    decodeBatches(encodeBatches(warm, BENCH_GATEWAY), BENCH_GATEWAY, 'v1');
    const warmDecoded = decodeBatches(encodeColumnarBatches(warm, BENCH_GATEWAY), BENCH_GATEWAY, 'v2');
    countInvalid(warmDecoded);
    const warmBuffer = createStageBuffer('stage_warmup');
    stageBatches(warmBuffer, warmDecoded);
    closeStageBuffer(warmBuffer);
    const storage = await localStorage(path.join(ctx.tmp, 'stages-lake'), STAGING_PREFIX);
    await mkdir(storage.stagingDir, { recursive: true });

    for (; round < (ctx.quick ? QUICK_ROUNDS : ROUNDS); round++) {
      // The source the other stages are fed by, counted without storing, so the figure is the
      // simulator's cost rather than an array's.
      let made = 0;
      const simulate = await timed(() => forEachSimulatedPoint(count, BENCH_DRONES, BENCH_GATEWAY, () => made++));
      report('simulate', simulate, `${made.toLocaleString('en-US')} points`);

      const bytes = (batches: Uint8Array[]) => `${batches.reduce((n, b) => n + b.length, 0).toLocaleString('en-US')} bytes`;
      const encodeV1 = await timed(() => encodeBatches(points, BENCH_GATEWAY));
      report('encode_v1', encodeV1, bytes(encodeV1.result));
      const encode = await timed(() => encodeColumnarBatches(points, BENCH_GATEWAY));
      report('encode', encode, bytes(encode.result));

      const decodeV1 = await timed(() => decodeAndDrop(encodeV1.result, BENCH_GATEWAY, 'v1'));
      report('decode_v1', decodeV1, `${encodeV1.result.length} batches`);
      const decode = await timed(() => decodeAndDrop(encode.result, BENCH_GATEWAY, 'v2'));
      if (decode.result !== count) throw new Error(`decoded ${decode.result} points of ${count}`);
      report('decode', decode, `${decode.result.toLocaleString('en-US')} points`);
      // The later stages take the batches decoded again, untimed, and kept.
      const decoded = decodeBatches(encode.result, BENCH_GATEWAY, 'v2');

      const validate = await timed(() => countInvalid(decoded));
      // Staging only the valid points would credit the later stages with less work.
      if (validate.result > 0) throw new Error(`${validate.result} simulated points are invalid`);
      report('validate', validate, '0 invalid');

      // Staged and written in commits of the sink's default --commit-points, one after the
      // other as the sink takes them, each buffer's arrays taken over by the next.
      const stage = { seconds: 0, cpuSeconds: 0 };
      const commit = { seconds: 0, cpuSeconds: 0 };
      const scan = { seconds: 0, cpuSeconds: 0 };
      const variantTimes = new Map(WRITE_VARIANTS.map((v) => [v.stage, { seconds: 0, cpuSeconds: 0 }]));
      for (const v of WRITE_VARIANTS) variantBytes.set(v.stage, 0);
      commitBytes = 0;
      let staged = 0;
      let rows = 0;
      let files = 0;
      for (let from = 0, part = 0; from < decoded.length; part++) {
        const slice: TakenBatch[] = [];
        for (let points = 0; from < decoded.length && points < SINK_DEFAULTS.commitPoints; from++) {
          slice.push(decoded[from]!);
          points += decoded[from]!.points.count;
        }
        // On copies of the commit: the scan alone, the files' order and DuckDB reading the
        // staged rows through it without writing them (a part of parquet's figure); and the
        // commit's files written with one of its knobs at DuckDB's default, for the ratios.
        const scanning = await onCopy(`scan_${round}_${part}`, slice, async (copy, i) => {
          await conn.runAndReadAll(`SELECT count(*) FROM (${lakeRowsSql(copy, i)})`);
        });
        for (const variant of WRITE_VARIANTS) {
          const t = await onCopy(`${variant.stage}_${round}_${part}`, slice, async (copy, i) => {
            const file = path.join(storage.stagingDir, `${variant.stage}-${round}-${part}-${i}.parquet`);
            await conn.runAndReadAll(fileCopySql(copy, i, file, `${PARQUET_WRITE_OPTIONS}, ${variant.options(copy.files[i]!.to - copy.files[i]!.from)}`));
            variantBytes.set(variant.stage, variantBytes.get(variant.stage)! + (await stat(file)).size);
            await rm(file);
          });
          const sum = variantTimes.get(variant.stage)!;
          sum.seconds += t.seconds;
          sum.cpuSeconds += t.cpuSeconds;
        }
        const buffer = createStageBuffer(`stage_${round}_${part}`);
        const staging = await timed(() => stageBatches(buffer, slice));
        staged += buffer.points;
        const written = await timed(() => writeFiles(conn, buffer, storage, `bench-stages-${round}-${part}`));
        rows += written.result.files.reduce((n, f) => n + f.rows, 0);
        files += written.result.files.length;
        commitBytes += written.result.files.reduce((n, f) => n + f.bytes, 0);
        for (const [sum, t] of [[stage, staging], [commit, written], [scan, scanning]] as const) {
          sum.seconds += t.seconds;
          sum.cpuSeconds += t.cpuSeconds;
        }
      }
      report('stage', stage, `${staged.toLocaleString('en-US')} rows`);
      report('parquet', commit, `${rows.toLocaleString('en-US')} rows in ${files} file(s)`);
      report('scan', scan, 'a part of parquet');
      for (const v of WRITE_VARIANTS) report(v.stage, variantTimes.get(v.stage)!, `${(variantBytes.get(v.stage)! / count).toFixed(2)} bytes a point, the commit's ${(commitBytes / count).toFixed(2)}`);
    }
  } finally {
    conn.closeSync();
    db.closeSync();
  }

  // The slowest of the stages a v2 point goes through; the v1 ones are there for the ratio,
  // the simulator is the bench's source, not a stage of the pipeline, the scan is a part of
  // parquet, and the parquet variants are there for the ratios too.
  const [slowest, slowestRate] = Object.entries(best)
    .filter(([stage]) => !stage.endsWith('_v1') && stage !== 'simulate' && stage !== 'scan' && !WRITE_VARIANTS.some((v) => v.stage === stage))
    .reduce((a, b) => (b[1] < a[1] ? b : a));
  const rate = (stage: string) => best[stage] ?? null;
  const cpuUs = (stage: string) => bestCpu[stage] ?? null;
  // What the sink's process spends on a v2 point in its stages, every thread counted: the
  // figure to hold against the sink's CPU per point end to end.
  const sinkStages = ['decode', 'validate', 'stage', 'parquet'];
  return [
    figure(SECTION, 'stage_simulate_points_per_sec', `simulate: the simulated fleet of ${BENCH_DRONES} drones (the source)`, rate('simulate'), 'points/s'),
    figure(SECTION, 'stage_encode_v1_points_per_sec', `encode v1: BatchWriter, ${BATCH_POINTS}-point batches`, rate('encode_v1'), 'points/s'),
    figure(SECTION, 'stage_encode_points_per_sec', `encode v2: ColumnsBuilder + encodeColumnar, ${BATCH_POINTS}-point batches`, rate('encode'), 'points/s'),
    figure(SECTION, 'stage_decode_v1_points_per_sec', 'decode v1: decodeTelemetry (rows, then columns)', rate('decode_v1'), 'points/s'),
    figure(SECTION, 'stage_decode_points_per_sec', 'decode v2: decodeTelemetry (columns)', rate('decode'), 'points/s'),
    figure(SECTION, 'stage_validate_points_per_sec', 'validate: suspectPoints on columns', rate('validate'), 'points/s'),
    figure(SECTION, 'stage_stage_points_per_sec', 'stage: stageRows into typed arrays', rate('stage'), 'points/s'),
    figure(SECTION, 'stage_parquet_points_per_sec', "parquet: writeFiles (the files' order, DuckDB scanning the staged arrays, ZSTD, link)", rate('parquet'), 'points/s'),
    figure(SECTION, 'stage_decode_v1_cpu_us_per_point', 'decode v1: CPU per point', cpuUs('decode_v1'), 'us'),
    figure(SECTION, 'stage_decode_cpu_us_per_point', 'decode v2: CPU per point', cpuUs('decode'), 'us'),
    figure(SECTION, 'stage_validate_cpu_us_per_point', 'validate: CPU per point', cpuUs('validate'), 'us'),
    figure(SECTION, 'stage_stage_cpu_us_per_point', 'stage: CPU per point', cpuUs('stage'), 'us'),
    figure(SECTION, 'stage_parquet_cpu_us_per_point', "parquet: CPU per point, DuckDB's threads included", cpuUs('parquet'), 'us'),
    figure(SECTION, 'stage_scan_cpu_us_per_point', "scan, a part of parquet: the files' order and DuckDB reading the staged rows, without writing them: CPU per point", cpuUs('scan'), 'us'),
    ...WRITE_VARIANTS.map((v) => figure(SECTION, `stage_${v.stage}_cpu_us_per_point`, `${v.label}: CPU per point`, cpuUs(v.stage), 'us')),
    figure(SECTION, 'stage_parquet_bytes_per_point', "parquet: a commit's files, bytes per point", commitBytes / count, 'bytes'),
    ...WRITE_VARIANTS.map((v) => figure(SECTION, `stage_${v.stage}_bytes_per_point`, `${v.label}: bytes per point`, variantBytes.get(v.stage)! / count, 'bytes')),
    figure(SECTION, 'stage_sink_cpu_us_per_point', 'the sink\'s stages on v2 (decode + validate + stage + parquet): CPU per point', sinkStages.reduce((n, st) => n + (bestCpu[st] ?? 0), 0), 'us'),
    figure(SECTION, 'slowest_stage', 'slowest stage', slowest),
    figure(SECTION, 'slowest_stage_points_per_sec', 'slowest stage ceiling', slowestRate, 'points/s'),
  ];
}
