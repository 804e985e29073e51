import { randomUUID } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, open, readFile, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import { STATUS_CODES } from 'node:http';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
  UploadPartCommand,
  type CompletedPart,
  type S3ClientConfig,
} from '@aws-sdk/client-s3';
import { fsyncPath } from '../deploy/runtime/files';
import { inRange, ObjectExistsError, type LakeStorage, type StoredObject } from './storage';

/** How to reach the store. Every optional field left out falls back to the AWS SDK's own chain (environment, profiles, roles). */
export interface S3Settings {
  endpoint?: string;
  region?: string;
  forcePathStyle: boolean;
  accessKeyId?: string;
  secretAccessKey?: string;
  /** A request that takes longer is abandoned and retried; none when left out. */
  requestTimeoutMs?: number;
  /** Files larger than this go up as a multipart upload. */
  multipartThresholdBytes: number;
  /** S3 rejects parts under 5 MiB, except the last. */
  partSizeBytes: number;
}

// The S3 naming rules for new buckets, minus the rare reserved prefixes and suffixes.
const BUCKET_NAME = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;
const IP_ADDRESS = /^\d+\.\d+\.\d+\.\d+$/;

/** Splits `s3://bucket/prefix`; the prefix comes back without leading, trailing or doubled slashes. */
export function parseS3Url(url: string): { bucket: string; prefix: string } {
  const match = /^s3:\/\/([^/]*)(?:\/(.*))?$/.exec(url);
  if (!match) throw new Error(`${url}: not an s3://bucket/prefix URL`);
  const bucket = match[1] ?? '';
  if (bucket === '') throw new Error(`${url}: the URL names no bucket (expected s3://bucket/prefix)`);
  if (!BUCKET_NAME.test(bucket) || bucket.includes('..') || IP_ADDRESS.test(bucket)) {
    throw new Error(`${url}: "${bucket}" is not a valid bucket name (3-63 lowercase letters, digits, dots and hyphens, starting and ending with a letter or digit)`);
  }
  const prefix = (match[2] ?? '').split('/').filter((part) => part !== '').join('/');
  return { bucket, prefix };
}

