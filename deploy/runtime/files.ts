import { randomBytes } from 'node:crypto';
import { readFileSync, unwatchFile, watchFile, type Stats } from 'node:fs';
import { open, readFile, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import type * as z from 'zod';
import { UsageError } from './options';
import { parseYaml } from './yaml';

/**
 * The text of the file named by `option`, or null when it does not exist and `missingIsEmpty`
 * (a command that creates it); any other failure is a usage error naming the option.
 */
export async function readOptionFile(option: string, file: string, missingIsEmpty: boolean): Promise<string | null> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' && missingIsEmpty) return null;
    throw new UsageError(`${option}: cannot read ${file}: ${code ?? (err as Error).message}`);
  }
}

/**
 * A YAML or JSON document checked against `schema`, or `fail` called with one line: the
 * parser's first line, or the path and message of the first schema issue.
 */
export async function parseDocument<T>(text: string, schema: z.ZodType<T>, empty: string, fail: (problem: string) => never): Promise<T> {
  let doc: unknown;
  try {
    doc = await parseYaml(text);
  } catch (err) {
    fail(`not valid YAML or JSON: ${(err as Error).message}`);
  }
  if (doc === null || doc === undefined) fail(`is empty; ${empty}`);
  const parsed = schema.safeParse(doc);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    fail(`${issue.path.join('.') || 'the document'}: ${issue.message}`);
  }
  return parsed.data;
}

/**
 * Replaces the file whole, mode 0600: a temporary file beside it, fsynced, renamed over it,
 * and the directory fsynced, so a crash leaves the old file or the new one, and a process
 * that reloads it never reads half of one.
 */
export async function replaceFile(file: string, text: string): Promise<void> {
  const dir = path.dirname(file);
  const temp = path.join(dir, `.${path.basename(file)}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    const handle = await open(temp, 'wx', 0o600);
    try {
      await handle.writeFile(text);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, file);
  } catch (err) {
    await rm(temp, { force: true });
    throw err;
  }
  await fsyncPath(dir);
}

/** Makes a file's bytes, or a directory's creations, renames and deletions, durable. */
export async function fsyncPath(p: string): Promise<void> {
  const handle = await open(p, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * Calls `reload` each time the file changes, one call at a time so an older read never
 * lands after a newer one. It polls the file's status rather than using fs.watch, which
 * loses a file replaced by rename (as replaceFile does) and misses changes on some network
 * and container file systems. Returns the function that stops watching.
 */
export function watchFileChanges(file: string, intervalMs: number, reload: () => Promise<void>): () => void {
  let reloads = Promise.resolve();
  const listener = (now: Stats, before: Stats) => {
    if (now.mtimeMs === before.mtimeMs && now.ino === before.ino && now.size === before.size) return;
    reloads = reloads.then(reload);
  };
  watchFile(file, { interval: intervalMs, persistent: false }, listener);
  return () => unwatchFile(file, listener);
}

/** A PEM file named by `option`, read at start-up; an unreadable one is a usage error. */
export function readPem(option: string, file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    throw new UsageError(`${option}: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

/** The PEM files an MQTT client names for TLS to the broker (--ca, --cert, --key). */
export interface TlsFiles {
  ca?: string | undefined;
  cert?: string | undefined;
  key?: string | undefined;
}

/**
 * The agent's and the sink's --ca, --cert and --key, read with readPem before anything is
 * opened, so a missing or unreadable file is one line and exit 2, as for the broker's.
 */
export function readTlsFiles(files: TlsFiles): { ca?: Buffer; cert?: Buffer; key?: Buffer } {
  return {
    ...(files.ca ? { ca: readPem('--ca', files.ca) } : {}),
    ...(files.cert ? { cert: readPem('--cert', files.cert) } : {}),
    ...(files.key ? { key: readPem('--key', files.key) } : {}),
  };
}
