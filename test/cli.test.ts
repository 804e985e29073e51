import { readdir, rm, truncate, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { agentConfig, agentOptions } from '../agent/options';
import { brokerConnectOptions } from '../deploy/runtime/broker-url';
import { configOf, parseOptions } from '../deploy/runtime/options';
import { sinkConfig, sinkOptions } from '../sink/options';
import { cli, duck, lakeGlob, runCli, tempDir, waitFor } from './helpers';

describe('dronelake CLI', () => {
  it('prints help for the tool and for each command', async () => {
    const top = await cli(['--help']);
    expect(top.code).toBe(0);
    for (const name of ['up', 'broker', 'sink', 'query', 'compact', 'catalog', 'agent']) expect(top.stdout).toContain(`  ${name} `);
    for (const name of ['up', 'broker', 'sink', 'query', 'compact', 'catalog', 'agent']) {
      const r = await cli([name, '--help']);
      expect(r.code, name).toBe(0);
      expect(r.stdout).toMatch(new RegExp(`^Usage: dronelake ${name}`));
      expect(r.stdout).toContain('-h, --help');
      expect(r.stdout).toContain(`DRONELAKE_${name.toUpperCase()}_<NAME>`);
    }
  });

  it.each([
    [['query', '--lake', 's3://Bad_Bucket/x', 'SELECT 1'], 'dronelake: query failed: s3://Bad_Bucket/x: "Bad_Bucket" is not a valid bucket name (3-63 lowercase letters, digits, dots and hyphens, starting and ending with a letter or digit)', 1],
    [['sink', '--s3-endpoint', 'ftp://x'], 'dronelake: --s3-endpoint: expected an http(s) URL (got "ftp://x")', 2],
    [['compact', '--compact-target-mib', '0'], 'dronelake: --compact-target-mib: Too small: expected number to be >=1 (got "0")', 2],
    [['catalog', '--lake', '/nonexistent/lake'], 'dronelake: --lake /nonexistent/lake: no such directory', 2],
  ])('%j fails with a clear message', async (args, message, code) => {
    const r = await cli(args);
    expect(r.code).toBe(code);
    expect(r.stderr).toBe(`${message}\n`);
  });

  it.each([
    [['fly'], "dronelake: unknown command \"fly\"; run 'dronelake --help'"],
    [['up', '--drones', 'many'], 'dronelake: --drones: Invalid input: expected number, received NaN (got "many")'],
    [['up', '--drones', '0'], 'dronelake: --drones: Too small: expected number to be >=1 (got "0")'],
    [['up', '--bogus'], "dronelake: Unknown option '--bogus'"],
    [['agent'], 'dronelake: --gateway is required'],
    [['agent', '--gateway', 'a/b'], 'dronelake: --gateway: expected 1-64 characters of A-Z a-z 0-9 . _ - (got "a/b")'],
    [['sink', '--broker', 'http://x'], 'dronelake: --broker: expected a URL such as mqtt://127.0.0.1:1883 (got "http://x")'],
    [['sink', '--duckdb-memory', 'lots'], `dronelake: --duckdb-memory: expected a size such as '512MB' or '2GB' (got "lots")`],
    [['broker', '--port', '70000'], 'dronelake: --port: Too small'.replace('Too small', 'Too big: expected number to be <=65535') + ' (got "70000")'],
    [['up', 'extra'], 'dronelake: unexpected argument "extra"'],
    [['up', '--drones', '--duration', '2'], "dronelake: --drones needs a value; the next argument is an option (to pass a value that begins with '-', write --drones=VALUE)"],
    [['agent', '--gateway', 'g', '--spool', 'x', '--hz', '-1'], 'dronelake: --hz: Too small: expected number to be >0 (got "-1")'],
    // A missing PEM file for TLS to the broker is one line, as the broker's own (broker-cli.test.ts).
    [['agent', '--gateway', 'g', '--spool', '/nonexistent/spool', '--ca', '/nonexistent/ca.pem'], 'dronelake: --ca: cannot read /nonexistent/ca.pem: ENOENT'],
    [['agent', '--gateway', 'g', '--spool', '/nonexistent/spool', '--ca', 'README.md', '--cert', 'README.md', '--key', '/nonexistent/key.pem'], 'dronelake: --key: cannot read /nonexistent/key.pem: ENOENT'],
  ])('reports %j as one clear line and exits 2', async (args, message) => {
    const r = await cli(args);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(`${message}\n`);
    expect(r.stdout).toBe('');
  });

  it('sink: a missing PEM file for TLS to the broker is one line and exit 2, as the broker\'s, and creates no lake', async () => {
    const { dir, remove } = await tempDir('sink-tls');
    try {
      const missing = path.join(dir, 'cert.pem');
      const r = await cli(['sink', '--lake', path.join(dir, 'lake'), '--cert', missing]);
      expect([r.code, r.stderr, r.stdout]).toEqual([2, `dronelake: --cert: cannot read ${missing}: ENOENT\n`, '']);
      expect(await readdir(dir)).toEqual([]);
    } finally {
      await remove();
    }
  });

  it('up: generates, drains and commits every point, then prints a JSON summary', async () => {
    const { dir, remove } = await tempDir('up');
    try {
      const r = await cli(['up', '--drones', '40', '--hz', '10', '--duration', '3', '--flush-interval', '1', '--lake', dir, '--json']);
      expect(r.code, r.stderr).toBe(0);
      const lines = r.stdout.trim().split('\n');
      expect(lines).toHaveLength(1);
      const summary = JSON.parse(lines[0]!) as Record<string, unknown>;
      expect(summary['generated']).toBeGreaterThan(800);
      expect(summary['committed']).toBe(summary['generated']);
      expect(summary['lake']).toBe(dir);
      expect(summary['files']).toBeGreaterThan(0);
      expect(r.stderr).toMatch(/generated \d+ {2}committed \d+ {2}files \d+ {2}lag \d+ points/);
      const [row] = await duck(`SELECT count(*) AS n, count(DISTINCT (drone_id, seq)) AS k FROM read_parquet('${lakeGlob(dir)}', hive_partitioning = true)`);
      expect(Number(row!['n'])).toBe(summary['committed']);
      expect(Number(row!['k'])).toBe(summary['committed']);

      // The same lake through `dronelake query`, which reads the manifest's files.
      const counted = await cli(['query', '--lake', dir, '--format', 'ndjson', 'SELECT count(*)::INTEGER AS n, count(DISTINCT drone_id)::INTEGER AS drones FROM telemetry']);
      expect(counted.code, counted.stderr).toBe(0);
      expect(counted.stdout).toBe(`${JSON.stringify({ n: summary['committed'], drones: 40 })}\n`);
      const csv = await cli(['query', '--lake', dir, '--format', 'csv', 'SELECT drone_id, seq FROM telemetry ORDER BY drone_id, seq LIMIT 2']);
      expect(csv.stdout).toBe('drone_id,seq\ngw-001-d0001,0\ngw-001-d0001,1\n');
      const table = await cli(['query', '--lake', dir, 'SELECT 42 AS answer']);
      expect(table.stdout).toBe('answer\n------\n42\n(1 row)\n');
      const bad = await cli(['query', '--lake', dir, 'SELEC 1']);
      expect(bad.code).toBe(1);
      expect(bad.stderr).toBe('dronelake: query failed: Parser Error: syntax error at or near "SELEC"\n\n  LINE 1: SELEC 1\n          ^\n');
      expect((await cli(['query', '--lake', dir])).stderr).toBe('dronelake: query needs the SQL to run, e.g. dronelake query "SELECT count(*) FROM telemetry"\n');

      // A compaction pass from the command line keeps every row.
      const compacted = await cli(['compact', '--lake', dir, '--lateness', '0', '--log-level', 'silent']);
      expect(compacted.code, compacted.stderr).toBe(0);
      expect(Object.keys(JSON.parse(compacted.stdout) as object)).toEqual(['compactions', 'stale', 'inputFiles', 'outputFiles', 'rows', 'bytesIn', 'bytesOut', 'deleted', 'maintenance']);
      const countAll = ['query', '--lake', dir, '--format', 'csv', 'SELECT count(*) AS n FROM telemetry'];
      expect((await cli(countAll)).stdout).toBe(`n\n${summary['committed']}\n`);
      // The quality view has the windows' day as a column, `date`, and a filter on it reads only those days.
      const days = (await readdir(path.join(dir, 'drones/_catalog/quality'))).map((d) => d.replace('date=', ''));
      const windowsOf = async (where: string) => (await cli(['query', '--lake', dir, '--format', 'csv', `SELECT count(*) AS n, sum(rows)::BIGINT AS rows FROM quality ${where}`])).stdout;
      const all = await windowsOf('');
      expect(all).toMatch(/^n,rows\n[1-9]\d*,\d+\n$/);
      expect(await windowsOf(`WHERE date IN (${days.map((d) => `DATE '${d}'`).join(', ')})`)).toBe(all);
      expect(await windowsOf("WHERE date < DATE '2000-01-01'")).toBe('n,rows\n0,\n');

      // Damaged commit checkpoints: the table still reads whole, and a query reads no record
      // but those of commits with bad input (none here), so it has nothing to skip. The
      // catalog starts from the quality state the sink saved at its last window and reads no
      // record before it; with that state damaged too, it reads every record, and skips each
      // damaged file with a line saying so.
      const checkpoints = path.join(dir, 'drones/_catalog/commits/dronelake-sink');
      await writeFile(path.join(checkpoints, 'commit-0000000001.json'), '{"version": 1, "kind": "comm');
      await writeFile(path.join(checkpoints, 'commit-0000000002.json'), '{"version": 1, "kind": "commit"}');
      const damaged = await cli(countAll);
      expect(damaged.stdout).toBe(`n\n${summary['committed']}\n`);
      expect(damaged.stderr).toBe('');
      const resumed = await cli(['catalog', '--lake', dir, '--json']);
      expect(resumed.code, resumed.stderr).toBe(0);
      expect(resumed.stderr).toBe('');
      const report = JSON.parse(resumed.stdout) as { quality: { rows: number }; quality_windows_24h: number };
      expect(report.quality.rows).toBe(summary['committed']);
      // The run's last window, recorded as it stopped (and one more if it crossed a minute).
      expect(report.quality_windows_24h).toBeGreaterThanOrEqual(1);
      expect(report.quality_windows_24h).toBeLessThanOrEqual(2);
      const states = path.join(dir, 'drones/_catalog/quality-state');
      // A run that crossed a minute saved a state at its first window too: only the newest
      // stays, so the catalog has no undamaged state to resume from.
      const saved = (await readdir(states)).sort();
      for (const older of saved.slice(0, -1)) await rm(path.join(states, older));
      await writeFile(path.join(states, saved.at(-1)!), '{"version": 1, "writer": ');
      const catalog = await cli(['catalog', '--lake', dir]);
      expect(catalog.code, catalog.stderr).toBe(0);
      expect(catalog.stderr.split('\n').filter(Boolean).sort()).toEqual([
        expect.stringMatching(/^dronelake: skipped drones\/_catalog\/commits\/dronelake-sink\/commit-0000000001\.json: .*JSON/),
        'dronelake: skipped drones/_catalog/commits/dronelake-sink/commit-0000000002.json: not a valid commit record: writer: expected string, received undefined',
        expect.stringMatching(/^dronelake: skipped drones\/_catalog\/quality-state\/state-dronelake-sink-\d{8}T\d{9}Z\.json: .*JSON/),
      ]);

      // A quality window cut short on disk: a query of the telemetry neither lists nor reads
      // the windows, so it is untouched; one of the quality view fails, naming the file.
      const windowDir = path.join(dir, 'drones/_catalog/quality', (await readdir(path.join(dir, 'drones/_catalog/quality')))[0]!);
      await writeFile(path.join(windowDir, 'window-torn-20261206T000000000Z.json'), '{"writer": "torn", "from": ');
      expect((await cli(countAll)).stdout).toBe(`n\n${summary['committed']}\n`);
      const quality = await cli(['query', '--lake', dir, 'SELECT count(*) AS n FROM quality']);
      expect(quality.code).toBe(1);
      expect(quality.stderr).toMatch(/^dronelake: query failed: .*Malformed JSON in file ".*window-torn-20261206T000000000Z\.json"/m);

      // A data file the table names, cut short on disk: a clear error, not a crash.
      const [victim] = (await readdir(path.join(dir, 'drones/telemetry/v1'), { recursive: true })).filter((f) => f.endsWith('.parquet'));
      await truncate(path.join(dir, 'drones/telemetry/v1', victim!), 100);
      const broken = await cli(countAll);
      expect(broken.code).toBe(1);
      expect(broken.stderr).toMatch(/^dronelake: query failed: .*No magic bytes found .*\.parquet/m);
    } finally {
      await remove();
    }
  });

  it('up: on Ctrl-C stops generating, drains within seconds and exits 0', async () => {
    const { dir, remove } = await tempDir('up-sigint');
    try {
      const up = runCli(['up', '--drones', '20', '--hz', '10', '--progress', '0.5', '--lake', dir, '--json']);
      await waitFor('a progress line', () => /generated [1-9]\d*/.test(up.stderr()));
      const interruptedAt = Date.now();
      up.child.kill('SIGINT');
      const code = await up.exited;
      expect(code, up.stderr()).toBe(0);
      // The sink's default flush interval is 5 s; a drain must not wait it out.
      expect(Date.now() - interruptedAt).toBeLessThan(5000);
      const summary = JSON.parse(up.stdout()) as Record<string, number>;
      expect(summary['committed']).toBe(summary['generated']);
      expect(summary['generated']).toBeGreaterThan(0);
    } finally {
      await remove();
    }
  });

  it('takes options from the environment and from a config file, and names the source of a bad value', async () => {
    const { dir, remove } = await tempDir('config');
    try {
      const env = runCli(['agent', '--gateway', 'g', '--spool', dir], { DRONELAKE_AGENT_WINDOW: '0' });
      expect(await env.exited).toBe(2);
      expect(env.stderr()).toBe('dronelake: --window (from DRONELAKE_AGENT_WINDOW): Too small: expected number to be >=1 (got "0")\n');

      const file = path.join(dir, 'agent.yaml');
      await writeFile(file, 'gateway: gw-9\nspool: /tmp/nowhere\nbroker: ftp://nope\n');
      const bad = await cli(['agent', '--config', file]);
      expect(bad.code).toBe(2);
      expect(bad.stderr).toBe(`dronelake: --broker (from ${file}: broker): expected a URL such as mqtt://127.0.0.1:1883 (got "ftp://nope")\n`);

      await writeFile(file, 'gateway: gw-9\nwindw: 5\n');
      expect((await cli(['agent', '--config', file])).stderr).toBe(`dronelake: --config: ${file}: "windw" is not an option of this command\n`);
      await writeFile(file, 'gateway: [unclosed\n');
      expect((await cli(['agent', '--config', file])).stderr).toMatch(new RegExp(`^dronelake: --config: ${file} is not valid YAML or JSON: .+\\n$`));
      await writeFile(file, '- a\n- b\n');
      expect((await cli(['agent', '--config', file])).stderr).toBe(`dronelake: --config: ${file} must hold a mapping of option names to values\n`);
      expect((await cli(['agent', '--config', path.join(dir, 'missing.yaml')])).stderr).toBe(`dronelake: --config: cannot read ${path.join(dir, 'missing.yaml')}: ENOENT\n`);

      // A flag wins over the file.
      await writeFile(file, 'gateway: gw-9\nspool: /tmp/x\nwindow: 0\n');
      expect((await cli(['agent', '--config', file])).stderr).toBe(`dronelake: --window (from ${file}: window): Too small: expected number to be >=1 (got "0")\n`);
      expect((await cli(['agent', '--config', file, '--window', 'x'])).stderr).toBe('dronelake: --window: Invalid input: expected number, received NaN (got "x")\n');
    } finally {
      await remove();
    }
  });

  it('in code: a config takes the command\'s defaults, and a bad value is the one line its flag gives', async () => {
    const required = { gateway: 'gw-1', spool: '/var/spool/dronelake' };
    expect(sinkConfig({})).toEqual((await parseOptions(sinkOptions, [])).options);
    expect(agentConfig(required)).toEqual((await parseOptions(agentOptions, ['--gateway', 'gw-1', '--spool', '/var/spool/dronelake'])).options);
    expect(sinkConfig({ flushInterval: 0.3, shard: '1/2' })).toMatchObject({ flushInterval: 0.3, shard: { index: 1, count: 2 }, commitPoints: 500_000 });

    const flagLine = async (argv: string[]) => {
      try {
        await parseOptions(agentOptions, ['--gateway', 'gw-1', '--spool', '/s', ...argv]);
      } catch (err) {
        return (err as Error).message;
      }
      throw new Error(`${argv.join(' ')} was taken`);
    };
    expect(() => agentConfig({ ...required, window: 0 })).toThrow(await flagLine(['--window', '0']));
    expect(await flagLine(['--window', '0'])).toBe('--window: Too small: expected number to be >=1 (got "0")');
    expect(() => agentConfig({ ...required, broker: 'ftp://nope' })).toThrow('--broker: expected a URL such as mqtt://127.0.0.1:1883 (got "ftp://nope")');
    expect(() => sinkConfig({ flushInterval: 0 })).toThrow('--flush-interval: Too small: expected number to be >0 (got "0")');
    expect(() => configOf(agentOptions, { spool: '/s' })).toThrow('--gateway is required');
    expect(() => configOf(agentOptions, { ...required, windw: 5 })).toThrow('"windw" is not an option of this component');
    expect(() => configOf(sinkOptions, { config: 'sink.yaml' })).toThrow('"config" is not an option of this component');
  });

  it('hands MQTT.js a broker URL as options, so no node url.parse warning (Node 24) reaches stderr', () => {
    expect(brokerConnectOptions('mqtt://127.0.0.1:1883')).toEqual({ protocol: 'mqtt', host: '127.0.0.1', port: 1883 });
    expect(brokerConnectOptions('mqtts://broker.example')).toEqual({ protocol: 'mqtts', host: 'broker.example', port: 8883 });
    expect(brokerConnectOptions('tls://[::1]:8884/')).toEqual({ protocol: 'ssl', host: '::1', port: 8884 });
    expect(brokerConnectOptions('tcp://gw%2D1:p%40ss@10.0.0.2')).toEqual({ protocol: 'tcp', host: '10.0.0.2', port: 1883, username: 'gw-1', password: 'p@ss' });
  });
});
