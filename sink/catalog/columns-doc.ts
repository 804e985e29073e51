import { readFileSync } from 'node:fs';
import protobuf from 'protobufjs';
import { LAKE_COLUMNS, type LakeColumn } from '../../proto/columns';
import { PROTO_PACKAGE, PROTO_PATH } from '../../proto/schema';
import { INVALID_REASONS } from '../../proto/validate';
import { QUARANTINE_COLUMNS, type QuarantineKind } from '../quarantine';
import { BATCH_REJECT_REASONS } from '../stats';

/** What a consumer needs to know about one column, beyond its type. */
export interface ColumnDoc {
  name: string;
  /** DuckDB type as a reader sees it. */
  sqlType: string;
  description: string;
  /** UCUM code of the values' unit; null where there is none (text, flags, counts, times). */
  unit: string | null;
  /** Never null. */
  required: boolean;
}

// proto/schema.ts parses without comments, for speed on the decode path; the field
// comments are the documentation, so they are read here with a parse that keeps them.
const POINT = protobuf
  .parse(readFileSync(PROTO_PATH, 'utf8'), { keepCase: true, alternateCommentMode: true })
  .root.lookupType(`${PROTO_PACKAGE}.Point`);

/** The Point message's own comment: what a row is. */
export const POINT_DESCRIPTION = (POINT.comment ?? '').replace(/\s+/g, ' ');

// The name's suffix states the unit (proto field naming), so units follow the proto.
const SUFFIX_UNITS: ReadonlyArray<readonly [suffix: string, unit: string]> = [
  ['_m', 'm'],
  ['_mps', 'm/s'],
  ['_deg', 'deg'],
  ['_pct', '%'],
  ['_v', 'V'],
];
// Fields whose unit their name does not carry.
const NAMED_UNITS: Readonly<Record<string, string>> = { lat: 'deg', lon: 'deg' };

const SINK_DESCRIPTIONS: Readonly<Record<string, string>> = {
  gateway_id: 'the gateway that sent the point: the {gatewayId} of the MQTT topic its batch came on',
  ingested_at: 'when the sink took the batch, UTC, microsecond precision',
};

function unitOf(name: string): { unit: string | null; stem: string } {
  const named = NAMED_UNITS[name];
  if (named) return { unit: named, stem: name };
  const suffix = SUFFIX_UNITS.find(([s]) => name.endsWith(s));
  return suffix ? { unit: suffix[1], stem: name.slice(0, -suffix[0].length) } : { unit: null, stem: name };
}

function pointDescription(column: LakeColumn, stem: string): string {
  const comment = POINT.fields[column.name]?.comment;
  const parts = [comment ? `${stem.replaceAll('_', ' ')}: ${comment}` : stem.replaceAll('_', ' ')];
  // The wire carries times as int64 microseconds; columns.ts maps every one to TIMESTAMPTZ.
  if (column.kind === 'timestamp') parts.push('stored as a UTC timestamp of microsecond precision');
  if (column.enumNames) parts.push(`one of ${column.enumNames.join(', ')}`);
  return parts.join('; ');
}

/**
 * The row key, in one sentence a consumer can act on: the contract, the catalog and the
 * consumer's guide (sink/README.md) state it in these words.
 */
export const ROW_KEY_SENTENCE =
  'Each row is one observation, identified by (drone_id, stream, seq): a point sent again is stored once, and two observations never share a key; ' +
  'rows written before streams existed have no stream (null): read it as 0.';

// The wire's stream is optional (a point may leave it to its batch); the lake's is the
// stream the sink resolved, never null in files written with streams.
const LAKE_DESCRIPTIONS: Readonly<Record<string, string>> = {
  stream:
    "stream: the stream seq counts in, from the point or else its batch: drawn at random whenever a gateway's spool (or an ingest client) starts counting seqs afresh; " +
    '0 for producers that name none, whose seq alone identifies a point; null in files written before streams existed',
};

function columnDoc(column: LakeColumn): ColumnDoc {
  const { unit, stem } = unitOf(column.name);
  if (column.origin === 'sink') {
    const description = SINK_DESCRIPTIONS[column.name];
    if (!description) throw new Error(`lake column ${column.name} is set by the sink but has no description`);
    return { name: column.name, sqlType: column.sqlType, description, unit, required: true };
  }
  const lake = LAKE_DESCRIPTIONS[column.name];
  if (lake) return { name: column.name, sqlType: column.sqlType, description: lake, unit, required: false };
  const field = POINT.fields[column.name];
  return { name: column.name, sqlType: column.sqlType, description: pointDescription(column, stem), unit, required: !field?.options?.['proto3_optional'] };
}

/** Every column of the Parquet files, in file order. */
export const COLUMN_DOCS: readonly ColumnDoc[] = LAKE_COLUMNS.map(columnDoc);

/** The Hive partition columns, from the paths (`date=YYYY-MM-DD/hour=HH`), typed as DuckDB reads them. */
export const PARTITION_DOCS: readonly ColumnDoc[] = [
  { name: 'date', sqlType: 'DATE', description: 'UTC date of ts, from the path segment date=YYYY-MM-DD', unit: null, required: true },
  { name: 'hour', sqlType: 'VARCHAR', description: 'UTC hour of ts, 00-23, from the path segment hour=HH', unit: null, required: true },
];

type QuarantineDocs = { [K in QuarantineKind]: { [C in keyof (typeof QUARANTINE_COLUMNS)[K]]: Omit<ColumnDoc, 'name' | 'sqlType' | 'unit'> } };

const QUARANTINE_DESCRIPTIONS: QuarantineDocs = {
  batches: {
    received_at: { description: 'when the sink took the message, UTC', required: true },
    topic: { description: 'the MQTT topic the message came on', required: true },
    gateway_id: { description: 'the gateway the topic names; null when it names none', required: false },
    reason: { description: `why the message is not a batch of its gateway: one of ${BATCH_REJECT_REASONS.join(', ')}`, required: true },
    detail: { description: "the decoder's account of what is wrong", required: true },
    payload_base64: { description: 'the message byte for byte, base64', required: true },
  },
  points: {
    received_at: { description: 'when the sink took the batch, UTC', required: true },
    gateway_id: { description: 'the gateway that sent the batch', required: true },
    batch_seq: { description: 'the batch the point came in', required: true },
    rule: { description: `the first rule the point broke: one of ${INVALID_REASONS.join(', ')}`, required: true },
    point: { description: 'the point as sent: its fields, enums by name, NaN and Infinity as text', required: true },
  },
};

/** The quarantine's NDJSON fields, by kind. */
export function quarantineDocs(kind: QuarantineKind): ColumnDoc[] {
  const descriptions: Record<string, Omit<ColumnDoc, 'name' | 'sqlType' | 'unit'>> = QUARANTINE_DESCRIPTIONS[kind];
  return Object.entries(QUARANTINE_COLUMNS[kind]).map(([name, sqlType]) => ({ name, sqlType, unit: null, ...descriptions[name]! }));
}
