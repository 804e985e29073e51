import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import type { S3Settings } from '../sink/s3-storage';

const ROOT = path.resolve(import.meta.dirname, '..');
const MIB = 1024 * 1024;

// Prints the listening address, and exits when its stdin closes, so that it dies with the test process.
const SERVER = `
const S3rver = require('s3rver');
const [directory, bucket] = process.argv.slice(1);
new S3rver({ address: '127.0.0.1', port: 0, silent: true, directory, configureBuckets: [{ name: bucket }] })
  .run()
  .then((address) => process.stdout.write(JSON.stringify(address) + '\\n'));
process.stdin.on('end', () => process.exit(0)).resume();
`;

/**
 * Starts s3rver on 127.0.0.1 at a free port, with its data in a fresh temp directory `dir`
 * and one empty bucket `bucket`; `close` stops it and removes `dir`. It runs in a child
 * process because its listing continuation tokens use DES, which OpenSSL 3 offers only
 * with --openssl-legacy-provider: in-process, any listing longer than a page fails.
 */
export async function startS3(): Promise<{ endpoint: string; bucket: string; close(): Promise<void>; dir: string }> {
  const dir = await mkdtemp(path.join(tmpdir(), 'dronelake-s3rver-'));
  const bucket = 'dronelake-test';
  const child = spawn(process.execPath, ['--openssl-legacy-provider', '-e', SERVER, dir, bucket], { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = once(child, 'exit');
  const firstLine = once(createInterface({ input: child.stdout }), 'line') as Promise<[string]>;
  const started = await Promise.race([firstLine, exited.then(() => undefined)]);
  if (started === undefined) {
    await rm(dir, { recursive: true, force: true });
    throw new Error(`s3rver exited before listening: ${stderr}`);
  }
  const { port } = JSON.parse(started[0]) as { port: number };
  return {
    endpoint: `http://127.0.0.1:${port}`,
    bucket,
    dir,
    async close() {
      if (child.exitCode === null && child.signalCode === null) {
        child.stdin.end();
        await exited;
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Settings for a `startS3` endpoint: s3rver's fixed credentials, and multipart above 5 MiB in 5 MiB parts (S3's minimum). */
export function s3Settings(endpoint: string): S3Settings {
  return {
    endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    accessKeyId: 'S3RVER',
    secretAccessKey: 'S3RVER',
    multipartThresholdBytes: 5 * MIB,
    partSizeBytes: 5 * MIB,
  };
}
