import * as z from 'zod';
import { COMPRESSIONS, HAS_ZSTD } from '../proto/columnar';
import { mavlinkOptionSchemas, parseEndpoints } from './mavlink/config';
import { configOf, configOption, hostOf, isLoopback, logFormatOption, logLevelOption, optionSchemas, UsageError, type Config, type ConfigInput, type OptionSpec, type OptionSpecs } from '../deploy/runtime/options';

export const mavlinkDronesOption = {
  type: 'string',
  describe: 'drone ids of MAVLink system ids: SYSID=ID,... or @FILE (others: {gateway}-sys{SYSID})',
  schema: mavlinkOptionSchemas.drones(),
} satisfies OptionSpec;

export const agentOptions = {
  config: configOption,
  broker: { type: 'string', describe: 'MQTT broker URL (mqtts:// for TLS)', schema: optionSchemas.brokerUrl().default('mqtt://127.0.0.1:1883') },
  gateway: { type: 'string', describe: "this gateway's id (required)", schema: optionSchemas.id() },
  spool: { type: 'string', describe: 'directory of the disk spool that holds batches until the sink commits them (required)', schema: z.string().min(1) },
  spoolMaxBytes: {
    type: 'string',
    describe: 'the spool holds at most this many bytes on disk',
    schema: optionSchemas.count(1024 * 1024, 2 ** 50).default(256 * 1024 * 1024),
  },
  spoolMemoryMib: {
    type: 'string',
    describe: 'MiB of batches held in memory, being sent or next to go (plus one batch); the rest of the spool is read back from disk',
    schema: optionSchemas.count(1, 4096).default(8),
  },
  spoolFull: {
    type: 'string',
    describe: "when the spool is full: 'block' (sources wait) or 'drop-oldest' (oldest batches are dropped and counted)",
    schema: z.enum(['block', 'drop-oldest']).default('block'),
  },
  fsyncInterval: { type: 'string', describe: 'milliseconds between group-commit fsyncs of the spool (0: every batch)', schema: z.coerce.number().min(0).max(10_000).default(50) },
  http: {
    type: 'string',
    describe: 'serve POST /v1/points, /health and /metrics on HOST:PORT (off by default); any but loopback needs --http-tokens',
    schema: optionSchemas.hostPort(),
  },
  httpTokens: {
    type: 'string',
    describe: "file of ingest tokens ('dronelake agent token add'): every POST /v1/points must then carry one, for drones it may write",
    schema: z.string().min(1).optional(),
  },
  httpTlsCert: { type: 'string', describe: 'PEM certificate (chain) of the --http endpoint: it then serves HTTPS', schema: z.string().min(1).optional() },
  httpTlsKey: { type: 'string', describe: 'PEM private key of --http-tls-cert', schema: z.string().min(1).optional() },
  simulate: { type: 'string', describe: 'simulate a fleet of N drones (0: none)', schema: optionSchemas.count(0, 9999).default(0) },
  hz: { type: 'string', describe: 'points per second per simulated drone', schema: optionSchemas.positive().default(1) },
  mavlink: { type: 'string', describe: 'listen for MAVLink v1/v2 on UDP: udp:HOST:PORT, comma-separated (off by default)', schema: mavlinkOptionSchemas.endpoints() },
  mavlinkKeys: {
    type: 'string',
    describe: 'file of MAVLink 2 signing keys (SYSID=KEY or *=KEY, KEY 64 hex digits): only packets signed with them are taken',
    schema: z.string().min(1).optional(),
  },
  mavlinkUnsigned: {
    type: 'boolean',
    describe: 'without --mavlink-keys, take unsigned MAVLink on a non-loopback --mavlink too: anyone who reaches the port can forge positions',
    schema: optionSchemas.flag(),
  },
  mavlinkAllow: { type: 'string', describe: 'take MAVLink datagrams only from these senders: CIDR or address, comma-separated', schema: mavlinkOptionSchemas.allow() },
  mavlinkDrones: mavlinkDronesOption,
  mavlinkHz: { type: 'string', describe: 'MAVLink points per second per vehicle at most (0: one per GLOBAL_POSITION_INT)', schema: mavlinkOptionSchemas.hz(5) },
  wire: {
    type: 'string',
    describe: "'v2' (columnar batches on bucketed topics) or 'v1' (row batches, deprecated: for sinks older than v2)",
    schema: z.enum(['v1', 'v2']).default('v2'),
  },
  compression: {
    type: 'string',
    describe: "compression of v2 batches: 'none', 'deflate', 'brotli' or 'zstd' (zstd on Node 22.15 and later)",
    schema: z
      .enum(COMPRESSIONS)
      .refine((c) => c !== 'zstd' || HAS_ZSTD, `zstd needs Node 22.15 or later; this is ${process.version}`)
      .default('brotli'),
  },
  batchPoints: { type: 'string', describe: 'close a batch at this many points', schema: optionSchemas.count(1, 1_000_000).default(1000) },
  batchBytes: { type: 'string', describe: 'close a batch at this many encoded bytes (v2: a bound on its size before compression)', schema: optionSchemas.count(64, 64 * 1024 * 1024).default(256 * 1024) },
  linger: { type: 'string', describe: 'close a batch this many seconds after its first point', schema: optionSchemas.positive().default(1) },
  window: { type: 'string', describe: 'batches in flight (sent, not yet committed) at most', schema: optionSchemas.count(1, 100_000).default(64) },
  ackTimeout: { type: 'string', describe: 're-send a batch whose commit ack is this many seconds late', schema: optionSchemas.positive().default(30) },
  reconnectMin: { type: 'string', describe: 'first reconnect delay cap, seconds (exponential backoff with full jitter)', schema: optionSchemas.positive().default(0.5) },
  reconnectMax: { type: 'string', describe: 'largest reconnect delay cap, seconds', schema: optionSchemas.positive().default(60) },
  healthMaxUnackedAge: {
    type: 'string',
    describe: '/health turns unhealthy when the oldest unacked batch is older than this many seconds',
    schema: optionSchemas.positive().default(120),
  },
  maxFutureSkew: { type: 'string', describe: 'seconds an ingested point may lie ahead of the clock', schema: optionSchemas.positive().default(300) },
  username: { type: 'string', describe: 'MQTT username', schema: z.string().min(1).optional() },
  password: { type: 'string', describe: 'MQTT password (prefer DRONELAKE_AGENT_PASSWORD)', schema: z.string().min(1).optional() },
  ca: { type: 'string', describe: 'PEM file of the CA that signed the broker certificate', schema: z.string().min(1).optional() },
  cert: { type: 'string', describe: 'PEM client certificate, for mutual TLS', schema: z.string().min(1).optional() },
  key: { type: 'string', describe: 'PEM client key, for mutual TLS', schema: z.string().min(1).optional() },
  logLevel: logLevelOption,
  logFormat: logFormatOption,
} satisfies OptionSpecs;

