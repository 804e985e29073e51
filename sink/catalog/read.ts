import PQueue from 'p-queue';
import { parse as parseYaml } from 'yaml';
import { openLake, type StorageConfig } from '../open-storage';
import { CONTRACT_KEY, DAY_MS, PRODUCT_KEY, QUALITY_PREFIX, timeOfName, utcDates } from '../layout';
import { readQuarantineCommits, type CommitRecord } from '../checkpoint';
import { catchUp, newLedgerReader, type LedgerReader } from '../quality-state';
import { keyUri, loadTable, metadataKey } from '../table/metadata';
import type { LakeStorage, StoredObject } from '../storage';
import type { QualityLedger } from '../quality';
import { productStatus } from '../slo';
import { ROW_KEY_SENTENCE } from './columns-doc';
import { DIRECTION, duration, isSet, num, objectiveStatus, OBJECTIVES } from './objectives-text';
import { SLO_PROPERTIES, type QualityMetrics, type SloProperty, type SloStatus, type SloTarget } from './types';

/** What `dronelake catalog` prints: the product, its objectives' status, its quality. */
export interface CatalogReport {
  product: { id: string; name: string; domain: string; version: string; contract: string; status: string; output_ports: string[] };
  /** What identifies a row, in the contract's words. */
  key: string;
  slos: SloStatus[];
  quality: QualityMetrics;
  /** Quality windows that ended in the last 24 h (an end every sink recorded counts once): what the availability objective counts. */
  quality_windows_24h: number;
  /** Rows per second over the last hour, or since the first commit when that is later: the one throughput figure people are shown. */
  throughput: { rows_per_second: number; window_seconds: number };
  /** The Iceberg table: where it is, its current metadata, and its most recent snapshots (newest first). */
  table: { location: string; metadata: string; version: number; snapshots: SnapshotLine[] } | null;
}

/** A snapshot as `dronelake catalog` lists it. */
export interface SnapshotLine {
  id: number;
  at: string;
  operation: string;
  writer: string | null;
  added_records: number;
  total_records: number;
}

/** How many recent snapshots the catalog lists. */
const SNAPSHOTS_LISTED = 10;

/** Settings the sink records in the contract's customProperties, for readers like this one. */
export const CONTRACT_SETTINGS = { windowSeconds: 'qualityWindowSeconds', missingAfterSeconds: 'missingAfterSeconds' } as const;

interface ContractDoc {
  id: string;
  name?: string;
  version: string;
  status: string;
  slaProperties?: Array<{ property: string; value: unknown; unit?: string; description?: string }>;
  customProperties?: Array<{ property: string; value: unknown }>;
}

function setting(contract: ContractDoc, name: string, fallback: number): number {
  const value = contract.customProperties?.find((p) => p.property === name)?.value;
  return typeof value === 'number' ? value : fallback;
}

/** The objectives as the contract states them: the contract is what consumers were promised. */
export function targetsOf(contract: ContractDoc): SloTarget[] {
  return (contract.slaProperties ?? [])
    .filter((p): p is { property: SloProperty; value: number; unit?: string; description?: string } => (SLO_PROPERTIES as readonly string[]).includes(p.property) && typeof p.value === 'number')
    .map((p) => ({ property: p.property, target: p.value, unit: p.unit ?? '', direction: DIRECTION[p.property], description: p.description ?? '' }));
}

/** Reads the product's catalog and computes its status from the table's commit checkpoints, as of now. */
export async function readCatalog(config: StorageConfig, onBadRecord: (key: string, err: Error) => void, nowMs = Date.now()): Promise<CatalogReport> {
  const storage = await openLake(config);
  try {
    return await catalogReport(storage, onBadRecord, nowMs);
  } finally {
    await storage.close();
  }
}

/**
 * The end times of every sink's quality windows that ended from `fromMs` to `toMs`, each
 * once: the day's directories listed, not the whole history, which a sink listed every
 * window, a minute at a time, for as long as the lake lived (525,600 files a year a sink).
 */
export async function windowEndsBetween(storage: LakeStorage, fromMs: number, toMs: number): Promise<number[]> {
  const listed = await Promise.all(utcDates(fromMs, toMs).map((date) => storage.list(`${QUALITY_PREFIX}/date=${date}/`)));
  const ends = listed.flat().map((o) => timeOfName(o.key)).filter((t): t is number => t !== null && t >= fromMs && t <= toMs);
  return [...new Set(ends)];
}

