import { randomUUID } from 'node:crypto';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import type { DuckDBConnection } from '@duckdb/node-api';
import type { Logger } from 'pino';
import { stringify as toYaml } from 'yaml';
import {
  compactTime,
  CONTRACT_KEY,
  DAY_MS,
  EXAMPLE_QUERY_KEY,
  LINEAGE_PREFIX,
  PRODUCT_KEY,
  qualityDayPrefix,
  SAMPLE_KEY,
  SLO_STATUS_KEY,
} from '../layout';
import { warnBadRecord, warnUnreadable } from '../checkpoint';
import { catchUp, newLedgerReader, saveState } from '../quality-state';
import { currentSnapshot } from '../table/manifests';
import { loadTable } from '../table/metadata';
import { liveFiles } from '../table/scan';
import { addCommits, advance, committedBytes, newQualityLedger, qualityOf, retainFrom } from '../quality';
import { productStatus } from '../slo';
import { ObjectExistsError, putObject, type LakeStorage } from '../storage';
import { buildContract, CONTRACT_ID } from './contract';
import { CONTRACT_SETTINGS, windowEndsBetween } from './read';
import { buildRunEvent } from './lineage';
import { buildProduct, type LivePortInput } from './product';
import type { ProductLocation, ProductOwnership, QualityMetrics, SloStatus, SloTarget } from './types';
import { sqlString } from '../sql';

export interface CatalogConfig {
  /** The sink's client id: its windows and events carry it. */
  writer: string;
  version: string;
  location: ProductLocation;
  ownership: ProductOwnership;
  slos: SloTarget[];
  windowMs: number;
  settleMs: number;
  flushIntervalSeconds: number;
  latenessSeconds: number;
  maxFutureSkewSeconds: number;
  /** The broker the sink reads, for the lineage events' input dataset. */
  broker: string;
  /** The sink's HTTP endpoint, for the descriptor's management ports. */
  httpUrl?: string | undefined;
  /** An OpenLineage endpoint (Marquez, DataHub) that gets each event by POST, besides the lake. */
  openLineageUrl?: string | undefined;
  /** The live and events ports, when the sink runs them. */
  live?: LivePortInput | undefined;
}

export interface CatalogStatus {
  window: QualityMetrics | null;
  quality: QualityMetrics;
  slos: SloStatus[];
}

export interface Catalog {
  readonly contract: object;
  readonly product: object;
  status(): CatalogStatus | null;
  /** Ends the current window early and records it: for close, and for tests. */
  closeWindow(): Promise<void>;
  close(): Promise<void>;
}

const PRODUCER = 'https://github.com/dronelake/dronelake';
const SAMPLE_ROWS = 500;
const RECORD_LAG_MS = 1000;
/** How often a sink saves the product's ledger (and at its last window): what a reader or a restart reads records after. */
const STATE_EVERY_MS = 3_600_000;

const EXAMPLE_QUERY = `-- The drones telemetry product: points per drone and hour, with the lowest battery seen.
-- dronelake query --lake LAKE "$(cat example-query.sql)"
SELECT drone_id, date, hour, count(*) AS points, max(ts) AS last_seen, min(battery_pct) AS min_battery
FROM telemetry
GROUP BY ALL
ORDER BY drone_id, date, hour;
`;

/**
 * Publishes the product's self-description next to its data: the contract and the
 * descriptor when the sink starts, then at the end of every window a quality record, an
 * OpenLineage RunEvent and the objectives' status, all computed from the table's commit checkpoints.
 */
