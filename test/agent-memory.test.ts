import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import mqtt from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import * as z from 'zod';
import { startBroker, type Broker } from '../broker/server';
import { sinkConfig } from '../sink/options';
import { startSink, type Sink } from '../sink/sink';
import { CLI, duck, freePort, lakeGlob, logLines, observedBatch, quietLog, runCli, scrapeSample, tempDir, TELEMETRY_FILTERS, waitFor, type RunningProcess } from './helpers';

const MiB = 1024 * 1024;
/** What a crashed run leaves in the spool: many times the memory bound, so an agent that loaded it would show. */
const BACKLOG_BYTES = 32 * MiB;
const MEMORY_MIB = 2;
const OUTAGE_MS = 15_000;
/**
 * The bound the agent's RSS stays under through the outage, measured with 2 cores and Node 20:
 * this agent peaks at ~105-130 MB (node's own empty process is ~40 MB); before the spool read
 * its backlog back from disk, the same run held the backlog in memory too and peaked above 170 MB.
 */
const RSS_BOUND = 144 * MiB;

/** Resident and peak resident bytes of a process, from /proc. */
async function rssOf(pid: number): Promise<{ rss: number; peak: number }> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kib = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB$`, 'm').exec(status)?.[1]) * 1024;
  return { rss: kib('VmRSS'), peak: kib('VmHWM') };
}

async function spoolBytes(dir: string): Promise<number> {
  const names = await readdir(dir).catch(() => []);
  const sizes = await Promise.all(names.filter((n) => n.startsWith('seg-')).map(async (n) => (await stat(path.join(dir, n)).catch(() => ({ size: 0 }))).size));
  return sizes.reduce((a, b) => a + b, 0);
}

describe('the agent through a broker outage longer than its memory bound holds', () => {
  let broker: Broker | null = null;
  let sink: Sink | null = null;
  const procs: RunningProcess[] = [];
  const cleanups: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const p of procs.splice(0)) p.child.kill('SIGKILL');
    await sink?.close();
    await broker?.close();
    for (const c of cleanups.splice(0)) await c();
  });

  // Wire v1: its larger batches grow the spool past the memory bound within the test's
  // outage; the bound holds bytes, whatever wire they are of.
  const agent = (url: string, spool: string, extra: string[]) => {
    const proc = runCli(['agent', '--wire', 'v1', '--broker', url, '--gateway', 'gw-mem', '--spool', spool, '--ack-timeout', '2', '--reconnect-min', '0.1', '--reconnect-max', '0.5', '--log-level', 'info', ...extra]);
    procs.push(proc);
    return proc;
  };

  it(`keeps RSS under ${RSS_BOUND / MiB} MiB with a ${BACKLOG_BYTES / MiB} MiB backlog and --spool-memory-mib ${MEMORY_MIB}, then delivers every point once`, async () => {
    const { dir, remove } = await tempDir('agent-memory');
    cleanups.push(remove);
    const spool = path.join(dir, 'spool');
    const lake = path.join(dir, 'lake');
    const port = await freePort();
    const url = `mqtt://127.0.0.1:${port}`;

    // A gateway whose link is down piles up a backlog fast; then it crashes.
    const filler = agent(url, spool, ['--simulate', '1000', '--hz', '50']);
    await waitFor('the backlog on disk', async () => (await spoolBytes(spool)) >= BACKLOG_BYTES, 40_000);
    filler.child.kill('SIGKILL');
    await filler.exited;

    // It comes back at 1,500 points/s, the broker still down: the spool grows on disk only.
    const proc = agent(url, spool, ['--simulate', '150', '--hz', '10', '--http', '127.0.0.1:0', '--spool-memory-mib', String(MEMORY_MIB)]);
    const started = await waitFor('the agent to start', () => logLines(proc.stderr()).find((l) => l['msg'] === 'agent started'));
    const http = String(started['http']);
    const pid = proc.child.pid!;
    const grownFrom = await spoolBytes(spool);
    let maxRss = 0;
    const outageEnds = Date.now() + OUTAGE_MS;
    await waitFor(
      'the outage to end',
      async () => {
        maxRss = Math.max(maxRss, (await rssOf(pid)).rss);
        return Date.now() >= outageEnds || undefined;
      },
      OUTAGE_MS + 10_000,
    );
    const { peak } = await rssOf(pid);
    const grown = (await spoolBytes(spool)) - grownFrom;
    console.log(JSON.stringify({ backlogMiB: grownFrom / MiB, grownMiB: grown / MiB, maxRssMiB: maxRss / MiB, peakRssMiB: peak / MiB }));
    // The outage outgrew the memory bound on its own, on top of the backlog.
    expect(grown).toBeGreaterThan(MEMORY_MIB * MiB);
    // Invariant 6: memory does not grow with the spool; VmHWM covers the start-up recovery too.
    expect(peak).toBeLessThan(RSS_BOUND);

    // The broker and the sink come back; a passive observer keeps every point on the wire.
    broker = await startBroker({ host: '127.0.0.1', port }, quietLog);
    const wire = new Set<string>();
    const observer = await mqtt.connectAsync(broker.url, { clientId: 'memory-observer' });
    cleanups.push(() => observer.endAsync());
    observer.on('message', (topic, payload) => {
      const batch = observedBatch(topic, payload);
      for (const p of batch.points) wire.add(`${p.drone_id}/${p.stream ?? batch.stream}/${p.seq}`);
    });
    await observer.subscribeAsync(TELEMETRY_FILTERS);
    sink = await startSink(sinkConfig({ broker: broker.url, lake, flushInterval: 0.3 }), quietLog);
    await waitFor('the backlog drained', async () => (await scrapeSample(http, 'dronelake_agent_spool_bytes')) < MEMORY_MIB * MiB || undefined, 60_000);
    // Draining reads the backlog back at the link's pace; that peak is a figure, not the bound.
    console.log(JSON.stringify({ drainPeakRssMiB: (await rssOf(pid)).peak / MiB }));

    // Stopped, it drains what is left and exits 0 only with an empty spool.
    proc.child.kill('SIGTERM');
    expect(await proc.exited, proc.stderr().slice(-1500)).toBe(0);
    const stopped = logLines(proc.stderr()).find((l) => l['msg'] === 'agent stopped')!;
    await sink.flush();
    const rows = await duck(`SELECT drone_id || '/' || stream || '/' || seq AS k FROM read_parquet('${lakeGlob(lake)}')`);
    const inLake = new Set(rows.map((r) => String(r['k'])));
    expect(rows.length).toBe(inLake.size);
    expect([...wire].filter((k) => !inLake.has(k))).toEqual([]);
    expect(inLake.size).toBe(wire.size);
    // Every point it held (the backlog and its own) was acked, and is in the lake once.
    expect(inLake.size).toBe(stopped['pointsAcked']);
    expect(inLake.size).toBeGreaterThan(Number(stopped['pointsIn']));
  }, 150_000);
});

