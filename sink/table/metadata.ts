import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import * as z from 'zod';
import { TABLE_METADATA_PREFIX, TELEMETRY_PREFIX } from '../layout';
import { ObjectExistsError, putObject, type LakeStorage } from '../storage';
import { LAST_COLUMN_ID, LAST_PARTITION_ID, PARTITION_SPEC, SORT_ORDER, TABLE_FIELDS, TABLE_SCHEMA } from './schema';

/** Metadata files a version remembers in its log; older ones may be deleted (Iceberg's default). */
export const PREVIOUS_VERSIONS_MAX = 100;

/** The table's metadata directory, relative to the lake root. */
export const METADATA_PREFIX = TABLE_METADATA_PREFIX;
export const VERSION_HINT_KEY = `${METADATA_PREFIX}/version-hint.text`;
export const metadataKey = (version: number): string => `${METADATA_PREFIX}/v${version}.metadata.json`;
const METADATA_NAME = /^v(\d+)\.metadata\.json$/;

const id = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);

const snapshotSchema = z.looseObject({
  'snapshot-id': id,
  'parent-snapshot-id': id.optional(),
  'sequence-number': id,
  'timestamp-ms': id,
  'manifest-list': z.string().min(1),
  summary: z.looseObject({ operation: z.string() }).and(z.record(z.string(), z.string())),
  'schema-id': z.number().int().optional(),
});
export type Snapshot = z.infer<typeof snapshotSchema>;

const metadataSchema = z.looseObject({
  'format-version': z.literal(2),
  'table-uuid': z.string().min(1),
  location: z.string().min(1),
  'last-sequence-number': id,
  'last-updated-ms': id,
  'last-column-id': z.number().int(),
  schemas: z.array(z.looseObject({ 'schema-id': z.number().int() })).min(1),
  'current-schema-id': z.number().int(),
  'partition-specs': z.array(z.looseObject({ 'spec-id': z.number().int() })).min(1),
  'default-spec-id': z.number().int(),
  'last-partition-id': z.number().int(),
  properties: z.record(z.string(), z.string()).default({}),
  'current-snapshot-id': z.number().int().min(-1).max(Number.MAX_SAFE_INTEGER).nullish(),
  snapshots: z.array(snapshotSchema).default([]),
  'snapshot-log': z.array(z.object({ 'timestamp-ms': id, 'snapshot-id': id })).default([]),
  'metadata-log': z.array(z.object({ 'timestamp-ms': id, 'metadata-file': z.string() })).default([]),
  'sort-orders': z.array(z.looseObject({ 'order-id': z.number().int() })).min(1),
  'default-sort-order-id': z.number().int(),
  refs: z.record(z.string(), z.looseObject({ 'snapshot-id': id, type: z.string() })).optional(),
});
export type TableMetadata = z.infer<typeof metadataSchema>;

/** The table's current state: its metadata and the version number of the file that holds it. */
export interface TableVersion {
  version: number;
  metadata: TableMetadata;
}

/** The URI the table's metadata names a lake key by: `file:///...` for a local lake, `s3://...` otherwise. */
export function keyUri(storage: LakeStorage, key: string): string {
  return storage.root.startsWith('s3://') ? `${storage.root}/${key}` : pathToFileURL(path.join(storage.root, key)).href;
}

/** The lake key a URI of this lake names; throws for a URI outside the lake. */
export function uriKey(storage: LakeStorage, uri: string): string {
  if (storage.root.startsWith('s3://')) {
    if (uri.startsWith(`${storage.root}/`)) return uri.slice(storage.root.length + 1);
  } else if (uri.startsWith('file:')) {
    const relative = path.relative(storage.root, fileURLToPath(uri));
    if (!relative.startsWith('..') && !path.isAbsolute(relative)) return relative.split(path.sep).join('/');
  }
  throw new Error(`${uri} lies outside the lake ${storage.root}`);
}

export const tableLocation = (storage: LakeStorage): string => keyUri(storage, TELEMETRY_PREFIX);

// JSON numbers beyond 2^53 would lose precision in JSON.parse: refuse them rather than guess.
const BIG_INTEGER = /[:\[,]\s*(-?\d{16,})\s*[,}\]]/g;

/** Parses a metadata file's bytes; throws one line naming the file and the first fault. */
export function parseMetadata(bytes: Buffer, what: string): TableMetadata {
  const text = bytes.toString('utf8');
  for (const m of text.matchAll(BIG_INTEGER)) {
    if (!Number.isSafeInteger(Number(m[1]))) throw new Error(`${what}: the number ${m[1]} is beyond 2^53, which this reader cannot hold exactly (an id written by another engine?)`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new Error(`${what}: not valid JSON (${(err as Error).message}); the file is damaged or truncated`);
  }
  const parsed = metadataSchema.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new Error(`${what}: not valid Iceberg v2 table metadata: ${issue.path.join('.') || '(root)'}: ${issue.message}`);
  }
  return parsed.data;
}

