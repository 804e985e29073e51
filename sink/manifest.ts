import { rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import PQueue from 'p-queue';
import type { Logger } from 'pino';
import { INVALID_REASONS, type InvalidReason } from '../proto/validate';
import { CATALOG_PREFIX } from './layout';
import { BATCH_REJECT_REASONS, type BatchRejectReason, zeroes } from './stats';
import * as z from 'zod';
import { LEGACY_STREAM } from '../proto/stream';
import type { PointKeys } from './dedupe';
import { RangeSet } from './ranges';
import type { LakeStorage } from './storage';

/** Where manifest records live, relative to the lake root. */
export const MANIFEST_PREFIX = `${CATALOG_PREFIX}/manifest`;

type Ranges = Array<[number, number]>;

// What is read back is checked, one schema per record type: records rebuild the dedupe
// state (invariant 3), so a damaged one must be refused, not half believed.
const count = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
const rangesSchema = z.array(z.tuple([count, count]).refine(([from, to]) => from <= to, 'a range must not run backwards'));
const countsByKey = z.record(z.string(), count);
const STREAM_KEY = /^[0-9]{1,16}$/;

const fileEntrySchema = z.object({
  key: z.string().min(1),
  rows: count,
  bytes: count,
  min_ts: z.number().int(),
  max_ts: z.number().int(),
});

/** A data file as the manifest knows it. */
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

const commitCountsSchema = z.object({
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
  streams: z.record(z.string(), z.record(z.string().regex(STREAM_KEY).refine((k) => Number.isSafeInteger(Number(k)), 'not a stream id'), rangesSchema)).optional(),
  counts: commitCountsSchema,
}) satisfies z.ZodType<CommitRecord>;

/** Calls `each` with every (drone, stream, seq ranges) a commit record holds. */
export function forEachPointRange(record: CommitRecord, each: (droneId: string, stream: number, ranges: Ranges) => void): void {
  for (const [droneId, ranges] of Object.entries(record.points)) each(droneId, LEGACY_STREAM, ranges);
  for (const [droneId, byStream] of Object.entries(record.streams ?? {})) {
    for (const [stream, ranges] of Object.entries(byStream)) each(droneId, Number(stream), ranges);
  }
}

/** A compaction: `inputs` leave the live set and `outputs`, holding the same rows, enter it. */
export interface CompactionRecord {
  version: 1;
  kind: 'compaction';
  /** Derived from the inputs alone, so two compactors of the same files write the same names. */
  id: string;
  committed_at: string;
  partition: string;
  inputs: string[];
  outputs: FileEntry[];
}

const compactionRecordSchema = z.object({
  version: z.literal(1),
  kind: z.literal('compaction'),
  id: z.string().min(1),
  committed_at: z.iso.datetime(),
  partition: z.string(),
  inputs: z.array(z.string().min(1)),
  outputs: z.array(fileEntrySchema),
}) satisfies z.ZodType<CompactionRecord>;

export type ManifestRecord = CommitRecord | CompactionRecord;

const manifestRecordSchema = z.discriminatedUnion('kind', [commitRecordSchema, compactionRecordSchema]);

export const commitRecordKey = (writer: string, number: number): string => `${MANIFEST_PREFIX}/commit-${writer}-${String(number).padStart(10, '0')}.json`;
export const compactionRecordKey = (id: string): string => `${MANIFEST_PREFIX}/compaction-${id}.json`;

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

/** Publishes a record with the storage's create-only step; rejects with ObjectExistsError if its name is taken. */
export async function publishRecord(storage: LakeStorage, key: string, record: ManifestRecord): Promise<void> {
  const local = path.join(storage.stagingDir, path.basename(key));
  await writeFile(local, `${JSON.stringify(record)}\n`);
  try {
    await storage.publish(local, key);
  } finally {
    await rm(local, { force: true });
  }
}

/** The record in `value`, or an error naming the first field at fault. */
export function checkRecord(value: unknown): ManifestRecord {
  const parsed = manifestRecordSchema.safeParse(value);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0]!;
  const kind = typeof value === 'object' && value !== null && 'kind' in value && typeof value.kind === 'string' ? `${value.kind.slice(0, 40)} ` : '';
  const field = issue.path.join('.');
  throw new Error(`not a valid ${kind}record${field ? `: ${field}` : ''}: ${issue.message.replace(/^Invalid input: /, '')}`);
}

