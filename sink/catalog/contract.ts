import { LAKE_COLUMNS } from '../../proto/columns';
import { ID_PATTERN, eventsTopic } from '../../proto/topics';
import { FINITE_FIELDS, MIN_TS_MICROS, type InvalidReason } from '../../proto/validate';
import { QUARANTINE_PREFIX, TELEMETRY_GLOB, TELEMETRY_PREFIX } from '../layout';
import { CHECKPOINT_PREFIX } from '../checkpoint';
import { METADATA_PREFIX } from '../table/metadata';
import type { QuarantineKind } from '../quarantine';
import { LIVE_GUARANTEE, type LivePortInput } from './product';
import { COLUMN_DOCS, PARTITION_DOCS, POINT_DESCRIPTION, quarantineDocs, ROW_KEY_SENTENCE, type ColumnDoc } from './columns-doc';
import { isS3Lake, lakePath, lakeUrl } from './lake-url';
import { qualityRules, type QualityRule } from './rules';
import type { ProductLocation, ProductOwnership, SloProperty, SloTarget } from './types';
import { sqlString } from '../sql';

/** Stable across versions of the contract: consumers and the product descriptor refer to it. */
export const CONTRACT_ID = 'urn:dronelake:drones:telemetry:v1';

export interface ContractInput {
  location: ProductLocation;
  ownership: ProductOwnership;
  slos: SloTarget[];
  version: string;
  flushIntervalSeconds: number;
  latenessSeconds: number;
  /** The sink's bound on event times ahead of its clock: the `ts_in_future` rule's threshold. */
  maxFutureSkewSeconds: number;
  /** ISO 8601; given rather than read from the clock, so one input gives one document. */
  createdAt?: string;
  /** The live and events ports, when the sink runs them: the events are a dataset of the contract. */
  live?: LivePortInput;
}

type Doc = Record<string, unknown>;

// The ranges the point rules of proto/validate.ts enforce; stated once for the rules' queries and the columns' types.
const RANGES: Readonly<Record<string, readonly [number, number]>> = {
  lat: [-90, 90],
  lon: [-180, 180],
  battery_pct: [0, 100],
};

const ENUM_COLUMNS = LAKE_COLUMNS.filter((c) => c.enumNames);
const MIN_TS_ISO = new Date(MIN_TS_MICROS / 1000).toISOString();

const LOGICAL_TYPES: Readonly<Record<string, Doc>> = {
  VARCHAR: { logicalType: 'string' },
  JSON: { logicalType: 'object' },
  UBIGINT: { logicalType: 'integer', logicalTypeOptions: { format: 'u64' } },
  BIGINT: { logicalType: 'integer', logicalTypeOptions: { format: 'i64' } },
  DOUBLE: { logicalType: 'number', logicalTypeOptions: { format: 'f64' } },
  BOOLEAN: { logicalType: 'boolean' },
  TIMESTAMPTZ: { logicalType: 'timestamp', logicalTypeOptions: { timezone: true, defaultTimezone: 'Etc/UTC' } },
  DATE: { logicalType: 'date', logicalTypeOptions: { format: 'yyyy-MM-dd' } },
};

/** What the validation rules promise about a column's values, as ODCS logical type options. */
function valueOptions(name: string): Doc {
  const range = RANGES[name];
  if (range) return { minimum: range[0], maximum: range[1] };
  const enumNames = ENUM_COLUMNS.find((c) => c.name === name)?.enumNames;
  if (enumNames) return { pattern: `^(${enumNames.join('|')})$` };
  switch (name) {
    case 'drone_id':
      return { pattern: ID_PATTERN.source };
    case 'seq':
    case 'stream':
      return { minimum: 0, maximum: Number.MAX_SAFE_INTEGER };
    case 'ts':
      return { minimum: MIN_TS_ISO };
    case 'hour':
      return { pattern: '^([01][0-9]|2[0-3])$' };
    default:
      return {};
  }
}

const PRIMARY_KEY = ['drone_id', 'stream', 'seq'];
const PARTITION_KEY = PARTITION_DOCS.map((c) => c.name);

