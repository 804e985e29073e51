import { METADATA_PREFIX } from '../table/metadata';
import { PROTO_PACKAGE } from '../../proto/schema';
import { eventsTopic, liveTopic, TELEMETRY_BUCKETS, TELEMETRY_V2_WILDCARD, telemetryTopic } from '../../proto/topics';
import type { LiveAfter, LiveFormat } from '../live';
import { CATALOG_PREFIX, QUARANTINE_PREFIX, TELEMETRY_GLOB, TELEMETRY_PREFIX } from '../layout';
import { DOCUMENT_PATHS } from './documents';
import { ICEBERG_BASE, NAMESPACE, TABLE } from './iceberg-rest';
import { lakeUrl } from './lake-url';
import type { ProductLocation, ProductOwnership } from './types';

export const PRODUCT_ID = 'urn:dronelake:drones';

export interface ProductInput {
  location: ProductLocation;
  ownership: ProductOwnership;
  version: string;
  contractId: string;
  /** Base URL of the sink's HTTP server; without it the management ports name only their paths. */
  httpUrl?: string;
  /** ISO 8601; given rather than read from the clock, so one input gives one document. */
  createdAt?: string;
  /** The live and events output ports, when the sink runs them. */
  live?: LivePortInput;
}

/** What the descriptor and the contract say of the live port. */
export interface LivePortInput {
  after: LiveAfter;
  format: LiveFormat;
  broker: string;
  alertBatteryPct: number;
  alertSilenceSeconds: number;
}

/** The live port's delivery guarantee, in the words the descriptor and the contract use. */
export const LIVE_GUARANTEE: Record<LiveAfter, string> = {
  commit: 'after commit: only points durably in the lake, each once, in commit order (a point whose commit landed just before a sink crash may not go live)',
  accept: 'after accept: points as soon as they are validated and deduplicated, before their commit; a point may be sent again after a sink crash',
};

/** What a consumer that falls behind gets, in the words the descriptor uses. */
const LIVE_SLOW_CONSUMER =
  "a consumer that falls behind is never waited for: the broker drops the MQTT messages it is too far behind to take and counts them per consumer identity, in messages and points, so that points received + points dropped = points published on its topics; an SSE client misses the events it is too far behind to take, and an 'event: dropped' tells it how many points and alerts once it catches up";

/** The live ports: the telemetry rows as they arrive, and the events derived from them. */
function livePorts(input: ProductInput, live: LivePortInput): Doc[] {
  const sse = input.httpUrl ? new URL('/live', input.httpUrl).href : '/live';
  return [
    {
      name: 'live',
      description: `the telemetry object's rows, ${live.format === 'v2' ? 'as wire v2 columnar batches on MQTT and JSON arrays on SSE' : 'as JSON arrays'}, one message per drone, ${LIVE_GUARANTEE[live.after]}; ${LIVE_SLOW_CONSUMER}`,
      type: 'stream',
      version: input.version,
      contractId: input.contractId,
      customProperties: custom({ protocol: 'MQTT', broker: live.broker, topic: liveTopic('{drone_id}'), qos: 0, format: live.format, delivery: `after-${live.after}`, sse, role: 'consumer' }),
    },
    {
      name: 'events',
      description: `events derived from the live rows: emergency, battery_low (below ${live.alertBatteryPct} %), silent (nothing for ${live.alertSilenceSeconds} s); the contract's events object; as on the live port, a consumer that falls behind misses events, counted, rather than being waited for`,
      type: 'stream',
      version: input.version,
      contractId: input.contractId,
      customProperties: custom({ protocol: 'MQTT', broker: live.broker, topic: eventsTopic('{drone_id}'), qos: 0, format: 'json', delivery: `after-${live.after}`, sse, role: 'consumer' }),
    },
  ];
}

type Doc = Record<string, unknown>;

const custom = (entries: Record<string, unknown>): Doc[] => Object.entries(entries).map(([property, value]) => ({ property, value }));

/** What the sink serves over HTTP about the product. */
const HTTP_PORTS = [
  { name: 'page', path: '/', content: 'discoverability', description: 'the product page, for people: what it is, who owns it, whether it can be trusted now and how to read it' },
  { name: 'iceberg', path: ICEBERG_BASE, content: 'discoverability', description: `the Iceberg REST catalog, read-only: namespace ${NAMESPACE}, table ${TABLE}` },
  { name: 'contract', path: DOCUMENT_PATHS.contract, content: 'dictionary', description: 'the ODCS data contract' },
  { name: 'product', path: DOCUMENT_PATHS.product, content: 'discoverability', description: 'this ODPS product descriptor' },
  { name: 'slo-status', path: DOCUMENT_PATHS.sloStatus, content: 'observability', description: "the objectives' status at the last quality window" },
  { name: 'quality-history', path: DOCUMENT_PATHS.quality, content: 'observability', description: 'the quality windows of the last 7 days (?days=1..7)' },
  { name: 'lineage', path: DOCUMENT_PATHS.lineage, content: 'observability', description: 'the OpenLineage run events of the last 7 days (?days=1..7)' },
  { name: 'quality', path: '/quality/latest', content: 'observability', description: "the sink's latest quality window and the objectives' status (the sink's --http only)" },
  { name: 'metrics', path: '/metrics', content: 'observability', description: "the sink's Prometheus metrics (the sink's --http only)" },
] as const;

