import path from 'node:path';
import mqtt from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { cli, logLines, runCli, tempDir, waitFor, type RunningProcess } from './helpers';

describe("the broker's session store", () => {
  const procs: RunningProcess[] = [];
  const cleanups: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const p of procs.splice(0)) {
      p.child.kill('SIGKILL');
      await p.exited;
    }
    for (const c of cleanups.splice(0)) await c();
  });

  const start = async (dataDir: string) => {
    const proc = runCli(['broker', '--port', '0', '--data-dir', dataDir, '--http', '127.0.0.1:0', '--log-level', 'info']);
    procs.push(proc);
    const line = await waitFor('the broker to listen', () => logLines(proc.stderr()).find((l) => l['msg'] === 'broker listening'));
    return { proc, line, url: String(line['url']), http: String(line['http']) };
  };

  it('has no default under the working directory: without --data-dir the broker refuses to start, in one line', async () => {
    const r = await cli(['broker', '--port', '0']);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe("dronelake: --data-dir is required with --persistence level (the default): the directory of this broker's session store, e.g. /var/lib/dronelake/broker\n");
  });

  it('refuses a second broker on the same store in one line, and names the store and the sessions it restored', async () => {
    const { dir, remove } = await tempDir('session-store');
    cleanups.push(remove);
    const dataDir = path.join(dir, 'broker');
    const store = path.join(dataDir, 'sessions');
    const first = await start(dataDir);
    expect(first.line).toMatchObject({ store, sessionsRestored: 0 });

    const second = await cli(['broker', '--port', '0', '--data-dir', dataDir]);
    expect(second.code).toBe(2);
    expect(second.stderr.split('\n').filter((l) => l.startsWith('dronelake:'))).toEqual([
      `dronelake: the session store ${store} is in use by another broker; give each broker its own --data-dir`,
    ]);
    expect(second.stderr).not.toContain('    at ');

    // Two persistent sessions (a sink's, say) and one clean one, which is not kept.
    for (const [clientId, clean] of [['sink-a', false], ['sink-b', false], ['passer-by', true]] as const) {
      const client = await mqtt.connectAsync(first.url, { clientId, clean });
      await client.subscribeAsync('dronelake/v1/telemetry/+', { qos: 1 });
      await client.endAsync();
    }
    first.proc.child.kill('SIGTERM');
    expect(await first.proc.exited).toBe(0);

    const again = await start(dataDir);
    expect(again.line).toMatchObject({ store, sessionsRestored: 2 });
    const health = await (await fetch(`${again.http}/health`)).json();
    expect(health).toMatchObject({ store, sessionsRestored: 2 });
  }, 60_000);
});
