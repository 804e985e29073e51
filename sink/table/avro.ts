import { Readable } from 'node:stream';
import avro from 'avsc';
import * as z from 'zod';

// The Avro schemas of Iceberg's manifests and manifest lists (format v2), with the field
// ids the spec assigns: engines find fields by these ids, not by name.

const map = (name: string, keyId: number, valueId: number, value: 'long' | 'bytes') => ({
  type: 'array',
  logicalType: 'map',
  items: { type: 'record', name, fields: [
    { name: 'key', type: 'int', 'field-id': keyId },
    { name: 'value', type: value, 'field-id': valueId },
  ] },
});
const optional = (name: string, type: unknown, fieldId: number) => ({ name, type: ['null', type], default: null, 'field-id': fieldId });

/** The partition tuple of this table's one spec: `ts_hour`, field 1000. */
const PARTITION_RECORD = { type: 'record', name: 'r102', fields: [optional('ts_hour', 'int', 1000)] };

export const MANIFEST_ENTRY_SCHEMA = {
  type: 'record',
  name: 'manifest_entry',
  fields: [
    { name: 'status', type: 'int', 'field-id': 0 },
    optional('snapshot_id', 'long', 1),
    optional('sequence_number', 'long', 3),
    optional('file_sequence_number', 'long', 4),
    {
      name: 'data_file',
      'field-id': 2,
      type: {
        type: 'record',
        name: 'r2',
        fields: [
          { name: 'content', type: 'int', 'field-id': 134 },
          { name: 'file_path', type: 'string', 'field-id': 100 },
          { name: 'file_format', type: 'string', 'field-id': 101 },
          { name: 'partition', type: PARTITION_RECORD, 'field-id': 102 },
          { name: 'record_count', type: 'long', 'field-id': 103 },
          { name: 'file_size_in_bytes', type: 'long', 'field-id': 104 },
          optional('column_sizes', map('k117_v118', 117, 118, 'long'), 108),
          optional('value_counts', map('k119_v120', 119, 120, 'long'), 109),
          optional('null_value_counts', map('k121_v122', 121, 122, 'long'), 110),
          optional('nan_value_counts', map('k138_v139', 138, 139, 'long'), 137),
          optional('lower_bounds', map('k126_v127', 126, 127, 'bytes'), 125),
          optional('upper_bounds', map('k129_v130', 129, 130, 'bytes'), 128),
          optional('key_metadata', 'bytes', 131),
          optional('split_offsets', { type: 'array', items: 'long', 'element-id': 133 }, 132),
          optional('equality_ids', { type: 'array', items: 'int', 'element-id': 136 }, 135),
          optional('sort_order_id', 'int', 140),
        ],
      },
    },
  ],
};

export const MANIFEST_FILE_SCHEMA = {
  type: 'record',
  name: 'manifest_file',
  fields: [
    { name: 'manifest_path', type: 'string', 'field-id': 500 },
    { name: 'manifest_length', type: 'long', 'field-id': 501 },
    { name: 'partition_spec_id', type: 'int', 'field-id': 502 },
    { name: 'content', type: 'int', 'field-id': 517 },
    { name: 'sequence_number', type: 'long', 'field-id': 515 },
    { name: 'min_sequence_number', type: 'long', 'field-id': 516 },
    { name: 'added_snapshot_id', type: 'long', 'field-id': 503 },
    { name: 'added_files_count', type: 'int', 'field-id': 504 },
    { name: 'existing_files_count', type: 'int', 'field-id': 505 },
    { name: 'deleted_files_count', type: 'int', 'field-id': 506 },
    { name: 'added_rows_count', type: 'long', 'field-id': 512 },
    { name: 'existing_rows_count', type: 'long', 'field-id': 513 },
    { name: 'deleted_rows_count', type: 'long', 'field-id': 514 },
    optional(
      'partitions',
      {
        type: 'array',
        'element-id': 508,
        items: {
          type: 'record',
          name: 'r508',
          fields: [
            { name: 'contains_null', type: 'boolean', 'field-id': 509 },
            optional('contains_nan', 'boolean', 518),
            optional('lower_bound', 'bytes', 510),
            optional('upper_bound', 'bytes', 511),
          ],
        },
      },
      507,
    ),
    optional('key_metadata', 'bytes', 519),
  ],
};

const entryType = avro.Type.forSchema(MANIFEST_ENTRY_SCHEMA as avro.Schema);
const manifestFileType = avro.Type.forSchema(MANIFEST_FILE_SCHEMA as avro.Schema);

// What is read back is checked (invariant 4: a reader trusts no damaged metadata).
const long = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
const pairs = <T extends z.ZodType>(value: T) => z.array(z.object({ key: z.number().int(), value })).nullable();

