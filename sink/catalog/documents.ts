import type http from 'node:http';
import PQueue from 'p-queue';
import { parse as parseYaml } from 'yaml';
import * as z from 'zod';
import { send, type Route } from '../../deploy/runtime/http';
import { CONTRACT_KEY, DAY_MS, LINEAGE_PREFIX, PRODUCT_KEY, QUALITY_PREFIX, SLO_STATUS_KEY, utcDate, utcDates } from '../layout';
import type { LakeStorage, StoredObject } from '../storage';
import { readCurrentTable, type CurrentTable } from './iceberg-table';
import { catalogReport, newLakeLedger, type CatalogReport } from './read';

// The product's machine-readable documents as the sink published them in the lake, read
// back for HTTP: the same files `dronelake catalog` reads, at stable URLs the descriptor's
// management ports list.

/** A quality window as the sink records it: the figures the history shows are checked, the rest passes. */
const nullableNumber = z.number().nullable();
export const qualityWindowSchema = z.looseObject({
  writer: z.string(),
  from: z.string(),
  to: z.string(),
  rows: z.number(),
  received_points: z.number(),
  missing_entries: z.number(),
  rejected_points: z.number(),
  undecodable_batches: z.number(),
  error_rate: z.number(),
  freshness_seconds: nullableNumber,
  latency_p50_ms: nullableNumber,
  latency_p99_ms: nullableNumber,
  throughput_rows_per_second: z.number(),
});
export type QualityWindow = z.infer<typeof qualityWindowSchema>;

const lineageEventSchema = z.looseObject({ eventType: z.string(), eventTime: z.string() });
export type LineageEvent = z.infer<typeof lineageEventSchema>;

/** How far back the history and lineage documents reach by default, and at most. */
export const HISTORY_DAYS = 7;

export interface CatalogDocuments {
  readonly storage: LakeStorage;
  /** The ODCS contract and the ODPS descriptor, parsed from their YAML; null before a sink wrote them. */
  contract(): Promise<unknown>;
  product(): Promise<unknown>;
  sloStatus(): Promise<unknown>;
  /** Every sink's quality windows that ended in [fromMs, toMs], oldest first; from `listed` when given (a listing of QUALITY_PREFIX). */
  qualityWindows(fromMs: number, toMs: number, listed?: StoredObject[]): Promise<QualityWindow[]>;
  /** The OpenLineage run events of [fromMs, toMs], oldest first. */
  lineage(fromMs: number, toMs: number): Promise<LineageEvent[]>;
  table(): Promise<CurrentTable | null>;
  report(nowMs: number, windows?: StoredObject[]): Promise<CatalogReport>;
  /** The newest quarantine files the table's commits name, oldest first, as of the last report. */
  quarantineKeys(): string[];
  /**
   * The quality window files of the days the page's history spans (HISTORY_DAYS and one more),
   * as `storage.list` of those days would list them, without listing the closed days again:
   * not the whole history, which is 90 days of a window a minute a sink.
   */
  listWindows(nowMs: number): Promise<StoredObject[]>;
}

/**
 * A day's windows are all written once the day has ended: a sink records a window at its
 * end, by its own clock. An hour's margin covers a sink whose clock is behind, or that was
 * slow to record.
 */
const CLOSED_AFTER_MS = 3_600_000;
const FULL_LISTING_MS = 600_000;
/** The days of windows a reader lists and keeps: the history's, and one more for the day it starts in. */
const KEPT_DAYS = HISTORY_DAYS + 1;
const DATE_DIR = /\/date=(\d{4}-\d{2}-\d{2})\//;

/**
 * Reads the documents of an open lake. Windows and lineage events are created once and never
 * rewritten, so each is read once and kept; commit records are read once each into the
 * reader's lake ledger (sink/catalog/read.ts), which keeps none of them.
 */
