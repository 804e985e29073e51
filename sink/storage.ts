import { randomUUID } from 'node:crypto';
import { link, mkdir, readFile, readdir, rename, rm, stat, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fsyncPath } from '../deploy/runtime/files';

/** One stored object, as a listing reports it. */
/** Keys strictly between two keys, in the stores' order (byte order; keys here are ASCII). */
export interface KeyRange {
  after?: string;
  before?: string;
}

export const inRange = (key: string, range: KeyRange | undefined): boolean =>
  range === undefined || ((range.after === undefined || key > range.after) && (range.before === undefined || key < range.before));

export interface StoredObject {
  /** Path relative to the lake root, with `/` separators. */
  key: string;
  size: number;
  /** Last modification, ms since the epoch. */
  modifiedMs: number;
}

/** A create-only publish found its name taken. */
export class ObjectExistsError extends Error {
  constructor(readonly key: string) {
    super(`${key} already exists`);
    this.name = 'ObjectExistsError';
  }
}

/**
 * Where the lake lives. Every backend makes a finished file visible with one create-only
 * step, so a file is either absent or whole (invariant 4), and a second writer of the same
 * name fails instead of overwriting. Stored objects are never modified, only created and
 * removed, which is what lets readers cache them.
 */
export interface LakeStorage {
  /** The lake's root as the user gave it: an absolute directory or `s3://bucket/prefix`. */
  readonly root: string;
  /** A local directory for files before they are published. */
  readonly stagingDir: string;
  /**
   * Asks the store itself: creates one probe name twice, without the check `publish`
   * makes first, and says whether the second create was refused. Removes the probe.
   */
  probeCreateOnly(): Promise<boolean>;
  /** Makes a complete local file visible at `key`; rejects with ObjectExistsError if `key` exists. */
  publish(localPath: string, key: string): Promise<void>;
  /**
   * Makes a complete local file visible at `key`, replacing what is there in one step. For
   * documents that describe the lake (the contract, the latest status), never for data.
   */
  replace(localPath: string, key: string): Promise<void>;
  /** The object's bytes, or null if there is no such object. */
  read(key: string): Promise<Buffer | null>;
  /**
   * Every object under `prefix` (a key prefix ending in `/`), at any depth, sorted by key;
   * with a range, only the keys after `after` and before `before`, which the store is asked
   * for alone where it can (S3's StartAfter), so a reader of what is new lists only that.
   */
  list(prefix: string, range?: KeyRange): Promise<StoredObject[]>;
  /** A local file holding the object's bytes, for DuckDB to read. */
  localPath(key: string): Promise<string>;
  /** Removes the object; removing one that is gone is not an error. */
  remove(key: string): Promise<void>;
  close(): Promise<void>;
}

/**
 * Writes `content` to a staging file, then makes it visible at `key`: create-only
 * (`publish`, rejecting with ObjectExistsError) or in one step over what is there
 * (`replace`). The staging file goes either way.
 */
export async function putObject(storage: LakeStorage, key: string, content: string | Uint8Array, how: 'publish' | 'replace'): Promise<void> {
  const local = path.join(storage.stagingDir, `${randomUUID()}-${path.posix.basename(key)}`);
  await writeFile(local, content);
  try {
    await (how === 'publish' ? storage.publish(local, key) : storage.replace(local, key));
  } finally {
    await rm(local, { force: true });
  }
}

/**
 * Publishes a file whose name carries a commit number the table does not hold yet: an
 * object already under that name is what a crashed run of this writer left, never live
 * data, so it is replaced (invariant 3 holds: no snapshot names it).
 */
export async function publishOwn(storage: LakeStorage, local: string, key: string): Promise<void> {
  try {
    await storage.publish(local, key);
  } catch (err) {
    if (!(err instanceof ObjectExistsError)) throw err;
    await storage.remove(key);
    await storage.publish(local, key);
  }
}

const isMissing = (err: unknown): boolean => (err as NodeJS.ErrnoException).code === 'ENOENT';

async function listLocal(root: string, dir: string, out: StoredObject[], range?: KeyRange): Promise<void> {
  let entries;
  try {
    entries = await readdir(path.join(root, dir), { withFileTypes: true });
  } catch (err) {
    if (isMissing(err)) return;
    throw err;
  }
  for (const entry of entries) {
    const key = dir === '' ? entry.name : `${dir}/${entry.name}`;
    if (entry.isDirectory()) await listLocal(root, key, out, range);
    // Outside the range: not even a stat.
    else if (entry.isFile() && inRange(key, range)) {
      try {
        const info = await stat(path.join(root, key));
        out.push({ key, size: info.size, modifiedMs: info.mtimeMs });
      } catch (err) {
        // Removed between the listing and the stat: it is simply gone.
        if (!isMissing(err)) throw err;
      }
    }
  }
}

/** A lake in a local directory. Staging, relative to the root, is created by whoever writes. */
export async function localStorage(root: string, stagingRelative: string): Promise<LakeStorage> {
  const absoluteRoot = path.resolve(root);
  const stagingDir = path.join(absoluteRoot, stagingRelative);
  return {
    root: absoluteRoot,
    stagingDir,
    // link(2) refuses an existing name on every local file system.
    probeCreateOnly: async () => true,
    async publish(localPath, key) {
      const target = path.join(absoluteRoot, key);
      await mkdir(path.dirname(target), { recursive: true });
      // The data must be on disk before its name is, or a power cut could leave a
      // visible name over a hole.
      await fsyncPath(localPath);
      try {
        // link(2) fails with EEXIST where rename(2) would silently replace the target.
        await link(localPath, target);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new ObjectExistsError(key);
        throw err;
      }
      await fsyncPath(path.dirname(target));
    },
    async replace(localPath, key) {
      const target = path.join(absoluteRoot, key);
      await mkdir(path.dirname(target), { recursive: true });
      await fsyncPath(localPath);
      await rename(localPath, target);
      await fsyncPath(path.dirname(target));
    },
    async read(key) {
      try {
        return await readFile(path.join(absoluteRoot, key));
      } catch (err) {
        if (isMissing(err)) return null;
        throw err;
      }
    },
    async list(prefix, range) {
      const dir = prefix.replace(/\/+$/, '');
      const out: StoredObject[] = [];
      await listLocal(absoluteRoot, dir, out, range);
      return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    },
    async localPath(key) {
      return path.join(absoluteRoot, key);
    },
    async remove(key) {
      try {
        await unlink(path.join(absoluteRoot, key));
      } catch (err) {
        if (!isMissing(err)) throw err;
      }
    },
    async close() {},
  };
}