/** The newest quarantine files a lake ledger keeps the names of: the product page shows examples from a few of them. */
const QUARANTINE_FILES_KEPT = 64;

interface QuarantineFile {
  at: number;
  key: string;
}

/** The newest QUARANTINE_FILES_KEPT of `kept` and the files `commits` name, oldest first: records come in no time order. */
function newestQuarantine(kept: readonly QuarantineFile[], commits: readonly CommitRecord[]): QuarantineFile[] {
  const named = commits.flatMap((c) => c.quarantine.map((key) => ({ at: Date.parse(c.committed_at), key })));
  if (named.length === 0) return [...kept];
  return [...kept, ...named].sort((a, b) => a.at - b.at).slice(-QUARANTINE_FILES_KEPT);
}

/**
 * A reader's ledger of a lake's commits (sink/quality.ts), as a sink keeps its own: each
 * commit record read once, none kept. It starts from the newest state a sink saved
 * (sink/quality-state.ts), and reads only the records after it.
 */
export interface LakeLedger extends LedgerReader {
  /** The newest quarantine files the commits named, with their commits' times, oldest first. */
  quarantine: QuarantineFile[];
  /** Reports take turns, so that two at once do not read the same new records twice. */
  readonly turns: PQueue;
}

export const newLakeLedger = (): LakeLedger => ({ ...newLedgerReader(), quarantine: [], turns: new PQueue({ concurrency: 1 }) });

/**
 * The report of an open lake: what `dronelake catalog` prints and the product page shows,
 * computed one way. A long-running reader passes its lake ledger, which reads only the
 * records added since its last report; without one, the report reads those after the
 * newest saved state (all of them when there is none).
 */
export async function catalogReport(
  storage: LakeStorage,
  onBadRecord: (key: string, err: Error) => void,
  nowMs = Date.now(),
  lake?: LakeLedger,
  /** The quality windows' listing, when the caller has made it already: on a local lake, listing a week of windows is most of the work. */
  windows?: StoredObject[],
): Promise<CatalogReport> {
  const [contractBytes, productBytes] = await Promise.all([storage.read(CONTRACT_KEY), storage.read(PRODUCT_KEY)]);
  if (contractBytes === null || productBytes === null) throw new Error(`${storage.root} has no catalog (${CONTRACT_KEY}): no sink has written to this lake yet`);
  const contract = parseYaml(contractBytes.toString('utf8')) as ContractDoc;
  const product = parseYaml(productBytes.toString('utf8')) as { id: string; name?: string; domain?: string; outputPorts?: Array<{ name: string }> };
  const table = await loadTable(storage);
  // Of the windows, the objectives and the report need the last day's: a one-time report lists
  // those two days' directories, not the whole history (90 days of a window a minute a sink).
  const windowEnds = windows
    ? [...new Set(windows.map((o) => timeOfName(o.key)).filter((t): t is number => t !== null))]
    : await windowEndsBetween(storage, nowMs - DAY_MS, nowMs);
  const windowMs = setting(contract, CONTRACT_SETTINGS.windowSeconds, 60) * 1000;
  const settleMs = setting(contract, CONTRACT_SETTINGS.missingAfterSeconds, 600) * 1000;
  const statusAt = (ledger: QualityLedger, atMs: number) => productStatus(ledger, targetsOf(contract), { endsMs: windowEnds, windowMs }, settleMs, atMs);
  // A one-time report (dronelake catalog) is a lake ledger's first, and shows no quarantine examples.
  const reader = lake ?? newLakeLedger();
  const { quality, slos, throughput } = await reader.turns.add(async () => {
    // A report that waited its turn behind a later one is as of that one's time.
    const atMs = Math.max(nowMs, reader.ledger.toMs);
    const properties = table?.metadata.properties ?? null;
    const state = await catchUp(storage, properties, reader, atMs, { record: onBadRecord, state: onBadRecord }, (commits) => {
      if (lake) reader.quarantine = newestQuarantine(reader.quarantine, commits);
    });
    // A state names no quarantine files: the newest up to it come from the records of the
    // commits that wrote some.
    if (lake && state && properties) {
      await readQuarantineCommits(storage, properties, onBadRecord, (commits) => {
        reader.quarantine = newestQuarantine(reader.quarantine, commits.filter((c) => c.number <= (state.taken.get(c.writer) ?? 0)));
      });
    }
    return statusAt(reader.ledger, atMs);
  });
  return {
    product: {
      id: product.id,
      name: product.name ?? product.id,
      domain: product.domain ?? 'drones',
      version: contract.version,
      contract: contract.id,
      status: contract.status,
      output_ports: (product.outputPorts ?? []).map((p) => p.name),
    },
    key: ROW_KEY_SENTENCE,
    slos,
    quality,
    quality_windows_24h: windowEnds.filter((t) => t > nowMs - DAY_MS && t <= nowMs).length,
    throughput: { rows_per_second: throughput.rowsPerSecond, window_seconds: throughput.windowSeconds },
    table: table && {
      location: table.metadata.location,
      metadata: keyUri(storage, metadataKey(table.version)),
      version: table.version,
      snapshots: [...table.metadata.snapshots]
        .sort((a, b) => b['timestamp-ms'] - a['timestamp-ms'] || b['sequence-number'] - a['sequence-number'])
        .slice(0, SNAPSHOTS_LISTED)
        .map((s) => ({
          id: s['snapshot-id'],
          at: new Date(s['timestamp-ms']).toISOString(),
          operation: s.summary.operation,
          writer: s.summary['dronelake.writer'] ?? null,
          added_records: Number(s.summary['added-records'] ?? 0),
          total_records: Number(s.summary['total-records'] ?? 0),
        })),
    },
  };
}