const countWhere = (condition: string): string => `SELECT count(*) FROM telemetry WHERE ${condition}`;

/** DuckDB queries over the `telemetry` view counting the rows that break each point rule. */
function pointRuleQueries(maxFutureSkewSeconds: number): Record<InvalidReason, string> {
  const outside = (name: string): string => `${name} NOT BETWEEN ${RANGES[name]![0]} AND ${RANGES[name]![1]}`;
  return {
    drone_id_pattern: countWhere(`NOT regexp_full_match(drone_id, ${sqlString(ID_PATTERN.source)})`),
    seq_range: countWhere(`seq > ${Number.MAX_SAFE_INTEGER}`),
    stream_range: countWhere(`stream > ${Number.MAX_SAFE_INTEGER}`),
    ts_before_2000: countWhere(`ts < ${sqlString(MIN_TS_ISO)}::TIMESTAMPTZ`),
    ts_in_future: countWhere(`ts > ingested_at + to_seconds(${maxFutureSkewSeconds})`),
    not_finite: countWhere(FINITE_FIELDS.map((f) => `NOT isfinite(${f})`).join(' OR ')),
    lat_range: countWhere(outside('lat')),
    lon_range: countWhere(outside('lon')),
    battery_pct_range: countWhere(outside('battery_pct')),
    enum_unknown: countWhere(ENUM_COLUMNS.map((c) => `${c.name} NOT IN (${c.enumNames!.map(sqlString).join(', ')})`).join(' OR ')),
  };
}

function ruleCheck(rule: QualityRule, input: ContractInput, pointQueries: Record<InvalidReason, string>): Doc {
  if (rule.reason) return { query: pointQueries[rule.reason], mustBe: 0, unit: 'rows' };
  switch (rule.dimension) {
    case 'completeness':
      return { query: countWhere(`${rule.column} IS NULL`), mustBe: 0, unit: 'rows' };
    case 'uniqueness':
      return { query: `SELECT count(*) FROM (SELECT drone_id, stream, seq FROM telemetry GROUP BY drone_id, stream, seq HAVING count(*) > 1)`, mustBe: 0, unit: 'rows' };
    case 'timeliness': {
      const latency = input.slos.find((s) => s.property === 'latency')!;
      if (latency.unit !== 's') throw new Error(`the latency objective must be in seconds for the freshness rule, not '${latency.unit}'`);
      return { query: `SELECT date_diff('second', max(ts), now()) FROM telemetry`, mustBeLessOrEqualTo: latency.target, unit: 's' };
    }
    default:
      throw new Error(`quality rule ${rule.name} has no check`);
  }
}

function qualityEntry(rule: QualityRule, input: ContractInput, pointQueries: Record<InvalidReason, string>): Doc {
  return { name: rule.name, description: rule.description, dimension: rule.dimension, type: 'sql', ...ruleCheck(rule, input, pointQueries), severity: 'error' };
}

function property(doc: ColumnDoc, quality: Doc[]): Doc {
  const logical = LOGICAL_TYPES[doc.sqlType];
  if (!logical) throw new Error(`column ${doc.name}: SQL type ${doc.sqlType} has no ODCS logical type`);
  const options = { ...(logical['logicalTypeOptions'] as Doc | undefined), ...valueOptions(doc.name) };
  const pk = PRIMARY_KEY.indexOf(doc.name);
  const partition = PARTITION_KEY.indexOf(doc.name);
  return {
    name: doc.name,
    logicalType: logical['logicalType'],
    ...(Object.keys(options).length > 0 && { logicalTypeOptions: options }),
    physicalType: doc.sqlType,
    required: doc.required,
    description: doc.description,
    ...(pk >= 0 && { primaryKey: true, primaryKeyPosition: pk + 1 }),
    ...(partition >= 0 && { partitioned: true, partitionKeyPosition: partition + 1 }),
    ...(doc.unit && { customProperties: [{ property: 'unit', value: doc.unit, description: 'UCUM code of the unit of the values' }] }),
    ...(quality.length > 0 && { quality }),
  };
}

