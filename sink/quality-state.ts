import * as z from 'zod';
import { checked, checkRecord, commitCountsSchema, count, emptyCommitCounts, readNewCommits, writerPositions, type CommitRecord } from './checkpoint';
import { CATALOG_PREFIX, compactTime, DAY_MS, timeOfName } from './layout';
import { LatencyHistogram } from './latency';
import { addCommits, advance, newQualityLedger, retainFrom, type QualityLedger } from './quality';
import { putObject, type LakeStorage } from './storage';

// A sink saves the product's quality ledger (sink/quality.ts) now and then, with each
// writer's last commit it holds, so that a reader starts from the newest one and reads only
// the commit records after it. Without it, every `dronelake catalog`, the page's first view
// and a sink's first quality window after a restart read every record the lake kept: a week
// of a sink's commits at the default 5 s is 121,000 records, about a minute of CPU.

export const QUALITY_STATE_PREFIX = `${CATALOG_PREFIX}/quality-state`;
/** States of a writer kept: the newest, and the one before in case the newest is unreadable. */
const KEPT_PER_WRITER = 2;

/** A saved ledger, and the commits it has read: each writer's last commit number. */
export interface QualityState {
  writer: string;
  savedAtMs: number;
  taken: Map<string, number>;
  ledger: QualityLedger;
}

// JSON has no infinities: a ledger's "none yet" bounds are saved as null.
const bound = z.number().nullable();
const toJsonBound = (v: number): number | null => (Number.isFinite(v) ? v : null);
const fromBound = (v: number | null, none: number): number => (v === null ? none : v);

const intervalSchema = z.tuple([count, count, z.number()]).refine(([from, to]) => from <= to, 'an interval must not run backwards');
const stateSchema = z.object({
  version: z.literal(1),
  writer: z.string().min(1),
  saved_at: z.iso.datetime(),
  taken: z.record(z.string(), count),
  ledger: z.object({
    to_ms: bound,
    pending: z.array(z.unknown()),
    recent: z.array(z.object({ at: z.number(), counts: commitCountsSchema, rows: count, bytes: count, partitions: z.array(z.tuple([z.string(), count])) })),
    horizon_ms: bound,
    totals: commitCountsSchema,
    latency: z.array(z.tuple([count, count])),
    rows: count,
    partitions: z.array(z.tuple([z.string(), count])),
    first_at: bound,
    reported_lost: z.array(z.tuple([z.string(), count])),
    newest_event_us: bound,
    oldest_event_us: bound,
    /** Per drone: per stream, its last commit time and its seq intervals. */
    streams: z.array(z.tuple([z.string(), z.array(z.tuple([count, z.number(), z.array(intervalSchema)]))])),
  }),
});
type StateJson = z.infer<typeof stateSchema>;

/** The ledger and what it has read, as the JSON a state file holds. */
export function stateJson(writer: string, savedAtMs: number, taken: ReadonlyMap<string, number>, ledger: QualityLedger): StateJson {
  return {
    version: 1,
    writer,
    saved_at: new Date(savedAtMs).toISOString(),
    taken: Object.fromEntries(taken),
    ledger: {
      to_ms: toJsonBound(ledger.toMs),
      pending: ledger.pending,
      recent: ledger.recent,
      horizon_ms: toJsonBound(ledger.horizonMs),
      totals: ledger.totals,
      latency: ledger.latency.counts.flatMap((n, bucket) => (n > 0 ? [[bucket, n] as [number, number]] : [])),
      rows: ledger.rows,
      partitions: [...ledger.partitions],
      first_at: toJsonBound(ledger.firstAt),
      reported_lost: [...ledger.reportedLost],
      newest_event_us: toJsonBound(ledger.newestEventUs),
      oldest_event_us: toJsonBound(ledger.oldestEventUs),
      streams: [...ledger.streams].map(([drone, byStream]) => [drone, [...byStream].map(([stream, c]) => [stream, c.lastAt, c.intervals])]),
    },
  };
}

/** A state file's content as a state, or an error naming the first field at fault. */
export function parseState(value: unknown): QualityState {
  const parsed = checked(stateSchema, value, 'quality state');
  const s = parsed.ledger;
  const latency = new LatencyHistogram();
  for (const [bucket, n] of s.latency) latency.add(bucket, n);
  const empty = emptyCommitCounts();
  const pending: CommitRecord[] = s.pending.map((record) => checkRecord(record));
  const ledger: QualityLedger = {
    toMs: fromBound(s.to_ms, -Infinity),
    pending,
    recent: s.recent,
    horizonMs: fromBound(s.horizon_ms, -Infinity),
    totals: {
      ...s.totals,
      rejected_points: { ...empty.rejected_points, ...s.totals.rejected_points },
      rejected_batches: { ...empty.rejected_batches, ...s.totals.rejected_batches },
      repeated_rejected_batches: s.totals.repeated_rejected_batches ?? 0,
    },
    latency,
    rows: s.rows,
    partitions: new Map(s.partitions),
    firstAt: fromBound(s.first_at, Infinity),
    reportedLost: new Map(s.reported_lost),
    newestEventUs: fromBound(s.newest_event_us, -Infinity),
    oldestEventUs: fromBound(s.oldest_event_us, Infinity),
    streams: new Map(s.streams.map(([drone, byStream]) => [drone, new Map(byStream.map(([stream, lastAt, intervals]) => [stream, { lastAt, intervals }]))])),
  };
  return { writer: parsed.writer, savedAtMs: Date.parse(parsed.saved_at), taken: new Map(Object.entries(parsed.taken)), ledger };
}

