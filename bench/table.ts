import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import pino from 'pino';
import { startBroker } from '../broker/server';
import { sinkConfig } from '../sink/options';
import { startSink } from '../sink/sink';
import { localStorage } from '../sink/storage';
import type { DataFile } from '../sink/table/avro';
import { newManifestCache } from '../sink/table/manifests';
import { keyUri } from '../sink/table/metadata';
import { tableWriter } from '../sink/table/transaction';
import { writeHistory } from './history';
import { figure, type BenchContext, type Figure } from './report';

const quiet = pino({ level: 'silent' });

const quantile = (sorted: number[], q: number): number => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;

/** A data file entry as a flush of one hour adds it (the metadata commit never opens it). */
function flushFile(storage: Awaited<ReturnType<typeof localStorage>>, n: number): DataFile {
  return {
    content: 0,
    file_path: keyUri(storage, `drones/telemetry/v1/date=2026-12-01/hour=12/part-bench-${n}.parquet`),
    file_format: 'PARQUET',
    partition: { ts_hour: 493_668 },
    record_count: 5_000,
    file_size_in_bytes: 200_000,
    column_sizes: null,
    value_counts: null,
    null_value_counts: null,
    nan_value_counts: null,
    lower_bounds: null,
    upper_bounds: null,
    key_metadata: null,
    split_offsets: null,
    equality_ids: null,
    sort_order_id: 1,
  };
}

/**
 * The Iceberg table's costs: one metadata commit (manifest, list, next version, on a local
 * lake, with the default retention: every snapshot of the last quarter hour kept), and
 * how long a sink takes to start against a history of 1k, 10k and 100k commits. The
 * ratio of the last to the first shows whether start-up grows with history (1 = not at all).
 */
export async function runTable(ctx: BenchContext): Promise<Figure[]> {
  const figures: Figure[] = [];
  const commits = ctx.quick ? 100 : 500;
  ctx.progress(`table: ${commits} metadata commits`);
  const lake = path.join(ctx.tmp, 'table-commits');
  const storage = await localStorage(lake, 'drones/_staging/bench');
  await mkdir(storage.stagingDir, { recursive: true });
  const writer = tableWriter(storage, 'bench', { snapshotRetentionMs: 7 * 24 * 3_600_000 }, newManifestCache());
  const times: number[] = [];
  for (let n = 0; n < commits; n++) {
    const t = performance.now();
    await writer.append([flushFile(storage, n)], { 'dronelake.commit': String(n) });
    times.push(performance.now() - t);
  }
  times.sort((a, b) => a - b);
  figures.push(figure('table', 'table_commit_p50_ms', `metadata commit, p50 of ${commits} (one file each)`, quantile(times, 0.5), 'ms'));
  figures.push(figure('table', 'table_commit_p99_ms', `metadata commit, p99 of ${commits}`, quantile(times, 0.99), 'ms'));

  const histories = ctx.quick ? [1_000, 10_000] : [1_000, 10_000, 100_000];
  const starts: number[] = [];
  for (const history of histories) {
    ctx.progress(`table: a sink starting with ${history.toLocaleString('en-US')} commits behind it`);
    const dir = path.join(ctx.tmp, `history-${history}`);
    await writeHistory(dir, history);
    const runs: Array<{ ms: number; reads: number }> = [];
    for (let r = 0; r < 3; r++) {
      const broker = await startBroker({ host: '127.0.0.1', port: 0 }, quiet);
      const t = performance.now();
      const sink = await startSink(sinkConfig({ broker: broker.url, lake: dir, flushInterval: 600, compactInterval: 0 }), quiet);
      runs.push({ ms: performance.now() - t, reads: sink.stats().startupReads });
      await sink.close();
      await broker.close();
    }
    const ms = runs.map((x) => x.ms).sort((a, b) => a - b)[1]!;
    starts.push(ms);
    figures.push(figure('table', `sink_start_ms_${history}`, `sink start with ${history.toLocaleString('en-US')} commits in history (median of 3)`, ms, 'ms'));
    figures.push(figure('table', `sink_start_objects_${history}`, `objects a start reads, ${history.toLocaleString('en-US')} commits in history`, runs[0]!.reads));
  }
  figures.push(figure('table', 'sink_start_ratio', `start time, ${histories.at(-1)!.toLocaleString('en-US')} over ${histories[0]!.toLocaleString('en-US')} commits of history`, starts.at(-1)! / starts[0]!, 'x'));
  return figures;
}
