import * as z from 'zod';
import { storageOptions } from './storage-options';
import { configOption, type OptionSpecs } from '../deploy/options';

export const queryOptions = {
  config: configOption,
  ...storageOptions,
  format: { type: 'string', describe: 'output: table, csv or ndjson (one JSON object per row)', schema: z.enum(['table', 'csv', 'ndjson']).default('table') },
} satisfies OptionSpecs;