const plural = (n: number, word: string): string => `${n} ${word}${n === 1 ? '' : 's'}`;

export function formatCatalog(report: CatalogReport): string {
  const q = report.quality;
  const objectives = report.slos.filter(isSet).map((s) => {
    const o = OBJECTIVES[s.property];
    const status = objectiveStatus(s);
    return [`  ${status.padEnd(9)}`, o.name.padEnd(16), o.promise(s.target).padEnd(46), `now ${o.now(s.actual)}`];
  });
  const lines = [
    `${report.product.name} (${report.product.id}), domain ${report.product.domain}, version ${report.product.version}, ${report.product.status}`,
    `contract ${report.product.contract}; output ports: ${report.product.output_ports.join(', ')}`,
    `key: ${report.key}`,
    '',
    'objectives:',
    ...objectives.map((cells) => cells.join(' ').trimEnd()),
    '',
    `quality (${q.from} .. ${q.to}; ${plural(report.quality_windows_24h, 'window')} recorded in the last 24 h):`,
    `  rows ${q.rows}, received points ${q.received_points}, throughput ${num(report.throughput.rows_per_second, 1)} rows/s over the last ${duration(report.throughput.window_seconds)}`,
    `  missing entries ${q.missing_entries}, reported lost ${q.reported_lost}, in flight ${q.in_flight}`,
    `  drones ${q.drones} in ${q.streams} streams${Object.keys(q.streams_by_drone).length > 0 ? ` (several: ${Object.entries(q.streams_by_drone).slice(0, 5).map(([d, n]) => `${d} ${n}`).join(', ')}${Object.keys(q.streams_by_drone).length > 5 ? ', …' : ''})` : ''}`,
    `  rejected points ${q.rejected_points}, undecodable batches ${q.undecodable_batches} (sent again ${q.rejected_batch_repeats} times), error rate ${num(q.error_rate * 100, 2)} %`,
    `  duplicates dropped ${q.duplicates_dropped}, late points ${q.late_points}`,
    `  freshness: newest row ${duration(q.freshness_seconds)} old; event to commit p50 ${num(q.latency_p50_ms, 0)} ms, p99 ${num(q.latency_p99_ms, 0)} ms`,
    '',
    ...(report.table
      ? [
          `table: Iceberg v2 at ${report.table.location}, version ${report.table.version} (${report.table.metadata})`,
          `recent snapshots (query one with --snapshot ID, or a time with --as-of):`,
          ...report.table.snapshots.map((s) => `  ${String(s.id).padEnd(17)} ${s.at}  ${s.operation.padEnd(8)} +${s.added_records} rows, ${s.total_records} in all${s.writer ? `  by ${s.writer}` : ''}`),
        ]
      : ['table: none yet']),
  ];
  return `${lines.join('\n')}\n`;
}
