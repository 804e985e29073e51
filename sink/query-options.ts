import { z } from 'zod';
import { configOption, type OptionSpecs } from '../deploy/options';

export const queryOptions = {
  config: configOption,
  lake: { type: 'string', describe: 'lake root directory', schema: z.string().min(1).default('./lake') },
  format: { type: 'string', describe: 'output: table, csv or ndjson (one JSON object per row)', schema: z.enum(['table', 'csv', 'ndjson']).default('table') },
} satisfies OptionSpecs;
