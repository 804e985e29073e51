import os from 'node:os';
import path from 'node:path';
import * as z from 'zod';
import { configOf, optionSchemas, type ConfigInput, type OptionSpecs } from '../deploy/runtime/options';

/** How to reach the lake: shared by every command that reads or writes it. */
export const storageOptions = {
  lake: { type: 'string', describe: 'lake root: a directory, or s3://bucket/prefix', schema: z.string().min(1).default('./lake') },
  s3Endpoint: {
    type: 'string',
    describe: 'S3 endpoint URL, for S3-compatible stores (else AWS_ENDPOINT_URL, else AWS)',
    schema: z.url({ protocol: /^https?$/, error: 'expected an http(s) URL' }).optional(),
  },
  s3Region: { type: 'string', describe: 'S3 region (else AWS_REGION, else us-east-1)', schema: z.string().min(1).optional() },
  s3PathStyle: { type: 'boolean', describe: 'address buckets by path (http://host/bucket/key), as most S3-compatible stores need', schema: optionSchemas.flag() },
  s3AccessKeyId: { type: 'string', describe: 'S3 access key id (else AWS_ACCESS_KEY_ID, profiles, roles)', schema: z.string().min(1).optional() },
  s3SecretAccessKey: { type: 'string', describe: 'S3 secret access key (else AWS_SECRET_ACCESS_KEY)', schema: z.string().min(1).optional() },
  s3Timeout: {
    type: 'string',
    describe: 'seconds an S3 request may take before it is abandoned and retried (with backoff, 3 attempts in all)',
    schema: optionSchemas.positive().default(30),
  },
  s3PartMib: { type: 'string', describe: 'S3 files above this many MiB go up in parts of this size', schema: optionSchemas.count(5, 5120).default(16) },
  stagingDir: {
    type: 'string',
    describe: 'local directory for files on their way to an S3 lake (a local lake stages inside itself)',
    schema: z.string().min(1).default(path.join(os.tmpdir(), 'dronelake-staging')),
  },
  cacheDir: {
    type: 'string',
    describe: 'local directory for S3 objects DuckDB reads (queries, compaction)',
    schema: z.string().min(1).default(path.join(os.tmpdir(), 'dronelake-cache')),
  },
} satisfies OptionSpecs;

/** How to reach a lake, in code, e.g. `storageConfig({ lake })`: the rest takes the defaults of the commands' storage options. */
export const storageConfig = (given: ConfigInput<typeof storageOptions>) => configOf(storageOptions, given);
