import { randomBytes } from 'node:crypto';
import PQueue from 'p-queue';
import { HOUR_MS } from '../layout';
import type { LakeStorage } from '../storage';
import { ObjectExistsError } from '../storage';
import { ADDED, DELETED, EXISTING, type DataFile, type ManifestEntry, type ManifestFile } from './avro';
import { currentSnapshot, manifestHours, manifestsOf, readManifest, trimCache, writeManifest, writeManifestList, type ManifestCache } from './manifests';
import { createTable, keyUri, loadTable, metadataKey, PREVIOUS_VERSIONS_MAX, writeVersion, type Snapshot, type TableMetadata, type TableVersion } from './metadata';

/** The snapshot summary field naming the writer that made it. */
export const WRITER_SUMMARY = 'dronelake.writer';

/** Past this many manifests in a snapshot, an append merges the small ones (as Iceberg's own writers do). */
export const MAX_MANIFESTS = 16;
/** A manifest with this many entries is left alone by merges, so a merge never rewrites the whole table. */
const MERGE_BELOW_ENTRIES = 1024;
/** Every snapshot of the last quarter hour is kept; older ones, the last of each hour. */
export const KEEP_ALL_SNAPSHOTS_MS = 15 * 60 * 1000;
/** Attempts of one commit against writers that keep winning the race for the next version. */
const MAX_ATTEMPTS = 100;

export interface TableSettings {
  /** Snapshots older than this are expired: how far back time travel reaches. */
  snapshotRetentionMs: number;
  /** Every snapshot younger than this is kept (KEEP_ALL_SNAPSHOTS_MS unless given). */
  keepAllMs?: number;
}

export interface CommitCounters {
  commits: number;
  /** Attempts that lost the race for the next version to another writer and tried again. */
  retries: number;
}

/** A positive snapshot id below 2^53, so it survives JSON and Avro longs in JavaScript exactly. */
export function newSnapshotId(): number {
  return Number(randomBytes(8).readBigUInt64LE() & ((1n << 53n) - 1n)) || 1;
}

/**
 * Which snapshots a new version keeps: the current one, every one of the last quarter
 * hour, and the last of each older hour within the retention. Time travel to any time in
 * the retention finds the newest kept snapshot at or before it; metadata stays a few
 * hundred snapshots at a commit every few seconds.
 */
export function retainedSnapshots(snapshots: Snapshot[], currentId: number, nowMs: number, settings: TableSettings): Snapshot[] {
  const lastOfHour = new Map<number, Snapshot>();
  for (const s of snapshots) {
    const hour = Math.floor(s['timestamp-ms'] / HOUR_MS);
    const kept = lastOfHour.get(hour);
    if (!kept || s['timestamp-ms'] >= kept['timestamp-ms']) lastOfHour.set(hour, s);
  }
  const hourly = new Set(lastOfHour.values());
  return snapshots.filter((s) => {
    const age = nowMs - s['timestamp-ms'];
    return s['snapshot-id'] === currentId || age <= (settings.keepAllMs ?? KEEP_ALL_SNAPSHOTS_MS) || (age <= settings.snapshotRetentionMs && hourly.has(s));
  });
}

const sumOf = (entries: ManifestEntry[], f: (d: DataFile) => number) => entries.reduce((n, e) => n + f(e.data_file), 0);

function summaryOf(parent: Snapshot | null, operation: string, added: ManifestEntry[], deleted: ManifestEntry[], extra: Record<string, string>): Record<string, string> & { operation: string } {
  const total = (name: string) => Number(parent?.summary[name] ?? 0);
  const addedRows = sumOf(added, (d) => d.record_count);
  const deletedRows = sumOf(deleted, (d) => d.record_count);
  const addedBytes = sumOf(added, (d) => d.file_size_in_bytes);
  const deletedBytes = sumOf(deleted, (d) => d.file_size_in_bytes);
  return {
    operation,
    'added-data-files': String(added.length),
    'added-records': String(addedRows),
    'added-files-size': String(addedBytes),
    'deleted-data-files': String(deleted.length),
    'deleted-records': String(deletedRows),
    'removed-files-size': String(deletedBytes),
    'total-data-files': String(total('total-data-files') + added.length - deleted.length),
    'total-records': String(total('total-records') + addedRows - deletedRows),
    'total-files-size': String(total('total-files-size') + addedBytes - deletedBytes),
    'total-delete-files': '0',
    'total-position-deletes': '0',
    'total-equality-deletes': '0',
    ...extra,
  };
}

/** The log a new version carries: the previous ones, then the version it replaces, the last PREVIOUS_VERSIONS_MAX. */
function metadataLogAfter(storage: LakeStorage, base: TableVersion): TableMetadata['metadata-log'] {
  const m = base.metadata;
  return [...m['metadata-log'], { 'timestamp-ms': m['last-updated-ms'], 'metadata-file': keyUri(storage, metadataKey(base.version)) }].slice(-PREVIOUS_VERSIONS_MAX);
}