// The agent's options that make no sense for a file; the rest (link, spool, batching) apply.
const LIVE_ONLY = [
  'http',
  'httpTokens',
  'httpTlsCert',
  'httpTlsKey',
  'simulate',
  'hz',
  'mavlink',
  'mavlinkKeys',
  'mavlinkUnsigned',
  'mavlinkAllow',
  'mavlinkHz',
  'healthMaxUnackedAge',
  'maxFutureSkew',
  'logLevel',
] as const;
const linkOptions = Object.fromEntries(Object.entries(agentOptions).filter(([k]) => !(LIVE_ONLY as readonly string[]).includes(k))) as Omit<
  typeof agentOptions,
  (typeof LIVE_ONLY)[number]
>;

/** `agent replay`: the agent's options that apply to a file, and the replay's own. */
export const replayOptions = {
  ...linkOptions,
  password: { ...linkOptions.password, describe: 'MQTT password (prefer DRONELAKE_AGENT_REPLAY_PASSWORD)' },
  mavlinkHz: { type: 'string', describe: 'points per second per vehicle at most (0: one per GLOBAL_POSITION_INT)', schema: mavlinkOptionSchemas.hz(0) },
  start: {
    type: 'string',
    describe: 'a raw stream (no timestamps) only: RFC 3339 time of its first position; later ones follow by time_boot_ms',
    schema: z.iso.datetime({ offset: true }).optional(),
  },
  realtime: { type: 'boolean', describe: 'replay at the recorded pace instead of as fast as possible', schema: optionSchemas.flag() },
  drainTimeout: { type: 'string', describe: 'seconds to wait for the sink to commit every point once the file is read', schema: optionSchemas.positive().default(300) },
  progress: { type: 'string', describe: 'seconds between progress lines on stderr', schema: optionSchemas.positive().default(5) },
  json: { type: 'boolean', describe: 'print the final summary as one JSON line on stdout', schema: optionSchemas.flag() },
  logLevel: { ...logLevelOption, schema: logLevelOption.schema.removeDefault().default('warn') },
  logFormat: logFormatOption,
} satisfies OptionSpecs;

