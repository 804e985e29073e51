import PQueue from 'p-queue';
import type { Logger } from 'pino';
import { INVALID_REASONS, type InvalidReason } from '../proto/validate';
import { CATALOG_PREFIX, commitOfFile, QUARANTINE_PREFIX } from './layout';
import type { BatchLedger, PointLedger } from './dedupe';
import { loadTable } from './table/metadata';
import { BATCH_REJECT_REASONS, type BatchRejectReason, zeroes } from './stats';
import * as z from 'zod';
import { LEGACY_STREAM } from '../proto/stream';
import type { PointKeys } from './dedupe';
import { RangeSet } from './ranges';
import { putObject, type LakeStorage } from './storage';

/**
 * A sink's checkpoints: what its commits carried besides data files. The table says
 * which files are live; a sink's checkpoints say which batches and point keys it
 * committed (exactly-once across restarts, invariant 3) and what each commit counted
 * (the quality metrics). They live outside the table's location, where an engine's
 * orphan-file removal never looks, and the table names them: each snapshot's summary
 * carries its checkpoint's key, and the table's properties each writer's last commit
 * and last full state, so a starting sink reads a bounded number of objects.
 */
export const CHECKPOINT_PREFIX = `${CATALOG_PREFIX}/commits`;
/** Where the JSON manifest of earlier versions lived; read only to adopt such a lake. */
export const LEGACY_MANIFEST_PREFIX = `${CATALOG_PREFIX}/manifest`;
/** A writer writes its full state every this many commits: a start reads at most this many deltas per writer. */
export const STATE_EVERY = 64;

type Ranges = Array<[number, number]>;

// What is read back is checked, one schema per record type: records rebuild the dedupe
// state (invariant 3), so a damaged one must be refused, not half believed.
export const count = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
const rangesSchema = z.array(z.tuple([count, count]).refine(([from, to]) => from <= to, 'a range must not run backwards'));

const STREAM_KEY = /^[0-9]{1,16}$/;

/** Pairs [from, to] of whole numbers, 0 <= from <= to <= 2^53: what rangesSchema takes. */
function isRanges(value: unknown): value is Ranges {
  if (!Array.isArray(value)) return false;
  for (const range of value) {
    if (!Array.isArray(range) || range.length !== 2) return false;
    const from: unknown = range[0];
    const to: unknown = range[1];
    if (typeof from !== 'number' || typeof to !== 'number' || !Number.isSafeInteger(from) || !Number.isSafeInteger(to) || from < 0 || from > to) return false;
  }
  return true;
}
const isPlainObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
/** Seq ranges by drone, then by stream id (decimal, below 2^53). */
function isStreamRanges(value: unknown): value is Record<string, Record<string, Ranges>> {
  if (!isPlainObject(value)) return false;
  for (const drone of Object.keys(value)) {
    const byStream = value[drone];
    if (!isPlainObject(byStream)) return false;
    for (const stream of Object.keys(byStream)) {
      if (!STREAM_KEY.test(stream) || !Number.isSafeInteger(Number(stream)) || !isRanges(byStream[stream])) return false;
    }
  }
  return true;
}
// A commit record's seq ranges, a drone each (hundreds a record), checked in one loop: as
// zod records of records of refined tuples they were 40 % of reading a record (10.2 against
// 6.0 CPU-s for 8,000 records of 200 drones), which a sink pays for every record of the
// lake at its first quality window after a restart, and `dronelake catalog` at every run.
const streamRangesSchema = z.custom<Record<string, Record<string, Ranges>>>(isStreamRanges, 'not seq ranges by drone and stream: [from, to] pairs of whole numbers, from <= to, under decimal stream ids');
const countsByKey = z.record(z.string(), count);

const fileEntrySchema = z.object({
  key: z.string().min(1),
  rows: count,
  bytes: count,
  min_ts: z.number().int(),
  max_ts: z.number().int(),
});

/** A data file as a commit record counts it. */
export interface FileEntry {
  key: string;
  rows: number;
  bytes: number;
  /** Event-time bounds of the file's rows, microseconds since the epoch. */
  min_ts: number;
  max_ts: number;
}