/** The new version's metadata: `snapshot` made current, expired snapshots dropped, the log bounded. */
function nextMetadata(base: TableVersion, storage: LakeStorage, snapshot: Snapshot, properties: Record<string, string>, settings: TableSettings): TableMetadata {
  const m = base.metadata;
  const now = snapshot['timestamp-ms'];
  const snapshots = retainedSnapshots([...m.snapshots, snapshot], snapshot['snapshot-id'], now, settings);
  const kept = new Set(snapshots.map((s) => s['snapshot-id']));
  return {
    ...m,
    'last-sequence-number': snapshot['sequence-number'],
    'last-updated-ms': now,
    properties: { ...m.properties, ...properties },
    'current-snapshot-id': snapshot['snapshot-id'],
    refs: { ...m.refs, main: { 'snapshot-id': snapshot['snapshot-id'], type: 'branch' } },
    snapshots,
    'snapshot-log': [...m['snapshot-log'], { 'timestamp-ms': now, 'snapshot-id': snapshot['snapshot-id'] }].filter((e) => kept.has(e['snapshot-id'])),
    'metadata-log': metadataLogAfter(storage, base),
  };
}

/** A change to the table, prepared against one version: its new manifests, and what it adds and removes. */
interface Prepared {
  operation: 'append' | 'replace';
  manifests: ManifestFile[];
  added: ManifestEntry[];
  deleted: ManifestEntry[];
}

/**
 * Commits one change: prepares it against the current version and creates the next
 * version's file. Losing that race to another writer (the name exists) means reloading
 * and preparing again on top of what won, so no writer's commit is ever lost.
 * `prepare` returns null when the change no longer applies (a replace whose inputs
 * another writer removed).
 */
async function commit(
  storage: LakeStorage,
  cache: ManifestCache,
  counters: CommitCounters,
  settings: TableSettings,
  extra: { summary: Record<string, string>; properties: Record<string, string> },
  prepare: (base: TableVersion, current: ManifestFile[], snapshotId: number, sequence: number) => Promise<Prepared | null>,
): Promise<{ version: number; snapshotId: number } | null> {
  const snapshotId = newSnapshotId();
  for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
    const base = (await loadTable(storage)) ?? (await createTable(storage));
    const parent = currentSnapshot(base.metadata);
    const current = await manifestsOf(storage, parent, cache);
    const sequence = base.metadata['last-sequence-number'] + 1;
    const prepared = await prepare(base, current, snapshotId, sequence);
    if (prepared === null) return null;
    const listUri = await writeManifestList(storage, prepared.manifests, snapshotId, parent?.['snapshot-id'] ?? null, sequence);
    const snapshot: Snapshot = {
      'snapshot-id': snapshotId,
      ...(parent ? { 'parent-snapshot-id': parent['snapshot-id'] } : {}),
      'sequence-number': sequence,
      'timestamp-ms': Math.max(Date.now(), base.metadata['last-updated-ms']),
      'manifest-list': listUri,
      summary: summaryOf(parent, prepared.operation, prepared.added, prepared.deleted, extra.summary),
      'schema-id': 0,
    };
    try {
      await writeVersion(storage, base.version + 1, nextMetadata(base, storage, snapshot, extra.properties, settings));
    } catch (err) {
      if (!(err instanceof ObjectExistsError)) throw err;
      counters.retries++;
      continue;
    }
    counters.commits++;
    cache.lists.set(listUri, prepared.manifests);
    trimCache(cache, prepared.manifests, listUri);
    return { version: base.version + 1, snapshotId };
  }
  throw new Error(`gave up a table commit after ${MAX_ATTEMPTS} attempts: other writers won every race for the next version`);
}

const entryCount = (m: ManifestFile) => m.added_files_count + m.existing_files_count + m.deleted_files_count;

/** Rewrites `manifests` into one, keeping their live entries as existing and dropping old deletions. */
async function mergeManifests(storage: LakeStorage, cache: ManifestCache, manifests: ManifestFile[], snapshotId: number, sequence: number): Promise<ManifestFile> {
  const entries: ManifestEntry[] = [];
  for (const m of manifests) {
    for (const e of await readManifest(storage, m, cache)) if (e.status !== DELETED) entries.push({ ...e, status: EXISTING });
  }
  return writeManifest(storage, entries, snapshotId, sequence);
}

export interface TableWriter {
  readonly storage: LakeStorage;
  readonly counters: CommitCounters;
  /**
   * Appends data files as one snapshot. `summary` goes into the snapshot's summary (the
   * writer's idempotency key), `properties` into the table's.
   */
  append(files: DataFile[], summary: Record<string, string>, properties?: Record<string, string>): Promise<{ version: number; snapshotId: number }>;
  /**
   * Swaps `inputs` (file URIs) for `outputs`, which hold the same rows, as one `replace`
   * snapshot; null when an input is no longer live, and nothing was changed.
   */
  replace(inputs: string[], outputs: DataFile[], summary?: Record<string, string>): Promise<{ version: number; snapshotId: number } | null>;
}