/** What node writes to NODE_V8_COVERAGE at exit: each script's functions and how often each ran. */
const SourceMap = z.object({ sources: z.array(z.string()) });

const CoverageFile = z.object({
  result: z.array(z.object({ url: z.string(), functions: z.array(z.object({ functionName: z.string(), ranges: z.array(z.object({ count: z.number() })) })) })),
});

describe("the agent's build loads only the parts of its libraries it uses", () => {
  it('an idle agent runs no WebSocket, SOCKS or readable-stream code, loads only its own build and nothing from node_modules, and no zod beyond the schemas it builds', async () => {
    const { dir, remove } = await tempDir('agent-loads');
    const coverage = path.join(dir, 'coverage');
    // Port 9 refuses: the link picks its transport and tries it, as any agent's does.
    const proc = runCli(['agent', '--gateway', 'gw-loads', '--spool', path.join(dir, 'spool'), '--broker', 'mqtt://127.0.0.1:9', '--log-level', 'warn'], { NODE_V8_COVERAGE: coverage });
    try {
      await waitFor('the first connect attempt', () => logLines(proc.stderr()).find((l) => l['msg'] === 'the broker is unreachable; retrying'));
      proc.child.kill('SIGTERM');
      expect(await proc.exited, proc.stderr().slice(-1500)).toBe(0);
      const scripts = (await Promise.all((await readdir(coverage)).map(async (f) => CoverageFile.parse(JSON.parse(await readFile(path.join(coverage, f), 'utf8'))).result))).flat();
      // The bundle's CommonJS modules run as functions named after their path in node_modules.
      const ran = scripts
        .filter((s) => s.url.startsWith(pathToFileURL(path.dirname(CLI)).href))
        .flatMap((s) => s.functions.filter((f) => f.functionName.startsWith('node_modules/') && (f.ranges[0]?.count ?? 0) > 0).map((f) => f.functionName));
      // The guard: the link's own modules ran, so the names are what this test expects.
      expect(ran).toContain('node_modules/mqtt/build/lib/client.js');
      expect(ran).toContain('node_modules/mqtt/build/lib/connect/tcp.js');
      expect(ran.filter((name) => /^node_modules\/(ws|socks|ip-address|smart-buffer|readable-stream)\//.test(name))).toEqual([]);
      expect(scripts.map((s) => s.url).filter((url) => url.includes('/node_modules/'))).toEqual([]);
      // Bundled ES modules leave no function names: their sources are in the build's maps.
      // zod's other locales and its JSON Schema reader come along only when something
      // takes zod's namespace as a value (`import { z }`): 2 MB of an idle agent's peak.
      const bundled = [...new Set(scripts.map((s) => s.url).filter((url) => url.startsWith(pathToFileURL(path.dirname(CLI)).href)))];
      // The agent's own build (dist/agent), and of the other commands' only the entry and what it imports itself.
      const entryImports = [...(await readFile(CLI, 'utf8')).matchAll(/import"\.\/([^"]+)"/g)].map((m) => pathToFileURL(path.join(path.dirname(CLI), m[1]!)).href);
      expect(entryImports.length).toBeGreaterThan(0);
      const agentBuild = pathToFileURL(path.join(path.dirname(CLI), 'agent/')).href;
      expect(bundled.filter((url) => !url.startsWith(agentBuild) && url !== pathToFileURL(CLI).href && !entryImports.includes(url))).toEqual([]);
      expect(bundled.filter((url) => url.startsWith(agentBuild)).length).toBeGreaterThan(0);
      const sources = (await Promise.all(bundled.map(async (url) => SourceMap.parse(JSON.parse(await readFile(new URL(`${url}.map`), 'utf8'))).sources))).flat();
      expect(sources.some((s) => s.includes('node_modules/zod/v4/classic/schemas.js'))).toBe(true);
      expect(sources.filter((s) => /node_modules\/zod\/v4\/(locales\/(?!en\.js)|classic\/from-json-schema)/.test(s))).toEqual([]);
    } finally {
      proc.child.kill('SIGKILL');
      await remove();
    }
  }, 30_000);
});
