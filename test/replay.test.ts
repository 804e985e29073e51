import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBroker, type Broker } from '../broker/server';
import { sinkConfig } from '../sink/options';
import { startSink, type Sink } from '../sink/sink';
import { cli, quietLog, ROOT, runCli, tempDir, waitFor } from './helpers';
import { testLake, type TestLake } from './lakes';

const FIXTURES = path.resolve(ROOT, '../shared/fixtures');
const HAS_FIXTURES = existsSync(path.join(FIXTURES, 'mavlink'));
// Named so that a run without the fixtures says why these tests did not run.
const SKIP = HAS_FIXTURES ? '' : ' (skipped: ../shared/fixtures is not there)';
const VTOL = path.join(FIXTURES, 'mavlink', 'vtol.tlog');
const PX4 = path.join(FIXTURES, 'mavlink', 'mavlink-v2-3412-packets.bin');

/** The GLOBAL_POSITION_INT records of a .tlog, by a plain walk of its framing: timestamp and raw degE7. */
function tlogPositions(file: string): Array<{ ts: number; lat: number; lon: number }> {
  const buf = readFileSync(file);
  const out = [];
  for (let i = 0; i < buf.length; ) {
    const len = buf[i + 9]!;
    // vtol.tlog is all MAVLink v1: STX at +8, msgid at +13, payload at +14.
    if (buf[i + 13] === 33) out.push({ ts: Number(buf.readBigUInt64BE(i)), lat: buf.readInt32LE(i + 18), lon: buf.readInt32LE(i + 22) });
    i += 8 + 8 + len;
  }
  return out;
}

