import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/**
 * Mounts a tmpfs of `size` (e.g. '4m') on `dir`, for full-disk tests. Returns how to unmount
 * it, or the reason it cannot be mounted here (not root, no permission in a container).
 */
export async function mountTmpfs(dir: string, size: string): Promise<{ unmount: () => Promise<void> } | { reason: string }> {
  if (process.getuid?.() !== 0) return { reason: 'not root' };
  await mkdir(dir, { recursive: true });
  try {
    await run('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir]);
  } catch (err) {
    return { reason: `mount failed: ${(err as Error).message.split('\n')[0]}` };
  }
  return { unmount: () => run('umount', ['-l', dir]).then(() => undefined) };
}

/** Why no tmpfs can be mounted here, or null: probed once, so a test can skip with the reason in its name. */
export async function tmpfsUnavailable(): Promise<string | null> {
  const dir = await mkdtemp(path.join(tmpdir(), 'dronelake-tmpfs-probe-'));
  try {
    const mounted = await mountTmpfs(dir, '1m');
    if ('reason' in mounted) return mounted.reason;
    await mounted.unmount();
    return null;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