/**
 * What one commit took besides its rows: the quality metrics are folded from these, so
 * they are exact, survive crashes, and never count a commit twice.
 */
export interface CommitCounts {
  /** Points of decodable batches: valid, invalid and duplicate. */
  received_points: number;
  duplicate_points: number;
  duplicate_batches: number;
  /** Points that arrived for a partition already closed (past the lateness window). */
  late_points: number;
  /** By rule; a record written before a rule existed lacks its key. */
  rejected_points: Partial<Record<InvalidReason, number>>;
  rejected_batches: Partial<Record<BatchRejectReason, number>>;
  /** Copies of messages rejected before (within the repeat window); absent in records written before it. */
  repeated_rejected_batches?: number;
  /** The highest dropped-point total each gateway reported (its spool's drop-oldest losses). */
  dropped_reported: Record<string, number>;
  /** Event-to-commit latency histogram of the commit's rows: bucket index -> rows (see latency.ts). */
  latency_buckets: Record<string, number>;
}

export const commitCountsSchema = z.object({
  received_points: count,
  duplicate_points: count,
  duplicate_batches: count,
  late_points: count,
  rejected_points: z.partialRecord(z.enum(INVALID_REASONS), count),
  rejected_batches: z.partialRecord(z.enum(BATCH_REJECT_REASONS), count),
  repeated_rejected_batches: count.optional(),
  dropped_reported: countsByKey,
  latency_buckets: countsByKey,
});

/** Counts to add to as a commit takes points: every rule and reason starts at zero. */
export interface OpenCommitCounts extends CommitCounts {
  rejected_points: Record<InvalidReason, number>;
  rejected_batches: Record<BatchRejectReason, number>;
  repeated_rejected_batches: number;
}

export function emptyCommitCounts(): OpenCommitCounts {
  return {
    received_points: 0,
    duplicate_points: 0,
    duplicate_batches: 0,
    late_points: 0,
    rejected_points: zeroes(INVALID_REASONS),
    rejected_batches: zeroes(BATCH_REJECT_REASONS),
    repeated_rejected_batches: 0,
    dropped_reported: {},
    latency_buckets: {},
  };
}

/**
 * One sink commit, recorded after its files are visible and before its acks go out. The
 * batches and point keys it holds are what a restarted sink dedupes against, so a batch
 * committed before a crash is never stored twice, whatever the agents re-send.
 */
export interface CommitRecord {
  version: 1;
  kind: 'commit';
  /** The sink that wrote it (its MQTT client id) and its commit number, 1, 2, 3… */
  writer: string;
  number: number;
  committed_at: string;
  files: FileEntry[];
  quarantine: string[];
  /** batch_seq ranges per gateway. */
  batches: Record<string, Ranges>;
  /** seq ranges per drone, of the legacy stream 0 (points whose producer names no stream). */
  points: Record<string, Ranges>;
  /** seq ranges per drone and stream (decimal), of every other stream; absent in records written before streams. */
  streams?: Record<string, Record<string, Ranges>>;
  counts: CommitCounts;
}

const commitRecordSchema = z.object({
  version: z.literal(1),
  kind: z.literal('commit'),
  writer: z.string().min(1),
  number: count,
  committed_at: z.iso.datetime(),
  files: z.array(fileEntrySchema),
  quarantine: z.array(z.string()),
  batches: z.record(z.string(), rangesSchema),
  points: z.record(z.string(), rangesSchema),
  streams: streamRangesSchema.optional(),
  counts: commitCountsSchema,
}) satisfies z.ZodType<CommitRecord>;

/** Calls `each` with every (drone, stream, seq ranges) a commit record holds. */
export function forEachPointRange(record: CommitRecord, each: (droneId: string, stream: number, ranges: Ranges) => void): void {
  // Keys, not entries: no [key, value] pair made per drone and stream of every record read.
  for (const droneId of Object.keys(record.points)) each(droneId, LEGACY_STREAM, record.points[droneId]!);
  const streams = record.streams;
  if (streams === undefined) return;
  for (const droneId of Object.keys(streams)) {
    const byStream = streams[droneId]!;
    for (const stream of Object.keys(byStream)) each(droneId, Number(stream), byStream[stream]!);
  }
}

