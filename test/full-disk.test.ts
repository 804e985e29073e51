import { randomBytes } from 'node:crypto';
import { rm, statfs, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Spool } from '../agent/spool';
import { startBroker, type Broker } from '../broker/server';
import { sinkConfig } from '../sink/options';
import { startSink, type Sink } from '../sink/sink';
import { cleanupsAfterEach, duck, freePort, ingestClient, lakeGlob, logLines, quietLog, runCli, scrapeSample, tempDir, waitFor, type RunningProcess } from './helpers';
import { mountTmpfs, tmpfsUnavailable } from './tmpfs';

const noTmpfs = await tmpfsUnavailable();
const needsTmpfs = (name: string) => (noTmpfs ? `${name} (skipped: cannot mount a tmpfs: ${noTmpfs})` : name);

const cleanups = cleanupsAfterEach();

/** A 4 MiB tmpfs with a filler file that leaves about `free` bytes; removing the filler gives the room back. */
async function smallDisk(free: number): Promise<{ dir: string; filler: string }> {
  const { dir, remove } = await tempDir('full-disk');
  cleanups.push(remove);
  const mounted = await mountTmpfs(dir, '4m');
  if ('reason' in mounted) throw new Error(mounted.reason);
  cleanups.push(mounted.unmount);
  const fs = await statfs(dir);
  const filler = path.join(dir, 'filler');
  await writeFile(filler, Buffer.alloc(fs.bavail * fs.bsize - free));
  return { dir, filler };
}

const batch = (seq: number, size = 4000) => ({ seq, points: 10, payload: randomBytes(size) });

describe.skipIf(noTmpfs !== null)('a spool on a disk that fills', () => {
  it(needsTmpfs('block: an append waits while the disk is full, the spool says so, and it goes on once there is room'), async () => {
    const { dir, filler } = await smallDisk(64 * 1024);
    const events: boolean[] = [];
    const spool = await Spool.open({ dir: path.join(dir, 'spool'), fsyncIntervalMs: 0, segmentBytes: 32 * 1024, onDiskFull: (full) => events.push(full) });
    let appended = 0;
    const appends: Array<Promise<void>> = [];
    // More than the disk holds: the appends past its room wait instead of failing.
    for (let seq = 0; seq < 40; seq++) appends.push(spool.append(batch(seq)).then(() => void appended++));
    await waitFor('the disk to fill', () => spool.stats().diskFull);
    expect(spool.hasSpace()).toBe(false);
    expect(events).toEqual([true]);
    const whileFull = appended;
    expect(whileFull).toBeGreaterThan(5);
    expect(whileFull).toBeLessThan(40);

    await rm(filler);
    await Promise.all(appends);
    expect(appended).toBe(40);
    expect(spool.stats()).toMatchObject({ diskFull: false, diskFullEvents: 1, dropped: { batches: 0, points: 0 } });
    expect(events).toEqual([true, false]);
    expect(spool.hasSpace()).toBe(true);
    await spool.close();

    // Nothing torn was left behind: every batch reopens, and no record is damaged.
    const reopened = await Spool.open({ dir: path.join(dir, 'spool') });
    expect(reopened.seqs()).toEqual(Array.from({ length: 40 }, (_, i) => i));
    expect(reopened.stats().recovery).toMatchObject({ truncatedBytes: 0, corruptRecords: 0 });
    await reopened.close();
  }, 30_000);

  it(needsTmpfs('block: acks free sealed segments while the disk is full, and the waiting append lands in them'), async () => {
    const { dir } = await smallDisk(64 * 1024);
    const spool = await Spool.open({ dir: path.join(dir, 'spool'), fsyncIntervalMs: 0, segmentBytes: 16 * 1024 });
    const appends: Array<Promise<void>> = [];
    for (let seq = 0; seq < 30; seq++) appends.push(spool.append(batch(seq)));
    await waitFor('the disk to fill', () => spool.stats().diskFull);
    // The sink commits the oldest batches: their segments go, and the rest are written.
    for (let seq = 0; seq < 20; seq++) spool.ack(seq);
    await Promise.all(appends);
    expect(spool.stats().diskFull).toBe(false);
    expect(spool.count).toBe(10);
    await spool.close();
  }, 30_000);

  it(needsTmpfs('drop-oldest: a full disk drops the oldest segments and counts them, and every append goes through'), async () => {
    const { dir } = await smallDisk(96 * 1024);
    const spool = await Spool.open({ dir: path.join(dir, 'spool'), fsyncIntervalMs: 0, segmentBytes: 16 * 1024, whenFull: 'drop-oldest' });
    for (let seq = 0; seq < 100; seq++) await spool.append(batch(seq));
    const { dropped, diskFullEvents } = spool.stats();
    expect(diskFullEvents).toBeGreaterThan(0);
    expect(dropped.batches).toBeGreaterThan(0);
    expect(dropped.points).toBe(dropped.batches * 10);
    // Dropped batches are the oldest, and exactly the ones counted.
    const kept = spool.seqs();
    expect(kept).toEqual(Array.from({ length: 100 - dropped.batches }, (_, i) => dropped.batches + i));
    await spool.close();

    const reopened = await Spool.open({ dir: path.join(dir, 'spool') });
    expect(reopened.seqs()).toEqual(kept);
    expect(reopened.stats().dropped).toEqual(dropped);
    await reopened.close();
  }, 30_000);
});

