import { mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import type { ParsedOptions } from '../deploy/runtime/options';
import { STAGING_PREFIX } from './layout';
import { localStorage, type LakeStorage } from './storage';
import type { storageOptions } from './storage-options';

export type StorageConfig = ParsedOptions<typeof storageOptions>;

const MIB = 1024 * 1024;

/**
 * Opens the lake named by `config.lake`. A `writer` gets a staging directory of its own,
 * emptied of what a crashed run left there, so that two writers never clear each other's
 * files. Local staging sits in the lake, on the same file system, because publishing is
 * a hard link.
 */
export async function openLake(config: StorageConfig, writer?: string): Promise<LakeStorage> {
  // A reader never stages, but S3 storage still wants a directory name.
  const storage = await openStore(config, writer ?? `reader-${process.pid}`);
  if (writer !== undefined) {
    await rm(storage.stagingDir, { recursive: true, force: true });
    await mkdir(storage.stagingDir, { recursive: true });
  }
  return storage;
}

async function openStore(config: StorageConfig, writer: string): Promise<LakeStorage> {
  if (!config.lake.startsWith('s3://')) return localStorage(config.lake, `${STAGING_PREFIX}/${writer}`);
  // Loaded only for S3 lakes: the AWS SDK is large, and most local runs never need it.
  const { s3Storage } = await import('./s3-storage');
  return s3Storage(
    config.lake,
    {
      endpoint: config.s3Endpoint,
      region: config.s3Region,
      forcePathStyle: config.s3PathStyle,
      accessKeyId: config.s3AccessKeyId,
      secretAccessKey: config.s3SecretAccessKey,
      requestTimeoutMs: config.s3Timeout * 1000,
      multipartThresholdBytes: config.s3PartMib * MIB,
      partSizeBytes: config.s3PartMib * MIB,
    },
    path.join(config.stagingDir, writer),
    config.cacheDir,
  );
}