/** The metadata of a new, empty table at the lake's telemetry path. */
export function newTableMetadata(storage: LakeStorage, nowMs: number): TableMetadata {
  return {
    'format-version': 2,
    'table-uuid': randomUUID(),
    location: tableLocation(storage),
    'last-sequence-number': 0,
    'last-updated-ms': nowMs,
    'last-column-id': LAST_COLUMN_ID,
    'current-schema-id': 0,
    schemas: [TABLE_SCHEMA],
    'default-spec-id': 0,
    'partition-specs': [PARTITION_SPEC],
    'last-partition-id': LAST_PARTITION_ID,
    'default-sort-order-id': SORT_ORDER['order-id'],
    'sort-orders': [{ 'order-id': 0, fields: [] }, SORT_ORDER],
    properties: {
      'write.format.default': 'parquet',
      'write.parquet.compression-codec': 'zstd',
      'write.metadata.previous-versions-max': String(PREVIOUS_VERSIONS_MAX),
      // Files written before the table had field ids are read by column name.
      'schema.name-mapping.default': JSON.stringify(TABLE_FIELDS.map((f) => ({ 'field-id': f.id, names: [f.name] }))),
    },
    'current-snapshot-id': -1,
    snapshots: [],
    'snapshot-log': [],
    'metadata-log': [],
    refs: {},
  };
}

/** The highest version a listing of the metadata directory shows, or null for no table. */
async function listedVersion(storage: LakeStorage): Promise<number | null> {
  const versions = (await storage.list(`${METADATA_PREFIX}/`))
    .map((o) => METADATA_NAME.exec(o.key.slice(METADATA_PREFIX.length + 1)))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => Number(m[1]));
  return versions.length === 0 ? null : Math.max(...versions);
}

/**
 * The current version: the highest `v{N}.metadata.json`. The hint says where to start;
 * versions are created in order, each only once, so probing upward from it finds the
 * last one in a read or two, however long the table's history. A missing, damaged or
 * stale hint costs one listing.
 */
export async function loadTable(storage: LakeStorage): Promise<TableVersion | null> {
  // Only a hint, replaced in place by every commit: a read that fails (a store may abort a
  // read of an object being replaced) costs a listing, never the load.
  const hint = await storage.read(VERSION_HINT_KEY).catch(() => null);
  const hinted = hint === null ? NaN : Number(hint.toString('utf8').trim());
  let version = Number.isSafeInteger(hinted) && hinted > 0 ? hinted : await listedVersion(storage);
  if (version === null) return null;
  let bytes = await storage.read(metadataKey(version));
  if (bytes === null) {
    version = await listedVersion(storage);
    if (version === null) return null;
    bytes = await storage.read(metadataKey(version));
    if (bytes === null) throw new Error(`${metadataKey(version)} vanished while the table was read`);
  }
  for (;;) {
    const next = await storage.read(metadataKey(version + 1));
    if (next === null) break;
    version++;
    bytes = next;
  }
  return { version, metadata: parseMetadata(bytes, metadataKey(version)) };
}

/** Reads one version's metadata (for time travel), or null if it is gone. */
export async function loadVersion(storage: LakeStorage, version: number): Promise<TableMetadata | null> {
  const bytes = await storage.read(metadataKey(version));
  return bytes === null ? null : parseMetadata(bytes, metadataKey(version));
}

/**
 * Writes `metadata` as version `version` with the store's create-only step: the commit
 * point of every change to the table (invariant 4). Rejects with ObjectExistsError when
 * another writer took that version first; the caller reloads and tries again.
 */
export async function writeVersion(storage: LakeStorage, version: number, metadata: TableMetadata): Promise<void> {
  const key = metadataKey(version);
  await putObject(storage, key, `${JSON.stringify(metadata, null, 1)}\n`, 'publish');
  // Only a hint: readers probe past it, so a failure here costs nothing but a read.
  await putObject(storage, VERSION_HINT_KEY, `${version}\n`, 'replace').catch(() => undefined);
}

/** Creates the table (version 1) unless another writer did first; returns the current version. */
export async function createTable(storage: LakeStorage, nowMs = Date.now()): Promise<TableVersion> {
  try {
    await writeVersion(storage, 1, newTableMetadata(storage, nowMs));
  } catch (err) {
    if (!(err instanceof ObjectExistsError)) throw err;
  }
  const table = await loadTable(storage);
  if (table === null) throw new Error(`${metadataKey(1)} was created but cannot be read back`);
  return table;
}

export { ObjectExistsError };
