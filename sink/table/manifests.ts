import { randomUUID } from 'node:crypto';
import { putObject, type LakeStorage } from '../storage';
import { ADDED, DELETED, decodeManifest, decodeManifestList, encodeManifest, encodeManifestList, type ManifestEntry, type ManifestFile } from './avro';
import { keyUri, METADATA_PREFIX, uriKey, type Snapshot, type TableMetadata } from './metadata';
import { PARTITION_SPEC, TABLE_SCHEMA } from './schema';

/**
 * Reading and writing the Avro layer of the table: manifests (which files, with their
 * statistics) and manifest lists (which manifests make a snapshot). Both are immutable
 * once written, so what was read once is cached by name.
 */
export interface ManifestCache {
  lists: Map<string, ManifestFile[]>;
  manifests: Map<string, ManifestEntry[]>;
}

export const newManifestCache = (): ManifestCache => ({ lists: new Map(), manifests: new Map() });

/** Keeps a long-running writer's cache to what the current snapshot uses (invariant 6). */
export function trimCache(cache: ManifestCache, current: ManifestFile[], listUri: string | null): void {
  const keep = new Set(current.map((m) => m.manifest_path));
  for (const key of cache.manifests.keys()) if (!keep.has(key)) cache.manifests.delete(key);
  for (const key of cache.lists.keys()) if (key !== listUri) cache.lists.delete(key);
}

async function readAvro<T>(storage: LakeStorage, uri: string, cache: Map<string, T> | undefined, decode: (bytes: Buffer, what: string) => Promise<T>): Promise<T> {
  const cached = cache?.get(uri);
  if (cached) return cached;
  const key = uriKey(storage, uri);
  const bytes = await storage.read(key);
  if (bytes === null) throw new Error(`${key}: missing, but the table's metadata names it`);
  const value = await decode(bytes, key);
  cache?.set(uri, value);
  return value;
}

export const readManifestList = (storage: LakeStorage, uri: string, cache?: ManifestCache): Promise<ManifestFile[]> =>
  readAvro(storage, uri, cache?.lists, decodeManifestList);

/**
 * A manifest's entries with the values v2 lets them inherit from the list filled in: an
 * added file's snapshot and sequence numbers are those of the manifest that added it.
 */
export async function readManifest(storage: LakeStorage, manifest: ManifestFile, cache?: ManifestCache): Promise<ManifestEntry[]> {
  const entries = await readAvro(storage, manifest.manifest_path, cache?.manifests, decodeManifest);
  // A manifest cut short at a block boundary decodes to fewer entries: the list says how many.
  const expected = manifest.added_files_count + manifest.existing_files_count + manifest.deleted_files_count;
  if (entries.length !== expected) {
    cache?.manifests.delete(manifest.manifest_path);
    throw new Error(`${uriKey(storage, manifest.manifest_path)}: holds ${entries.length} entries where the manifest list says ${expected}: the file is damaged or truncated`);
  }
  return entries.map((e) => ({
    ...e,
    snapshot_id: e.snapshot_id ?? manifest.added_snapshot_id,
    sequence_number: e.sequence_number ?? (e.status === ADDED ? manifest.sequence_number : null),
    file_sequence_number: e.file_sequence_number ?? (e.status === ADDED ? manifest.sequence_number : null),
  }));
}

export function snapshotById(metadata: TableMetadata, snapshotId: number): Snapshot | undefined {
  return metadata.snapshots.find((s) => s['snapshot-id'] === snapshotId);
}

export function currentSnapshot(metadata: TableMetadata): Snapshot | null {
  const id = metadata['current-snapshot-id'];
  return id == null || id < 0 ? null : (snapshotById(metadata, id) ?? null);
}

/** The manifests of a snapshot; none for a table with no snapshot yet. */
export async function manifestsOf(storage: LakeStorage, snapshot: Snapshot | null, cache?: ManifestCache): Promise<ManifestFile[]> {
  if (!snapshot) return [];
  const manifests = await readManifestList(storage, snapshot['manifest-list'], cache);
  // A list cut short at a block boundary decodes to fewer manifests: the snapshot's summary says how many files.
  const total = snapshot.summary['total-data-files'];
  const files = manifests.reduce((n, m) => n + m.added_files_count + m.existing_files_count, 0);
  if (total !== undefined && Number(total) !== files) {
    cache?.lists.delete(snapshot['manifest-list']);
    throw new Error(`${uriKey(storage, snapshot['manifest-list'])}: its manifests hold ${files} data files where the snapshot says ${total}: the file is damaged or truncated`);
  }
  return manifests;
}

