import type { DuckDBConnection } from '@duckdb/node-api';
import * as z from 'zod';
import { MICROS_PER_HOUR } from '../../proto/time';
import { DAY_MS, HOUR_MS, partitionOfHour, QUARANTINE_PREFIX, SAMPLE_KEY, TELEMETRY_GLOB } from '../layout';
import { sqlString } from '../sql';
import { currentSnapshot } from '../table/manifests';
import { liveFiles } from '../table/scan';
import { HISTORY_DAYS, type CatalogDocuments, type QualityWindow } from './documents';
import { lakeUrl } from './lake-url';
import type { CatalogReport } from './read';

// Everything the product page shows, in one JSON document the page fetches: the same
// report `dronelake catalog --json` prints, and what only a page can show (charts,
// tracks, examples, sample rows, snapshots).

const TRACK_POINTS = 400;
const SAMPLE_ROWS = 20;
const EXAMPLES_PER_REASON = 3;
/** The newest quarantine files read for examples: enough for a few per reason, few enough to stay fast. */
const QUARANTINE_FILES = 20;

export interface PageData {
  generated_at: string;
  report: CatalogReport;
  columns: Array<{ name: string; type: string; unit: string | null; description: string; primary_key: boolean }>;
  /** The quality windows of the last 7 days, one column per figure, windows of all sinks summed by end time; before the last 24 h, in buckets (historyOf). */
  /** How many windows of the last 7 days the history is made of. */
  history_windows: number;
  history: { t: number[]; freshness_s: Array<number | null>; error_rate: number[]; missing_entries: number[]; throughput: number[]; latency_p50_ms: Array<number | null>; latency_p99_ms: Array<number | null> };
  quarantine: { points_by_reason: Record<string, number>; batches_by_reason: Record<string, number>; examples: Array<{ reason: string; received_at: string; gateway_id: string | null; detail: string }> };
  /** The last hour's track of each drone, [lon, lat] pairs thinned to a few hundred, with its latest row. */
  tracks: Array<{ drone_id: string; path: Array<[number, number]>; latest: Record<string, unknown> }>;
  sample: { columns: string[]; rows: unknown[][] };
  lineage: { inputs: string[]; job: string; outputs: string[]; last_event: string | null };
  table: { metadata_location: string; current_snapshot_id: number | null; snapshots: Array<{ id: number; parent: number | null; at: string; operation: string; summary: Record<string, string> }> } | null;
  /** Whether this server has the live port (GET /live). */
  live: boolean;
  ownership: { team: string; owner: string; support: string };
  purpose: string | null;
  /** What the engine snippets need: the data files' glob, and whether the catalog asks for a token. */
  snippets: { glob: string; tokens: boolean };
  /** The machine-readable documents this server offers. */
  documents: Array<{ path: string; description: string }>;
}

/** How the page is served: what it links to and offers. */
export interface PageSettings {
  live: boolean;
  tokens: boolean;
  documents: PageData['documents'];
}

const contractSchema = z.looseObject({
  schema: z.array(
    z.looseObject({
      name: z.string(),
      properties: z.array(
        z.looseObject({
          name: z.string(),
          logicalType: z.string().optional(),
          physicalType: z.string().optional(),
          description: z.string().optional(),
          primaryKey: z.boolean().optional(),
          customProperties: z.array(z.looseObject({ property: z.string(), value: z.unknown() })).optional(),
        }),
      ),
    }),
  ),
});

const productSchema = z.looseObject({
  description: z.looseObject({ purpose: z.string().optional() }).optional(),
  inputPorts: z.array(z.looseObject({ name: z.string() })).optional(),
  outputPorts: z.array(z.looseObject({ name: z.string() })).optional(),
  team: z.looseObject({ name: z.string().optional(), members: z.array(z.looseObject({ username: z.string(), role: z.string().optional() })).optional() }).optional(),
  support: z.array(z.looseObject({ url: z.string() })).optional(),
});