function telemetrySchema(input: ContractInput): Doc {
  const pointQueries = pointRuleQueries(input.maxFutureSkewSeconds);
  const quality = qualityRules(input.slos).map((rule) => ({ rule, entry: qualityEntry(rule, input, pointQueries) }));
  const on = (column: string | undefined): Doc[] => quality.filter((q) => q.rule.column === column).map((q) => q.entry);
  return {
    name: 'telemetry',
    physicalName: TELEMETRY_PREFIX,
    physicalType: 'table',
    logicalType: 'object',
    businessName: 'drone telemetry',
    description: `${POINT_DESCRIPTION} ${ROW_KEY_SENTENCE} Hive-partitioned by the UTC date and hour of ts; ZSTD-compressed Parquet sorted by (drone_id, ts).`,
    dataGranularityDescription: 'one row per point a drone recorded',
    properties: [...COLUMN_DOCS, ...PARTITION_DOCS].map((doc) => property(doc, on(doc.name))),
    quality: on(undefined),
  };
}

const quarantineObject = (kind: QuarantineKind): string => `quarantined_${kind}`;

function quarantineSchema(kind: QuarantineKind): Doc {
  return {
    name: quarantineObject(kind),
    physicalName: `${QUARANTINE_PREFIX}/${kind}`,
    physicalType: 'table',
    logicalType: 'object',
    description:
      kind === 'points'
        ? 'Points that broke a validation rule, with the rule: NDJSON, one line per point, under date=YYYY-MM-DD of when the sink took them.'
        : 'Messages on a telemetry topic that were not a batch of their gateway, byte for byte: NDJSON, one line per message, under date=YYYY-MM-DD of when the sink took them.',
    properties: quarantineDocs(kind).map((doc) => property(doc, [])),
  };
}

/** The events the live port derives: a second dataset, published on MQTT and SSE rather than stored. */
function eventsSchema(live: LivePortInput): Doc {
  const docs: ColumnDoc[] = [
    { name: 'event', sqlType: 'VARCHAR', description: `one of: emergency (the drone's flight_state became emergency), battery_low (its battery_pct fell below ${live.alertBatteryPct}), silent (no point for ${live.alertSilenceSeconds} s; its state is then forgotten)`, unit: null, required: true },
    { name: 'drone_id', sqlType: 'VARCHAR', description: 'the drone', unit: null, required: true },
    { name: 'at', sqlType: 'TIMESTAMPTZ', description: 'when the sink raised the event, UTC', unit: null, required: true },
    { name: 'ts', sqlType: 'TIMESTAMPTZ', description: 'emergency and battery_low: the event time of the point that raised it', unit: null, required: false },
    { name: 'flight_state', sqlType: 'VARCHAR', description: 'emergency: the flight state', unit: null, required: false },
    { name: 'battery_pct', sqlType: 'DOUBLE', description: 'battery_low: the battery level of the point that raised it', unit: '%', required: false },
    { name: 'threshold_pct', sqlType: 'DOUBLE', description: 'battery_low: the threshold it fell below', unit: '%', required: false },
    { name: 'last_seen', sqlType: 'TIMESTAMPTZ', description: 'silent: when the last point of the drone went live', unit: null, required: false },
    { name: 'silent_seconds', sqlType: 'BIGINT', description: 'silent: seconds since then', unit: 's', required: false },
  ];
  return {
    name: 'events',
    physicalName: eventsTopic('{drone_id}'),
    physicalType: 'topic',
    logicalType: 'object',
    description: `Events derived from the live telemetry rows, as JSON messages on MQTT ${eventsTopic('{drone_id}')} and as 'alert' events of the SSE stream GET /live; each fires when its condition starts to hold, not on every point. ${LIVE_GUARANTEE[live.after]}.`,
    properties: docs.map((doc) => property(doc, [])),
  };
}

