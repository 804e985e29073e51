import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createServer, request, type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { parseS3Url, s3Storage, type S3Settings } from '../sink/s3-storage';
import { localStorage, ObjectExistsError, type LakeStorage } from '../sink/storage';
import { s3Settings, startS3 } from './s3';

const MIB = 1024 * 1024;

type S3Server = Awaited<ReturnType<typeof startS3>>;

async function scratchDir(): Promise<string> {
  return mkdtemp(path.join(tmpdir(), 'dronelake-storage-'));
}

/** Writes `bytes` into the storage's staging directory and publishes them at `key`. */
async function put(storage: LakeStorage, key: string, bytes: Buffer | string): Promise<void> {
  const local = path.join(storage.stagingDir, `${key.replaceAll('/', '_')}-${randomBytes(4).toString('hex')}`);
  await writeFile(local, bytes);
  await storage.publish(local, key);
}

/** Sets environment variables for the length of `fn`, then puts back what was there. */
async function withEnv<T>(vars: Record<string, string | undefined>, fn: () => Promise<T>): Promise<T> {
  const saved = Object.fromEntries(Object.keys(vars).map((name) => [name, process.env[name]]));
  const assign = (values: Record<string, string | undefined>): void => {
    for (const [name, value] of Object.entries(values)) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
  };
  assign(vars);
  try {
    return await fn();
  } finally {
    assign(saved);
  }
}

const NO_AWS_ENV = { AWS_ENDPOINT_URL: undefined, AWS_ENDPOINT_URL_S3: undefined, AWS_REGION: undefined, AWS_ACCESS_KEY_ID: undefined, AWS_SECRET_ACCESS_KEY: undefined };

interface Backend {
  name: string;
  /** What probeCreateOnly finds: s3rver ignores If-None-Match. */
  refusesSecondCreate: boolean;
  /** Starts whatever the backend needs; `open` gives a fresh, empty lake each time. */
  start(): Promise<{ open(dir: string): Promise<LakeStorage>; close(): Promise<void> }>;
}

const backends: Backend[] = [
  {
    name: 'local',
    refusesSecondCreate: true,
    async start() {
      return {
        async open(dir) {
          const storage = await localStorage(path.join(dir, 'lake'), '_staging');
          await mkdir(storage.stagingDir, { recursive: true });
          return storage;
        },
        close: async () => {},
      };
    },
  },
  {
    name: 's3rver',
    refusesSecondCreate: false,
    async start() {
      const s3 = await startS3();
      let lakes = 0;
      return {
        open: (dir) => s3Storage(`s3://${s3.bucket}/lake-${++lakes}`, s3Settings(s3.endpoint), path.join(dir, 'staging'), path.join(dir, 'cache')),
        close: () => s3.close(),
      };
    },
  },
];

