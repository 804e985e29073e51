import * as z from 'zod';
import { storageOptions } from './storage-options';
import { configOption, type OptionSpecs } from '../deploy/runtime/options';

export const queryOptions = {
  config: configOption,
  ...storageOptions,
  asOf: { type: 'string', describe: 'read the table as it was at this time (ISO 8601, e.g. 2026-12-01T12:00:00Z): the newest snapshot at or before it', schema: z.iso.datetime({ offset: true }).optional() },
  snapshot: { type: 'string', describe: 'read this snapshot of the table (an id that `dronelake catalog` lists)', schema: z.coerce.number().int().positive().max(Number.MAX_SAFE_INTEGER).optional() },
  format: { type: 'string', describe: 'output: table, csv or ndjson (one JSON object per row)', schema: z.enum(['table', 'csv', 'ndjson']).default('table') },
} satisfies OptionSpecs;