function eventsServer(live: LivePortInput): Doc {
  return {
    server: 'events',
    type: 'custom',
    description: `MQTT ${eventsTopic('{drone_id}')} on the broker (QoS 0, for identities of role consumer), and SSE GET /live on the sink's HTTP endpoint`,
    customProperties: [
      { property: 'protocol', value: 'MQTT' },
      { property: 'broker', value: live.broker },
      { property: 'topic', value: eventsTopic('{drone_id}') },
    ],
  };
}

const QUARANTINE_GLOB = (kind: QuarantineKind): string => `${QUARANTINE_PREFIX}/${kind}/**/*.ndjson`;

/** Each schema object's files: its server entry (named as the object), read glob and format. */
const DATASETS: ReadonlyArray<{ server: string; glob: string; format: 'iceberg' | 'json'; description: string }> = [
  {
    server: 'telemetry',
    glob: TELEMETRY_GLOB,
    format: 'iceberg',
    description: `An Apache Iceberg v2 table: its metadata under ${METADATA_PREFIX}/ (the current version is the highest v{N}.metadata.json), its Parquet files laid out as ${TELEMETRY_PREFIX}/date=YYYY-MM-DD/hour=HH/{part-{sink}-{commit},compact-{id}}.parquet`,
  },
  ...(['points', 'batches'] as const).map((kind) => ({
    server: quarantineObject(kind),
    glob: QUARANTINE_GLOB(kind),
    format: 'json' as const,
    description: `NDJSON files of the ${quarantineObject(kind)} object, laid out as ${QUARANTINE_PREFIX}/${kind}/date=YYYY-MM-DD/part-{sink}-{commit}.ndjson`,
  })),
];

function servers(location: ProductLocation): Doc[] {
  const { lake } = location;
  return DATASETS.map(({ server, glob, format, description }) => {
    const common = {
      server,
      description,
      customProperties: [
        { property: 'lake', value: lake, description: 'the lake root, a directory or s3://bucket/prefix' },
        { property: 'layoutGlob', value: glob, description: 'the read glob, relative to the lake root' },
        ...(format === 'iceberg'
          ? [
              { property: 'tableFormat', value: 'iceberg', description: 'Apache Iceberg table format, version 2' },
              { property: 'tableLocation', value: lakeUrl(lake, TELEMETRY_PREFIX), description: 'the table location: register it with an engine\'s Iceberg catalog, or read it by path' },
              { property: 'metadataLocation', value: lakeUrl(lake, `${METADATA_PREFIX}/`), description: 'the table metadata; version-hint.text names the current version' },
            ]
          : []),
        { property: 'checkpoints', value: lakeUrl(lake, `${CHECKPOINT_PREFIX}/`), description: 'each sink\'s commit checkpoints: batch keys, point-identity ranges and counts, named by the table\'s snapshots' },
      ],
    };
    const where = format === 'iceberg' ? TELEMETRY_PREFIX : glob;
    if (!isS3Lake(lake)) return { ...common, type: 'local', path: lakePath(lake, where), format };
    return {
      ...common,
      type: 's3',
      location: lakeUrl(lake, where),
      ...(location.s3Endpoint && { endpointUrl: location.s3Endpoint }),
      format,
      ...(format === 'json' && { delimiter: 'new_line' }),
    };
  });
}

// ODCS names the checked element as object.property.
const SLA_ELEMENTS: Partial<Record<SloProperty, string>> = {
  latency: 'telemetry.ts',
  retention: 'telemetry.ts',
  frequency: 'telemetry.ingested_at',
};

function slaProperty(slo: SloTarget): Doc {
  const element = SLA_ELEMENTS[slo.property];
  return {
    property: slo.property,
    value: slo.target,
    unit: slo.unit,
    ...(element && { element }),
    driver: 'operational',
    // Verbatim, so that reading the contract back gives the targets it was built from.
    description: slo.description,
  };
}