describe.skipIf(noTmpfs !== null)('the agent with its spool on a disk that fills', () => {
  let broker: Broker | null = null;
  let sink: Sink | null = null;
  const procs: RunningProcess[] = [];
  afterEach(async () => {
    for (const p of procs.splice(0)) p.child.kill('SIGKILL');
    await sink?.close();
    sink = null;
    await broker?.close();
    broker = null;
  });

  it(needsTmpfs('block: pauses ingest (503) while the disk is full, keeps running, resumes when room returns, and loses nothing'), async () => {
    const { dir, filler } = await smallDisk(400 * 1024);
    const { dir: work, remove } = await tempDir('full-disk-lake');
    cleanups.push(remove);
    const lake = path.join(work, 'lake');
    const port = await freePort();
    // No broker yet: nothing is acked, so the spool only grows until the disk is full. Wire
    // v1: its larger batches fill the small disk within the wait below; v2 would take minutes.
    const proc = runCli(['agent', '--wire', 'v1', '--broker', `mqtt://127.0.0.1:${port}`, '--gateway', 'gw-disk', '--spool', path.join(dir, 'spool'), '--http', '127.0.0.1:0', '--linger', '0.05', '--ack-timeout', '2', '--reconnect-min', '0.1', '--reconnect-max', '0.5', '--log-level', 'info']);
    procs.push(proc);
    const started = await waitFor('the agent to start', () => logLines(proc.stderr()).find((l) => l['msg'] === 'agent started'));
    const http = String(started['http']);
    const client = ingestClient('disk-d', 4);

    // Posts until one waits on the full disk (the points it carries are held, not lost).
    let posting = true;
    const poster = (async () => {
      while (posting && (await client.post(http, 200)) === 200);
    })();
    await waitFor('the disk to fill', async () => (await scrapeSample(http, 'dronelake_agent_spool_disk_full')) === 1, 30_000);
    const fullLine = (l: Record<string, unknown>) => l['msg'] === 'spool disk is full; sources paused until it has room';
    const full = await waitFor('the disk-full log line', () => logLines(proc.stderr()).find(fullLine));
    expect(full['err']).toMatch(/ENOSPC/);
    expect(await scrapeSample(http, 'dronelake_agent_spool_disk_full_total')).toBe(1);
    const refused = await fetch(`${http}/v1/points`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '[]' });
    expect(refused.status).toBe(503);
    const health = await fetch(`${http}/health`);
    expect(health.status).toBe(503);
    expect(await health.json()).toMatchObject({ status: 'unhealthy', spoolDiskFull: true });

    await rm(filler);
    await waitFor('the agent to take points again', async () => (await scrapeSample(http, 'dronelake_agent_spool_disk_full')) === 0, 30_000);
    posting = false;
    await poster;
    for (let i = 0; i < 5; i++) expect(await client.post(http, 200)).toBe(200);
    expect(client.pending).toBe(0);
    await waitFor('the room-again log line', () => logLines(proc.stderr()).some((l) => l['msg'] === 'spool disk has room again; sources resumed'));
    expect(logLines(proc.stderr()).filter(fullLine).length).toBe(1);

    broker = await startBroker({ host: '127.0.0.1', port }, quietLog);
    sink = await startSink(sinkConfig({ broker: broker.url, lake, flushInterval: 0.3 }), quietLog);
    await waitFor('every batch to be acked', async () => (await scrapeSample(http, 'dronelake_agent_spool_batches')) === 0, 60_000);
    proc.child.kill('SIGTERM');
    expect(await proc.exited, proc.stderr().slice(-1500)).toBe(0);
    expect(proc.stderr()).not.toContain('the batch is lost');
    await sink.flush();
    const rows = await duck(`SELECT drone_id, seq::BIGINT AS seq, count(*)::INTEGER AS n FROM read_parquet('${lakeGlob(lake)}', hive_partitioning = true) GROUP BY ALL`);
    expect(rows.filter((r) => Number(r['n']) > 1)).toEqual([]);
    const keys = new Set(rows.map((r) => `${r['drone_id']}/${r['seq']}`));
    expect(keys.size).toBe(client.confirmed.size);
    expect([...client.confirmed].filter((k) => !keys.has(k))).toEqual([]);
  }, 90_000);
});