const stateKey = (writer: string, savedAtMs: number): string => `${QUALITY_STATE_PREFIX}/state-${writer}-${compactTime(savedAtMs)}.json`;
const WRITER_OF_KEY = /\/state-(.+)-\d{8}T\d{9}Z\.json$/;

/** Saves a writer's state, then removes its older ones beyond the last KEPT_PER_WRITER. */
export async function saveState(storage: LakeStorage, writer: string, savedAtMs: number, taken: ReadonlyMap<string, number>, ledger: QualityLedger): Promise<void> {
  await putObject(storage, stateKey(writer, savedAtMs), JSON.stringify(stateJson(writer, savedAtMs, taken, ledger)), 'replace');
  const own = (await storage.list(`${QUALITY_STATE_PREFIX}/`)).filter((o) => WRITER_OF_KEY.exec(o.key)?.[1] === writer).map((o) => o.key);
  // Keys sort by time within a writer.
  for (const key of own.sort().slice(0, -KEPT_PER_WRITER)) await storage.remove(key);
}

/**
 * The newest readable state of any writer whose commits it holds are all still the table's
 * (a state from before the table was made anew would count commits it no longer has), or
 * null. One that cannot be read is reported through `onBad` and the next newest tried.
 */
export async function loadState(storage: LakeStorage, properties: Record<string, string>, onBad: (key: string, err: Error) => void): Promise<QualityState | null> {
  const positions = writerPositions(properties);
  const keys = (await storage.list(`${QUALITY_STATE_PREFIX}/`)).map((o) => o.key).filter((key) => timeOfName(key) !== null);
  keys.sort((a, b) => timeOfName(b)! - timeOfName(a)!);
  for (const key of keys) {
    try {
      const bytes = await storage.read(key);
      if (bytes === null) continue;
      const state = parseState(JSON.parse(bytes.toString('utf8')));
      const behind = [...state.taken].find(([writer, number]) => number > (positions.get(writer)?.commit ?? 0));
      if (behind) throw new Error(`it holds commit ${behind[1]} of ${behind[0]}, which the table does not`);
      return state;
    } catch (err) {
      onBad(key, err as Error);
    }
  }
  return null;
}

/** A reader's ledger of the product: the ledger, each writer's last commit read, and whether it has looked for a saved state. */
export interface LedgerReader {
  ledger: QualityLedger;
  taken: Map<string, number>;
  resumed: boolean;
}

export const newLedgerReader = (): LedgerReader => ({ ledger: newQualityLedger(), taken: new Map(), resumed: false });

/**
 * Brings a reader to `atMs`, as a sink's window and a catalog report both do. On its first
 * call with a table it starts from the newest saved state not ahead of `atMs`, which it
 * returns (null when it took none). Then the ledger's time moves on first, and its horizon to
 * a day before (the longest span an objective reads): the records added since are read a
 * chunk at a time (checkpoint.ts), each chunk folded as it comes and then handed to `each`,
 * and none is kept (invariant 6).
 */
export async function catchUp(
  storage: LakeStorage,
  properties: Record<string, string> | null,
  reader: LedgerReader,
  atMs: number,
  onBad: { record: (key: string, err: Error) => void; state: (key: string, err: Error) => void },
  each: (commits: CommitRecord[]) => void = () => {},
): Promise<QualityState | null> {
  let resumed: QualityState | null = null;
  if (!reader.resumed && properties) {
    reader.resumed = true;
    const state = await loadState(storage, properties, onBad.state);
    if (state && state.ledger.toMs <= atMs) {
      reader.ledger = state.ledger;
      // A copy: the returned state keeps saying which commits it held.
      reader.taken = new Map(state.taken);
      resumed = state;
    }
  }
  advance(reader.ledger, atMs);
  retainFrom(reader.ledger, atMs - DAY_MS);
  if (properties) {
    await readNewCommits(storage, properties, onBad.record, reader.taken, (commits) => {
      addCommits(reader.ledger, commits);
      each(commits);
    });
  }
  return resumed;
}
