// The gateway's write paths, secure by default: the ingest API's tokens and MAVLink 2
// signing, run as the real `dronelake agent` process (dist/cli.js; `npm run build` first).
// Tokens are issued by the real `agent token add`; MAVLink packets are built and signed by
// node-mavlink (a third-party implementation of the signing spec) and sent over real UDP.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import dgram from 'node:dgram';
import { readFile, writeFile } from 'node:fs/promises';
import https from 'node:https';
import path from 'node:path';
import { common, minimal, MavLinkProtocolV1, MavLinkProtocolV2, type MavLinkData } from 'node-mavlink';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { cli, freePort, logLines, runCli, tempDir, waitFor, type RunningProcess } from './helpers';

const procs: RunningProcess[] = [];
const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const p of procs.splice(0)) {
    if (p.child.exitCode === null) p.child.kill('SIGKILL');
    await p.exited;
  }
});
afterAll(async () => {
  for (const c of cleanups.splice(0)) await c();
});

async function dir(prefix: string): Promise<string> {
  const t = await tempDir(prefix);
  cleanups.push(t.remove);
  return t.dir;
}

/** An agent process that needs no broker to take points (its spool holds them); resolves once started. */
async function agent(args: string[]): Promise<{ proc: RunningProcess; http: string }> {
  const spool = path.join(await dir('sec-spool'), 'spool');
  const proc = runCli(['agent', '--gateway', 'gw-sec', '--spool', spool, '--broker', `mqtt://127.0.0.1:${await freePort()}`, '--log-level', 'info', ...args]);
  procs.push(proc);
  const started = await waitFor('the agent to start', () => logLines(proc.stderr()).find((l) => l['msg'] === 'agent started') ?? (proc.child.exitCode !== null && { http: `exited: ${proc.stderr()}` }));
  return { proc, http: String(started['http']) };
}

/** Every sample of the agent's /metrics, `name` or `name{label="value"}` -> value. */
async function metrics(http: string, init?: RequestInit): Promise<Map<string, number>> {
  const text = await (await fetch(`${http}/metrics`, init)).text();
  return new Map(text.split('\n').filter((l) => l !== '' && !l.startsWith('#')).map((l) => [l.slice(0, l.lastIndexOf(' ')), Number(l.slice(l.lastIndexOf(' ') + 1))]));
}

const point = (drone: string, seq: number) => ({ drone_id: drone, seq, ts: Date.now() - 1000, lat: 47.1, lon: 8.5 });

