import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { DuckDBInstance, type DuckDBConnection } from '@duckdb/node-api';
import { parseOptions } from '../deploy/options';
import { BatchWriter, decodeBatch } from '../proto/codec';
import { newStreamId } from '../proto/stream';
import { nowMicros } from '../proto/time';
import type { TelemetryBatch, TelemetryPoint } from '../proto/types';
import { invalidReason } from '../proto/validate';
import { writeCommit } from '../sink/commit';
import { STAGING_PREFIX } from '../sink/layout';
import { sinkOptions } from '../sink/options';
import { closeStageBuffer, createStageBuffer, stagePoint, type StageBuffer } from '../sink/stage';
import { localStorage } from '../sink/storage';
import { figure, type BenchContext, type Figure } from './report';
import { simulatedPoints } from './points';

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
export const SINK_DEFAULTS = parseOptions(sinkOptions, []).options;

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

/** An in-memory DuckDB and commit connection, set up as startSink() sets up its own. */
export async function sinkDatabase(): Promise<{ db: DuckDBInstance; conn: DuckDBConnection }> {
  const db = await DuckDBInstance.create(':memory:', {
    threads: String(SINK_DEFAULTS.duckdbThreads),
    memory_limit: SINK_DEFAULTS.duckdbMemory,
  });
  const conn = await db.connect();
  await conn.run("SET TimeZone = 'UTC'");
  return { db, conn };
}

/** Stages every point of the batches, each batch with its own ingestion time as in the sink. */
export function stageBatches(buffer: StageBuffer, batches: readonly TelemetryBatch[]): void {
  for (const batch of batches) {
    const ingestedAt = nowMicros();
    for (const p of batch.points) stagePoint(buffer, p, batch.gateway_id, ingestedAt);
  }
}

function countInvalid(batches: readonly TelemetryBatch[]): number {
  const now = nowMicros();
  const skewUs = SINK_DEFAULTS.maxFutureSkew * 1e6;
  let invalid = 0;
  for (const batch of batches) for (const p of batch.points) if (invalidReason(p, now, skewUs) !== null) invalid++;
  return invalid;
}

async function timed<T>(work: () => T | Promise<T>): Promise<{ result: T; seconds: number }> {
  const start = performance.now();
  const result = await work();
  return { result, seconds: (performance.now() - start) / 1000 };
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
  let round = 0;
  const report = (stage: string, seconds: number, check: string) => {
    const rate = count / seconds;
    best[stage] = Math.max(best[stage] ?? 0, rate);
    ctx.progress(`stages: round ${round + 1}/${ctx.quick ? QUICK_ROUNDS : ROUNDS} ${stage} ${Math.round(rate).toLocaleString('en-US')} points/s (${check})`);
  };

  const { db, conn } = await sinkDatabase();
  try {
    const warmBatches = encodeBatches(points.slice(0, WARMUP_POINTS), BENCH_GATEWAY);
    const warmDecoded = warmBatches.map((b) => decodeBatch(b));
    countInvalid(warmDecoded);
    const warmBuffer = await createStageBuffer(db, 'stage_warmup');
    stageBatches(warmBuffer, warmDecoded);
    closeStageBuffer(warmBuffer);
    await conn.run('DROP TABLE stage_warmup');
    const storage = await localStorage(path.join(ctx.tmp, 'stages-lake'), STAGING_PREFIX);
    await mkdir(storage.stagingDir, { recursive: true });

    for (; round < (ctx.quick ? QUICK_ROUNDS : ROUNDS); round++) {
      const encode = await timed(() => encodeBatches(points, BENCH_GATEWAY));
      report('encode', encode.seconds, `${encode.result.reduce((n, b) => n + b.length, 0).toLocaleString('en-US')} bytes`);

      const decode = await timed(() => encode.result.map((b) => decodeBatch(b)));
      const decoded = decode.result;
      const decodedPoints = decoded.reduce((n, b) => n + b.points.length, 0);
      if (decodedPoints !== count) throw new Error(`decoded ${decodedPoints} points of ${count}`);
      report('decode', decode.seconds, `${decodedPoints.toLocaleString('en-US')} points`);

      const validate = await timed(() => countInvalid(decoded));
      // Staging only the valid points would credit the later stages with less work.
      if (validate.result > 0) throw new Error(`${validate.result} simulated points are invalid`);
      report('validate', validate.seconds, '0 invalid');

      const buffer = await createStageBuffer(db, `stage_${round}`);
      const stage = await timed(() => stageBatches(buffer, decoded));
      report('stage', stage.seconds, `${buffer.points.toLocaleString('en-US')} rows, ${buffer.hours.size} hour(s)`);

      const commit = await timed(() => writeCommit(conn, buffer, storage, `bench-stages-${round}`));
      const rows = commit.result.files.reduce((n, f) => n + f.rows, 0);
      report('parquet', commit.seconds, `${rows.toLocaleString('en-US')} rows in ${commit.result.files.length} file(s)`);
    }
  } finally {
    conn.closeSync();
    db.closeSync();
  }

  const [slowest, slowestRate] = Object.entries(best).reduce((a, b) => (b[1] < a[1] ? b : a));
  const rate = (stage: string) => best[stage] ?? null;
  return [
    figure(SECTION, 'stage_encode_points_per_sec', `encode: BatchWriter, ${BATCH_POINTS}-point batches`, rate('encode'), 'points/s'),
    figure(SECTION, 'stage_decode_points_per_sec', 'decode: decodeBatch', rate('decode'), 'points/s'),
    figure(SECTION, 'stage_validate_points_per_sec', 'validate: invalidReason', rate('validate'), 'points/s'),
    figure(SECTION, 'stage_stage_points_per_sec', 'stage: stagePoint into DuckDB', rate('stage'), 'points/s'),
    figure(SECTION, 'stage_parquet_points_per_sec', 'parquet: writeCommit (sorted ZSTD, link)', rate('parquet'), 'points/s'),
    figure(SECTION, 'slowest_stage', 'slowest stage', slowest),
    figure(SECTION, 'slowest_stage_points_per_sec', 'slowest stage ceiling', slowestRate, 'points/s'),
  ];
}
