import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { freePort, waitFor } from './helpers';

export const HAS_REDIS = spawnSync('redis-server', ['--version']).status === 0;
/** What a Redis test's name adds when redis-server is missing, so that its skip says why. */
export const REDIS_SKIP = HAS_REDIS ? '' : ' (skipped: redis-server is not installed; apt-get install redis-server)';

/** A throwaway redis-server on loopback, without persistence: on `port` (a restart), or a free one. */
export async function startRedis(port?: number): Promise<{ url: string; port: number; stop(): Promise<void> }> {
  port ??= await freePort();
  const child: ChildProcess = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  await waitFor('redis-server to accept connections', () => out.includes('Ready to accept connections'), 10_000);
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    async stop() {
      child.kill('SIGTERM');
      if (child.exitCode === null) await once(child, 'exit');
    },
  };
}