describe('ingest API: tokens', () => {
  it('refuses a non-loopback --http without --http-tokens: exit 2, one line, under 5 s', async () => {
    const spool = path.join(await dir('sec-bind'), 'spool');
    const started = performance.now();
    const run = await cli(['agent', '--gateway', 'g', '--spool', spool, '--http', `0.0.0.0:${await freePort()}`], 5_000);
    const ms = performance.now() - started;
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/^dronelake: --http 0\.0\.0\.0:\d+ is not a loopback address, and without --http-tokens anyone who reaches it could post points for any drone; give --http-tokens FILE \(see 'dronelake agent token add --help'\)\n$/);
    expect(ms).toBeLessThan(5_000);
    console.log(`agent --http 0.0.0.0 without tokens: exit 2 after ${ms.toFixed(0)} ms`);
  });

  it('answers 401 without a token or with a wrong one, 403 for a drone outside the token, 200 for a good one, and counts each', async () => {
    const d = await dir('sec-tokens');
    const file = path.join(d, 'tokens.json');
    const add = await cli(['agent', 'token', 'add', 'uploader', '--drones', 'd-a*,d-b', '--http-tokens', file]);
    expect(add.code, add.stderr).toBe(0);
    const token = add.stdout.trim().split('\n').at(-1)!;
    expect(token).toMatch(/^uploader\.[A-Za-z0-9_-]{43}$/);
    // Only the scrypt hash is kept.
    expect(await readFile(file, 'utf8')).not.toContain(token.split('.')[1]);
    expect((await cli(['agent', 'token', 'add', 'other', '--drones', 'x-*', '--http-tokens', file])).code).toBe(0);

    // Bound beyond loopback, as a shared network would see it; reached here over loopback.
    const { http: bound } = await agent(['--http', '0.0.0.0:0', '--http-tokens', file]);
    const http = bound.replace('0.0.0.0', '127.0.0.1');
    const post = async (body: unknown, authorization?: string) => {
      const res = await fetch(`${http}/v1/points`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...(authorization === undefined ? {} : { authorization }) },
        body: JSON.stringify(body),
      });
      return { status: res.status, challenge: res.headers.get('www-authenticate'), body: (await res.json()) as { error?: string; accepted?: number } };
    };
    const none = await post([point('d-a1', 0)]);
    expect(none).toEqual({ status: 401, challenge: 'Bearer realm="dronelake"', body: { error: 'this endpoint needs a token: send Authorization: Bearer TOKEN' } });
    const wrongSecret = await post([point('d-a1', 0)], `Bearer uploader.${'A'.repeat(43)}`);
    expect(wrongSecret.status).toBe(401);
    expect(wrongSecret.body).toEqual({ error: 'the token is not one this agent knows' });
    const unknownId = await post([point('d-a1', 0)], `Bearer nobody.${token.split('.')[1]}`);
    expect(unknownId.status).toBe(401);
    const forbidden = await post([point('d-a1', 0), point('x-1', 0), point('d-c', 0)], `Bearer ${token}`);
    expect(forbidden).toEqual({
      status: 403,
      challenge: null,
      body: { error: 'point 1: token uploader may not write drone x-1 (it may write d-a*,d-b); 2 such points, none accepted' },
    });
    const good = await post([point('d-a1', 0), point('d-a2', 0), point('d-b', 0)], `Bearer ${token}`);
    expect(good).toEqual({ status: 200, challenge: null, body: { accepted: 3 } });
    // The second use of a token is checked against the cached digest, not scrypt again.
    expect((await post([point('d-a1', 1)], `Bearer ${token}`)).status).toBe(200);

    const m = await metrics(http);
    expect(m.get('dronelake_agent_ingest_refused_total{reason="missing_token"}')).toBe(1);
    expect(m.get('dronelake_agent_ingest_refused_total{reason="bad_token"}')).toBe(1);
    expect(m.get('dronelake_agent_ingest_refused_total{reason="unknown_token"}')).toBe(1);
    expect(m.get('dronelake_agent_ingest_refused_total{reason="forbidden_drone"}')).toBe(1);
    expect(m.get('dronelake_agent_ingest_points_forbidden_total')).toBe(2);
    expect(m.get('dronelake_agent_ingest_requests_total')).toBe(6);
    expect(m.get('dronelake_agent_ingest_points_accepted_total')).toBe(4);
    // Only the good requests' points reached the agent.
    expect(m.get('dronelake_agent_points_in_total')).toBe(4);

    // Revoked without a restart: the file is polled.
    expect((await cli(['agent', 'token', 'remove', 'uploader', '--http-tokens', file])).code).toBe(0);
    await waitFor('the revoked token to be refused', async () => (await post([point('d-a1', 2)], `Bearer ${token}`)).status === 401, 10_000);
  });

  it('serves HTTPS with --http-tls-cert and --http-tls-key', async () => {
    const d = await dir('sec-tls');
    const [cert, key] = [path.join(d, 'cert.pem'), path.join(d, 'key.pem')];
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
    const { http } = await agent(['--http', '127.0.0.1:0', '--http-tls-cert', cert, '--http-tls-key', key]);
    expect(http).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    const ca = await readFile(cert);
    const status = await new Promise<number | undefined>((resolve, reject) =>
      https.get(`${http}/health`, { ca }, (res) => (res.resume(), resolve(res.statusCode))).on('error', reject),
    );
    expect(status).toBe(200);
  });

  it('refuses malformed token files with one line and exit 2', async () => {
    const d = await dir('sec-badtokens');
    const spool = path.join(d, 'spool');
    const file = path.join(d, 'tokens.json');
    const run = () => cli(['agent', '--gateway', 'g', '--spool', spool, '--http', '127.0.0.1:0', '--http-tokens', file]);
    const cases: Array<[string, string]> = [
      ['{"version": 1, "tokens": {', `dronelake: --http-tokens: ${file}: not valid YAML or JSON: Flow map in block collection must be sufficiently indented and end with a } at line 1, column 27`],
      ['', `dronelake: --http-tokens: ${file}: is empty; a token file is {"version": 1, "tokens": {...}}`],
      ['{"version": 2, "tokens": {}}', `dronelake: --http-tokens: ${file}: version: Invalid input: expected 1`],
      ['{"version": 1, "tokens": {"a": {"drones": ["d/1"], "scrypt": {"N": 16384, "r": 8, "p": 1, "salt": "AA==", "hash": "AA=="}}}}', `dronelake: --http-tokens: ${file}: tokens.a.drones.0: expected drone id patterns: 1-64 characters of A-Z a-z 0-9 . _ - and * (any run of characters)`],
      ['{"version": 1, "tokens": {"a": {"drones": ["d-*"], "scrypt": {"N": 16384, "r": 8, "p": 1, "salt": "AA=="}}}}', `dronelake: --http-tokens: ${file}: tokens.a.scrypt.hash: Invalid input: expected string, received undefined`],
    ];
    for (const [text, line] of cases) {
      await writeFile(file, text);
      const r = await run();
      expect(r.code, text).toBe(2);
      expect(r.stderr, text).toBe(`${line}\n`);
    }
    const missing = await cli(['agent', '--gateway', 'g', '--spool', spool, '--http', '127.0.0.1:0', '--http-tokens', path.join(d, 'nope.json')]);
    expect([missing.code, missing.stderr]).toEqual([2, `dronelake: --http-tokens: cannot read ${path.join(d, 'nope.json')}: ENOENT\n`]);
  });
});

