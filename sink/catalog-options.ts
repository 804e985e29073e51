import * as z from 'zod';
import { configOption, hostOf, isLoopback, logFormatOption, logLevelOption, optionSchemas, UsageError, type OptionSpecs, type ParsedOptions } from '../deploy/runtime/options';
import { storageOptions } from './storage-options';

export const catalogOptions = {
  config: configOption,
  ...storageOptions,
  json: { type: 'boolean', describe: 'print the product, its objectives and its quality as one JSON object', schema: optionSchemas.flag() },
  logLevel: logLevelOption,
} satisfies OptionSpecs;

export const catalogServeOptions = {
  config: configOption,
  ...storageOptions,
  http: {
    type: 'string',
    describe: 'serve the product page, the Iceberg REST catalog (/iceberg) and the documents on HOST:PORT; any but loopback needs --http-tokens',
    schema: optionSchemas.hostPort().default('127.0.0.1:8070'),
  },
  httpTokens: {
    type: 'string',
    describe: "file of read tokens (made with 'dronelake agent token add ID --drones \"*\" --http-tokens FILE'): every request for data must carry one",
    schema: z.string().min(1).optional(),
  },
  json: { type: 'boolean', describe: 'print the URL served as one JSON object instead of a sentence', schema: optionSchemas.flag() },
  logLevel: logLevelOption,
  logFormat: logFormatOption,
} satisfies OptionSpecs;

/** Secure by default, as the broker and the ingest API: beyond loopback, only with tokens. */
export function checkCatalogServeOptions(o: Pick<ParsedOptions<typeof catalogServeOptions>, 'http' | 'httpTokens'>): void {
  if (!o.httpTokens && !isLoopback(hostOf(o.http))) {
    throw new UsageError(`--http ${o.http} is not a loopback address, and without --http-tokens anyone who reaches it could read the product; give --http-tokens FILE`);
  }
}