/** A writer of the table; `writer` names it in every snapshot's summary. */
export function tableWriter(storage: LakeStorage, writer: string, settings: TableSettings, cache: ManifestCache, counters: CommitCounters = { commits: 0, retries: 0 }): TableWriter {
  // One commit at a time per process: its appends and compactions never race each other,
  // which is all that keeps a store that ignores If-None-Match consistent (one writer).
  const serial = new PQueue({ concurrency: 1 });
  const one = <T>(work: () => Promise<T>): Promise<T> => serial.add(work);
  return {
    storage,
    counters,
    append: (files, summary, properties = {}) => one(async () => {
      let manifest: ManifestFile | null = null;
      const result = await commit(storage, cache, counters, settings, { summary: { ...summary, [WRITER_SUMMARY]: writer }, properties }, async (_base, current, snapshotId, sequence) => {
        const added = files.map((data_file): ManifestEntry => ({ status: ADDED, snapshot_id: snapshotId, sequence_number: null, file_sequence_number: null, data_file }));
        // Written once: its entries inherit their sequence number from the list entry,
        // which each attempt writes anew (Iceberg v2's inheritance, for exactly this).
        // A commit of batches with no valid point adds no file, and no manifest.
        if (added.length > 0) manifest ??= await writeManifest(storage, added, snapshotId, sequence);
        const mine: ManifestFile[] = manifest ? [{ ...manifest, sequence_number: sequence, min_sequence_number: sequence }] : [];
        let manifests = [...mine, ...current];
        const small = current.filter((m) => entryCount(m) < MERGE_BELOW_ENTRIES);
        if (manifests.length > MAX_MANIFESTS && small.length > 1) {
          const merged = await mergeManifests(storage, cache, small, snapshotId, sequence);
          manifests = [...mine, merged, ...current.filter((m) => entryCount(m) >= MERGE_BELOW_ENTRIES)];
        }
        return { operation: 'append', manifests, added, deleted: [] };
      });
      return result!;
    }),
    replace: (inputs, outputs, summary = {}) => one(async () => {
      const wanted = new Set(inputs);
      return commit(storage, cache, counters, settings, { summary: { ...summary, [WRITER_SUMMARY]: writer }, properties: {} }, async (_base, current, snapshotId, sequence) => {
        const hours = outputs.map((f) => f.partition.ts_hour).filter((h): h is number => h !== null);
        const [lo, hi] = [Math.min(...hours), Math.max(...hours)];
        const manifests: ManifestFile[] = [];
        const deleted: ManifestEntry[] = [];
        for (const m of current) {
          const range = manifestHours(m);
          // Partition summaries skip the manifests that cannot hold an input.
          if (range && hours.length > 0 && (range.max < lo || range.min > hi)) {
            manifests.push(m);
            continue;
          }
          const entries = await readManifest(storage, m, cache);
          if (!entries.some((e) => e.status !== DELETED && wanted.has(e.data_file.file_path))) {
            manifests.push(m);
            continue;
          }
          const rewritten = entries
            .filter((e) => e.status !== DELETED)
            .map((e): ManifestEntry => {
              if (!wanted.has(e.data_file.file_path)) return { ...e, status: EXISTING };
              const gone: ManifestEntry = { ...e, status: DELETED, snapshot_id: snapshotId };
              deleted.push(gone);
              return gone;
            });
          manifests.push(await writeManifest(storage, rewritten, snapshotId, sequence));
        }
        // Another writer replaced or removed an input since this compaction planned: it
        // no longer applies, and its output stays unreferenced until the sweep.
        if (new Set(deleted.map((e) => e.data_file.file_path)).size !== wanted.size) return null;
        const added = outputs.map((data_file): ManifestEntry => ({ status: ADDED, snapshot_id: snapshotId, sequence_number: null, file_sequence_number: null, data_file }));
        manifests.unshift(await writeManifest(storage, added, snapshotId, sequence));
        return { operation: 'replace', manifests, added, deleted };
      });
    }),
  };
}

/**
 * Expires snapshots as a commit would, for a table no writer commits to now: writes a
 * version with the snapshots the retention keeps (the current one always stays).
 * Returns how many were expired.
 */
export async function expireSnapshots(storage: LakeStorage, settings: TableSettings, nowMs = Date.now()): Promise<number> {
  for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
    const base = await loadTable(storage);
    if (base === null) return 0;
    const m = base.metadata;
    const snapshots = retainedSnapshots(m.snapshots, m['current-snapshot-id'] ?? -1, nowMs, settings);
    if (snapshots.length === m.snapshots.length) return 0;
    const kept = new Set(snapshots.map((x) => x['snapshot-id']));
    try {
      await writeVersion(storage, base.version + 1, {
        ...m,
        'last-updated-ms': Math.max(nowMs, m['last-updated-ms']),
        snapshots,
        'snapshot-log': m['snapshot-log'].filter((e) => kept.has(e['snapshot-id'])),
        'metadata-log': metadataLogAfter(storage, base),
      });
      return m.snapshots.length - snapshots.length;
    } catch (err) {
      if (!(err instanceof ObjectExistsError)) throw err;
    }
  }
  throw new Error(`gave up expiring snapshots after ${MAX_ATTEMPTS} attempts: other writers won every race for the next version`);
}
