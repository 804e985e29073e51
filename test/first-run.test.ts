import { spawnSync } from 'node:child_process';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli, ROOT, runCli, tempDir, waitFor } from './helpers';

// What a new user meets first, run as processes of the built CLI: a wrong --lake, a
// Ctrl-C during start-up, a typo in SQL. Each must end quickly with a line that says why.

const gone = (pid: number | undefined): boolean => {
  if (pid === undefined) return true;
  try {
    process.kill(pid, 0);
    return false;
  } catch {
    return true;
  }
};

/** Runs the CLI and kills it at `limitMs`, so that a hang fails the test instead of stalling it. */
async function timed(args: string[], limitMs: number) {
  const started = Date.now();
  const p = runCli(args);
  const killer = setTimeout(() => p.child.kill('SIGKILL'), limitMs);
  const code = await p.exited;
  clearTimeout(killer);
  return { code, stdout: p.stdout(), stderr: p.stderr(), ms: Date.now() - started, pid: p.child.pid };
}

describe('dronelake on bad input, as a new user meets it', () => {
  let scratch: Awaited<ReturnType<typeof tempDir>>;
  beforeAll(async () => {
    scratch = await tempDir('first-run');
  });
  afterAll(() => scratch.remove());

  // Root may write anywhere chmod forbids, so as root the unwritable place is sysfs.
  const unwritable = async (): Promise<{ lake: string; line: string }> => {
    if (process.getuid?.() === 0) return { lake: '/sys/dronelake-lake', line: 'dronelake: --lake /sys/dronelake-lake: cannot create it (EPERM: operation not permitted)' };
    const locked = path.join(scratch.dir, 'locked');
    await mkdir(locked);
    await chmod(locked, 0o500);
    return { lake: path.join(locked, 'lake'), line: `dronelake: --lake ${path.join(locked, 'lake')}: cannot create it (EACCES: permission denied)` };
  };

  it.each([
    ['a file', async () => ({ lake: '/etc/passwd', line: 'dronelake: --lake /etc/passwd: not a directory' })],
    ['a path under a file', async () => ({ lake: '/etc/passwd/lake', line: 'dronelake: --lake /etc/passwd/lake: not a directory' })],
    ['an unwritable path', unwritable],
    ['a path under /proc', async () => ({ lake: '/proc/dronelake-nope', line: 'dronelake: --lake /proc/dronelake-nope: cannot create it (ENOENT: no such file or directory)' })],
  ])('up --lake on %s: exit 2 within 5 s, one line, no process left behind', async (_, where) => {
    const { lake, line } = await where();
    const r = await timed(['up', '--lake', lake, '--duration', '1'], 10_000);
    expect(r.code).toBe(2);
    expect(r.ms).toBeLessThan(5000);
    expect(r.stderr).toBe(`${line}\n`);
    expect(r.stdout).toBe('');
    expect(gone(r.pid)).toBe(true);
  });

  it('up: when the sink fails after the broker is listening, the broker is closed and up exits 1 within 5 s', async () => {
    // A file where the lake's drones/ directory belongs passes the root check and fails the sink's start.
    const lake = path.join(scratch.dir, 'drones-is-a-file');
    await mkdir(lake);
    await writeFile(path.join(lake, 'drones'), 'not a directory\n');
    const r = await timed(['up', '--lake', lake, '--duration', '1'], 10_000);
    expect(r.code).toBe(1);
    expect(r.ms).toBeLessThan(5000);
    expect(r.stderr).toMatch(/^dronelake: Error: ENOTDIR: not a directory/);
    expect(gone(r.pid)).toBe(true);
  });

  it.each([
    [['query', '--lake', '/tmp/dronelake-typo', 'SELECT count(*) FROM telemetry'], 'dronelake: --lake /tmp/dronelake-typo: no such directory'],
    [['query', '--lake', '/etc/passwd', 'SELECT 1'], 'dronelake: --lake /etc/passwd: not a directory'],
    [['catalog', '--lake', '/tmp/dronelake-typo'], 'dronelake: --lake /tmp/dronelake-typo: no such directory'],
    [['compact', '--lake', '/tmp/dronelake-typo'], 'dronelake: --lake /tmp/dronelake-typo: no such directory'],
    [['sink', '--lake', '/etc/passwd'], 'dronelake: --lake /etc/passwd: not a directory'],
  ])('%j on no lake: exit 2, one line naming the path', async (args, line) => {
    const r = await timed(args, 10_000);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(`${line}\n`);
    expect(r.stdout).toBe('');
  });

  it('query on a directory that holds no lake says so, rather than counting 0 rows', async () => {
    const r = await timed(['query', '--lake', scratch.dir, 'SELECT count(*) FROM telemetry'], 10_000);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(`dronelake: --lake ${scratch.dir}: not a lake: no drones/_catalog/ in it (no sink has written here)\n`);
  });

  it('the dronelake command in a checkout that was never built says how to build it, and runs the CLI once built', async () => {
    const { dir, remove } = await tempDir('unbuilt');
    try {
      await mkdir(path.join(dir, 'deploy'));
      await writeFile(path.join(dir, 'deploy', 'dronelake.mjs'), await readFile(path.join(ROOT, 'deploy', 'dronelake.mjs')));
      const unbuilt = spawnSync(process.execPath, [path.join(dir, 'deploy', 'dronelake.mjs'), '--help'], { encoding: 'utf8' });
      expect([unbuilt.status, unbuilt.stderr, unbuilt.stdout]).toEqual([2, "dronelake: not built yet: run 'npm run build' (npm start builds too), then try again\n", '']);
      const built = spawnSync(process.execPath, [path.join(ROOT, 'deploy', 'dronelake.mjs'), '--version'], { encoding: 'utf8' });
      expect([built.status, built.stdout.trim()]).toEqual([0, JSON.parse(await readFile(path.join(ROOT, 'package.json'), 'utf8')).version]);
    } finally {
      await remove();
    }
  });

  it('dronelake with no command prints the help on stderr and exits 2', async () => {
    const r = await cli([]);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/^Usage: dronelake <command> \[options\]\n/);
  });
});

