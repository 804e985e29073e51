import { configOption, logLevelOption, type OptionSpecs } from '../deploy/options';
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
} satisfies OptionSpecs;