export function catalogDocuments(storage: LakeStorage, onBadRecord: (key: string, err: Error) => void): CatalogDocuments {
  const lake = newLakeLedger();
  const windows = new Map<string, QualityWindow | null>();
  const events = new Map<string, LineageEvent | null>();

  async function yaml(key: string): Promise<unknown> {
    const bytes = await storage.read(key);
    return bytes === null ? null : parseYaml(bytes.toString('utf8'));
  }

  /** The JSON files under `prefix` of [fromMs, toMs], parsed and checked; a damaged one is reported and left out. */
  async function timed<T>(prefix: string, fromMs: number, toMs: number, cache: Map<string, T | null>, schema: z.ZodType<T>, timeOf: (doc: T) => number, all?: StoredObject[]): Promise<T[]> {
    const dates = utcDates(fromMs, toMs).map((d) => `${prefix}/date=${d}/`);
    const listed = all ? all.filter((o) => dates.some((d) => o.key.startsWith(d))) : (await Promise.all(dates.map((d) => storage.list(d)))).flat();
    // Files are small: reading many at once hides the store's per-request latency.
    const reads = new PQueue({ concurrency: 16 });
    await Promise.all(
      listed
        .filter(({ key }) => key.endsWith('.json') && !cache.has(key))
        .map(({ key }) =>
          reads.add(async () => {
            const bytes = await storage.read(key);
            let doc: T | null = null;
            try {
              doc = bytes === null ? null : schema.parse(JSON.parse(bytes.toString('utf8')));
            } catch (err) {
              onBadRecord(key, err as Error);
            }
            cache.set(key, doc);
          }),
        ),
    );
    // Documents of days before any span a reader asks for are let go (invariant 6): a
    // server that ran for months kept every window and event it had read.
    const keepFrom = utcDate(toMs - KEPT_DAYS * DAY_MS);
    for (const key of cache.keys()) if ((DATE_DIR.exec(key)?.[1] ?? '') < keepFrom) cache.delete(key);
    const out: T[] = [];
    for (const { key } of listed) {
      const doc = cache.get(key);
      if (doc) {
        const t = timeOf(doc);
        if (t >= fromMs && t <= toMs) out.push(doc);
      }
    }
    return out.sort((a, b) => timeOf(a) - timeOf(b));
  }

  // The listings of closed days, by date: a day's windows are all written once it has ended.
  const closedDays = new Map<string, StoredObject[]>();
  let listedAllAt = -Infinity;
  async function listWindows(nowMs: number): Promise<StoredObject[]> {
    const days = utcDates(nowMs - KEPT_DAYS * DAY_MS, nowMs);
    const openFrom = utcDate(nowMs - CLOSED_AFTER_MS);
    // Now and then every day again: it finds what no rule above foresaw (a window put into a
    // closed day by a sink whose clock is far off), within FULL_LISTING_MS.
    const again = nowMs - listedAllAt > FULL_LISTING_MS;
    if (again) listedAllAt = nowMs;
    for (const day of closedDays.keys()) if (day < days[0]!) closedDays.delete(day);
    const toList = days.filter((d) => again || d >= openFrom || !closedDays.has(d));
    const listed = await Promise.all(toList.map((d) => storage.list(`${QUALITY_PREFIX}/date=${d}/`)));
    const fresh = new Map(toList.map((d, i) => [d, listed[i]!]));
    for (const [d, objects] of fresh) if (d < openFrom) closedDays.set(d, objects);
    return days.flatMap((d) => fresh.get(d) ?? closedDays.get(d) ?? []).sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  return {
    storage,
    listWindows,
    quarantineKeys: () => lake.quarantine.map((q) => q.key),
    contract: () => yaml(CONTRACT_KEY),
    product: () => yaml(PRODUCT_KEY),
    async sloStatus() {
      const bytes = await storage.read(SLO_STATUS_KEY);
      return bytes === null ? null : (JSON.parse(bytes.toString('utf8')) as unknown);
    },
    qualityWindows: (fromMs, toMs, listed) => timed(QUALITY_PREFIX, fromMs, toMs, windows, qualityWindowSchema, (w) => Date.parse(w.to), listed),
    lineage: (fromMs, toMs) => timed(LINEAGE_PREFIX, fromMs, toMs, events, lineageEventSchema, (e) => Date.parse(e.eventTime)),
    table: () => readCurrentTable(storage),
    report: (nowMs, listed) => catalogReport(storage, onBadRecord, nowMs, lake, listed),
  };
}

/** The span a history request asks for: `?days=N` (1 to 7), the last 7 days by default. */
function spanOf(req: http.IncomingMessage): { fromMs: number; toMs: number } | string {
  const raw = new URL(req.url ?? '/', 'http://localhost').searchParams.get('days');
  const days = raw === null ? HISTORY_DAYS : Number(raw);
  if (!Number.isInteger(days) || days < 1 || days > HISTORY_DAYS) return `days must be a whole number from 1 to ${HISTORY_DAYS}, got ${JSON.stringify(raw)}`;
  const toMs = Date.now();
  return { fromMs: toMs - days * DAY_MS, toMs };
}

/** Paths of the documents, for the routes and the descriptor's management ports. */
export const DOCUMENT_PATHS = {
  contract: '/catalog/contract',
  product: '/catalog/product',
  sloStatus: '/catalog/slo-status',
  quality: '/catalog/quality',
  lineage: '/catalog/lineage',
} as const;

export function documentRoutes(docs: CatalogDocuments): Route[] {
  const whole = (path: string, read: () => Promise<unknown>, what: string): Route => ({
    method: 'GET',
    path,
    async handle(_req, res) {
      const doc = await read();
      if (doc === null) send(res, 404, { error: `no ${what} in ${docs.storage.root} yet: no sink has published one` });
      else send(res, 200, doc);
    },
  });
  const history = (path: string, read: (fromMs: number, toMs: number) => Promise<unknown[]>, key: string): Route => ({
    method: 'GET',
    path,
    async handle(req, res) {
      const span = spanOf(req);
      if (typeof span === 'string') send(res, 400, { error: span });
      else send(res, 200, { from: new Date(span.fromMs).toISOString(), to: new Date(span.toMs).toISOString(), [key]: await read(span.fromMs, span.toMs) });
    },
  });
  return [
    whole(DOCUMENT_PATHS.contract, docs.contract, 'contract'),
    whole(DOCUMENT_PATHS.product, docs.product, 'product descriptor'),
    whole(DOCUMENT_PATHS.sloStatus, docs.sloStatus, 'objectives status'),
    history(DOCUMENT_PATHS.quality, docs.qualityWindows, 'windows'),
    history(DOCUMENT_PATHS.lineage, docs.lineage, 'events'),
  ];
}
