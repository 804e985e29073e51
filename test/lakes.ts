import path from 'node:path';
import { kebab } from '../deploy/runtime/options';
import { openLake, type StorageConfig } from '../sink/open-storage';
import { queryLake } from '../sink/query';
import { storageConfig } from '../sink/storage-options';
import type { LakeStorage } from '../sink/storage';
import { tempDir } from './helpers';
import { startS3 } from './s3';

/** The storage backends every lake test runs on. */
export const BACKENDS = ['local', 's3'] as const;
export type Backend = (typeof BACKENDS)[number];

/** A lake on one backend: `config` for code, and `args` for any command that takes storage options. */
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
  let given: Parameters<typeof storageConfig>[0];
  let stop = async () => {};
  if (backend === 'local') {
    given = { lake: path.join(tmp.dir, 'lake') };
  } else {
    const s3 = await startS3();
    stop = s3.close;
    given = {
      lake: `s3://${s3.bucket}/lake`,
      s3Endpoint: s3.endpoint,
      s3Region: 'us-east-1',
      s3PathStyle: true,
      s3AccessKeyId: 'S3RVER',
      s3SecretAccessKey: 'S3RVER',
      s3PartMib: 5,
      stagingDir: path.join(tmp.dir, 'staging'),
      cacheDir: path.join(tmp.dir, 'cache'),
    };
  }
  const config = storageConfig(given);
  // The same lake for a `dronelake` child process: each value given, as its flag.
  const args = Object.entries(given).flatMap(([key, value]) => {
    const flag = `--${kebab(key)}`;
    return value === true ? [flag] : [flag, String(value)];
  });
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