/** `agent token add|remove|list`: the token file, and the drones of a new token. */
export const tokenOptions = {
  httpTokens: { type: 'string', describe: 'the token file: JSON, or YAML when its name ends in .yaml or .yml (required; add creates it)', schema: z.string().min(1) },
} satisfies OptionSpecs;

export const tokenAddOptions = {
  ...tokenOptions,
  drones: {
    type: 'string',
    describe: "the drone ids the token may write, comma-separated; * stands for any run of characters, e.g. 'd-*,gw-017-sys*' (required)",
    schema: z.string().min(1),
  },
} satisfies OptionSpecs;

/** What startAgent takes: the options of `dronelake agent`, validated, with their defaults. */
export type AgentConfig = Config<typeof agentOptions>;

/** An agent's config in code, e.g. `agentConfig({ broker, gateway, spool, simulate: 5 })`: the rest takes the defaults of `dronelake agent`. */
export const agentConfig = (given: ConfigInput<typeof agentOptions>): AgentConfig => configOf(agentOptions, given);

/**
 * Rules between options, checked before anything is opened; a broken one is a usage error.
 * The gateway's write paths are secure by default, as the broker's --host is: beyond
 * loopback, the ingest API needs tokens and MAVLink needs signing keys or an explicit opt-in.
 */
export function checkAgentOptions(
  o: Pick<AgentConfig, 'http' | 'httpTokens' | 'httpTlsCert' | 'httpTlsKey' | 'mavlink' | 'mavlinkKeys' | 'mavlinkUnsigned' | 'mavlinkAllow'>,
): void {
  if (o.http === undefined && (o.httpTokens || o.httpTlsCert || o.httpTlsKey)) throw new UsageError('--http-tokens, --http-tls-cert and --http-tls-key need --http');
  if (!o.httpTlsCert !== !o.httpTlsKey) throw new UsageError('--http-tls-cert and --http-tls-key go together');
  if (o.http !== undefined && !o.httpTokens && !isLoopback(hostOf(o.http))) {
    throw new UsageError(
      `--http ${o.http} is not a loopback address, and without --http-tokens anyone who reaches it could post points for any drone; ` +
        "give --http-tokens FILE (see 'dronelake agent token add --help')",
    );
  }
  if (o.mavlink === undefined && (o.mavlinkKeys || o.mavlinkUnsigned || o.mavlinkAllow)) throw new UsageError('--mavlink-keys, --mavlink-unsigned and --mavlink-allow need --mavlink');
  if (o.mavlinkKeys && o.mavlinkUnsigned) throw new UsageError('--mavlink-keys and --mavlink-unsigned exclude each other: with keys every packet must be signed');
  const open = o.mavlink === undefined ? undefined : parseEndpoints(o.mavlink).find((ep) => !isLoopback(ep.host));
  if (open && !o.mavlinkKeys && !o.mavlinkUnsigned) {
    throw new UsageError(
      `--mavlink udp:${open.host}:${open.port} is not a loopback address, and without --mavlink-keys anyone who reaches it could forge any vehicle's position; ` +
        'give --mavlink-keys FILE (MAVLink 2 signing), or --mavlink-unsigned to accept that',
    );
  }
}