function columnsOf(contract: unknown): PageData['columns'] {
  const parsed = contractSchema.safeParse(contract);
  const telemetry = parsed.success ? parsed.data.schema.find((o) => o.name === 'telemetry') : undefined;
  return (telemetry?.properties ?? []).map((p) => {
    const unit = p.customProperties?.find((c) => c.property === 'unit')?.value;
    return { name: p.name, type: p.physicalType ?? p.logicalType ?? '', unit: typeof unit === 'string' ? unit : null, description: p.description ?? '', primary_key: p.primaryKey === true };
  });
}

type History = PageData['history'];
const emptyHistory = (): History => ({ t: [], freshness_s: [], error_rate: [], missing_entries: [], throughput: [], latency_p50_ms: [], latency_p99_ms: [] });
const extreme = (values: Array<number | null>, pick: (...v: number[]) => number): number | null => {
  const known = values.filter((v): v is number => v !== null);
  return known.length === 0 ? null : pick(...known);
};

/** Windows of several sinks that end together are one point of the history: counts add up, the freshest row wins. */
function byWindow(windows: QualityWindow[]): History {
  const byEnd = new Map<number, QualityWindow[]>();
  for (const w of windows) {
    const t = Math.round(Date.parse(w.to) / 1000);
    const same = byEnd.get(t);
    if (same) same.push(w);
    else byEnd.set(t, [w]);
  }
  const h = emptyHistory();
  const sum = (ws: QualityWindow[], f: (w: QualityWindow) => number) => ws.reduce((n, w) => n + f(w), 0);
  for (const [t, ws] of [...byEnd].sort((a, b) => a[0] - b[0])) {
    const undecodable = sum(ws, (w) => w.undecodable_batches);
    const denominator = sum(ws, (w) => w.received_points) + undecodable;
    h.t.push(t);
    h.freshness_s.push(extreme(ws.map((w) => w.freshness_seconds), Math.min));
    h.error_rate.push(denominator === 0 ? 0 : (sum(ws, (w) => w.rejected_points) + undecodable) / denominator);
    h.missing_entries.push(sum(ws, (w) => w.missing_entries));
    h.throughput.push(sum(ws, (w) => w.throughput_rows_per_second));
    h.latency_p50_ms.push(extreme(ws.map((w) => w.latency_p50_ms), Math.max));
    h.latency_p99_ms.push(extreme(ws.map((w) => w.latency_p99_ms), Math.max));
  }
  return h;
}

/** Older than a day, the history is drawn in buckets of this many seconds: a week at one point a minute is 10,080 points a chart. */
export const HISTORY_BUCKET_SECONDS = 600;

/**
 * The last 24 hours window by window; before that, each bucket's worst window (the stalest,
 * the highest error rate, the most missing entries, the slowest commits) and its mean
 * throughput, so that a bad window still shows in the week's chart.
 */
export function historyOf(windows: QualityWindow[], nowMs: number): History {
  const all = byWindow(windows);
  const dayAgo = nowMs / 1000 - 86_400;
  const h = emptyHistory();
  for (let i = 0; i < all.t.length; ) {
    const t = all.t[i]!;
    if (t >= dayAgo) {
      for (const k of Object.keys(h) as Array<keyof History>) (h[k] as Array<number | null>).push(all[k][i]!);
      i++;
      continue;
    }
    const bucketEnd = Math.min(Math.ceil(t / HISTORY_BUCKET_SECONDS) * HISTORY_BUCKET_SECONDS, Math.floor(dayAgo));
    let j = i;
    while (j < all.t.length && all.t[j]! <= bucketEnd && all.t[j]! < dayAgo) j++;
    const range = <T>(values: T[]): T[] => values.slice(i, j);
    h.t.push(all.t[j - 1]!);
    h.freshness_s.push(extreme(range(all.freshness_s), Math.max));
    h.error_rate.push(Math.max(...range(all.error_rate)));
    h.missing_entries.push(Math.max(...range(all.missing_entries)));
    h.throughput.push(range(all.throughput).reduce((a, b) => a + b, 0) / (j - i));
    h.latency_p50_ms.push(extreme(range(all.latency_p50_ms), Math.max));
    h.latency_p99_ms.push(extreme(range(all.latency_p99_ms), Math.max));
    i = j;
  }
  return h;
}