function httpPort(port: (typeof HTTP_PORTS)[number], httpUrl: string | undefined): Doc {
  return {
    name: port.name,
    content: port.content,
    type: 'rest',
    ...(httpUrl && { url: new URL(port.path, httpUrl).href }),
    description: port.description,
    customProperties: custom({ path: port.path }),
  };
}

/** The product's ODPS v1.0.0 descriptor: what flows in, what consumers read, and how to manage it. */
export function buildProduct(input: ProductInput): Doc {
  const { lake } = input.location;
  const { ownership } = input;
  return {
    apiVersion: 'v1.0.0',
    kind: 'DataProduct',
    id: PRODUCT_ID,
    name: 'drones',
    version: input.version,
    status: 'active',
    domain: 'drones',
    tags: ['drones', 'telemetry', 'iot'],
    description: {
      purpose: "The drone fleet's telemetry, from the gateways to a Parquet lake any engine reads: every point once, bad input kept aside with the reason.",
      usage: `Read the telemetry port as an Iceberg table (any Iceberg engine, the REST catalog under /iceberg, or dronelake query --lake ${lake}), or with a glob and Hive partitioning; the contract has the schema, the quality rules and the objectives.`,
      limitations: 'A plain glob may see rows twice until a compaction\'s inputs expire with the snapshot retention; a reader of the Iceberg table never does. See the contract.',
    },
    inputPorts: [
      {
        name: 'gateway-telemetry',
        version: 'v2',
        contractId: PROTO_PACKAGE,
        customProperties: custom({
          protocol: 'MQTT',
          topic: TELEMETRY_V2_WILDCARD.replace('+/+', '{bucket}/{gatewayId}'),
          bucket: `CRC-32(gatewayId) mod ${TELEMETRY_BUCKETS}`,
          qos: 1,
          format: 'protobuf',
          message: `${PROTO_PACKAGE}.ColumnarBatch`,
          schema: 'proto/telemetry.proto',
        }),
      },
      {
        // Old agents and third-party producers still send row batches; every shard hears them.
        name: 'gateway-telemetry-v1',
        version: 'v1',
        contractId: PROTO_PACKAGE,
        tags: ['deprecated'],
        customProperties: custom({
          protocol: 'MQTT',
          topic: telemetryTopic('{gatewayId}'),
          qos: 1,
          format: 'protobuf',
          message: `${PROTO_PACKAGE}.Batch`,
          schema: 'proto/telemetry.proto',
          status: 'deprecated',
        }),
      },
    ],
    outputPorts: [
      {
        name: 'telemetry',
        description: 'An Apache Iceberg v2 table of ZSTD-compressed Parquet, partitioned by hour(ts) and sorted by (drone_id, ts): one row per point',
        type: 'tables',
        version: input.version,
        contractId: input.contractId,
        customProperties: custom({
          format: 'parquet',
          tableFormat: 'iceberg',
          location: lakeUrl(lake, TELEMETRY_PREFIX),
          metadataLocation: lakeUrl(lake, `${METADATA_PREFIX}/`),
          glob: lakeUrl(lake, TELEMETRY_GLOB),
        }),
      },
      {
        name: 'quarantine',
        description: 'rejected points (with the rule they broke) and undecodable batches (byte for byte), as NDJSON',
        type: 'files',
        version: input.version,
        contractId: input.contractId,
        customProperties: custom({ format: 'ndjson', location: lakeUrl(lake, QUARANTINE_PREFIX), glob: lakeUrl(lake, `${QUARANTINE_PREFIX}/**/*.ndjson`) }),
      },
      ...(input.live ? livePorts(input, input.live) : []),
    ],
    managementPorts: [
      {
        name: 'catalog',
        content: 'discoverability',
        type: 'files',
        url: lakeUrl(lake, `${CATALOG_PREFIX}/`),
        description: 'the catalog files in the lake: the contract, this descriptor, quality windows, lineage events and each sink\'s commit checkpoints',
      },
      ...HTTP_PORTS.map((port) => httpPort(port, input.httpUrl)),
    ],
    team: { name: ownership.team, members: [{ username: ownership.owner, role: 'owner' }] },
    support: [{ channel: 'support', url: ownership.support }],
    ...(input.createdAt && { productCreatedTs: input.createdAt }),
  };
}
