import { configOption, logLevelOption, optionSchemas, type OptionSpecs } from '../deploy/options';
import { storageOptions } from './storage-options';

export const catalogOptions = {
  config: configOption,
  ...storageOptions,
  json: { type: 'boolean', describe: 'print the product, its objectives and its quality as one JSON object', schema: optionSchemas.flag() },
  logLevel: logLevelOption,
} satisfies OptionSpecs;
