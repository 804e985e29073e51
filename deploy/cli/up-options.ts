import * as z from 'zod';
import { logFormatOption, logLevelOption, optionSchemas, type OptionSpecs } from '../runtime/options';

export const upOptions = {
  lake: { type: 'string', describe: 'lake root directory', schema: z.string().min(1).default('./lake') },
  drones: { type: 'string', describe: 'simulated drones in all', schema: optionSchemas.count(1, 100_000).default(20) },
  hz: { type: 'string', describe: 'points per second per drone', schema: optionSchemas.positive().default(5) },
  gateways: { type: 'string', describe: 'gateways (agents) the drones are spread over', schema: optionSchemas.count(1, 1000).default(1) },
  duration: {
    type: 'string',
    describe: 'seconds to generate for, then drain and exit (0: until Ctrl-C)',
    schema: z.coerce.number().min(0).max(1e7).default(0),
  },
  drainTimeout: { type: 'string', describe: 'seconds to wait for every point to be committed', schema: optionSchemas.positive().default(60) },
  flushInterval: { type: 'string', describe: 'seconds between the sink\'s commits', schema: optionSchemas.positive().default(5) },
  progress: { type: 'string', describe: 'seconds between progress lines', schema: optionSchemas.positive().default(3) },
  json: { type: 'boolean', describe: 'print the final summary as one JSON line on stdout', schema: optionSchemas.flag() },
  logLevel: { ...logLevelOption, schema: logLevelOption.schema.removeDefault().default('warn') },
  logFormat: logFormatOption,
} satisfies OptionSpecs;
