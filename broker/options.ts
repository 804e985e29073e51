import * as z from 'zod';
import { checkHttpBind, httpPublicOption } from '../deploy/runtime/http';
import { configOption, isLoopback, logFormatOption, logLevelOption, optionSchemas, UsageError, type OptionSpecs, type ParsedOptions } from '../deploy/runtime/options';

// Here rather than in the registry, so that the CLI's option specs load neither the
// registry nor its YAML writer (a gateway's agent parses these specs too).
export const roleSchema = z.enum(['gateway', 'sink', 'consumer'], { error: "expected 'gateway', 'sink' or 'consumer'" });

const file = () => z.string().min(1).optional();
const seconds = () => z.coerce.number().positive().max(3600);

export const brokerOptions = {
  config: configOption,
  host: { type: 'string', describe: 'address to listen on; any but loopback needs --registry or --allow-anonymous', schema: z.string().min(1).default('127.0.0.1') },
  port: { type: 'string', describe: 'TCP port to listen on (0 picks a free one)', schema: optionSchemas.count(0, 65535).default(1883) },
  registry: { type: 'string', describe: "file of identities ('dronelake broker identity add'): every client must then authenticate", schema: file() },
  allowAnonymous: { type: 'boolean', describe: 'without --registry, accept anonymous clients on a non-loopback --host too', schema: optionSchemas.flag() },
  tlsPort: { type: 'string', describe: 'also listen for MQTT over TLS on this port (0 picks a free one)', schema: optionSchemas.count(0, 65535).optional() },
  tlsCert: { type: 'string', describe: "PEM file of the broker's certificate (chain), for --tls-port", schema: file() },
  tlsKey: { type: 'string', describe: "PEM file of the broker's private key, for --tls-port", schema: file() },
  tlsCa: { type: 'string', describe: 'PEM file of the CA whose client certificates identify clients (mutual TLS; CN = identity id)', schema: file() },
  tlsOnly: { type: 'boolean', describe: 'with --tls-port, do not listen on plain TCP', schema: optionSchemas.flag() },
  persistence: {
    type: 'string',
    describe: "where sessions and queued messages live: 'level' (on disk under --data-dir) or 'memory' (lost on restart)",
    schema: z.enum(['level', 'memory'], { error: "expected 'level' or 'memory'" }).default('level'),
  },
  dataDir: {
    type: 'string',
    describe: 'directory of the on-disk session store, one per broker (required with --persistence level, e.g. /var/lib/dronelake/broker)',
    schema: z.string().min(1).optional(),
  },
  cluster: {
    type: 'string',
    describe: 'redis:// URL shared by the brokers of a cluster (sessions and routing in Redis)',
    schema: z.string().regex(/^rediss?:\/\/\S+$/, 'expected a URL such as redis://127.0.0.1:6379').optional(),
  },
  http: { type: 'string', describe: 'serve /health and /metrics on HOST:PORT (off by default); any but loopback needs --http-public', schema: optionSchemas.hostPort() },
  httpPublic: httpPublicOption,
  maxPacketBytes: {
    type: 'string',
    describe: 'close a connection that sends an MQTT packet larger than this many bytes',
    schema: optionSchemas.count(64, 256 * 1024 * 1024).default(1024 * 1024),
  },
  maxTopicLevels: { type: 'string', describe: 'close a connection that names a topic with more levels than this (at most 100)', schema: optionSchemas.count(1, 100).default(16) },
  maxClientIdLength: { type: 'string', describe: 'refuse client ids longer than this (CONNACK 2)', schema: optionSchemas.count(23, 65535).default(128) },
  maxConnectionsPerIdentity: {
    type: 'string',
    describe: 'connections one identity may hold at once, under distinct client ids (CONNACK 3 beyond)',
    schema: optionSchemas.count(1, 1_000_000).default(8),
  },
  connectTimeout: { type: 'string', describe: 'seconds a new connection has to complete its CONNECT (and TLS handshake)', schema: seconds().default(10) },
  maxKeepalive: {
    type: 'string',
    describe: 'refuse clients whose keepalive is above this many seconds (CONNACK 2; 0: any keepalive)',
    schema: optionSchemas.count(0, 65535).default(300),
  },
  tcpKeepalive: {
    type: 'string',
    describe: 'seconds a connection may stay silent before TCP keepalive probes it; a dead link is closed about 10 s later',
    // Linux takes at most 32767 s for TCP_KEEPIDLE.
    schema: optionSchemas.count(1, 32767).default(60),
  },
  drainTimeout: {
    type: 'string',
    describe: 'seconds a subscriber may leave what the broker sends it unread before it is disconnected',
    schema: seconds().default(60),
  },
  consumerMaxBehind: {
    type: 'string',
    describe: 'seconds a consumer of the live and events ports may stay too far behind to be sent anything (its deliveries dropped, counted) before it is disconnected; 0: never',
    schema: z.coerce.number().min(0).max(86400).default(300),
  },
  logLevel: logLevelOption,
  logFormat: logFormatOption,
} satisfies OptionSpecs;

export const identityOptions = {
  registry: {
    type: 'string',
    describe: 'the registry file: JSON, or YAML when its name ends in .yaml or .yml (required; add creates it)',
    schema: z.string().min(1),
  },
} satisfies OptionSpecs;

export const identityAddOptions = {
  ...identityOptions,
  role: { type: 'string', describe: "'gateway' (publishes its telemetry, reads its acks), 'sink' (reads all telemetry, acks any gateway, publishes the live and events ports) or 'consumer' (reads the live and events ports only) (required)", schema: roleSchema },
} satisfies OptionSpecs;

export type BrokerOptions = ParsedOptions<typeof brokerOptions>;

/** Rules between options, checked before anything is opened; a broken one is a usage error. */
export function checkBrokerOptions(
  o: Pick<BrokerOptions, 'host' | 'registry' | 'allowAnonymous' | 'tlsPort' | 'tlsCert' | 'tlsKey' | 'tlsCa' | 'tlsOnly' | 'http' | 'httpPublic'> & Partial<Pick<BrokerOptions, 'persistence' | 'dataDir' | 'cluster'>>,
): void {
  checkHttpBind(o.http, o.httpPublic, 'its /health and /metrics');
  if (o.registry && o.allowAnonymous) throw new UsageError('--allow-anonymous and --registry exclude each other: with a registry every client authenticates');
  // As in Mosquitto 2: a broker without identities is reachable from this machine alone,
  // unless the operator says in so many words that anyone may connect.
  if (!o.registry && !o.allowAnonymous && !isLoopback(o.host)) {
    throw new UsageError(
      `--host ${o.host} is not a loopback address, and without --registry anyone who reaches it could connect anonymously; ` +
        "give --registry FILE (see 'dronelake broker identity add --help'), or --allow-anonymous to accept that",
    );
  }
  if (o.tlsPort !== undefined && (!o.tlsCert || !o.tlsKey)) throw new UsageError('--tls-port needs --tls-cert and --tls-key');
  if (o.tlsPort === undefined && (o.tlsCert || o.tlsKey || o.tlsCa || o.tlsOnly)) throw new UsageError('--tls-cert, --tls-key, --tls-ca and --tls-only need --tls-port');
  // No default under the working directory: brokers of different deployments started from one
  // directory would share one store, and deliver one's queued messages into another's lake.
  if (o.persistence === 'level' && !o.cluster && !o.dataDir) {
    throw new UsageError('--data-dir is required with --persistence level (the default): the directory of this broker\'s session store, e.g. /var/lib/dronelake/broker');
  }
}