const pad = (n: number): string => String(n).padStart(10, '0');
export const checkpointKey = (writer: string, number: number): string => `${CHECKPOINT_PREFIX}/${writer}/commit-${pad(number)}.json`;
export const stateKey = (writer: string, number: number): string => `${CHECKPOINT_PREFIX}/${writer}/state-${pad(number)}.json`;
const CHECKPOINT_NAME = /\/(commit|state)-(\d{10})\.json$/;

/** Which checkpoint a key names, or null. */
export function checkpointOf(key: string): { writer: string; kind: 'commit' | 'state'; number: number } | null {
  const m = CHECKPOINT_NAME.exec(key);
  if (!m || !key.startsWith(`${CHECKPOINT_PREFIX}/`)) return null;
  const writer = key.slice(CHECKPOINT_PREFIX.length + 1, m.index);
  return writer === '' || writer.includes('/') ? null : { writer, kind: m[1] as 'commit' | 'state', number: Number(m[2]) };
}

export function commitRecord(
  writer: string,
  number: number,
  files: FileEntry[],
  quarantine: string[],
  batches: Map<string, number[]>,
  points: PointKeys,
  counts: CommitCounts,
): CommitRecord {
  const batchRanges: Record<string, Ranges> = {};
  for (const [gatewayId, seqs] of batches) {
    const set = new RangeSet();
    for (const seq of seqs) set.add(seq);
    batchRanges[gatewayId] = set.ranges();
  }
  const pointRanges: Record<string, Ranges> = {};
  const streamRanges: Record<string, Record<string, Ranges>> = {};
  for (const [droneId, byStream] of points) {
    for (const [stream, set] of byStream) {
      if (stream === LEGACY_STREAM) pointRanges[droneId] = set.ranges();
      else (streamRanges[droneId] ??= {})[String(stream)] = set.ranges();
    }
  }
  return {
    version: 1,
    kind: 'commit',
    writer,
    number,
    committed_at: new Date().toISOString(),
    files,
    quarantine,
    batches: batchRanges,
    points: pointRanges,
    streams: streamRanges,
    counts,
  };
}

/**
 * A writer's whole dedupe state after one of its commits: every batch range, and every
 * stream's seq ranges with when a commit last added to it. A start reads the latest one
 * and the commits after it, never the whole history.
 */
export interface StateRecord {
  version: 1;
  kind: 'state';
  writer: string;
  number: number;
  saved_at: string;
  batches: Record<string, Ranges>;
  streams: Record<string, Record<string, { ranges: Ranges; last_at: number }>>;
}

const stateRecordSchema = z.object({
  version: z.literal(1),
  kind: z.literal('state'),
  writer: z.string().min(1),
  number: count,
  saved_at: z.iso.datetime(),
  batches: z.record(z.string(), rangesSchema),
  streams: z.record(z.string(), z.record(z.string().regex(STREAM_KEY), z.object({ ranges: rangesSchema, last_at: count }))),
}) satisfies z.ZodType<StateRecord>;

export function stateRecord(writer: string, number: number, batches: BatchLedger, points: PointLedger): StateRecord {
  return { version: 1, kind: 'state', writer, number, saved_at: new Date().toISOString(), batches: batches.export(), streams: points.export() };
}

/**
 * Publishes a checkpoint. Its name carries a commit number the table does not hold yet,
 * so an object already under it is what a crashed run of this writer left: replaced.
 */
export async function putCheckpoint(storage: LakeStorage, key: string, record: CommitRecord | StateRecord): Promise<void> {
  await putObject(storage, key, `${JSON.stringify(record)}\n`, 'replace');
}