const dataFileSchema = z.object({
  content: z.literal(0),
  file_path: z.string().min(1),
  file_format: z.string(),
  partition: z.object({ ts_hour: z.number().int().nullable() }),
  record_count: long,
  file_size_in_bytes: long,
  column_sizes: pairs(long),
  value_counts: pairs(long),
  null_value_counts: pairs(long),
  nan_value_counts: pairs(long),
  lower_bounds: pairs(z.instanceof(Buffer)),
  upper_bounds: pairs(z.instanceof(Buffer)),
  key_metadata: z.instanceof(Buffer).nullable(),
  split_offsets: z.array(long).nullable(),
  equality_ids: z.array(z.number().int()).nullable(),
  sort_order_id: z.number().int().nullable(),
});
export type DataFile = z.infer<typeof dataFileSchema>;

/** 0 existing, 1 added, 2 deleted. */
export const EXISTING = 0;
export const ADDED = 1;
export const DELETED = 2;

const manifestEntrySchema = z.object({
  status: z.union([z.literal(EXISTING), z.literal(ADDED), z.literal(DELETED)]),
  snapshot_id: long.nullable(),
  sequence_number: long.nullable(),
  file_sequence_number: long.nullable(),
  data_file: dataFileSchema,
});
export type ManifestEntry = z.infer<typeof manifestEntrySchema>;

const manifestFileSchema = z.object({
  manifest_path: z.string().min(1),
  manifest_length: long,
  partition_spec_id: z.number().int(),
  content: z.literal(0),
  sequence_number: long,
  min_sequence_number: long,
  added_snapshot_id: long,
  added_files_count: long,
  existing_files_count: long,
  deleted_files_count: long,
  added_rows_count: long,
  existing_rows_count: long,
  deleted_rows_count: long,
  partitions: z
    .array(z.object({ contains_null: z.boolean(), contains_nan: z.boolean().nullable(), lower_bound: z.instanceof(Buffer).nullable(), upper_bound: z.instanceof(Buffer).nullable() }))
    .nullable(),
  key_metadata: z.instanceof(Buffer).nullable(),
});
export type ManifestFile = z.infer<typeof manifestFileSchema>;

/** An Avro object container file of `records`, with the header metadata Iceberg readers expect. */
function encodeContainer(type: avro.Type, schema: object, records: object[], metadata: Record<string, string>): Promise<Buffer> {
  // The schema as written, not as avsc normalises it: that keeps the field ids in the header.
  const options = { codec: 'deflate', writeHeader: 'always', metadata: Object.fromEntries(Object.entries(metadata).map(([k, v]) => [k, Buffer.from(v)])) };
  const encoder = new avro.streams.BlockEncoder(schema as avro.Schema, options as ConstructorParameters<typeof avro.streams.BlockEncoder>[1]);
  const chunks: Buffer[] = [];
  return new Promise((resolve, reject) => {
    encoder.on('data', (chunk: Buffer) => chunks.push(chunk));
    encoder.on('error', reject);
    encoder.on('end', () => resolve(Buffer.concat(chunks)));
    for (const record of records) {
      if (!type.isValid(record)) {
        reject(new Error(`not a valid ${type.name ?? 'record'}: ${JSON.stringify(record, (_k, v: unknown) => (Buffer.isBuffer(v) ? v.toString('hex') : v))}`));
        return;
      }
      encoder.write(record);
    }
    encoder.end();
  });
}

/** The records of an Avro container file, checked against `schema`; `what` names the file in errors. */
async function decodeContainer<T>(bytes: Buffer, reader: avro.Type, schema: z.ZodType<T>, what: string): Promise<T[]> {
  const records: unknown[] = [];
  let header = false;
  await new Promise<void>((resolve, reject) => {
    const decoder = new avro.streams.BlockDecoder({ readerSchema: reader });
    decoder.on('metadata', () => (header = true));
    decoder.on('data', (record: unknown) => records.push(record));
    decoder.on('error', (err: Error) => reject(new Error(`${what}: not a readable Avro file: ${err.message}`)));
    decoder.on('end', resolve);
    Readable.from([bytes]).on('error', reject).pipe(decoder);
  });
  // The decoder ends quietly on a file cut short: a missing header, or fewer records than
  // the reader was told to expect (checked by the caller), is damage, never an empty file.
  if (!header) throw new Error(`${what}: not a readable Avro file: its header is incomplete (the file is damaged or truncated)`);
  return records.map((record, i) => {
    const parsed = schema.safeParse(record);
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      throw new Error(`${what}: record ${i}: ${issue.path.join('.')}: ${issue.message}`);
    }
    return parsed.data;
  });
}

export const encodeManifest = (entries: ManifestEntry[], metadata: Record<string, string>): Promise<Buffer> =>
  encodeContainer(entryType, MANIFEST_ENTRY_SCHEMA, entries, metadata);
export const decodeManifest = (bytes: Buffer, what: string): Promise<ManifestEntry[]> => decodeContainer(bytes, entryType, manifestEntrySchema, what);
export const encodeManifestList = (files: ManifestFile[], metadata: Record<string, string>): Promise<Buffer> =>
  encodeContainer(manifestFileType, MANIFEST_FILE_SCHEMA, files, metadata);
export const decodeManifestList = (bytes: Buffer, what: string): Promise<ManifestFile[]> => decodeContainer(bytes, manifestFileType, manifestFileSchema, what);