// --- MAVLink ----------------------------------------------------------------------------

const KEY_1 = createHash('sha256').update('sysid one passphrase').digest();
const KEY_OTHER = createHash('sha256').update('the fleet passphrase').digest();
const WRONG_KEY = createHash('sha256').update('not the key').digest();
const IFLAG_SIGNED = 0x01;
let mavSeq = 0;

const heartbeat = (): MavLinkData => Object.assign(new minimal.Heartbeat(), { type: 2, autopilot: 3, baseMode: 0x81, customMode: 0, systemStatus: 4, mavlinkVersion: 3 });
const position = (timeBootMs: number): MavLinkData =>
  Object.assign(new common.GlobalPositionInt(), { timeBootMs, lat: 473977420, lon: 85455940, alt: 488120, relativeAlt: 30250, vx: 300, vy: 400, vz: -150, hdg: 9005 });

/** A MAVLink 2 frame signed by node-mavlink: `timestampMs` is wall-clock ms, link id as given. */
function signed(sysid: number, msg: MavLinkData, key: Buffer, linkId: number, timestampMs: number, compid = 1): Buffer {
  const protocol = new MavLinkProtocolV2(sysid, compid, IFLAG_SIGNED);
  return protocol.sign(protocol.serialize(msg, mavSeq++ & 0xff), linkId, key, timestampMs);
}

async function sendAll(port: number, datagrams: Buffer[]): Promise<void> {
  const socket = dgram.createSocket('udp4');
  try {
    for (const d of datagrams) await new Promise<void>((resolve, reject) => socket.send(d, port, '127.0.0.1', (err) => (err ? reject(err) : resolve())));
  } finally {
    socket.close();
  }
}

const refused = (m: Map<string, number>, reason: string) => m.get(`dronelake_agent_mavlink_refused_total{reason="${reason}"}`);