describe('dronelake up: a signal at each stage of start-up stops it in order', () => {
  // The stages, as `up` logs them at --log-level info (JSON on a pipe).
  const STAGES = ['broker listening', 'dedupe state restored from the table', 'sink started', 'spool open', 'agent started'];
  let lakes: Awaited<ReturnType<typeof tempDir>>;
  beforeAll(async () => {
    lakes = await tempDir('up-stages');
  });
  afterAll(() => lakes.remove());

  it.each(STAGES)('SIGTERM right after "%s": exit 0 within 10 s, every point generated is committed', async (stage) => {
    const lake = path.join(lakes.dir, stage.replaceAll(' ', '-'));
    const up = runCli(['up', '--lake', lake, '--drones', '20', '--hz', '20', '--log-level', 'info', '--log-format', 'json', '--json']);
    const killer = setTimeout(() => up.child.kill('SIGKILL'), 30_000);
    try {
      await waitFor(`"${stage}" in the log`, () => up.stderr().includes(`"msg":"${stage}"`));
      const signalled = Date.now();
      up.child.kill('SIGTERM');
      expect(await up.exited, up.stderr()).toBe(0);
      expect(Date.now() - signalled).toBeLessThan(10_000);
      const summary = JSON.parse(up.stdout()) as { generated: number; committed: number; drained: boolean };
      expect(summary.committed).toBe(summary.generated);
      expect(up.stderr()).not.toMatch(/Error|at .*\.js:\d+/);
      expect(gone(up.child.pid)).toBe(true);
    } finally {
      clearTimeout(killer);
    }
  });
});

describe('dronelake query: SQL errors keep DuckDB\'s hints', () => {
  let lake: Awaited<ReturnType<typeof tempDir>>;
  beforeAll(async () => {
    lake = await tempDir('sql-hints');
    const up = await cli(['up', '--lake', lake.dir, '--drones', '5', '--duration', '1', '--flush-interval', '1', '--json']);
    expect(up.code, up.stderr).toBe(0);
  });
  afterAll(() => lake.remove());

  it('a misspelt column: the candidate bindings and the caret under the mistake, indented', async () => {
    const r = await cli(['query', '--lake', lake.dir, 'SELECT drone FROM telemetry']);
    expect(r.code).toBe(1);
    const lines = r.stderr.split('\n');
    expect(lines[0]).toBe('dronelake: query failed: Binder Error: Referenced column "drone" not found in FROM clause!');
    expect(lines[1]).toMatch(/^ {2}Candidate bindings: "drone_id"/);
    expect(lines).toContain('  LINE 1: SELECT drone FROM telemetry');
    expect(lines).toContain(`  ${' '.repeat('LINE 1: SELECT '.length)}^`);
  });

  it('a misspelt function: DuckDB\'s "Did you mean" line', async () => {
    const r = await cli(['query', '--lake', lake.dir, 'SELECT cont(*) FROM telemetry']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^dronelake: query failed: Catalog Error: Scalar Function with name cont does not exist!\n {2}Did you mean "\w+"\?/);
  });

  it('catalog: objectives by the names consumers use, with units, unset targets hidden, one throughput figure', async () => {
    const r = await cli(['catalog', '--lake', lake.dir]);
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stdout.split('\n');
    const objectives = lines.slice(lines.indexOf('objectives:') + 1, lines.indexOf(''  , lines.indexOf('objectives:')));
    // The sink's defaults: availability 99.9 %, error rate 1 %, commits every 30 s, freshness 120 s, retention 365 d; no throughput target.
    expect(objectives.map((l) => l.slice(12, 28).trim())).toEqual(['availability', 'error rate', 'commit interval', 'freshness', 'retention']);
    expect(objectives.find((l) => l.includes('freshness'))).toMatch(/^ {2}met {7}freshness {8}newest row at most 120 s old +now \d+(\.\d)? s$/);
    expect(objectives.find((l) => l.includes('error rate'))).toMatch(/at most 1 % of input rejected, last 24 h +now 0 %$/);
    expect(objectives.find((l) => l.includes('retention'))).toMatch(/^ {2}met {7}retention {8}rows kept at least 365 d; none are deleted +now oldest row \d+(\.\d)? s old$/);
    expect(r.stdout).not.toMatch(/latency|target 0|\b1 windows/);
    expect(r.stdout.match(/rows\/s/g)).toHaveLength(1);
    expect(r.stdout).toMatch(/throughput \d+(\.\d)? rows\/s over the last \d+(\.\d)? s\n/);
  });

  it('satellites is signed, so a difference between rows can be negative', async () => {
    // Unsigned, `satellites - (satellites + 1)` fails with an overflow, as `satellites - lag(satellites)` did.
    const r = await cli(['query', '--lake', lake.dir, '--format', 'csv', 'SELECT typeof(satellites) AS t, min(satellites - (satellites + 1)) AS d FROM telemetry GROUP BY ALL']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe('t,d\nBIGINT,-1\n');
  });
});