const quarantinePointSchema = z.looseObject({ received_at: z.string(), gateway_id: z.string(), rule: z.string(), point: z.unknown() });
const quarantineBatchSchema = z.looseObject({ received_at: z.string(), gateway_id: z.string().nullable(), reason: z.string(), detail: z.string() });

/** A few examples of each reason, from the newest quarantine files the table's commits name. */
async function examplesOf(docs: CatalogDocuments, allKeys: string[], cache: PageCache): Promise<PageData['quarantine']['examples']> {
  const keys = allKeys.slice(-QUARANTINE_FILES).reverse();
  // Quarantine files are never rewritten: the same files give the same examples.
  const cacheKey = keys.join(' ');
  if (cache.examples?.key === cacheKey) return cache.examples.value;
  const examples: PageData['quarantine']['examples'] = [];
  const seen = new Map<string, number>();
  for (const key of keys) {
    const bytes = await docs.storage.read(key);
    if (bytes === null) continue;
    const points = key.startsWith(`${QUARANTINE_PREFIX}/points/`);
    for (const line of bytes.toString('utf8').split('\n')) {
      if (line.trim() === '') continue;
      let example: PageData['quarantine']['examples'][number] | null = null;
      try {
        const json: unknown = JSON.parse(line);
        if (points) {
          const r = quarantinePointSchema.parse(json);
          example = { reason: r.rule, received_at: r.received_at, gateway_id: r.gateway_id, detail: JSON.stringify(r.point) };
        } else {
          const r = quarantineBatchSchema.parse(json);
          example = { reason: r.reason, received_at: r.received_at, gateway_id: r.gateway_id, detail: r.detail };
        }
      } catch {
        // A damaged record is not an example; the quarantine's counts come from the commit checkpoints.
        continue;
      }
      const n = seen.get(example.reason) ?? 0;
      if (n >= EXAMPLES_PER_REASON) continue;
      seen.set(example.reason, n + 1);
      examples.push(example);
    }
  }
  cache.examples = { key: cacheKey, value: examples };
  return examples;
}

/**
 * What a page's data is made of that changes only with the lake: kept between views and
 * made again when the files it came from change. The sample file is written once.
 */
export interface PageCache {
  sample: PageData['sample'] | null;
  tracks: { key: string; value: PageData['tracks'] } | null;
  examples: { key: string; value: PageData['quarantine']['examples'] } | null;
}

export const newPageCache = (): PageCache => ({ sample: null, tracks: null, examples: null });

/** Runs one query at a time on the page's connection. */
export type Query = (sql: string) => Promise<{ columns: string[]; rows: unknown[][] }>;

export function queryOn(conn: DuckDBConnection): Query {
  let chain: Promise<unknown> = Promise.resolve();
  return (sql) => {
    const run = chain.then(async () => {
      const reader = await conn.runAndReadAll(sql);
      return { columns: reader.columnNames(), rows: reader.getRowsJson() as unknown[][] };
    });
    chain = run.catch(() => undefined);
    return run;
  };
}

async function tracksOf(docs: CatalogDocuments, live: string[], query: Query, nowMs: number, cache: PageCache): Promise<PageData['tracks']> {
  // The files of the last two hour partitions hold every row of the last hour, except late
  // rows of other hours that arrived since: those are not the last hour's track.
  const hour = Math.floor((nowMs * 1000) / MICROS_PER_HOUR);
  const partitions = [partitionOfHour(hour - 1), partitionOfHour(hour)].map((p) => `${p}/`);
  const keys = live.filter((k) => partitions.some((p) => k.startsWith(p)));
  if (keys.length === 0) return [];
  // The same files in the same minute draw the same tracks.
  const key = `${Math.floor(nowMs / 60_000)} ${keys.join(' ')}`;
  if (cache.tracks?.key === key) return cache.tracks.value;
  const files = await Promise.all(keys.map((k) => docs.storage.localPath(k)));
  const since = new Date(nowMs - HOUR_MS).toISOString();
  const { rows } = await query(`
    WITH recent AS (
      SELECT * FROM read_parquet([${files.map(sqlString).join(', ')}], hive_partitioning = false, union_by_name = true)
      WHERE ts >= ${sqlString(since)}::TIMESTAMPTZ AND lat IS NOT NULL AND lon IS NOT NULL
    ), numbered AS (
      SELECT drone_id, lon, lat, ts, row_number() OVER (PARTITION BY drone_id ORDER BY ts) AS i, count(*) OVER (PARTITION BY drone_id) AS n FROM recent
    )
    SELECT drone_id, list([lon, lat] ORDER BY ts) AS path,
      (SELECT to_json(r) FROM recent r WHERE r.drone_id = numbered.drone_id ORDER BY ts DESC LIMIT 1) AS latest
    FROM numbered WHERE (i - 1) % greatest(1, n // ${TRACK_POINTS}) = 0 OR i = n
    GROUP BY drone_id ORDER BY drone_id`);
  const row = z.tuple([z.string(), z.array(z.tuple([z.number(), z.number()])), z.string()]);
  const value = rows.map((r) => {
    const [drone_id, path, latest] = row.parse(r);
    return { drone_id, path, latest: z.record(z.string(), z.unknown()).parse(JSON.parse(latest)) };
  });
  cache.tracks = { key, value };
  return value;
}