function description(input: ContractInput): Doc {
  const glob = isS3Lake(input.location.lake) ? lakeUrl(input.location.lake, TELEMETRY_GLOB) : lakePath(input.location.lake, TELEMETRY_GLOB);
  return {
    purpose: 'Every telemetry point the drone fleet sent through its gateways, validated and deduplicated, as Hive-partitioned Parquet: one row per point, for flight analytics, fleet health and joins to deliveries.',
    usage:
      `The telemetry is an Apache Iceberg v2 table at ${lakeUrl(input.location.lake, TELEMETRY_PREFIX)}: every Iceberg engine (Spark, Trino, Flink, PyIceberg, DuckDB's iceberg extension, Snowflake, Athena) reads a consistent snapshot, prunes by ts, and travels back in time. ` +
      `\`dronelake query --lake ${input.location.lake}\` reads the current snapshot (or --as-of, --snapshot) with the views telemetry, quarantined_points and quarantined_batches. ` +
      `A plain glob, read_parquet('${glob}', hive_partitioning = true), also sees files no snapshot holds: compaction inputs until they expire, and files of commits that failed. ` +
      'mission_id joins to shipping and orders data. The quality rules are DuckDB SQL over the view telemetry.',
    limitations:
      `Rows become visible about ${input.flushIntervalSeconds} s after they arrive (one commit). ` +
      `Partitions are by event time and close ${input.latenessSeconds} s after their hour ends; points that arrive later are still stored and counted as late, so a closed hour can still grow. ` +
      "A plain glob may count a compaction's rows twice until its inputs expire with the snapshot retention (inputs and output are both present), may see files of a failed commit until maintenance removes them after the grace period, and may see some hour files of a commit in flight; a reader of the Iceberg table never does. " +
      'Null means the drone did not know the value. Invalid points and undecodable batches are not in telemetry: the quarantine keeps them, with the rule they broke.',
  };
}

/** Schema changes a consumer may need to act on, newest first; additions of columns are not listed. */
const CHANGELOG = [
  'The telemetry is an Apache Iceberg v2 table; seq and stream are BIGINT (signed), were UBIGINT, since Iceberg, Spark and Trino have no unsigned 64-bit type (both are at most 2^53). Files written before this change hold UBIGINT until compaction rewrites them.',
  'The key is (drone_id, stream, seq), was (drone_id, seq): a drone has a stream per gateway spool (or ingest client) that numbered its points, so a roaming drone, a replaced spool or a second run no longer lose points to another stream\'s seqs. Rows written before streams have stream null: read it as 0.',
  'satellites is BIGINT (signed), was UINTEGER: differences between rows (satellites - lag(satellites)) no longer overflow. Files written before this change hold UINTEGER.',
];

/** The product's ODCS v3.1.0 data contract: the lake's schema, quality rules, servers and objectives. */
export function buildContract(input: ContractInput): Doc {
  const { ownership } = input;
  return {
    apiVersion: 'v3.1.0',
    kind: 'DataContract',
    id: CONTRACT_ID,
    name: 'drones telemetry',
    version: input.version,
    status: 'active',
    domain: 'drones',
    dataProduct: 'drones',
    tags: ['drones', 'telemetry', 'iot', 'parquet'],
    description: description(input),
    schema: [telemetrySchema(input), quarantineSchema('points'), quarantineSchema('batches'), ...(input.live ? [eventsSchema(input.live)] : [])],
    servers: [...servers(input.location), ...(input.live ? [eventsServer(input.live)] : [])],
    slaProperties: input.slos.map(slaProperty),
    team: { name: ownership.team, members: [{ username: ownership.owner, role: 'owner' }] },
    support: [{ channel: 'support', url: ownership.support }],
    customProperties: [
      { property: 'flushIntervalSeconds', value: input.flushIntervalSeconds, description: 'seconds between commits to the lake' },
      { property: 'latenessSeconds', value: input.latenessSeconds, description: 'seconds after its hour ends that a partition closes' },
      { property: 'maxFutureSkewSeconds', value: input.maxFutureSkewSeconds, description: "seconds an event time may lie ahead of the sink's clock" },
      { property: 'changelog', value: CHANGELOG, description: 'changes to the schema that consumers may need to act on, newest first' },
    ],
    ...(input.createdAt && { contractCreatedTs: input.createdAt }),
  };
}
