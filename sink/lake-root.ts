import { constants } from 'node:fs';
import { access, mkdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { UsageError } from '../deploy/runtime/options';
import { CATALOG_PREFIX } from './layout';

/** `EACCES: permission denied, mkdir '/x'` -> `EACCES: permission denied`: the path is already named. */
const reason = (err: unknown): string => ((err as Error).message ?? String(err)).split(',')[0]!;
const code = (err: unknown): string | undefined => (err as NodeJS.ErrnoException).code;

/**
 * `mkdir -p`, one level at a time: node's recursive mkdir never returns for a path under
 * /proc (it retries ENOENT forever), and a start-up check must not hang.
 */
async function createDirs(dir: string): Promise<void> {
  const missing: string[] = [];
  for (let d = dir; (await stat(d).catch(() => null)) === null; d = path.dirname(d)) missing.unshift(d);
  for (const d of missing) await mkdir(d);
}

/**
 * Checks a local lake root before a command starts anything, so that a wrong `--lake` is
 * one line and exit 2, never a raw error after a broker is already listening (invariant 5:
 * a configuration error names its field). A writer's root is created if missing; a
 * reader's must already be a lake, so that a typo is not read as an empty one.
 * S3 lakes are checked by their first request.
 */
export async function checkLakeRoot(lake: string, use: 'write' | 'read'): Promise<void> {
  if (lake.startsWith('s3://')) return;
  const fail = (what: string) => new UsageError(`--lake ${lake}: ${what}`);
  const found = await stat(lake).catch((err: unknown) => {
    if (code(err) === 'ENOENT') return null;
    throw fail(code(err) === 'ENOTDIR' ? 'not a directory' : reason(err));
  });
  if (found !== null && !found.isDirectory()) throw fail('not a directory');
  if (use === 'read') {
    if (found === null) throw fail('no such directory');
    // Every sink writes its catalog when it starts, before its first commit.
    const catalog = await stat(path.join(lake, CATALOG_PREFIX)).catch(() => null);
    if (catalog === null) throw fail(`not a lake: no ${CATALOG_PREFIX}/ in it (no sink has written here)`);
    return;
  }
  if (found === null) {
    await createDirs(path.resolve(lake)).catch((err: unknown) => {
      throw fail(code(err) === 'ENOTDIR' || code(err) === 'EEXIST' ? 'not a directory' : `cannot create it (${reason(err)})`);
    });
  }
  await access(lake, constants.W_OK | constants.X_OK).catch((err: unknown) => {
    throw fail(`not writable (${reason(err)})`);
  });
}
