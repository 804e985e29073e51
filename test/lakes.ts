import path from 'node:path';
import { parseOptions } from '../deploy/runtime/options';
import { openLake, type StorageConfig } from '../sink/open-storage';
import { queryLake } from '../sink/query';
import { storageOptions } from '../sink/storage-options';
import type { LakeStorage } from '../sink/storage';
import { tempDir } from './helpers';
import { startS3 } from './s3';

/** The storage backends every lake test runs on. */
export const BACKENDS = ['local', 's3'] as const;
export type Backend = (typeof BACKENDS)[number];

/** A lake on one backend, as the commands name it: `args` go to any command that takes storage options. */
export interface TestLake {
  backend: Backend;
  args: string[];
  config: StorageConfig;
  /** Opens the lake's storage; a `writer` gets a staging directory of its own. */
  open(writer?: string): Promise<LakeStorage>;
  /** Runs SQL through the manifest's snapshot, as `dronelake query` does. */
  query(sql: string): Promise<Array<Record<string, unknown>>>;
  remove(): Promise<void>;
}

/** A fresh, empty lake: a temp directory, or a bucket prefix on an S3 server of its own on loopback. */
export async function testLake(backend: Backend): Promise<TestLake> {
  const tmp = await tempDir(`lake-${backend}`);
  let args: string[];
  let stop = async () => {};
  if (backend === 'local') {
    args = ['--lake', path.join(tmp.dir, 'lake')];
  } else {
    const s3 = await startS3();
    stop = s3.close;
    args = [
      '--lake',
      `s3://${s3.bucket}/lake`,
      '--s3-endpoint',
      s3.endpoint,
      '--s3-region',
      'us-east-1',
      '--s3-path-style',
      '--s3-access-key-id',
      'S3RVER',
      '--s3-secret-access-key',
      'S3RVER',
      '--s3-part-mib',
      '5',
      '--staging-dir',
      path.join(tmp.dir, 'staging'),
      '--cache-dir',
      path.join(tmp.dir, 'cache'),
    ];
  }
  const config = parseOptions(storageOptions, args).options;
  return {
    backend,
    args,
    config,
    open: (writer) => openLake(config, writer),
    async query(sql) {
      const { columns, rows } = await queryLake(config, sql, (key, err) => {
        throw new Error(`unreadable manifest record ${key}: ${err.message}`);
      });
      return rows.map((r) => Object.fromEntries(columns.map((c, i) => [c, r[i]])));
    },
    async remove() {
      await stop();
      await tmp.remove();
    },
  };
}