describe.each(backends)('$name storage', (backend) => {
  let server: Awaited<ReturnType<Backend['start']>>;
  let dir: string;
  let storage: LakeStorage;

  beforeAll(async () => {
    server = await backend.start();
  });
  afterAll(() => server?.close());
  beforeEach(async () => {
    dir = await scratchDir();
    storage = await server.open(dir);
  });
  afterEach(async () => {
    await storage.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('reads back exactly the bytes it published', async () => {
    const bytes = Buffer.concat([Buffer.from([0, 255, 10, 13, 0]), randomBytes(4096)]);
    await put(storage, 'telemetry/a.bin', bytes);
    expect(await storage.read('telemetry/a.bin')).toEqual(bytes);
  });

  it('refuses a second publish of the same key, and keeps the first bytes', async () => {
    await put(storage, 'm/commit-1.json', 'first');
    const second = put(storage, 'm/commit-1.json', 'second');
    await expect(second).rejects.toBeInstanceOf(ObjectExistsError);
    await expect(second).rejects.toMatchObject({ key: 'm/commit-1.json' });
    expect((await storage.read('m/commit-1.json'))?.toString()).toBe('first');
  });

  it(`finds by probing whether the store itself refuses a second create (${backend.refusesSecondCreate})`, async () => {
    expect(await storage.probeCreateOnly()).toBe(backend.refusesSecondCreate);
    // The probe removes what it wrote.
    expect(await storage.list('')).toEqual([]);
  });

  it('lists recursively, sorted, relative to the lake, with sizes, and only under the prefix', async () => {
    const before = Date.now();
    await put(storage, 'data/b/2.bin', 'ccc');
    await put(storage, 'data/a.bin', 'a');
    await put(storage, 'data/b/1.bin', 'bb');
    await put(storage, 'database/x.bin', 'not under data/');
    await put(storage, 'other/y.bin', 'elsewhere');
    const after = Date.now();
    const listed = await storage.list('data/');
    expect(listed.map(({ key, size }) => ({ key, size }))).toEqual([
      { key: 'data/a.bin', size: 1 },
      { key: 'data/b/1.bin', size: 2 },
      { key: 'data/b/2.bin', size: 3 },
    ]);
    for (const { modifiedMs } of listed) {
      // S3 keeps modification times to the second.
      expect(modifiedMs).toBeGreaterThanOrEqual(before - 1000);
      expect(modifiedMs).toBeLessThanOrEqual(after + 1000);
    }
    expect(await storage.list('data')).toEqual(listed);
  });

  it('lists a missing prefix as empty', async () => {
    await put(storage, 'data/a.bin', 'a');
    expect(await storage.list('nothing/here/')).toEqual([]);
  });

  it('reads a missing key as null', async () => {
    expect(await storage.read('no/such/key.bin')).toBeNull();
  });

  it('removes idempotently, and the name can then be published again', async () => {
    await put(storage, 'data/a.bin', 'old');
    expect(await readFile(await storage.localPath('data/a.bin'), 'utf8')).toBe('old');
    await storage.remove('data/a.bin');
    expect(await storage.read('data/a.bin')).toBeNull();
    expect(await storage.list('data/')).toEqual([]);
    await expect(storage.remove('data/a.bin')).resolves.toBeUndefined();
    await put(storage, 'data/a.bin', 'new');
    expect(await readFile(await storage.localPath('data/a.bin'), 'utf8')).toBe('new');
  });

  it('gives a local file with the same bytes', async () => {
    const bytes = randomBytes(100_000);
    await put(storage, 'telemetry/x/y.parquet', bytes);
    expect((await readFile(await storage.localPath('telemetry/x/y.parquet'))).equals(bytes)).toBe(true);
  });

  it('round-trips a file above the multipart threshold byte for byte', async () => {
    const bytes = randomBytes(12 * MIB);
    await put(storage, 'big/file.bin', bytes);
    expect((await storage.read('big/file.bin'))?.equals(bytes)).toBe(true);
    expect((await readFile(await storage.localPath('big/file.bin'))).equals(bytes)).toBe(true);
    expect(await storage.list('big/')).toMatchObject([{ key: 'big/file.bin', size: 12 * MIB }]);
  });

  it('lists more objects than fit in one S3 listing page (1,000)', async () => {
    const keys = Array.from({ length: 1005 }, (_, i) => `many/${String(i).padStart(4, '0')}.bin`);
    for (let i = 0; i < keys.length; i += 50) await Promise.all(keys.slice(i, i + 50).map((key) => put(storage, key, key)));
    const listed = await storage.list('many/');
    expect(listed.map((o) => o.key)).toEqual(keys);
    expect(listed.every((o) => o.size === 'many/0000.bin'.length)).toBe(true);
    // A key range: strictly after and before, on either side of a page's end.
    const range = async (after?: string, before?: string) => (await storage.list('many/', { after, before })).map((o) => o.key);
    expect(await range('many/0002.bin', 'many/0005.bin')).toEqual(['many/0003.bin', 'many/0004.bin']);
    expect(await range('many/0998.bin', 'many/1002.bin')).toEqual(['many/0999.bin', 'many/1000.bin', 'many/1001.bin']);
    expect(await range('many/1002.bin')).toEqual(['many/1003.bin', 'many/1004.bin']);
    expect(await range(undefined, 'many/0002.bin')).toEqual(['many/0000.bin', 'many/0001.bin']);
    expect(await range('many/0004.bin', 'many/0005.bin')).toEqual([]);
  });
});

interface Seen {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
}

/** What the proxy answers instead of the store: an S3 error response. */
type Intercept = (req: IncomingMessage) => Promise<{ status: number; code: string } | undefined>;

/** A pass-through HTTP proxy to `target` that records every request and can answer some itself. */
async function startProxy(target: string, intercept: Intercept = async () => undefined) {
  const upstream = new URL(target);
  const seen: Seen[] = [];
  const server = createServer((req, res) => {
    seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers });
    void intercept(req).then((answer) => {
      if (answer !== undefined) {
        req.resume();
        res.writeHead(answer.status, { 'content-type': 'application/xml' });
        res.end(`<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${answer.code}</Code><Message>injected by the test</Message></Error>`);
        return;
      }
      // Headers go through unchanged, Host included, so the client's signature still holds.
      const forward = request({ host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers }, (response) => {
        res.writeHead(response.statusCode ?? 502, response.headers);
        response.pipe(res);
      });
      forward.on('error', (err) => res.destroy(err));
      req.pipe(forward);
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    seen,
    async close() {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

describe('s3 storage, watched on the wire', () => {
  let s3: S3Server;
  let dir: string;
  let proxy: Awaited<ReturnType<typeof startProxy>> | undefined;
  let storage: LakeStorage | undefined;
  let lakes = 0;

  beforeAll(async () => {
    s3 = await startS3();
  });
  afterAll(() => s3?.close());
  beforeEach(async () => {
    dir = await scratchDir();
  });
  afterEach(async () => {
    await storage?.close();
    await proxy?.close();
    storage = proxy = undefined;
    await rm(dir, { recursive: true, force: true });
  });

  /** A fresh lake reached through a proxy; returns the lake prefix's path on the wire. */
  async function openThroughProxy(intercept?: Intercept): Promise<{ storage: LakeStorage; seen: Seen[]; lakePath: string }> {
    proxy = await startProxy(s3.endpoint, intercept);
    const lake = `lake-${++lakes}`;
    storage = await s3Storage(`s3://${s3.bucket}/${lake}`, s3Settings(proxy.endpoint), path.join(dir, 'staging'), path.join(dir, 'cache'));
    return { storage, seen: proxy.seen, lakePath: `/${s3.bucket}/${lake}` };
  }

  it('puts a small file in one conditional PutObject, and a large one in 5 MiB parts with a conditional complete', async () => {
    const { storage, seen, lakePath } = await openThroughProxy();
    await put(storage, 'small.bin', randomBytes(5 * MIB));
    const small = seen.filter((r) => r.url.startsWith(`${lakePath}/small.bin`));
    expect(small.map((r) => r.method)).toEqual(['HEAD', 'PUT']);
    expect(small[1]?.headers).toMatchObject({ 'if-none-match': '*', 'content-length': String(5 * MIB) });

    await put(storage, 'big.bin', randomBytes(12 * MIB));
    const big = seen.filter((r) => r.url.startsWith(`${lakePath}/big.bin`));
    const step = (r: Seen): string => {
      const query = new URL(r.url, 'http://proxy').searchParams;
      return `${r.method} ${query.has('partNumber') ? 'part' : query.has('uploads') ? 'create' : query.has('uploadId') ? 'complete' : 'object'}`;
    };
    expect(big.map(step)).toEqual(['HEAD object', 'POST create', 'PUT part', 'PUT part', 'PUT part', 'POST complete']);
    expect(big.filter((r) => r.method === 'PUT').map((r) => Number(r.headers['content-length']))).toEqual([5 * MIB, 5 * MIB, 2 * MIB]);
    expect(big.at(-1)?.headers['if-none-match']).toBe('*');
  });

  it('lists a key range with one request from its start, however many keys lie past its end', async () => {
    const { storage, seen, lakePath } = await openThroughProxy();
    const keys = Array.from({ length: 1005 }, (_, i) => `r/${String(i).padStart(4, '0')}.bin`);
    for (let i = 0; i < keys.length; i += 50) await Promise.all(keys.slice(i, i + 50).map((key) => put(storage, key, 'x')));
    const lists = () => seen.filter((r) => r.method === 'GET' && new URL(r.url, 'http://proxy').searchParams.get('list-type') === '2');
    const before = lists().length;
    expect((await storage.list('r/', { after: 'r/0000.bin', before: 'r/0003.bin' })).map((o) => o.key)).toEqual(['r/0001.bin', 'r/0002.bin']);
    const ranged = lists().slice(before);
    // One page, asked to start after the range's start: a full page of 1,000 keys, the
    // range's end within it, so the 4 keys on the next page are not asked for.
    expect(ranged).toHaveLength(1);
    expect(new URL(ranged[0]!.url, 'http://proxy').searchParams.get('start-after')).toBe(`${lakePath.split('/').slice(2).join('/')}/r/0000.bin`);
    expect((await storage.list('r/')).length).toBe(1005);
    expect(lists().length - before).toBe(1 + 2);
  });

  it('shows that s3rver ignores If-None-Match: two publishes racing past the existence check both succeed', async () => {
    let heads = 0;
    let release = (): void => {};
    const bothChecked = new Promise<void>((resolve) => (release = resolve));
    // Holds each existence check until both writers have made theirs.
    const { storage, seen } = await openThroughProxy(async (req) => {
      if (req.method === 'HEAD' && req.url?.split('?')[0]?.endsWith('/race.json')) {
        if (++heads === 2) release();
        await bothChecked;
      }
      return undefined;
    });
    const results = await Promise.allSettled([put(storage, 'race.json', 'writer-1'), put(storage, 'race.json', 'writer-2')]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'fulfilled']);
    const puts = seen.filter((r) => r.method === 'PUT' && r.url.split('?')[0]?.endsWith('/race.json'));
    expect(puts.map((r) => r.headers['if-none-match'])).toEqual(['*', '*']);
    expect(['writer-1', 'writer-2']).toContain((await storage.read('race.json'))?.toString());
  });

  it.each([
    [412, 'PreconditionFailed'],
    [409, 'ConditionalRequestConflict'],
  ])('turns a %i %s answer to a conditional PutObject into ObjectExistsError', async (status, code) => {
    const { storage } = await openThroughProxy(async (req) => (req.method === 'PUT' && req.headers['if-none-match'] === '*' ? { status, code } : undefined));
    await expect(put(storage, 'taken.json', 'x')).rejects.toBeInstanceOf(ObjectExistsError);
    expect(await storage.read('taken.json')).toBeNull();
  });

  it('turns a 412 answer to CompleteMultipartUpload into ObjectExistsError, and aborts the upload', async () => {
    const { storage, seen } = await openThroughProxy(async (req) =>
      req.method === 'POST' && req.url?.includes('uploadId=') ? { status: 412, code: 'PreconditionFailed' } : undefined,
    );
    await expect(put(storage, 'big.bin', randomBytes(6 * MIB))).rejects.toBeInstanceOf(ObjectExistsError);
    expect(seen.filter((r) => r.method === 'DELETE' && r.url.includes('uploadId='))).toHaveLength(1);
    expect(await storage.read('big.bin')).toBeNull();
  });

  it('aborts a multipart upload whose part fails, and names the object and the error code', async () => {
    const { storage, seen } = await openThroughProxy(async (req) => (req.url?.includes('partNumber=2') ? { status: 400, code: 'InvalidArgument' } : undefined));
    await expect(put(storage, 'big.bin', randomBytes(11 * MIB))).rejects.toThrow(`s3://${s3.bucket}/lake-${lakes}/big.bin: InvalidArgument: injected by the test`);
    expect(seen.filter((r) => r.method === 'DELETE' && r.url.includes('uploadId='))).toHaveLength(1);
    expect(seen.filter((r) => r.method === 'POST' && r.url.includes('uploadId='))).toEqual([]);
    expect(await storage.read('big.bin')).toBeNull();
  });

  it('downloads an object for localPath once, then serves the cached file', async () => {
    const { storage, seen } = await openThroughProxy();
    const bytes = randomBytes(300_000);
    await put(storage, 'telemetry/f.parquet', bytes);
    const first = await storage.localPath('telemetry/f.parquet');
    const firstStat = await stat(first);
    const second = await storage.localPath('telemetry/f.parquet');
    const secondStat = await stat(second);
    expect(second).toBe(first);
    expect([secondStat.ino, secondStat.mtimeMs]).toEqual([firstStat.ino, firstStat.mtimeMs]);
    expect(seen.filter((r) => r.method === 'GET' && r.url.includes('/telemetry/f.parquet'))).toHaveLength(1);
    expect((await readFile(second)).equals(bytes)).toBe(true);
  });
});

describe('s3 storage settings and errors', () => {
  let s3: S3Server;
  let dir: string;

  beforeAll(async () => {
    s3 = await startS3();
  });
  afterAll(() => s3?.close());
  beforeEach(async () => {
    dir = await scratchDir();
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  const open = (url: string, settings: S3Settings): Promise<LakeStorage> => s3Storage(url, settings, path.join(dir, 'staging'), path.join(dir, 'cache'));

  it('parses s3 URLs, normalising the prefix', () => {
    expect(parseS3Url('s3://bkt')).toEqual({ bucket: 'bkt', prefix: '' });
    expect(parseS3Url('s3://bkt/')).toEqual({ bucket: 'bkt', prefix: '' });
    expect(parseS3Url('s3://my.bucket-1//lake//x/')).toEqual({ bucket: 'my.bucket-1', prefix: 'lake/x' });
  });

  it.each([
    ['s3://', 'names no bucket'],
    ['s3:///x', 'names no bucket'],
    ['s3://ab/x', 'not a valid bucket name'],
    ['s3://Upper/x', 'not a valid bucket name'],
    ['s3://under_score', 'not a valid bucket name'],
    ['s3://-dash/x', 'not a valid bucket name'],
    ['s3://a..b/x', 'not a valid bucket name'],
    ['s3://192.168.1.1/x', 'not a valid bucket name'],
    ['http://bkt/x', 'not an s3://bucket/prefix URL'],
  ])('rejects %s clearly', (url, reason) => {
    expect(() => parseS3Url(url)).toThrow(`${url}: `);
    expect(() => parseS3Url(url)).toThrow(reason);
  });

  it('keeps the normalised URL as its root, and keys under the prefix', async () => {
    const inner = await open(`s3://${s3.bucket}//nested//lake/`, s3Settings(s3.endpoint));
    const outer = await open(`s3://${s3.bucket}/nested`, s3Settings(s3.endpoint));
    try {
      expect(inner.root).toBe(`s3://${s3.bucket}/nested/lake`);
      await put(inner, 'a/b.bin', 'b');
      expect(await outer.list('lake/')).toMatchObject([{ key: 'lake/a/b.bin', size: 1 }]);
    } finally {
      await inner.close();
      await outer.close();
    }
  });

  it('creates the staging and cache directories', async () => {
    const storage = await s3Storage(`s3://${s3.bucket}/lake`, s3Settings(s3.endpoint), path.join(dir, 'deep/staging'), path.join(dir, 'deep/cache'));
    await storage.close();
    expect((await stat(path.join(dir, 'deep/staging'))).isDirectory()).toBe(true);
    expect((await stat(path.join(dir, 'deep/cache'))).isDirectory()).toBe(true);
  });

  it('names the bucket and the error code when the bucket does not exist', async () => {
    const storage = await open('s3://no-such-bucket/lake', s3Settings(s3.endpoint));
    try {
      await expect(storage.list('')).rejects.toThrow(/^s3:\/\/no-such-bucket\/lake\/: NoSuchBucket: The specified bucket does not exist$/);
      await expect(storage.read('k.json')).rejects.toThrow('s3://no-such-bucket/lake/k.json: NoSuchBucket: ');
      await expect(put(storage, 'k.json', 'x')).rejects.toThrow('s3://no-such-bucket/lake/k.json: NoSuchBucket: ');
      await expect(storage.localPath('k.json')).rejects.toThrow('s3://no-such-bucket/lake/k.json: NoSuchBucket: ');
      await expect(storage.remove('k.json')).rejects.toThrow('s3://no-such-bucket/lake/k.json: NoSuchBucket: ');
    } finally {
      await storage.close();
    }
  });

  it('names the object and the cause when nothing listens at the endpoint', async () => {
    const probe = createServer().listen(0, '127.0.0.1');
    await once(probe, 'listening');
    const { port } = probe.address() as AddressInfo;
    await new Promise((resolve) => probe.close(resolve));
    const storage = await open(`s3://${s3.bucket}/lake`, s3Settings(`http://127.0.0.1:${port}`));
    try {
      await expect(storage.read('k.json')).rejects.toThrow(`s3://${s3.bucket}/lake/k.json: ECONNREFUSED`);
    } finally {
      await storage.close();
    }
  });

  it('reports an error answer without a body by its HTTP status', async () => {
    const storage = await open(`s3://${s3.bucket}/lake`, { ...s3Settings(s3.endpoint), accessKeyId: 'SOMEONE-ELSE' });
    try {
      await expect(put(storage, 'k.json', 'x')).rejects.toThrow(new RegExp(`^s3://${s3.bucket}/lake/k.json: HTTP 403 Forbidden$`));
    } finally {
      await storage.close();
    }
  });

  it.each(['localhost:9000', 'not a url'])('refuses the endpoint %s clearly', async (endpoint) => {
    await expect(open(`s3://${s3.bucket}/lake`, s3Settings(endpoint))).rejects.toThrow(`S3 endpoint ${endpoint}: expected an http(s) URL`);
  });

  it('refuses half a key pair', async () => {
    await expect(open(`s3://${s3.bucket}/lake`, { ...s3Settings(s3.endpoint), secretAccessKey: undefined })).rejects.toThrow('both an access key id and a secret access key');
  });

  const bare: S3Settings = { forcePathStyle: true, multipartThresholdBytes: 5 * MIB, partSizeBytes: 5 * MIB };

  it('takes the endpoint, credentials and region from the AWS environment variables', async () => {
    const env = { ...NO_AWS_ENV, AWS_ENDPOINT_URL: s3.endpoint, AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER', AWS_REGION: 'us-east-1' };
    await withEnv(env, async () => {
      const storage = await open(`s3://${s3.bucket}/env-lake`, bare);
      try {
        await put(storage, 'k.json', 'via env');
        expect((await storage.read('k.json'))?.toString()).toBe('via env');
      } finally {
        await storage.close();
      }
    });
    // The key id really comes from the environment: s3rver knows only S3RVER.
    await withEnv({ ...env, AWS_ACCESS_KEY_ID: 'SOMEONE-ELSE' }, async () => {
      const storage = await open(`s3://${s3.bucket}/env-lake`, bare);
      try {
        await expect(storage.read('k.json')).rejects.toThrow(`s3://${s3.bucket}/env-lake/k.json: InvalidAccessKeyId: `);
      } finally {
        await storage.close();
      }
    });
  });

  it('prefers AWS_ENDPOINT_URL_S3 to AWS_ENDPOINT_URL', async () => {
    const env = { ...NO_AWS_ENV, AWS_ENDPOINT_URL: 'http://127.0.0.1:9', AWS_ENDPOINT_URL_S3: s3.endpoint, AWS_REGION: 'us-east-1' };
    await withEnv(env, async () => {
      const storage = await open(`s3://${s3.bucket}/env-lake-s3`, { ...bare, accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' });
      try {
        await put(storage, 'k.json', 'via AWS_ENDPOINT_URL_S3');
        expect((await storage.list('')).map((o) => o.key)).toEqual(['k.json']);
      } finally {
        await storage.close();
      }
    });
  });

  it('falls back to us-east-1 when no region is configured anywhere', async () => {
    const nowhere = path.join(dir, 'no-such-aws-config');
    await withEnv({ ...NO_AWS_ENV, AWS_CONFIG_FILE: nowhere, AWS_SHARED_CREDENTIALS_FILE: nowhere, AWS_PROFILE: undefined }, async () => {
      const storage = await open(`s3://${s3.bucket}/no-region`, { ...s3Settings(s3.endpoint), region: undefined });
      try {
        await put(storage, 'k.json', 'no region');
        expect((await storage.read('k.json'))?.toString()).toBe('no region');
      } finally {
        await storage.close();
      }
    });
  });

  it('names a bucket without a prefix as the lake root', async () => {
    await withEnv(NO_AWS_ENV, async () => {
      const aws = await open('s3://some-bucket', { ...bare, forcePathStyle: false, region: 'eu-central-1' });
      await aws.close();
      expect(aws.root).toBe('s3://some-bucket');
    });
  });

  it('keeps cached copies from two stores with the same bucket name apart', async () => {
    const other = await startS3();
    const a = await open(`s3://${s3.bucket}/same`, s3Settings(s3.endpoint));
    const b = await open(`s3://${other.bucket}/same`, s3Settings(other.endpoint));
    try {
      await put(a, 'f.bin', 'from the first store');
      await put(b, 'f.bin', 'from the second store');
      expect(await readFile(await a.localPath('f.bin'), 'utf8')).toBe('from the first store');
      expect(await readFile(await b.localPath('f.bin'), 'utf8')).toBe('from the second store');
    } finally {
      await a.close();
      await b.close();
      await other.close();
    }
  });
});