describe('MAVLink 2 signing over real UDP', () => {
  async function keyFile(): Promise<string> {
    const file = path.join(await dir('sec-keys'), 'keys.txt');
    await writeFile(file, `# sysid 1 has its own key; every other system the fleet's\n1=${KEY_1.toString('hex')}\n*=${KEY_OTHER.toString('base64')}\n`);
    return file;
  }

  it('takes signed packets, and drops and counts unsigned, wrongly signed, replayed and stale ones without making points', async () => {
    const udp = await freePort();
    const { http } = await agent(['--http', '127.0.0.1:0', '--mavlink', `udp:127.0.0.1:${udp}`, '--mavlink-keys', await keyFile(), '--mavlink-hz', '0']);
    const now = Date.now();
    const good1 = signed(1, position(1000), KEY_1, 0, now);
    // node-mavlink's signature is the spec's: the first 48 bits of SHA-256(key + frame up to the signature).
    expect(good1.subarray(-6)).toEqual(createHash('sha256').update(KEY_1).update(good1.subarray(0, -6)).digest().subarray(0, 6));
    // Bad input first: had any of it passed, it would have made a point.
    await sendAll(udp, [
      Buffer.from(new MavLinkProtocolV2(1, 1).serialize(position(100), mavSeq++)),
      Buffer.from(new MavLinkProtocolV1(2, 1).serialize(position(100), mavSeq++)),
      signed(1, position(200), WRONG_KEY, 0, now - 50),
      // sysid 1 has its own key: the fleet key does not sign for it.
      signed(1, position(300), KEY_OTHER, 0, now - 40),
      // A new stream more than a minute behind the clock.
      signed(3, position(400), KEY_OTHER, 5, now - 120_000),
    ]);
    let m = await waitFor('the bad packets to be counted', async () => {
      const s = await metrics(http);
      return refused(s, 'unsigned') === 2 && refused(s, 'bad_signature') === 2 && refused(s, 'stale') === 1 && s;
    });
    expect(m.get('dronelake_agent_mavlink_points_total')).toBe(0);

    await sendAll(udp, [
      good1,
      signed(1, heartbeat(), KEY_1, 0, now + 1),
      signed(1, position(2000), KEY_1, 0, now + 2),
      // Another link of the same system has its own timestamps.
      signed(1, position(3000), KEY_1, 1, now - 10),
      signed(7, position(1000), KEY_OTHER, 0, now),
    ]);
    m = await waitFor('the signed packets', async () => {
      const s = await metrics(http);
      return s.get('dronelake_agent_mavlink_signed_total') === 5 && s;
    });
    expect(m.get('dronelake_agent_mavlink_points_total')).toBe(4);

    // The same packet again, and a new one whose timestamp is not after its stream's last.
    await sendAll(udp, [good1, signed(1, position(4000), KEY_1, 0, now + 2)]);
    m = await waitFor('the replays to be counted', async () => {
      const s = await metrics(http);
      return refused(s, 'replayed') === 2 && s;
    });
    expect(m.get('dronelake_agent_mavlink_points_total')).toBe(4);
    expect(m.get('dronelake_agent_mavlink_signed_total')).toBe(5);
    expect([refused(m, 'unsigned'), refused(m, 'bad_signature'), refused(m, 'stale'), refused(m, 'no_key'), refused(m, 'sender_denied')]).toEqual([2, 2, 1, 0, 0]);
    expect(m.get('dronelake_agent_points_in_total')).toBe(4);
  });

  it('--mavlink-allow drops datagrams from other senders, and counts them', async () => {
    const udp = await freePort();
    const { http } = await agent(['--http', '127.0.0.1:0', '--mavlink', `udp:127.0.0.1:${udp}`, '--mavlink-keys', await keyFile(), '--mavlink-allow', '10.0.0.0/8,fd00::/8']);
    await sendAll(udp, [signed(1, position(1000), KEY_1, 0, Date.now()), signed(1, position(2000), KEY_1, 0, Date.now() + 1)]);
    const m = await waitFor('the denied datagrams', async () => {
      const s = await metrics(http);
      return refused(s, 'sender_denied') === 2 && s;
    });
    expect(m.get('dronelake_agent_mavlink_points_total')).toBe(0);
    expect(m.get('dronelake_agent_mavlink_packets_total')).toBe(0);
  });

  it('refuses a non-loopback listener without keys or --mavlink-unsigned, and warns with the opt-in', async () => {
    const spool = path.join(await dir('sec-mav-bind'), 'spool');
    const udp = await freePort();
    const bare = await cli(['agent', '--gateway', 'g', '--spool', spool, '--mavlink', `udp:0.0.0.0:${udp}`], 5_000);
    expect(bare.code).toBe(2);
    expect(bare.stderr).toBe(
      `dronelake: --mavlink udp:0.0.0.0:${udp} is not a loopback address, and without --mavlink-keys anyone who reaches it could forge any vehicle's position; give --mavlink-keys FILE (MAVLink 2 signing), or --mavlink-unsigned to accept that\n`,
    );
    const { proc } = await agent(['--mavlink', `udp:0.0.0.0:${udp}`, '--mavlink-unsigned']);
    const warning = logLines(proc.stderr()).find((l) => l['level'] === 40 && String(l['msg']).startsWith('taking unsigned MAVLink'));
    expect(warning?.['msg']).toBe('taking unsigned MAVLink (--mavlink-unsigned): anyone who reaches the port can forge positions');
  });

  it('refuses malformed key files with one line and exit 2', async () => {
    const d = await dir('sec-badkeys');
    const file = path.join(d, 'keys.txt');
    const hex = KEY_1.toString('hex');
    const cases: Array<[string, string]> = [
      [`1=${hex.slice(2)}\n`, 'line 1: the key must be 32 bytes: 64 hex digits or 44 characters of base64'],
      [`# keys\n1 ${hex}\n`, 'line 2: expected SYSID=KEY or *=KEY'],
      [`256=${hex}\n`, 'line 1: system id 256 is not in 1..255'],
      [`1=${hex}\n1=${hex}\n`, 'line 2: system id 1 is given twice'],
      ['# nothing\n', 'holds no key'],
    ];
    for (const [text, problem] of cases) {
      await writeFile(file, text);
      const r = await cli(['agent', '--gateway', 'g', '--spool', path.join(d, 'spool'), '--mavlink', 'udp:127.0.0.1:0', '--mavlink-keys', file]);
      expect(r.code, text).toBe(2);
      expect(r.stderr, text).toBe(`dronelake: --mavlink-keys: ${file}: ${problem}\n`);
    }
  });
});
