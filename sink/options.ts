import * as z from 'zod';
import { LIVE_AFTER, LIVE_FORMATS } from './live';
import { shardSchema } from './shard';
import { storageOptions } from './storage-options';
import { checkHttpBind, httpPublicOption } from '../deploy/runtime/http';
import { configOf, configOption, logFormatOption, logLevelOption, optionSchemas, type Config, type ConfigInput, type OptionSpecs } from '../deploy/runtime/options';

export const sinkOptions = {
  config: configOption,
  broker: { type: 'string', describe: 'MQTT broker URL', schema: optionSchemas.brokerUrl().default('mqtt://127.0.0.1:1883') },
  ...storageOptions,
  clientId: {
    type: 'string',
    describe: 'MQTT client id; the broker keeps this persistent session while the sink is away',
    schema: optionSchemas.id().default('dronelake-sink'),
  },
  username: { type: 'string', describe: "MQTT username: the sink's identity in the broker's registry (e.g. dronelake-sink)", schema: z.string().min(1).optional() },
  password: { type: 'string', describe: 'MQTT password (prefer DRONELAKE_SINK_PASSWORD)', schema: z.string().min(1).optional() },
  ca: { type: 'string', describe: 'PEM file of the CA that signed the broker certificate', schema: z.string().min(1).optional() },
  cert: { type: 'string', describe: 'PEM client certificate, for mutual TLS', schema: z.string().min(1).optional() },
  key: { type: 'string', describe: 'PEM client key, for mutual TLS', schema: z.string().min(1).optional() },
  shard: {
    type: 'string',
    describe: "take only the gateways of telemetry buckets I, I+N, ... of 64 (by CRC-32 of the id), e.g. 0/2; N at most 64; the client id gets '-IofN' appended",
    schema: shardSchema.optional(),
  },
  flushInterval: {
    type: 'string',
    describe: 'seconds between commits to the lake',
    schema: optionSchemas.positive().default(5),
  },
  commitPoints: {
    type: 'string',
    describe: 'commit early once this many points are staged',
    schema: optionSchemas.count(1, 100_000_000).default(500_000),
  },
  maxStagedMib: {
    type: 'string',
    describe: 'stop taking messages while this many MiB of points and bad input await commit (bounds memory)',
    schema: optionSchemas.count(1, 1_000_000).default(256),
  },
  maxFutureSkew: {
    type: 'string',
    describe: 'seconds an event time may lie ahead of the sink clock before the point is rejected',
    schema: optionSchemas.positive().default(300),
  },
  lateness: {
    type: 'string',
    describe: 'seconds after its hour ends that a partition closes: points arriving later are counted late, and closed partitions are compacted',
    schema: z.coerce.number().min(0).max(1e9).default(3600),
  },
  compactInterval: { type: 'string', describe: 'seconds between compaction passes; 0 turns compaction off', schema: z.coerce.number().min(0).max(1e9).default(60) },
  compactTargetMib: { type: 'string', describe: 'compaction merges small files into files of about this many MiB', schema: optionSchemas.count(1, 1_000_000).default(128) },
  compactGrace: {
    type: 'string',
    describe: 'seconds a file no snapshot names stays readable before it is deleted (at least 900 for files of no commit)',
    schema: z.coerce.number().min(0).max(1e9).default(600),
  },
  historyRetention: {
    type: 'string',
    describe: "days of the catalog's quality windows and lineage events kept: older ones are removed by maintenance (a window a minute a sink, which a lake would otherwise keep for good)",
    schema: optionSchemas.positive().default(90),
  },
  snapshotRetention: {
    type: 'string',
    describe: 'hours of table snapshots kept: how far time travel reaches, and how long replaced files stay (every snapshot of the last 15 minutes, then one per hour)',
    schema: optionSchemas.positive().default(168),
  },
  http: {
    type: 'string',
    describe: 'serve /health, /metrics, the product page, its Iceberg REST catalog (/iceberg), its documents and the latest quality on HOST:PORT (off by default); any but loopback needs --http-public',
    schema: optionSchemas.hostPort(),
  },
  httpPublic: httpPublicOption,
  streamIdle: {
    type: 'string',
    describe: "hours a point stream may go without a commit before its dedupe state leaves memory (its batches stay deduped for ever)",
    schema: optionSchemas.positive().default(168),
  },
  live: { type: 'boolean', describe: 'publish accepted points on the live port: MQTT dronelake/v1/live/{drone_id} and GET /live (SSE), JSON', schema: optionSchemas.flag() },
  liveAfter: {
    type: 'string',
    describe: "with --live: 'commit' (points once durably in the lake, each once, in commit order) or 'accept' (as soon as validated; may repeat a point after a sink crash)",
    schema: z.enum(LIVE_AFTER).default('commit'),
  },
  liveFormat: {
    type: 'string',
    describe: "with --live: MQTT messages as 'json' (lake rows) or 'v2' (a wire v2 columnar batch of the points); SSE stays JSON",
    schema: z.enum(LIVE_FORMATS).default('json'),
  },
  liveQueueMib: {
    type: 'string',
    describe: "with --live: MiB of MQTT messages held for the broker link while it is slow or down (JSON rows are about 460 bytes a point); when full, the oldest are dropped, counted",
    schema: optionSchemas.count(1, 1_000_000).default(64),
  },
  alertBatteryPct: { type: 'string', describe: "with --live: a 'battery_low' event when a drone's battery_pct falls below this", schema: z.coerce.number().min(0).max(100).default(20) },
  alertSilence: { type: 'string', describe: "with --live: a 'silent' event when a drone sent nothing for this many seconds; 0 turns it off", schema: z.coerce.number().min(0).max(1e6).default(60) },
  qualityWindow: { type: 'string', describe: 'seconds per quality window: each gets a quality record, a lineage event and the objectives\' status', schema: optionSchemas.positive().default(60) },
  missingAfter: {
    type: 'string',
    describe: 'seconds a gap in a drone\'s seq may stay open before it counts as missing, not in flight',
    schema: z.coerce.number().min(0).max(1e9).default(600),
  },
  sloAvailability: { type: 'string', describe: 'objective: percent of quality windows recorded over the last 24 hours', schema: z.coerce.number().min(0).max(100).default(99.9) },
  sloThroughput: { type: 'string', describe: 'objective: rows committed per second over the last hour, at least', schema: z.coerce.number().min(0).default(0) },
  sloErrorRate: { type: 'string', describe: 'objective: rejected share of what was received over the last 24 hours, at most', schema: z.coerce.number().min(0).max(1).default(0.01) },
  sloFrequency: { type: 'string', describe: 'objective: median seconds between commits over the last hour, at most', schema: optionSchemas.positive().default(30) },
  sloFreshness: { type: 'string', describe: 'objective: age in seconds of the newest committed event, at most', schema: optionSchemas.positive().default(120) },
  sloRetention: { type: 'string', describe: 'objective: days the data is kept, at least', schema: optionSchemas.positive().default(365) },
  productTeam: { type: 'string', describe: 'team that owns the drones data product', schema: z.string().min(1).default('drones') },
  productOwner: { type: 'string', describe: 'owner of the drones data product', schema: z.string().min(1).default('drones-data@example.com') },
  productSupport: { type: 'string', describe: 'where consumers get help: a URL or mailto:', schema: z.string().min(1).default('mailto:drones-data@example.com') },
  openlineageUrl: { type: 'string', describe: 'also POST each OpenLineage event to this URL (Marquez, DataHub)', schema: z.url({ protocol: /^https?$/, error: 'expected an http(s) URL' }).optional() },
  duckdbMemory: { type: 'string', describe: "DuckDB memory limit, e.g. '1GB'", schema: z.string().regex(/^\d+(\.\d+)?\s*[KMGT]i?B$/i, "expected a size such as '512MB' or '2GB'").default('1GB') },
  // One thread writes a commit at the least CPU: with two, the second cost the sink 0.3
  // CPU-us a point more and took 8-30 % off its rate (bench, 2 cores). More threads write
  // a large commit or compaction sooner, where there are cores to spare.
  duckdbThreads: { type: 'string', describe: 'DuckDB threads for writing commits and compactions', schema: optionSchemas.count(1, 256).default(1) },
  logLevel: logLevelOption,
  logFormat: logFormatOption,
} satisfies OptionSpecs;

/** What startSink takes: the options of `dronelake sink`, validated, with their defaults. */
export type SinkConfig = Config<typeof sinkOptions>;

/** A sink's config in code, e.g. `sinkConfig({ broker, lake, flushInterval: 0.3 })`: the rest takes the defaults of `dronelake sink`. */
export const sinkConfig = (given: ConfigInput<typeof sinkOptions>): SinkConfig => configOf(sinkOptions, given);

/** Rules between options, checked before anything is opened; a broken one is a usage error. */
export function checkSinkOptions(o: Pick<SinkConfig, 'http' | 'httpPublic'>): void {
  checkHttpBind(o.http, o.httpPublic, "its /metrics, the product's contract and its quality");
}