/** `value` as `schema` says, or an error naming `what` and the first field at fault. */
export function checked<T>(schema: z.ZodType<T>, value: unknown, what: string): T {
  const parsed = schema.safeParse(value);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0]!;
  const field = issue.path.join('.');
  throw new Error(`not a valid ${what}${field ? `: ${field}` : ''}: ${issue.message.replace(/^Invalid input: /, '')}`);
}

/** The commit record in `value`, or an error naming the first field at fault. */
export const checkRecord = (value: unknown): CommitRecord => checked(commitRecordSchema, value, 'commit record');
const checkState = (value: unknown): StateRecord => checked(stateRecordSchema, value, 'state record');

/** The table property under which a writer's position is kept. */
export const writerProperty = (writer: string): string => `dronelake.writer.${writer}`;
const WRITER_PROPERTY = /^dronelake\.writer\.(.+)$/;
const positionSchema = z.object({ commit: count, state: count });
/** A writer's last commit the table holds, and its last full state checkpoint (0: none). */
export type WriterPosition = z.infer<typeof positionSchema>;

export const positionValue = (position: WriterPosition): string => JSON.stringify(position);

/** Every writer's position, from the table's properties; a damaged one is an error naming it. */
export function writerPositions(properties: Record<string, string>): Map<string, WriterPosition> {
  const out = new Map<string, WriterPosition>();
  for (const [name, value] of Object.entries(properties)) {
    const m = WRITER_PROPERTY.exec(name);
    if (!m) continue;
    let parsed: unknown;
    try {
      parsed = JSON.parse(value);
    } catch {
      parsed = value;
    }
    out.set(m[1]!, checked(positionSchema, parsed, `table property ${name}`));
  }
  return out;
}

async function readJson<T>(storage: LakeStorage, key: string, check: (value: unknown) => T): Promise<T> {
  const bytes = await storage.read(key);
  if (bytes === null) throw new Error(`${key}: missing, but the table's properties name it`);
  try {
    return check(JSON.parse(bytes.toString('utf8')));
  } catch (err) {
    throw new Error(`${key}: ${(err as Error).message}`);
  }
}

/** Marks what one commit record holds as committed in the dedupe ledgers. */
export function restoreCommit(record: CommitRecord, batches: BatchLedger, points: PointLedger): void {
  for (const [gatewayId, ranges] of Object.entries(record.batches)) batches.restore(gatewayId, ranges);
  const at = Date.parse(record.committed_at);
  forEachPointRange(record, (droneId, stream, ranges) => points.restore(droneId, stream, ranges, at));
}

/**
 * Invariant 3 across restarts: rebuilds the dedupe state of every writer the table
 * names from its last full state and the commits after it: at most STATE_EVERY + 1
 * reads per writer, whatever the history's length. Returns the objects read.
 */
export async function restoreCheckpoints(storage: LakeStorage, properties: Record<string, string>, batches: BatchLedger, points: PointLedger): Promise<number> {
  const reads = new PQueue({ concurrency: 16 });
  let objects = 0;
  const jobs: Array<Promise<void>> = [];
  for (const [writer, position] of writerPositions(properties)) {
    if (position.state > 0) {
      jobs.push(
        reads.add(async () => {
          const state = await readJson(storage, stateKey(writer, position.state), checkState);
          objects++;
          for (const [gatewayId, ranges] of Object.entries(state.batches)) batches.restore(gatewayId, ranges);
          for (const [droneId, byStream] of Object.entries(state.streams)) {
            for (const [stream, s] of Object.entries(byStream)) points.restore(droneId, Number(stream), s.ranges, s.last_at);
          }
        }),
      );
    }
    for (let n = position.state + 1; n <= position.commit; n++) {
      jobs.push(
        reads.add(async () => {
          restoreCommit(await readJson(storage, checkpointKey(writer, n), checkRecord), batches, points);
          objects++;
        }),
      );
    }
  }
  await Promise.all(jobs);
  return objects;
}

/** The usual `onBad` of a long-running component for a file of kind `what`: a warning in its log, and on it goes. */
export const warnUnreadable =
  (log: Logger, what: string) =>
  (key: string, err: Error): void =>
    log.warn({ key, err: err.message }, `skipped an unreadable ${what}`);
