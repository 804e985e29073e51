import { z } from 'zod';
import { configOption, logLevelOption, optionSchemas, type OptionSpecs } from '../deploy/options';

export const brokerOptions = {
  config: configOption,
  host: { type: 'string', describe: 'address to listen on', schema: z.string().min(1).default('127.0.0.1') },
  port: { type: 'string', describe: 'TCP port to listen on (0 picks a free one)', schema: optionSchemas.count(0, 65535).default(1883) },
  logLevel: logLevelOption,
} satisfies OptionSpecs;
