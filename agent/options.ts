import { logLevelOption, optionSchemas, type OptionSpecs } from '../deploy/options';

export const agentOptions = {
  broker: { type: 'string', describe: 'MQTT broker URL', schema: optionSchemas.brokerUrl().default('mqtt://127.0.0.1:1883') },
  gateway: { type: 'string', describe: 'this gateway\'s id (required)', schema: optionSchemas.id() },
  simulate: { type: 'string', describe: 'simulate a fleet of N drones (0: none)', schema: optionSchemas.count(0, 100_000).default(10) },
  hz: { type: 'string', describe: 'points per second per simulated drone', schema: optionSchemas.positive().default(1) },
  batchPoints: { type: 'string', describe: 'close a batch at this many points', schema: optionSchemas.count(1, 1_000_000).default(1000) },
  batchBytes: { type: 'string', describe: 'close a batch at this many encoded bytes', schema: optionSchemas.count(64, 64 * 1024 * 1024).default(256 * 1024) },
  linger: { type: 'string', describe: 'close a batch this many seconds after its first point', schema: optionSchemas.positive().default(1) },
  window: { type: 'string', describe: 'batches in flight (sent, not yet committed) at most', schema: optionSchemas.count(1, 100_000).default(64) },
  ackTimeout: { type: 'string', describe: 're-send a batch whose commit ack is this many seconds late', schema: optionSchemas.positive().default(30) },
  maxPendingBytes: {
    type: 'string',
    describe: 'sources pause while this many bytes of batches await their commit ack',
    schema: optionSchemas.count(1024, 2 ** 40).default(64 * 1024 * 1024),
  },
  logLevel: logLevelOption,
} satisfies OptionSpecs;

