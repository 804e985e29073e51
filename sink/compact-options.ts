import { configOption, logFormatOption, logLevelOption, type OptionSpecs } from '../deploy/runtime/options';
import { sinkOptions } from './options';
import { storageOptions } from './storage-options';

export const compactOptions = {
  config: configOption,
  ...storageOptions,
  lateness: sinkOptions.lateness,
  compactTargetMib: sinkOptions.compactTargetMib,
  compactGrace: sinkOptions.compactGrace,
  snapshotRetention: sinkOptions.snapshotRetention,
  historyRetention: sinkOptions.historyRetention,
  duckdbMemory: sinkOptions.duckdbMemory,
  logLevel: logLevelOption,
  logFormat: logFormatOption,
} satisfies OptionSpecs;

/** `dronelake migrate`: where the lake is, and how to log. */
export const migrateOptions = {
  config: configOption,
  ...storageOptions,
  logLevel: logLevelOption,
  logFormat: logFormatOption,
} satisfies OptionSpecs;
