import { z } from 'zod';
import { configOption, logLevelOption, optionSchemas, type OptionSpecs } from '../deploy/options';

export const agentOptions = {
  config: configOption,
  broker: { type: 'string', describe: 'MQTT broker URL (mqtts:// for TLS)', schema: optionSchemas.brokerUrl().default('mqtt://127.0.0.1:1883') },
  gateway: { type: 'string', describe: "this gateway's id (required)", schema: optionSchemas.id() },
  spool: { type: 'string', describe: 'directory of the disk spool that holds batches until the sink commits them (required)', schema: z.string().min(1) },
  spoolMaxBytes: {
    type: 'string',
    describe: 'the spool holds at most this many bytes (unacked batches are also kept in memory)',
    schema: optionSchemas.count(1024 * 1024, 2 ** 50).default(256 * 1024 * 1024),
  },
  spoolFull: {
    type: 'string',
    describe: "when the spool is full: 'block' (sources wait) or 'drop-oldest' (oldest batches are dropped and counted)",
    schema: z.enum(['block', 'drop-oldest']).default('block'),
  },
  fsyncInterval: { type: 'string', describe: 'milliseconds between group-commit fsyncs of the spool (0: every batch)', schema: z.coerce.number().min(0).max(10_000).default(50) },
  http: { type: 'string', describe: 'serve POST /v1/points, /health and /metrics on HOST:PORT (off by default)', schema: optionSchemas.hostPort() },
  simulate: { type: 'string', describe: 'simulate a fleet of N drones (0: none)', schema: optionSchemas.count(0, 9999).default(0) },
  hz: { type: 'string', describe: 'points per second per simulated drone', schema: optionSchemas.positive().default(1) },
  batchPoints: { type: 'string', describe: 'close a batch at this many points', schema: optionSchemas.count(1, 1_000_000).default(1000) },
  batchBytes: { type: 'string', describe: 'close a batch at this many encoded bytes', schema: optionSchemas.count(64, 64 * 1024 * 1024).default(256 * 1024) },
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
} satisfies OptionSpecs;
