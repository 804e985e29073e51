import { mkdir, link, open, unlink } from 'node:fs/promises';
import path from 'node:path';

/**
 * Where committed files live. Every backend makes a finished file visible with one
 * create-only step, so a file is either absent or whole (invariant 4), and a second
 * writer of the same name fails instead of overwriting.
 */
export interface LakeStorage {
  /** Human-readable root, for logs and summaries. */
  readonly root: string;
  /** Makes a complete local file visible at `key`; rejects if `key` already exists. */
  publish(localPath: string, key: string): Promise<void>;
  remove(key: string): Promise<void>;
  /** A local directory for files before they are published. */
  readonly stagingDir: string;
}

async function fsyncPath(p: string): Promise<void> {
  const handle = await open(p, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

export async function localStorage(root: string, stagingRelative: string): Promise<LakeStorage> {
  const absoluteRoot = path.resolve(root);
  const stagingDir = path.join(absoluteRoot, stagingRelative);
  await mkdir(stagingDir, { recursive: true });
  return {
    root: absoluteRoot,
    stagingDir,
    async publish(localPath, key) {
      const target = path.join(absoluteRoot, key);
      await mkdir(path.dirname(target), { recursive: true });
      // The data must be on disk before its name is, or a power cut could leave a
      // visible name over a hole.
      await fsyncPath(localPath);
      // link(2) fails with EEXIST where rename(2) would silently replace the target.
      await link(localPath, target);
      await fsyncPath(path.dirname(target));
    },
    async remove(key) {
      await unlink(path.join(absoluteRoot, key));
    },
  };
}
