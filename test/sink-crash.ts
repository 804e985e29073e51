import path from 'node:path';
import mqtt from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { startBroker, type Broker } from '../broker/server';
import { TELEMETRY_PREFIX } from '../sink/layout';
import { currentFiles, snapshotsOf } from './table';
import { ingestClient, logLines, observedBatch, quietLog, runCli, tempDir, TELEMETRY_FILTERS, waitFor, type RunningProcess } from './helpers';
import { BACKENDS, testLake, type TestLake } from './lakes';

const HOUR_MS = 3_600_000;
/**
 * Where each kill lands: at a random instant; a moment after a commit or a compaction
 * began; or as soon as a commit is recorded, before or while its acks go out, so that the
 * agent sends batches again that the lake already holds.
 */
const PHASES = ['anywhere', 'commit', 'compaction', 'acks'] as const;
const TRIGGER: Record<(typeof PHASES)[number], string | null> = { anywhere: null, commit: 'commit started', compaction: 'compaction started', acks: 'committed' };

/**
 * The sink process killed with SIGKILL `kills` times (a multiple of 4: as many in each
 * phase) while an agent sends, on each backend; the loop of kills is bounded by `budgetMs`.
 * CI runs 12 (test/sink-crash.test.ts); the soak, 96 (test/sink-crash.soak.ts).
 */
export const sinkCrashSuite = (kills: number, budgetMs: number): void =>
describe.each(BACKENDS)('the sink process killed with SIGKILL, on the %s backend', (backend) => {
  let broker: Broker | null = null;
  let observer: mqtt.MqttClient | null = null;
  let lake: TestLake | null = null;
  const procs: RunningProcess[] = [];
  const cleanups: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const p of procs) p.child.kill('SIGKILL');
    await observer?.endAsync();
    await broker?.close();
    await lake?.remove();
    for (const c of cleanups) await c();
  });

  it(`holds every point exactly once after ${kills} kills during staging, commits and compactions`, async () => {
    const { dir, remove } = await tempDir('sink-crash');
    cleanups.push(remove);
    lake = await testLake(backend);
    broker = await startBroker({ host: '127.0.0.1', port: 0 }, quietLog);
    const url = broker.url;

    // A passive observer records every point that went over the wire: the lake must end up holding exactly these.
    const sent = new Set<string>();
    observer = await mqtt.connectAsync(url, { clientId: 'crash-observer' });
    observer.on('message', (topic, payload) => {
      for (const p of observedBatch(topic, payload).points) sent.add(`${p.drone_id}/${p.seq}`);
    });
    await observer.subscribeAsync(TELEMETRY_FILTERS);

    const agent = runCli([
      'agent', '--broker', url, '--gateway', 'gw-crash', '--spool', path.join(dir, 'spool'), '--http', '127.0.0.1:0',
      '--simulate', '8', '--hz', '20', '--linger', '0.05', '--ack-timeout', '2', '--reconnect-min', '0.1', '--reconnect-max', '1',
    ]);
    procs.push(agent);
    const http = String((await waitFor('the agent to start', () => logLines(agent.stderr()).find((l) => l['msg'] === 'agent started')))['http']);

    // Hours-old points keep arriving too, so closed partitions keep getting small files to compact.
    const hourStart = Math.floor(Date.now() / HOUR_MS) * HOUR_MS;
    const old = ingestClient('late-d', 4, (seq) => hourStart - (2 + (seq % 2)) * HOUR_MS + seq);
    let posting = true;
    const poster = (async () => {
      while (posting) {
        await old.post(http, 40);
        await new Promise((r) => setTimeout(r, 50));
      }
    })();

    const sinkArgs = [
      'sink', '--broker', url, ...lake.args, '--client-id', 'crash-sink', '--flush-interval', '0.2', '--lateness', '0',
      '--compact-interval', '0.3', '--compact-grace', '0', '--log-level', 'debug',
    ];
    const startSinkProcess = async () => {
      const sink = runCli(sinkArgs);
      procs.push(sink);
      let exited = false;
      void sink.exited.then(() => (exited = true));
      await waitFor('the sink to start', () => {
        if (exited) throw new Error(`the sink exited while starting: ${sink.stderr().slice(-3000)}`);
        return logLines(sink.stderr()).some((l) => l['msg'] === 'sink started');
      }, 30_000).catch((err: Error) => {
        throw new Error(`${err.message}\n${sink.stderr().slice(-3000)}`);
      });
      return sink;
    };

    const killedIn: Record<string, number> = { anywhere: 0, commit: 0, compaction: 0, acks: 0 };
    const deadline = Date.now() + budgetMs;
    for (let i = 0; i < kills && Date.now() < deadline; i++) {
      const phase = PHASES[i % PHASES.length]!;
      const sink = await startSinkProcess();
      const trigger = TRIGGER[phase];
      if (trigger) {
        const seen = logLines(sink.stderr()).filter((l) => l['msg'] === trigger).length;
        await waitFor(`a ${phase} to begin`, () => logLines(sink.stderr()).filter((l) => l['msg'] === trigger).length > seen, 30_000);
      }
      if (phase !== 'acks') await new Promise((r) => setTimeout(r, Math.random() * (trigger ? 40 : 600)));
      sink.child.kill('SIGKILL');
      expect(await sink.exited).toBe(null);
      killedIn[phase]!++;
    }
    const each = kills / PHASES.length;
    expect(killedIn).toEqual({ anywhere: each, commit: each, compaction: each, acks: each });

    // A last sink runs to the end: the agent drains its spool and exits 0 only once every batch is acked.
    const last = await startSinkProcess();
    posting = false;
    await poster;
    // The backlog the kills left (re-sent after each --ack-timeout) drains into the last sink
    // first: the agent's own stop waits only 10 s, less than a loaded machine may need here.
    await waitFor('the agent to work off its backlog', async () => {
      const text = await (await fetch(`${http}/metrics`)).text();
      return Number(/^dronelake_agent_spool_batches (\d+)$/m.exec(text)?.[1] ?? Infinity) < 20 || undefined;
    }, 120_000);
    agent.child.kill('SIGTERM');
    expect(await agent.exited, agent.stderr().slice(-2000)).toBe(0);
    last.child.kill('SIGTERM');
    expect(await last.exited, last.stderr().slice(-2000)).toBe(0);

    const rows = await lake.query('SELECT drone_id, seq::BIGINT AS seq, count(*)::INTEGER AS n FROM telemetry GROUP BY ALL');
    expect(rows.filter((r) => r['n'] !== 1)).toEqual([]);
    const stored = new Set(rows.map((r) => `${r['drone_id']}/${r['seq']}`));
    expect(stored.size).toBe(sent.size);
    expect([...sent].filter((k) => !stored.has(k))).toEqual([]);
    expect([...old.confirmed].filter((k) => !stored.has(k))).toEqual([]);
    expect(old.confirmed.size).toBeGreaterThan(1000);

    // Every file the table names is there, whole; compactions happened in between.
    const storage = await lake.open();
    try {
      const live = await currentFiles(storage);
      const listed = new Set((await storage.list(`${TELEMETRY_PREFIX}/`)).map((o) => o.key));
      expect(live.map((f) => f.key).filter((k) => !listed.has(k))).toEqual([]);
      expect(await snapshotsOf(storage, 'replace')).toBeGreaterThan(0);
    } finally {
      await storage.close();
    }
  }, budgetMs + 180_000);
});