const statusOf = (err: unknown): number | undefined => (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;

/** A conditional write refused because the name is taken, or is being taken right now. */
const isNameTaken = (err: unknown): boolean =>
  statusOf(err) === 412 || (err instanceof S3ServiceException && err.name === 'ConditionalRequestConflict');

/** An error naming the object and the store's error code instead of the SDK's internals. */
function failure(where: string, err: unknown): Error {
  const e = err as Error & { code?: string };
  const status = statusOf(err);
  // Error responses to HEAD have no body, so the SDK has neither a code nor a message to give.
  if (e.message === 'UnknownError' && status !== undefined) return new Error(`${where}: HTTP ${status} ${STATUS_CODES[status] ?? ''}`.trimEnd(), { cause: err });
  const code = err instanceof S3ServiceException ? err.name : (e.code ?? e.name);
  return new Error(`${where}: ${code}: ${e.message}`, { cause: err });
}

/** The endpoint the SDK will use: the settings', else the one its environment variables name, else AWS's own. */
function customEndpoint(settings: S3Settings): string | undefined {
  return settings.endpoint ?? (process.env.AWS_ENDPOINT_URL_S3 || process.env.AWS_ENDPOINT_URL || undefined);
}

function endpointHost(endpoint: string): string {
  const url = URL.canParse(endpoint) ? new URL(endpoint) : undefined;
  if (url === undefined || (url.protocol !== 'http:' && url.protocol !== 'https:')) {
    throw new Error(`S3 endpoint ${endpoint}: expected an http(s) URL such as http://127.0.0.1:9000`);
  }
  return url.host;
}

async function createClient(settings: S3Settings): Promise<S3Client> {
  if ((settings.accessKeyId === undefined) !== (settings.secretAccessKey === undefined)) {
    throw new Error('S3 settings: give both an access key id and a secret access key, or neither');
  }
  const config: S3ClientConfig = {
    forcePathStyle: settings.forcePathStyle,
    ...(settings.endpoint !== undefined && { endpoint: settings.endpoint }),
    ...(settings.region !== undefined && { region: settings.region }),
    // The SDK retries throttling (503 SlowDown), 5xx, resets and timeouts with exponential
    // backoff and jitter; without a timeout a response that never comes would hold a commit for ever.
    ...(settings.requestTimeoutMs !== undefined && {
      requestHandler: { requestTimeout: settings.requestTimeoutMs, connectionTimeout: Math.min(settings.requestTimeoutMs, 5000) },
    }),
    ...(settings.accessKeyId !== undefined &&
      settings.secretAccessKey !== undefined && { credentials: { accessKeyId: settings.accessKeyId, secretAccessKey: settings.secretAccessKey } }),
  };
  const client = new S3Client(config);
  if (settings.region !== undefined) return client;
  try {
    await client.config.region();
    return client;
  } catch {
    // No region in the environment or profiles: S3-compatible stores ignore it, and on
    // AWS the SDK follows the redirect that a wrong region gets to the bucket's own.
    client.destroy();
    return new S3Client({ ...config, region: 'us-east-1', followRegionRedirects: true });
  }
}

async function readFully(localPath: string, handle: FileHandle, buffer: Buffer, position: number): Promise<void> {
  for (let filled = 0; filled < buffer.length; ) {
    const { bytesRead } = await handle.read(buffer, filled, buffer.length - filled, position + filled);
    if (bytesRead === 0) throw new Error(`${localPath} shrank while it was being uploaded`);
    filled += bytesRead;
  }
}

/**
 * Uploads in parts by hand because lib-storage's Upload cannot make CompleteMultipartUpload
 * conditional, and that call is the one that makes the object visible.
 */
async function putMultipart(client: S3Client, Bucket: string, Key: string, localPath: string, size: number, partSize: number): Promise<void> {
  const { UploadId } = await client.send(new CreateMultipartUploadCommand({ Bucket, Key }));
  if (UploadId === undefined) throw new Error('CreateMultipartUpload returned no upload id');
  try {
    const parts: CompletedPart[] = [];
    const handle = await open(localPath, 'r');
    try {
      // One buffer serves every part: parts go up one at a time.
      const buffer = Buffer.allocUnsafe(Math.min(partSize, size));
      for (let offset = 0, PartNumber = 1; offset < size; offset += partSize, PartNumber++) {
        const body = buffer.subarray(0, Math.min(partSize, size - offset));
        await readFully(localPath, handle, body, offset);
        const { ETag } = await client.send(new UploadPartCommand({ Bucket, Key, UploadId, PartNumber, Body: body, ContentLength: body.length }));
        parts.push({ PartNumber, ETag });
      }
    } finally {
      await handle.close();
    }
    await client.send(new CompleteMultipartUploadCommand({ Bucket, Key, UploadId, IfNoneMatch: '*', MultipartUpload: { Parts: parts } }));
  } catch (err) {
    // The upload's own error is the one to report; parts left by a failed abort cost
    // only storage, until the bucket's lifecycle rules clear them.
    await client.send(new AbortMultipartUploadCommand({ Bucket, Key, UploadId })).catch(() => undefined);
    throw err;
  }
}

const isMissing = (err: unknown): boolean => (err as NodeJS.ErrnoException).code === 'ENOENT';

/**
 * An S3 lake at `url` (`s3://bucket/prefix`). Objects DuckDB reads are downloaded once into
 * `cacheDir`; they are immutable, so a cached copy never goes stale.
 */
export async function s3Storage(url: string, settings: S3Settings, stagingDir: string, cacheDir: string): Promise<LakeStorage> {
  const { bucket, prefix } = parseS3Url(url);
  const base = prefix === '' ? '' : `${prefix}/`;
  const root = `s3://${bucket}${prefix === '' ? '' : `/${prefix}`}`;
  const endpoint = customEndpoint(settings);
  // Two stores can hold the same bucket name and keys, so cached copies are kept apart per endpoint.
  const cacheRoot = path.join(path.resolve(cacheDir), endpoint === undefined ? 'aws' : endpointHost(endpoint).replace(/[^\w.-]/g, '_'), bucket);
  await mkdir(stagingDir, { recursive: true });
  await mkdir(cacheDir, { recursive: true });
  const client = await createClient(settings);
  const where = (key: string): string => `s3://${bucket}/${base}${key}`;

  async function exists(key: string): Promise<boolean> {
    try {
      await client.send(new HeadObjectCommand({ Bucket: bucket, Key: base + key }));
      return true;
    } catch (err) {
      if (statusOf(err) === 404) return false;
      throw failure(where(key), err);
    }
  }

  function cachePath(key: string): string {
    const target = path.join(cacheRoot, ...(base + key).split('/'));
    if (!target.startsWith(cacheRoot + path.sep)) throw new Error(`${where(key)}: the key leads out of the cache directory`);
    return target;
  }

  return {
    root,
    stagingDir,
    async probeCreateOnly() {
      const key = `${base}drones/_staging/create-only-probe-${randomUUID()}`;
      const put = () => client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: Buffer.from('probe'), ContentLength: 5, IfNoneMatch: '*' }));
      try {
        await put();
        try {
          await put();
          return false;
        } catch (err) {
          if (isNameTaken(err)) return true;
          throw failure(`s3://${bucket}/${key}`, err);
        }
      } finally {
        await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: key })).catch(() => undefined);
      }
    },
    async publish(localPath, key) {
      // Also what keeps a store that ignores If-None-Match from being overwritten by a late writer.
      if (await exists(key)) throw new ObjectExistsError(key);
      const { size } = await stat(localPath);
      try {
        if (size > settings.multipartThresholdBytes) {
          await putMultipart(client, bucket, base + key, localPath, size, settings.partSizeBytes);
        } else {
          // A buffer rather than a stream: the SDK can resend it on a retry, and it does not turn
          // it into aws-chunked encoding with a trailing checksum, which some S3-compatible stores
          // (s3rver) store verbatim as the object's content.
          const body = await readFile(localPath);
          await client.send(new PutObjectCommand({ Bucket: bucket, Key: base + key, Body: body, ContentLength: body.length, IfNoneMatch: '*' }));
        }
      } catch (err) {
        if (isNameTaken(err)) throw new ObjectExistsError(key);
        throw failure(where(key), err);
      }
    },
    async replace(localPath, key) {
      const body = await readFile(localPath);
      try {
        await client.send(new PutObjectCommand({ Bucket: bucket, Key: base + key, Body: body, ContentLength: body.length }));
      } catch (err) {
        throw failure(where(key), err);
      }
      // Whoever read the old bytes into the cache must not be served them again.
      await rm(cachePath(key), { force: true });
    },
    async read(key) {
      try {
        const { Body } = await client.send(new GetObjectCommand({ Bucket: bucket, Key: base + key }));
        if (Body === undefined) throw new Error('the response has no body');
        const bytes = await Body.transformToByteArray();
        return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      } catch (err) {
        if (err instanceof S3ServiceException && err.name === 'NoSuchKey') return null;
        throw failure(where(key), err);
      }
    },
    async list(listPrefix, range) {
      const dir = listPrefix === '' || listPrefix.endsWith('/') ? listPrefix : `${listPrefix}/`;
      const out: StoredObject[] = [];
      let ContinuationToken: string | undefined;
      // S3 lists in key order: it starts after `range.after`, and the pages stop once past `range.before`.
      const StartAfter = range?.after === undefined ? undefined : base + range.after;
      let past = false;
      try {
        do {
          const page = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: base + dir, ContinuationToken, ...(StartAfter && { StartAfter }) }));
          for (const object of page.Contents ?? []) {
            // Keys ending in '/' are the empty "folders" that consoles create, not files.
            if (object.Key === undefined || object.Key.endsWith('/')) continue;
            const key = object.Key.slice(base.length);
            if (range?.before !== undefined && key >= range.before) past = true;
            if (!inRange(key, range)) continue;
            out.push({ key, size: object.Size ?? 0, modifiedMs: object.LastModified?.getTime() ?? 0 });
          }
          ContinuationToken = page.IsTruncated && !past ? page.NextContinuationToken : undefined;
        } while (ContinuationToken !== undefined);
      } catch (err) {
        throw failure(where(dir), err);
      }
      return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    },
    async localPath(key) {
      const target = cachePath(key);
      try {
        if ((await stat(target)).isFile()) return target;
      } catch (err) {
        if (!isMissing(err)) throw err;
      }
      await mkdir(path.dirname(target), { recursive: true });
      // A unique temporary name, renamed into place only when complete, so neither a
      // concurrent download nor a crashed one leaves a partial file under the final name.
      const temp = path.join(path.dirname(target), `.${path.basename(target)}.${randomUUID()}.part`);
      try {
        const { Body } = await client.send(new GetObjectCommand({ Bucket: bucket, Key: base + key }));
        if (!(Body instanceof Readable)) throw new Error('the response has no body stream');
        await pipeline(Body, createWriteStream(temp));
        await fsyncPath(temp);
        await rename(temp, target);
      } catch (err) {
        await rm(temp, { force: true });
        throw failure(where(key), err);
      }
      return target;
    },
    async remove(key) {
      try {
        await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: base + key }));
      } catch (err) {
        throw failure(where(key), err);
      }
      // The name may be published again, and the cache must not serve the old bytes then.
      await rm(cachePath(key), { force: true });
    },
    async close() {
      client.destroy();
    },
  };
}