async function sampleOf(docs: CatalogDocuments, query: Query, cache: PageCache): Promise<PageData['sample']> {
  if (cache.sample) return cache.sample;
  if ((await docs.storage.read(SAMPLE_KEY)) === null) return { columns: [], rows: [] };
  cache.sample = await query(`SELECT * FROM read_parquet(${sqlString(await docs.storage.localPath(SAMPLE_KEY))}) LIMIT ${SAMPLE_ROWS}`);
  return cache.sample;
}

export async function pageData(docs: CatalogDocuments, query: Query, settings: PageSettings, cache: PageCache, nowMs = Date.now()): Promise<PageData> {
  // One listing of the windows for the report and the history: it is most of the work.
  const listed = await docs.listWindows(nowMs);
  const [report, contract, product, windows, events, table] = await Promise.all([
    docs.report(nowMs, listed),
    docs.contract(),
    docs.product(),
    docs.qualityWindows(nowMs - HISTORY_DAYS * DAY_MS, nowMs, listed),
    docs.lineage(nowMs - DAY_MS, nowMs),
    docs.table(),
  ]);
  // As of the report above, which read the commits.
  const quarantineKeys = docs.quarantineKeys();
  const live = table ? (await liveFiles(docs.storage, currentSnapshot(table.metadata))).map((f) => f.key) : [];
  const [examples, tracks, sample] = await Promise.all([examplesOf(docs, quarantineKeys, cache), tracksOf(docs, live, query, nowMs, cache), sampleOf(docs, query, cache)]);
  const parsed = productSchema.safeParse(product);
  const about = parsed.success ? parsed.data : {};
  const last = events.at(-1);
  const snapshots = table?.metadata.snapshots ?? [];
  return {
    generated_at: new Date(nowMs).toISOString(),
    report,
    columns: columnsOf(contract),
    history_windows: windows.length,
    history: historyOf(windows, nowMs),
    quarantine: { points_by_reason: report.quality.rejected_points_by_reason, batches_by_reason: report.quality.rejected_batches_by_reason, examples },
    tracks,
    sample,
    lineage: {
      inputs: (about.inputPorts ?? []).map((p) => p.name),
      job: 'dronelake sink',
      outputs: (about.outputPorts ?? []).map((p) => p.name),
      last_event: last ? `${last.eventType} at ${last.eventTime}` : null,
    },
    table: table && {
      metadata_location: table.metadataLocation,
      current_snapshot_id: table.metadata['current-snapshot-id'] ?? null,
      snapshots: snapshots.map((s) => ({ id: s['snapshot-id'], parent: s['parent-snapshot-id'] ?? null, at: new Date(s['timestamp-ms']).toISOString(), operation: s.summary.operation, summary: s.summary })),
    },
    live: settings.live,
    ownership: {
      team: about.team?.name ?? '-',
      owner: about.team?.members?.find((m) => m.role === 'owner')?.username ?? '-',
      support: about.support?.[0]?.url ?? '-',
    },
    purpose: about.description?.purpose ?? null,
    snippets: { glob: lakeUrl(docs.storage.root, TELEMETRY_GLOB), tokens: settings.tokens },
    documents: settings.documents,
  };
}
