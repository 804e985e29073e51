import { configOption, logFormatOption, logLevelOption, type OptionSpecs } from '../deploy/options';
import { sinkOptions } from './options';
import { storageOptions } from './storage-options';

export const compactOptions = {
  config: configOption,
  ...storageOptions,
  lateness: sinkOptions.lateness,
  compactTargetMib: sinkOptions.compactTargetMib,
  compactGrace: sinkOptions.compactGrace,
  duckdbMemory: sinkOptions.duckdbMemory,
  logLevel: logLevelOption,
  logFormat: logFormatOption,
} satisfies OptionSpecs;