export async function startCatalog(storage: LakeStorage, conn: DuckDBConnection, config: CatalogConfig, log: Logger): Promise<Catalog> {
  const runId = randomUUID();
  const contract = buildContract({
    location: config.location,
    ownership: config.ownership,
    slos: config.slos,
    version: config.version,
    flushIntervalSeconds: config.flushIntervalSeconds,
    latenessSeconds: config.latenessSeconds,
    maxFutureSkewSeconds: config.maxFutureSkewSeconds,
    ...(config.live && { live: config.live }),
  });
  // What readers of the lake need to compute the status the way the sink does.
  const settings = [
    { property: CONTRACT_SETTINGS.windowSeconds, value: config.windowMs / 1000 },
    { property: CONTRACT_SETTINGS.missingAfterSeconds, value: config.settleMs / 1000 },
  ];
  const withSettings = contract as { customProperties?: Array<{ property: string; value: unknown }> };
  withSettings.customProperties = [...(withSettings.customProperties ?? []), ...settings];
  const product = buildProduct({ location: config.location, ownership: config.ownership, version: config.version, contractId: CONTRACT_ID, httpUrl: config.httpUrl, ...(config.live && { live: config.live }) });

  async function postLineage(event: object): Promise<void> {
    if (!config.openLineageUrl) return;
    try {
      const res = await fetch(config.openLineageUrl, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(event), signal: AbortSignal.timeout(5000) });
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
    } catch (err) {
      log.warn({ url: config.openLineageUrl, err: (err as Error).message }, 'OpenLineage endpoint refused an event; it stays in the lake');
    }
  }

  async function emit(eventType: 'START' | 'RUNNING' | 'COMPLETE', window: QualityMetrics, slos: SloStatus[], atMs: number, outputBytes = 0): Promise<void> {
    const event = buildRunEvent({ runId, eventType, eventTime: new Date(atMs).toISOString(), window, slos, location: config.location, outputBytes, producer: PRODUCER, broker: config.broker });
    const key = `${LINEAGE_PREFIX}/date=${new Date(atMs).toISOString().slice(0, 10)}/event-${config.writer}-${eventType.toLowerCase()}-${compactTime(atMs)}.json`;
    await putObject(storage, key, `${JSON.stringify(event)}\n`, 'replace');
    await postLineage(event);
  }

  async function writeSample(): Promise<void> {
    if ((await storage.read(SAMPLE_KEY)) !== null) return;
    // From the table's current files: a commit's own files may have been compacted away.
    const table = await loadTable(storage);
    const keys = table ? (await liveFiles(storage, currentSnapshot(table.metadata))).map((f) => f.key).slice(0, 8) : [];
    if (keys.length === 0) return;
    const sources = await Promise.all(keys.map((k) => storage.localPath(k)));
    const local = path.join(storage.stagingDir, 'catalog-sample.parquet');
    await conn.run(
      `COPY (SELECT * FROM read_parquet([${sources.map(sqlString).join(', ')}], hive_partitioning = false, union_by_name = true) LIMIT ${SAMPLE_ROWS}) TO ${sqlString(local)} (FORMAT parquet, COMPRESSION zstd)`,
    );
    try {
      await storage.replace(local, SAMPLE_KEY);
    } finally {
      await rm(local, { force: true });
    }
  }

  let status: CatalogStatus | null = null;
  let windowStart = Date.now();
  /** The end of the last window recorded or tried: a window ends after it, or there is nothing left to record. */
  let lastEndMs = -Infinity;
  // Each commit record is read once, into two ledgers (sink/quality.ts): this sink's commits,
  // for its windows, and every sink's, for the product's status. Invariant 6: neither keeps
  // records, and each keeps the summaries of a window or a day of commits.
  const reader = newLedgerReader();
  const own = newQualityLedger();
  // This sink's windows begin at its start: its commits of earlier runs count in the product's totals only.
  retainFrom(own, windowStart);
  /** When this sink last saved the product's ledger. */
  let savedAtMs = -Infinity;

  async function recordWindow(endMs: number, final = false): Promise<void> {
    // A window closed by hand (closeWindow) may end after the timer's next one.
    if (endMs <= lastEndMs) return;
    lastEndMs = endMs;
    const table = await loadTable(storage);
    // The product's ledger resumes from the newest saved state, of any sink, and reads only
    // the records after it (sink/quality-state.ts). This sink's own windows read the same
    // records from there: a seq gap its earlier runs left and never filled counts in the
    // product's status, not in this run's windows.
    advance(own, endMs);
    const onBad = { record: warnBadRecord(log), state: warnUnreadable(log, 'quality state') };
    const state = await catchUp(storage, table?.metadata.properties ?? null, reader, endMs, onBad, (commits) => addCommits(own, commits.filter((c) => c.writer === config.writer)));
    if (state) log.info({ savedBy: state.writer, savedAt: new Date(state.savedAtMs).toISOString(), commits: Object.fromEntries(state.taken) }, 'quality ledger resumed from a saved state');
    const all = reader.ledger;
    const window = qualityOf(own, { fromMs: windowStart, toMs: endMs, settleMs: config.settleMs });
    const bytes = committedBytes(own, windowStart);
    try {
      await putObject(storage, `${qualityDayPrefix(endMs)}window-${config.writer}-${compactTime(endMs)}.json`, `${JSON.stringify({ writer: config.writer, run_id: runId, ...window })}\n`, 'publish');
    } catch (err) {
      // A window a crashed run of this sink recorded already.
      if (!(err instanceof ObjectExistsError)) throw err;
    }
    const windowEnds = await windowEndsBetween(storage, endMs - DAY_MS, endMs);
    const product = productStatus(all, config.slos, { endsMs: windowEnds, windowMs: config.windowMs }, config.settleMs, endMs);
    status = { window, ...product };
    await putObject(storage, SLO_STATUS_KEY, `${JSON.stringify({ at: new Date(endMs).toISOString(), slos: product.slos, quality: product.quality })}\n`, 'replace');
    await emit('RUNNING', window, product.slos, endMs, bytes);
    await writeSample();
    windowStart = endMs;
    retainFrom(own, windowStart);
    if (final || endMs - savedAtMs >= STATE_EVERY_MS) {
      await saveState(storage, config.writer, endMs, reader.taken, all);
      savedAtMs = endMs;
    }
  }

  await putObject(storage, CONTRACT_KEY, toYaml(contract), 'replace');
  await putObject(storage, PRODUCT_KEY, toYaml(product), 'replace');
  await putObject(storage, EXAMPLE_QUERY_KEY, EXAMPLE_QUERY, 'replace');
  const startMs = Date.now();
  await emit('START', qualityOf(newQualityLedger(), { fromMs: startMs, toMs: startMs, settleMs: config.settleMs }), [], startMs);

  let chain: Promise<void> = Promise.resolve();
  const serial = (endMs: number, final = false): Promise<void> => {
    chain = chain
      .then(() => recordWindow(endMs, final))
      .catch((err: Error) => log.error({ err: err.message }, 'recording a quality window failed; the next window covers it'));
    return chain;
  };
  // Windows end on multiples of the window length, so every sink's windows line up. Each
  // is recorded a moment after its end, so that commits stamped inside it are on record.
  let timer: NodeJS.Timeout;
  const schedule = () => {
    const end = Math.ceil((Date.now() + 1) / config.windowMs) * config.windowMs;
    timer = setTimeout(() => {
      void serial(end);
      schedule();
    }, end + RECORD_LAG_MS - Date.now());
  };
  schedule();

  return {
    contract,
    product,
    status: () => status,
    closeWindow: () => serial(Date.now()),
    async close() {
      clearTimeout(timer);
      const endMs = Date.now();
      // The last window saves the ledger, so that the next start reads only what came after.
      await serial(endMs, true);
      await emit('COMPLETE', status?.window ?? qualityOf(newQualityLedger(), { fromMs: endMs, toMs: endMs, settleMs: config.settleMs }), status?.slos ?? [], endMs);
    },
  };
}