/**
 * The lake as of the records read: the files a reader should see, and the history the
 * sinks dedupe against.
 *
 * Records have unique names and are never changed, so the snapshot does not depend on
 * the order a listing returns them, and it needs no create-only store to stay correct:
 * - every commit record adds its files;
 * - compactions apply in (committed_at, id) order, and one whose inputs are not all
 *   live at that point is void. Of two compactors that raced over the same files, the
 *   first wins, the other's output is never live, and no row is lost or doubled.
 */
export interface Snapshot {
  live: Map<string, FileEntry>;
  commits: CommitRecord[];
  compactions: CompactionRecord[];
  /** When each file left the live set through a compaction (ms since the epoch). */
  retiredAt: Map<string, number>;
  /** Every key any record names: data files, outputs and quarantine files. */
  referenced: Set<string>;
}

export function buildSnapshot(records: ManifestRecord[]): Snapshot {
  const commits = records.filter((r): r is CommitRecord => r.kind === 'commit');
  const compactions = records
    .filter((r): r is CompactionRecord => r.kind === 'compaction')
    .sort((a, b) => (a.committed_at < b.committed_at ? -1 : a.committed_at > b.committed_at ? 1 : a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  const live = new Map<string, FileEntry>();
  const referenced = new Set<string>();
  for (const commit of commits) {
    for (const file of commit.files) {
      live.set(file.key, file);
      referenced.add(file.key);
    }
    for (const key of commit.quarantine) referenced.add(key);
  }
  const retiredAt = new Map<string, number>();
  const applied: CompactionRecord[] = [];
  for (const compaction of compactions) {
    for (const file of compaction.outputs) referenced.add(file.key);
    if (compaction.inputs.length === 0 || !compaction.inputs.every((key) => live.has(key))) continue;
    const at = Date.parse(compaction.committed_at);
    for (const key of compaction.inputs) {
      live.delete(key);
      retiredAt.set(key, at);
    }
    for (const file of compaction.outputs) live.set(file.key, file);
    applied.push(compaction);
  }
  return { live, commits, compactions: applied, retiredAt, referenced };
}

/** The usual `onBad` of a long-running component: a warning in its log, and on it goes. */
export const warnBadRecord =
  (log: Logger) =>
  (key: string, err: Error): void =>
    log.warn({ key, err: err.message }, 'skipped an unreadable manifest record');

/** Records already read, by key: they never change, so a long-running reader reads each once. */
export type ManifestCache = Map<string, ManifestRecord>;

/**
 * Reads every manifest record. A record that cannot be read is reported through `onBad`
 * and skipped: records appear with a create-only publish of a complete file, so an
 * unreadable one was damaged afterwards, and skipping it is the only way to keep serving.
 */
export async function readManifest(storage: LakeStorage, onBad: (key: string, err: Error) => void, cache: ManifestCache = new Map()): Promise<Snapshot> {
  const objects = (await storage.list(`${MANIFEST_PREFIX}/`)).filter((o) => o.key.endsWith('.json'));
  // Records are small: reading many at once hides the store's per-request latency.
  const reads = new PQueue({ concurrency: 16 });
  const records = await Promise.all(
    objects.map((o) =>
      reads.add(async () => {
        const cached = cache.get(o.key);
        if (cached) return cached;
        try {
          const bytes = await storage.read(o.key);
          if (bytes === null) return null;
          const record = checkRecord(JSON.parse(bytes.toString('utf8')));
          cache.set(o.key, record);
          return record;
        } catch (err) {
          onBad(o.key, err as Error);
          return null;
        }
      }),
    ),
  );
  return buildSnapshot(records.filter((r): r is ManifestRecord => r !== null));
}

/** The highest commit number `writer` has recorded, 0 if none. */
export function lastCommitNumber(snapshot: Snapshot, writer: string): number {
  let last = 0;
  for (const commit of snapshot.commits) if (commit.writer === writer && commit.number > last) last = commit.number;
  return last;
}