describe.skipIf(!HAS_FIXTURES)('dronelake agent replay', () => {
  let broker: Broker;
  let sink: Sink;
  let lake: TestLake;
  const cleanups: Array<() => Promise<unknown>> = [];
  beforeAll(async () => {
    lake = await testLake('local');
    cleanups.push(() => lake.remove());
    broker = await startBroker({ host: '127.0.0.1', port: 0 }, quietLog);
    cleanups.push(() => broker.close());
    sink = await startSink(sinkConfig({ broker: broker.url, ...lake.config, flushInterval: 0.3 }), quietLog);
    cleanups.push(() => sink.close());
  });
  afterAll(async () => {
    for (const c of cleanups.reverse()) await c();
  });

  const spoolDir = async (name: string) => {
    const t = await tempDir(`replay-${name}`);
    cleanups.push(t.remove);
    return path.join(t.dir, 'spool');
  };

  it(`imports vtol.tlog: every point in the lake, at the log's event times, then exits 0${SKIP}`, async () => {
    const spool = await spoolDir('vtol');
    const r = await cli(['agent', 'replay', VTOL, '--broker', broker.url, '--gateway', 'gw-vtol', '--spool', spool, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const summary = JSON.parse(r.stdout) as Record<string, unknown>;
    expect(summary).toMatchObject({ format: 'tlog', points: 807, skipped: 0, errors: 0, committed: 807, drained: true, interrupted: false });

    const expected = tlogPositions(VTOL);
    expect(expected.length).toBe(807);
    const [agg] = await lake.query(
      `SELECT count(*)::INTEGER AS n, count(DISTINCT seq)::INTEGER AS seqs, min(seq)::INTEGER AS first, max(seq)::INTEGER AS last,
              min(lat) AS min_lat, max(lat) AS max_lat, min(lon) AS min_lon, max(lon) AS max_lon, count(DISTINCT drone_id)::INTEGER AS drones
       FROM telemetry WHERE gateway_id = 'gw-vtol'`,
    );
    expect(agg).toEqual({
      n: 807,
      seqs: 807,
      first: 0,
      last: 806,
      min_lat: Math.min(...expected.map((p) => p.lat)) / 1e7,
      max_lat: Math.max(...expected.map((p) => p.lat)) / 1e7,
      min_lon: Math.min(...expected.map((p) => p.lon)) / 1e7,
      max_lon: Math.max(...expected.map((p) => p.lon)) / 1e7,
      drones: 1,
    });
    // Near CMAC, Canberra, where ArduPilot's SITL flies.
    expect(agg!['min_lat']).toBeGreaterThan(-35.37);
    expect(agg!['max_lon']).toBeLessThan(149.17);
    const rows = await lake.query(`SELECT epoch_us(ts)::BIGINT AS ts, lat, lon, drone_id FROM telemetry WHERE gateway_id = 'gw-vtol' ORDER BY seq`);
    expect(rows.map((row) => Number(row['ts']))).toEqual(expected.map((p) => p.ts));
    expect(rows.map((row) => [row['lat'], row['lon']])).toEqual(expected.map((p) => [p.lat / 1e7, p.lon / 1e7]));
    expect(rows[0]!['drone_id']).toBe('gw-vtol-sys1');
    // Six years old, and stored in its own hour.
    expect(new Date(Number(rows[0]!['ts']) / 1000).toISOString()).toBe('2018-08-08T14:06:01.912Z');
  });

  it(`refuses a raw stream without --start, and with it places the first position there${SKIP}`, async () => {
    const spool = await spoolDir('px4');
    const refused = await cli(['agent', 'replay', PX4, '--broker', broker.url, '--gateway', 'gw-px4', '--spool', spool]);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toBe(`dronelake: ${PX4} is a raw MAVLink stream, without timestamps: give the time of its first position with --start\n`);

    const r = await cli(['agent', 'replay', PX4, '--broker', broker.url, '--gateway', 'gw-px4', '--spool', spool, '--start', '2024-03-01T10:00:00Z', '--mavlink-drones', '1=px4-sitl']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^replayed .*mavlink-v2-3412-packets\.bin \(raw\): points 505, skipped 0, errors 0, committed 505 in [\d.]+ s \(packets 3398, .*unknown messages 14\)\n$/);
    const [row] = await lake.query(
      `SELECT count(*)::INTEGER AS n, min(epoch_us(ts))::BIGINT AS first, max(epoch_us(ts))::BIGINT AS last, max(battery_voltage_v) AS volts FROM telemetry WHERE drone_id = 'px4-sitl'`,
    );
    expect(row!['n']).toBe(505);
    expect(Number(row!['first'])).toBe(Date.parse('2024-03-01T10:00:00Z') * 1000);
    // The stream covers about ten seconds of the autopilot's boot clock.
    expect(Number(row!['last']) - Number(row!['first'])).toBe(10_080_000);
    expect(row!['volts']).toBe(16.2);

    // A second import of the same file continues the drone's seqs from the spool.
    const again = await cli(['agent', 'replay', PX4, '--broker', broker.url, '--gateway', 'gw-px4', '--spool', spool, '--start', '2024-03-02T10:00:00Z', '--mavlink-drones', '1=px4-sitl', '--json']);
    expect(again.code, again.stderr).toBe(0);
    const [seqs] = await lake.query(`SELECT count(*)::INTEGER AS n, min(seq)::INTEGER AS lo, max(seq)::INTEGER AS hi FROM telemetry WHERE drone_id = 'px4-sitl' AND ts >= '2024-03-02'`);
    expect(seqs).toEqual({ n: 505, lo: 505, hi: 1009 });
  });

  it(`stops gracefully on SIGINT during a --realtime replay: what was read is committed, and said so${SKIP}`, async () => {
    const spool = await spoolDir('sigint');
    const p = runCli(['agent', 'replay', VTOL, '--broker', broker.url, '--gateway', 'gw-int', '--spool', spool, '--realtime', '--json', '--progress', '0.2']);
    await waitFor('progress with points', () => /replay: \d+% of vtol\.tlog read, [1-9]\d* points/.test(p.stderr()) || undefined, 20_000);
    p.child.kill('SIGINT');
    expect(await p.exited).toBe(130);
    const summary = JSON.parse(p.stdout()) as { points: number; committed: number; interrupted: boolean; drained: boolean };
    expect(summary.interrupted).toBe(true);
    expect(summary.drained).toBe(true);
    // The recorded pace: 807 points over 207 s of flight, so a second or so gives a few.
    expect(summary.points).toBeGreaterThan(0);
    expect(summary.points).toBeLessThan(807);
    expect(summary.committed).toBe(summary.points);
    const [row] = await lake.query(`SELECT count(*)::INTEGER AS n FROM telemetry WHERE gateway_id = 'gw-int'`);
    expect(row!['n']).toBe(summary.points);
  });
});

describe('dronelake agent replay, without fixtures', () => {
  it('reports a missing file as one line', async () => {
    const r = await cli(['agent', 'replay', '/nonexistent/flight.tlog', '--gateway', 'gw-x', '--spool', '/tmp/dronelake-never-used']);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe('dronelake: cannot read /nonexistent/flight.tlog: ENOENT\n');
  });
});
