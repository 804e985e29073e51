import { z } from 'zod';
import { TABLE_METADATA_PREFIX } from '../layout';
import type { LakeStorage } from '../storage';
import { lakeUrl } from './lake-url';

// The drones telemetry as an Apache Iceberg v2 table: what the REST catalog serves and
// the page's snapshots section shows. Only what they read is checked; every other field
// of the metadata passes through untouched, so engines get the file as it was written.

const long = z.number().int();

const snapshotSchema = z.looseObject({
  'snapshot-id': long,
  'parent-snapshot-id': long.optional(),
  'sequence-number': long,
  'timestamp-ms': long,
  'manifest-list': z.string(),
  summary: z.object({ operation: z.enum(['append', 'replace', 'overwrite', 'delete']) }).catchall(z.string()),
  'schema-id': z.number().int().optional(),
});

/** Table metadata, format version 2, with the fields the Iceberg spec requires of it. */
export const tableMetadataSchema = z.looseObject({
  'format-version': z.literal(2),
  'table-uuid': z.string().min(1),
  location: z.string().min(1),
  'last-sequence-number': long,
  'last-updated-ms': long,
  'last-column-id': z.number().int(),
  schemas: z.array(z.looseObject({ type: z.literal('struct'), 'schema-id': z.number().int(), fields: z.array(z.looseObject({ id: z.number().int(), name: z.string() })) })).min(1),
  'current-schema-id': z.number().int(),
  'partition-specs': z.array(z.looseObject({ 'spec-id': z.number().int(), fields: z.array(z.unknown()) })).min(1),
  'default-spec-id': z.number().int(),
  'last-partition-id': z.number().int(),
  'sort-orders': z.array(z.unknown()).optional(),
  'default-sort-order-id': z.number().int().optional(),
  properties: z.record(z.string(), z.string()).optional(),
  'current-snapshot-id': long.nullable().optional(),
  snapshots: z.array(snapshotSchema).optional(),
  'snapshot-log': z.array(z.looseObject({ 'snapshot-id': long, 'timestamp-ms': long })).optional(),
  'metadata-log': z.array(z.looseObject({ 'metadata-file': z.string(), 'timestamp-ms': long })).optional(),
});
export type TableMetadata = z.infer<typeof tableMetadataSchema>;
export type TableSnapshot = z.infer<typeof snapshotSchema>;

/** The table's current metadata: its file's URL and its content. */
export interface CurrentTable {
  version: number;
  metadataLocation: string;
  metadata: TableMetadata;
}

/** The metadata files hold a table's state and are never rewritten: one parse per file. */
export type TableMetadataCache = Map<string, TableMetadata>;

const VERSION_FILE = /^v([1-9]\d{0,17})\.metadata\.json$/;

/**
 * The current version of the table: the highest N whose `v{N}.metadata.json` exists. The
 * listing decides, not `version-hint.text`, which a writer replaces after publishing the
 * file and may not have replaced yet. Null when the lake holds no Iceberg table yet.
 */
export async function readCurrentTable(storage: LakeStorage, cache: TableMetadataCache = new Map()): Promise<CurrentTable | null> {
  let current: { version: number; key: string } | null = null;
  for (const { key } of await storage.list(`${TABLE_METADATA_PREFIX}/`)) {
    const m = VERSION_FILE.exec(key.slice(TABLE_METADATA_PREFIX.length + 1));
    if (m && (current === null || Number(m[1]) > current.version)) current = { version: Number(m[1]), key };
  }
  if (current === null) return null;
  let metadata = cache.get(current.key);
  if (metadata === undefined) {
    const bytes = await storage.read(current.key);
    if (bytes === null) throw new Error(`${current.key} was listed but is gone`);
    let doc: unknown;
    try {
      doc = JSON.parse(bytes.toString('utf8'));
    } catch (err) {
      throw new Error(`${current.key} is not JSON: ${(err as Error).message}`);
    }
    const parsed = tableMetadataSchema.safeParse(doc);
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      throw new Error(`${current.key} is not Iceberg v2 table metadata: ${issue.path.join('.') || 'the document'}: ${issue.message}`);
    }
    metadata = parsed.data;
    cache.set(current.key, metadata);
  }
  return { version: current.version, metadataLocation: lakeUrl(storage.root, current.key), metadata };
}