/** The data files live in a snapshot: every entry of its manifests that is not a deletion. */
export async function liveEntries(storage: LakeStorage, snapshot: Snapshot | null, cache?: ManifestCache): Promise<ManifestEntry[]> {
  const manifests = await manifestsOf(storage, snapshot, cache);
  const all = await Promise.all(manifests.map((m) => readManifest(storage, m, cache)));
  return all.flat().filter((e) => e.status !== DELETED);
}

const hourBound = (hour: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeInt32LE(hour);
  return b;
};

/** Writes a manifest of `entries`, added by `snapshotId` at `sequence`; returns its list entry. */
export async function writeManifest(storage: LakeStorage, entries: ManifestEntry[], snapshotId: number, sequence: number): Promise<ManifestFile> {
  const key = `${METADATA_PREFIX}/${randomUUID()}-m0.avro`;
  const bytes = await encodeManifest(entries, {
    schema: JSON.stringify(TABLE_SCHEMA),
    'schema-id': String(TABLE_SCHEMA['schema-id']),
    'partition-spec': JSON.stringify(PARTITION_SPEC.fields),
    'partition-spec-id': String(PARTITION_SPEC['spec-id']),
    'format-version': '2',
    content: 'data',
  });
  await putObject(storage, key, bytes, 'publish');
  const count = (status: number) => entries.filter((e) => e.status === status);
  const rows = (list: ManifestEntry[]) => list.reduce((n, e) => n + e.data_file.record_count, 0);
  const hours = entries.map((e) => e.data_file.partition.ts_hour).filter((h): h is number => h !== null);
  const added = count(ADDED);
  const deleted = count(DELETED);
  const existing = count(0);
  return {
    manifest_path: keyUri(storage, key),
    manifest_length: bytes.length,
    partition_spec_id: PARTITION_SPEC['spec-id'],
    content: 0,
    sequence_number: sequence,
    min_sequence_number: Math.min(sequence, ...entries.map((e) => e.sequence_number ?? sequence)),
    added_snapshot_id: snapshotId,
    added_files_count: added.length,
    existing_files_count: existing.length,
    deleted_files_count: deleted.length,
    added_rows_count: rows(added),
    existing_rows_count: rows(existing),
    deleted_rows_count: rows(deleted),
    partitions: [
      {
        contains_null: hours.length < entries.length,
        contains_nan: false,
        lower_bound: hours.length > 0 ? hourBound(Math.min(...hours)) : null,
        upper_bound: hours.length > 0 ? hourBound(Math.max(...hours)) : null,
      },
    ],
    key_metadata: null,
  };
}

/** Writes a snapshot's manifest list; returns its URI. */
export async function writeManifestList(storage: LakeStorage, manifests: ManifestFile[], snapshotId: number, parentId: number | null, sequence: number): Promise<string> {
  const key = `${METADATA_PREFIX}/snap-${snapshotId}-${randomUUID()}.avro`;
  const bytes = await encodeManifestList(manifests, {
    'snapshot-id': String(snapshotId),
    'parent-snapshot-id': parentId === null ? 'null' : String(parentId),
    'sequence-number': String(sequence),
    'format-version': '2',
  });
  await putObject(storage, key, bytes, 'publish');
  return keyUri(storage, key);
}

/** The hour range a manifest's partition summary covers, or null when it says nothing. */
export function manifestHours(manifest: ManifestFile): { min: number; max: number } | null {
  const summary = manifest.partitions?.[0];
  if (!summary?.lower_bound || !summary.upper_bound || summary.lower_bound.length !== 4 || summary.upper_bound.length !== 4) return null;
  return { min: summary.lower_bound.readInt32LE(), max: summary.upper_bound.readInt32LE() };
}