export const warnBadRecord = (log: Logger) => warnUnreadable(log, 'commit checkpoint');

/**
 * Records a reader holds at once. A week of commits at the default 5 s is 121,000 records
 * a sink, about 10 KB each on disk and several times that once parsed: read all before any
 * was folded, a sink's first quality window after a restart (and every `dronelake
 * catalog`) held gigabytes, 1.5 GB of RSS for 20,000. Read a chunk at a time, and handed
 * over before the next is read, they cost what the chunk does (invariant 6).
 */
export const RECORDS_PER_CHUNK = 256;

/**
 * Reads the records at `keys`, checked, a chunk at a time, and hands each chunk to `each`
 * before the next is read; one that cannot be read is reported through `onBad` and skipped.
 * The records come in the keys' order: a reader that needs commit-time order sorts them
 * itself (the quality ledger takes them in any order).
 */
async function readRecords(storage: LakeStorage, keys: readonly string[], onBad: (key: string, err: Error) => void, each: (records: CommitRecord[]) => void): Promise<void> {
  const reads = new PQueue({ concurrency: 16 });
  for (let from = 0; from < keys.length; from += RECORDS_PER_CHUNK) {
    const records = await Promise.all(
      keys.slice(from, from + RECORDS_PER_CHUNK).map((key) =>
        reads.add(async () => {
          try {
            const bytes = await storage.read(key);
            if (bytes === null) return null;
            return checkRecord(JSON.parse(bytes.toString('utf8')));
          } catch (err) {
            onBad(key, err as Error);
            return null;
          }
        }),
      ),
    );
    each(records.filter((r): r is CommitRecord => r !== null));
  }
}

/**
 * The commit records the table has taken since the last call with the same `taken` (each
 * writer's position then; every record the table holds for an empty one), a chunk at a time
 * (readRecords): a long-running reader reads each record once and keeps none. A record past
 * a writer's position belongs to a commit that never reached the table, and does not count;
 * one that cannot be read is reported through `onBad` and skipped. A record is written before the table commit that takes it, so
 * none below a position can turn up later; and each writer's new records are listed alone,
 * by key range, so a window's reading does not grow with the lake's history.
 */
export async function readNewCommits(storage: LakeStorage, properties: Record<string, string>, onBad: (key: string, err: Error) => void, taken: Map<string, number>, each: (records: CommitRecord[]) => void): Promise<void> {
  const keys: string[] = [];
  for (const [writer, { commit }] of writerPositions(properties)) {
    const from = taken.get(writer) ?? 0;
    if (commit <= from) continue;
    const listed = await storage.list(`${CHECKPOINT_PREFIX}/${writer}/`, { after: checkpointKey(writer, from), before: checkpointKey(writer, commit + 1) });
    for (const { key } of listed) {
      const c = checkpointOf(key);
      if (c !== null && c.writer === writer && c.kind === 'commit' && c.number > from && c.number <= commit) keys.push(key);
    }
    taken.set(writer, commit);
  }
  await readRecords(storage, keys, onBad, each);
}

/**
 * The commit records, up to each writer's position, of the commits that wrote quarantine
 * files, a chunk at a time: a quarantine file's name carries its commit's tag, so only the
 * few commits that had bad input are read, not every record of the lake. A file of a commit
 * that never reached the table (a crash before its commit) is named by no record read here.
 */
export async function readQuarantineCommits(storage: LakeStorage, properties: Record<string, string>, onBad: (key: string, err: Error) => void, each: (records: CommitRecord[]) => void): Promise<void> {
  const positions = writerPositions(properties);
  const keys = new Set<string>();
  for (const { key } of await storage.list(`${QUARANTINE_PREFIX}/`)) {
    const commit = commitOfFile(key);
    if (commit !== null && commit.number <= (positions.get(commit.writer)?.commit ?? 0)) keys.add(checkpointKey(commit.writer, commit.number));
  }
  await readRecords(storage, [...keys].sort(), onBad, each);
}
