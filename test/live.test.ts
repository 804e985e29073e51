import { spawn, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import mqtt from 'mqtt';
import { describe, expect, it } from 'vitest';
import * as z from 'zod';
import { startAgent, type Agent } from '../agent/agent';
import { agentConfig } from '../agent/options';
import { startBroker, type Broker, type BrokerConfig } from '../broker/server';
import { decodeColumnar, pointAt } from '../proto/columnar';
import { livePointCount } from '../proto/live';
import { EVENTS_WILDCARD, LIVE_WILDCARD, liveTopic, TELEMETRY_WILDCARD } from '../proto/topics';
import { FlightState, GpsFix, type TelemetryPoint } from '../proto/types';
import { sinkConfig } from '../sink/options';
import { startSink, type Sink } from '../sink/sink';
import { HAS_MOSQUITTO, makeRegistry, mosquitto, within } from './broker-helpers';
import { cleanupsAfterEach, duck, lakeGlob, quietLog, ROOT, tempDir, waitFor } from './helpers';

type Row = Record<string, unknown>;

/** A foreign subscriber: mosquitto_sub, printing `topic payload` per message until stopped. */
function mosquittoSub(args: string[]): { child: ChildProcess; lines: () => string[]; stop: () => Promise<void> } {
  const child = spawn('mosquitto_sub', ['-v', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<void>((resolve) => child.on('close', () => resolve()));
  return {
    child,
    lines: () => out.split('\n').filter((l) => l.length > 0),
    stop: async () => {
      child.kill('SIGTERM');
      await exited;
    },
  };
}

/** A client of GET /live: the `points` and `alert` events it receives. */
async function sseClient(url: string): Promise<{ points: Row[]; alerts: Row[]; close: () => void }> {
  const controller = new AbortController();
  const res = await fetch(url, { signal: controller.signal });
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toBe('text/event-stream');
  const points: Row[] = [];
  const alerts: Row[] = [];
  let buffered = '';
  void (async () => {
    const decoder = new TextDecoder();
    try {
      for await (const chunk of res.body!) {
        buffered += decoder.decode(chunk as Uint8Array, { stream: true });
        buffered = eachSseMessage(buffered, (event, data) => {
          if (event === 'points') points.push(...(JSON.parse(data) as Row[]));
          if (event === 'alert') alerts.push(JSON.parse(data) as Row);
        });
      }
    } catch {
      // aborted by close()
    }
  })();
  return { points, alerts, close: () => controller.abort() };
}

/** Calls `on` with each whole SSE message in `buffered` (its event and data lines); returns what is left of an unfinished one. */
function eachSseMessage(buffered: string, on: (event: string | undefined, data: string) => void): string {
  let rest = buffered;
  for (let end = rest.indexOf('\n\n'); end >= 0; end = rest.indexOf('\n\n')) {
    const message = rest.slice(0, end);
    rest = rest.slice(end + 2);
    on(/^event: (\w+)$/m.exec(message)?.[1], /^data: (.*)$/m.exec(message)?.[1] ?? '');
  }
  return rest;
}

const key = (r: Row) => `${String(r['drone_id'])}/${String(r['stream'])}/${String(r['seq'])}`;

/**
 * A client of GET /live whose reading can be paused, as a stuck browser tab: the rows of its
 * `points` events, and the points its `dropped` events say it missed.
 */
function pausedSse(url: string): { points: Row[]; missed: () => number; connected: () => boolean; pause: () => void; resume: () => void; close: () => void } {
  const points: Row[] = [];
  let missed = 0;
  let response: http.IncomingMessage | undefined;
  let buffered = '';
  const req = http.get(url, (res) => {
    response = res;
    res.setEncoding('utf8');
    res.on('data', (chunk: string) => {
      buffered += chunk;
      buffered = eachSseMessage(buffered, (event, data) => {
        if (event === 'points') points.push(...(JSON.parse(data) as Row[]));
        if (event === 'dropped') missed += (JSON.parse(data) as { points: number }).points;
      });
    });
    res.on('error', () => {});
  });
  req.on('error', () => {});
  return { points, missed: () => missed, connected: () => response !== undefined, pause: () => response?.pause(), resume: () => response?.resume(), close: () => req.destroy() };
}

/** What a consumer process received: rows, distinct point keys among them, payload bytes. */
interface Tally {
  rows: number;
  distinct: number;
  bytes: number;
}

/**
 * A consumer in a process of its own, as a real one runs: an MQTT.js client subscribed to the
 * live topics at QoS 0 that keeps what it receives and does little per message, so that it
 * keeps up with a burst; it tells its tally when asked. In the test's process it would share
 * an event loop with the broker that writes to it, and fall behind.
 */
async function processConsumer(url: string, username: string, password: string): Promise<{ tally: (what: 'rows' | 'keys') => Promise<Tally>; stop: () => Promise<void> }> {
  const script = `
    import mqtt from 'mqtt';
    import readline from 'node:readline';
    const client = await mqtt.connectAsync(process.env.URL, { clientId: 'ops-map-process', username: process.env.USER_ID, password: process.env.SECRET, reconnectPeriod: 0 });
    const payloads = [];
    let rows = 0;
    client.on('message', (topic, payload) => {
      payloads.push(payload);
      // The rows in a message, counted without parsing it: each starts with its drone_id.
      rows += payload.toString().split('{"drone_id":').length - 1;
    });
    await client.subscribeAsync(${JSON.stringify(LIVE_WILDCARD)}, { qos: 0 });
    process.stderr.write('subscribed\\n');
    // Asked on stdin: the rows so far, or ('keys') parsed, with the distinct keys.
    for await (const line of readline.createInterface({ input: process.stdin })) {
      const tally = { rows, distinct: 0, bytes: payloads.reduce((n, p) => n + p.length, 0) };
      if (line === 'keys') tally.distinct = new Set(payloads.flatMap((p) => JSON.parse(p.toString()).map((r) => r.drone_id + '/' + r.stream + '/' + r.seq))).size;
      process.stdout.write(JSON.stringify(tally) + '\\n');
    }
  `;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { cwd: ROOT, env: { ...process.env, URL: url, USER_ID: username, SECRET: password }, stdio: ['pipe', 'pipe', 'pipe'] });
  const TallyLine = z.object({ rows: z.number(), distinct: z.number(), bytes: z.number() });
  const answers: Array<(t: Tally) => void> = [];
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => {
    out += d.toString();
    let end: number;
    while ((end = out.indexOf('\n')) >= 0) {
      const line = out.slice(0, end);
      out = out.slice(end + 1);
      answers.shift()?.(TallyLine.parse(JSON.parse(line)));
    }
  });
  const exited = new Promise<void>((resolve) => child.on('close', () => resolve()));
  await within(
    'the consumer process to subscribe',
    new Promise<void>((resolve, reject) => {
      child.stderr!.on('data', (d: Buffer) => {
        err += d.toString();
        if (err.includes('subscribed')) resolve();
      });
      void exited.then(() => reject(new Error(`the consumer process exited: ${err}`)));
    }),
    20_000,
  );
  return {
    tally: (what) =>
      within(
        'the consumer process to answer',
        new Promise<Tally>((resolve) => {
          answers.push(resolve);
          child.stdin!.write(`${what}\n`);
        }),
        10_000,
      ),
    stop: async () => {
      child.kill('SIGTERM');
      await exited;
    },
  };
}

/**
 * A loopback relay in front of the broker for the sink's connections. `stall()` stops reading
 * what the sink's live connection (the one whose CONNECT names `liveClientId`) sends, as a
 * broker link that has stopped taking anything; `resume()` reads again.
 */
async function liveRelay(brokerUrl: string, liveClientId: string): Promise<{ url: string; found: () => boolean; stall: () => void; resume: () => void; close: () => Promise<void> }> {
  const sockets = new Set<net.Socket>();
  let live: net.Socket | null = null;
  const server = net.createServer((down) => {
    const up = net.connect(Number(new URL(brokerUrl).port), '127.0.0.1');
    for (const s of [down, up]) {
      sockets.add(s);
      s.on('error', () => {});
      s.on('close', () => sockets.delete(s));
    }
    let first = true;
    down.on('data', (chunk: Buffer) => {
      // The CONNECT is the first packet a client sends, and carries its client id.
      if (first && chunk.includes(liveClientId)) live = down;
      first = false;
      up.write(chunk);
    });
    up.pipe(down);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `mqtt://127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    found: () => live !== null,
    stall: () => live?.pause(),
    resume: () => live?.resume(),
    close: () =>
      new Promise((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

describe('the live output port', () => {
  const cleanups = cleanupsAfterEach();

  /** `via` puts something between the sink and the broker: it gets the broker's URL and gives the sink's. */
  async function setUp(name: string, sinkGiven: Parameters<typeof sinkConfig>[0], brokerConfig: Partial<BrokerConfig> = {}, via: (brokerUrl: string) => Promise<string> = async (url) => url) {
    const tmp = await tempDir(`live-${name}`);
    cleanups.push(tmp.remove);
    const { file, secrets } = await makeRegistry(tmp.dir, [
      ['gw-live', 'gateway'],
      ['dronelake-sink', 'sink'],
      ['ops-map', 'consumer'],
    ]);
    const broker: Broker = await startBroker({ host: '127.0.0.1', port: 0, registry: file, ...brokerConfig }, quietLog);
    cleanups.push(() => broker.close());
    const creds = (id: string) => ({ username: id, password: secrets.get(id)! });
    const lake = path.join(tmp.dir, 'lake');
    const sink: Sink = await startSink(
      sinkConfig({ broker: await via(broker.url), lake, http: '127.0.0.1:0', live: true, ...creds('dronelake-sink'), ...sinkGiven }),
      quietLog,
    );
    cleanups.push(() => sink.close());
    const agent: Agent = await startAgent(
      agentConfig({ broker: broker.url, gateway: 'gw-live', spool: path.join(tmp.dir, 'spool'), http: '127.0.0.1:0', linger: 0.05, ...creds('gw-live') }),
      quietLog,
    );
    cleanups.push(() => agent.close());
    const post = async (points: object[]) => {
      const res = await fetch(`${agent.http!.url}/v1/points`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(points) });
      await res.text();
      return res.status;
    };
    const mqttArgs = (id: string, clientId: string) => ['-h', '127.0.0.1', '-p', String(broker.port), '-i', clientId, '-u', id, '-P', secrets.get(id)!];
    return { broker, sink, agent, post, mqttArgs, secrets, lake };
  }

  it.skipIf(!HAS_MOSQUITTO)('gives a consumer identity exactly the valid points, each once, after commit, on MQTT and SSE; the consumer can neither publish nor read gateway topics', async () => {
    const { broker, sink, post, mqttArgs, secrets } = await setUp('commit', { flushInterval: 0.2, alertSilence: 0 });
    const consumer = mosquittoSub([...mqttArgs('ops-map', 'ops-map-1'), '-t', LIVE_WILDCARD]);
    cleanups.push(consumer.stop);
    const sse = await sseClient(`${sink.http!}/live`);
    cleanups.push(async () => sse.close());
    const only = await sseClient(`${sink.http!}/live?drone=live-2`);
    cleanups.push(async () => only.close());
    await waitFor('the consumer to subscribe', () => broker.stats().clients >= 4 || undefined);

    const ts = Date.now() - 10_000;
    const valid = Array.from({ length: 100 }, (_, i) => ({ drone_id: `live-${i % 4}`, seq: Math.floor(i / 4), ts: ts + i, lat: 47.5, lon: 8.5, battery_pct: 80, gps_fix: '3d', flight_state: 'cruise' }));
    const invalid = Array.from({ length: 5 }, (_, i) => ({ drone_id: 'live-bad', seq: i, ts, lat: 91 }));
    expect(await post([...valid.slice(0, 60), ...invalid])).toBe(422);
    // A client retry: 10 points again (duplicates), and the rest.
    expect(await post([...valid.slice(50, 60), ...valid.slice(60)])).toBe(200);
    await waitFor('100 points committed', () => sink.stats().pointsCommitted === 100 || undefined);
    await waitFor('the consumer to get 100 points', () => consumer.lines().reduce((n, l) => n + (JSON.parse(l.slice(l.indexOf(' ') + 1)) as Row[]).length, 0) >= 100 || undefined);
    await waitFor('the SSE client to get 100 points', () => sse.points.length >= 100 || undefined);
    expect(sink.stats()).toMatchObject({ pointsDuplicate: 10 });
    // The invalid points were refused at the agent's door (422) and never went anywhere.
    expect(sink.stats().pointsReceived).toBe(110);

    const received: Row[] = [];
    for (const line of consumer.lines()) {
      const topic = line.slice(0, line.indexOf(' '));
      const rows = JSON.parse(line.slice(topic.length + 1)) as Row[];
      for (const row of rows) expect(topic).toBe(liveTopic(String(row['drone_id'])));
      received.push(...rows);
    }
    const expected = new Set(valid.map((p) => `${p.drone_id}/${p.seq}`));
    expect(received.length).toBe(100);
    expect(new Set(received.map(key)).size).toBe(100);
    expect(new Set(received.map((r) => `${String(r['drone_id'])}/${String(r['seq'])}`))).toEqual(expected);
    expect(received[0]).toMatchObject({ gateway_id: 'gw-live', gps_fix: '3d', flight_state: 'cruise', lat: 47.5 });
    expect(String(received[0]!['ts'])).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
    expect(new Set(sse.points.map(key))).toEqual(new Set(received.map(key)));
    expect(sse.points.length).toBe(100);
    expect(only.points.length).toBe(25);
    expect(only.points.every((r) => r['drone_id'] === 'live-2')).toBe(true);
    const bad = await fetch(`${sink.http!}/live?drone=a/b`);
    expect([bad.status, await bad.json()]).toEqual([400, { error: 'drone "a/b" is not a drone id' }]);

    // The consumer may not publish: the broker closes it, and nothing reaches the port's readers.
    const deniedBefore = broker.stats().aclDenials.publish;
    const forged = await mosquitto('mosquitto_pub', [...mqttArgs('ops-map', 'ops-map-2'), '-t', liveTopic('live-0'), '-q', '1', '-m', '[{"drone_id":"live-0","seq":999}]']);
    expect(forged.code).not.toBe(0);
    expect(broker.stats().aclDenials.publish).toBe(deniedBefore + 1);
    // ...nor read the gateways' raw telemetry.
    const raw = await mosquitto('mosquitto_sub', [...mqttArgs('ops-map', 'ops-map-3'), '-t', TELEMETRY_WILDCARD, '-C', '1', '-W', '3']);
    expect(raw.stderr).toContain('All subscription requests were denied');
    // ...nor pose as the sink.
    const asSink = await mqtt.connectAsync(broker.url, { clientId: 'dronelake-sink-x', username: 'ops-map', password: secrets.get('ops-map')!, reconnectPeriod: 0 }).catch((err: Error) => err);
    expect(asSink).toBeInstanceOf(Error);
    // Nor may the sink publish on the port above QoS 0: the broker would have to queue it for consumers.
    const queued = await mosquitto('mosquitto_pub', [...mqttArgs('dronelake-sink', 'dronelake-sink-q1'), '-t', liveTopic('live-0'), '-q', '1', '-m', '[{"drone_id":"live-0","seq":998}]']);
    expect(queued.code).not.toBe(0);
    expect(broker.stats().aclDenials.publish).toBe(deniedBefore + 2);
    expect(consumer.lines().some((l) => l.includes('"seq":999') || l.includes('"seq":998'))).toBe(false);
  });

  it('drops, and counts per consumer, what a consumer that stops reading misses, keeps it connected, and accounts for every point: received + dropped == published, on MQTT and SSE; the lake holds every point once', async () => {
    const { broker, sink, post, secrets, lake } = await setUp('stuck', { flushInterval: 0.2, alertSilence: 0 });
    // Two overlapping filters: the broker sends each message once all the same.
    const consumer = await mqtt.connectAsync(broker.url, { clientId: 'ops-map-stuck', username: 'ops-map', password: secrets.get('ops-map')!, reconnectPeriod: 0 });
    cleanups.push(() => consumer.endAsync(true));
    const received: string[] = [];
    // What the broker counts for a message it drops, read off the payload as it is: checked on every one received.
    let miscounted = 0;
    consumer.on('message', (topic, payload) => {
      const rows = JSON.parse(payload.toString()) as Row[];
      if (livePointCount(topic, payload) !== rows.length) miscounted++;
      received.push(...rows.map(key));
    });
    await consumer.subscribeAsync([LIVE_WILDCARD, liveTopic('stuck-0')], { qos: 1 });
    const sse = pausedSse(`${sink.http!}/live`);
    cleanups.push(async () => sse.close());
    await waitFor('the SSE client', () => (sse.connected() && sink.stats().live!.sseClients === 1) || undefined);

    // From here on neither reads: their sockets fill up, at the broker and at the sink.
    consumer.stream.pause();
    sse.pause();
    const lat = 47.123456789012;
    let sent = 0;
    const postRound = async (round: number) => {
      const points = Array.from({ length: 500 }, (_, i) => ({ drone_id: `stuck-${i % 50}`, seq: round * 10 + Math.floor(i / 50), ts: Date.now() - 5_000 + round, lat, lon: 8.5, alt_m: 512.25, battery_pct: 80, gps_fix: '3d', flight_state: 'cruise', mission_id: 'm-0123456789' }));
      expect(await post(points)).toBe(200);
      sent += points.length;
      await waitFor(`${sent} points committed`, () => sink.stats().pointsCommitted === sent || undefined, 30_000);
    };
    const dropped = () => broker.stats().consumerDrops;
    // About 400 bytes a row: rounds until both have missed something, at most 100 (20 MB).
    let round = 0;
    while (round < 100 && ((dropped().points['ops-map'] ?? 0) === 0 || sink.stats().live!.sseDroppedPoints === 0)) await postRound(round++);
    expect(dropped().points['ops-map']).toBeGreaterThan(0);
    expect(sink.stats().live!.sseDroppedPoints).toBeGreaterThan(0);

    // Reading again: each gets what reached its socket, and learns nothing was held back beyond that.
    consumer.stream.resume();
    sse.resume();
    const live = () => sink.stats().live!;
    const published = () => live().mqttPublishedPoints;
    const mqttBalanced = () => received.length + (dropped().points['ops-map'] ?? 0) === published();
    // The SSE client hears of its last gap with the next event it is sent: a few more rounds, at most 10.
    const sseBalanced = () => sse.points.length + sse.missed() === live().points;
    for (let more = 0; more < 10 && !(mqttBalanced() && sseBalanced()); more++) {
      await postRound(round++);
      await waitFor('both to account for every point', () => (mqttBalanced() && sseBalanced()) || undefined, 5_000).catch(() => undefined);
    }
    const drops = dropped();
    expect(received.length + drops.points['ops-map']!).toBe(published());
    expect(new Set(received).size).toBe(received.length);
    expect(miscounted).toBe(0);
    expect(drops.messages['ops-map']).toBeGreaterThan(0);
    expect(Object.keys(drops.points)).toEqual(['ops-map']);
    // Still connected: nothing was lost with a closed socket.
    expect(consumer.connected).toBe(true);
    expect(drops.closed).toBe(0);

    expect(sse.points.length + sse.missed()).toBe(live().points);
    expect(sse.missed()).toBe(live().sseDroppedPoints);
    expect(new Set(sse.points.map(key)).size).toBe(sse.points.length);
    expect(live().sseDisconnected).toBe(0);

    // The lake has every accepted point, once.
    expect(live().points).toBe(sent);
    const [lakeRows] = await duck(`SELECT count(*)::INTEGER AS n, count(DISTINCT (drone_id, stream, seq))::INTEGER AS distinct_keys FROM read_parquet('${lakeGlob(lake)}')`);
    expect(lakeRows).toEqual({ n: sent, distinct_keys: sent });
  });

  it('publishes a commit whose JSON rows exceed 4 MiB whole: the sink drops nothing, and the consumer gets each point once or has it counted as dropped for it', async () => {
    const points = 15_000;
    // One commit: no timed flush, and the commit starts at exactly this many points.
    const { broker, sink, post, secrets } = await setUp('burst', { flushInterval: 600, commitPoints: points, alertSilence: 0 });
    const consumer = await processConsumer(broker.url, 'ops-map', secrets.get('ops-map')!);
    cleanups.push(consumer.stop);

    const ts = Date.now() - 60_000;
    // 300 drones: 50 rows, about 22 KB, per drone and commit.
    const drones = 300;
    const all = Array.from({ length: points }, (_, i) => ({
      drone_id: `burst-${i % drones}`,
      seq: Math.floor(i / drones),
      ts: ts + Math.floor(i / drones),
      lat: 47.3654248,
      lon: 8.631304,
      alt_m: 473.27,
      rel_alt_m: 65.27,
      ground_speed_mps: 12.33,
      vertical_speed_mps: -0.06,
      heading_deg: 279.05,
      battery_pct: 50,
      battery_voltage_v: 22.744,
      gps_fix: '3d',
      satellites: 11,
      flight_state: 'cruise',
      armed: true,
      mission_id: 'M-burst-0001',
    }));
    for (let at = 0; at < points; at += 5_000) expect(await post(all.slice(at, at + 5_000))).toBe(200);
    await waitFor(`${points} points committed`, () => sink.stats().pointsCommitted === points || undefined, 60_000);
    // The sink's side, the one this test is about: the whole commit went to the broker. What
    // reaches the consumer then depends on how fast its process reads on a busy machine:
    // the broker drops, for it alone and counted, what it could not take (broker/consumers.ts).
    const brokerDropped = () => broker.stats().consumerDrops.points['ops-map'] ?? 0;
    await waitFor(`the consumer to get or miss ${points} points`, async () => (await consumer.tally('rows')).rows + brokerDropped() >= points || undefined, 30_000).catch(async (e: Error) => {
      throw new Error(`${e.message}: it got ${JSON.stringify(await consumer.tally('rows'))}; the port ${JSON.stringify(sink.stats().live)}; the broker dropped ${JSON.stringify(broker.stats().consumerDrops)}`);
    });

    expect(sink.stats().commits).toBe(1);
    expect(sink.stats().live).toMatchObject({ points, mqttPublishedPoints: points, mqttDroppedPoints: 0, mqttQueuedPoints: 0, mqttQueuedBytes: 0 });
    const { rows, distinct, bytes } = await consumer.tally('keys');
    expect(distinct).toBe(rows);
    expect(rows + brokerDropped()).toBe(points);
    // More than the 4 MiB the port used to let its socket hold before it dropped, unless the broker dropped it.
    if (brokerDropped() === 0) expect(bytes).toBeGreaterThan(4 * 1024 * 1024);
  });

  it('with its broker link stalled, keeps committing, fills its queue up to --live-queue-mib and no further, drops what does not fit, counted, and accounts for every point once the link reads again', async () => {
    let relay: Awaited<ReturnType<typeof liveRelay>> | undefined;
    const via = async (url: string) => {
      relay = await liveRelay(url, 'dronelake-sink-live');
      cleanups.push(relay.close);
      return relay.url;
    };
    const { broker, sink, post, secrets, lake } = await setUp('stalled', { flushInterval: 0.2, liveQueueMib: 1, alertSilence: 0 }, {}, via);
    const consumer = await mqtt.connectAsync(broker.url, { clientId: 'ops-map-stalled', username: 'ops-map', password: secrets.get('ops-map')!, reconnectPeriod: 0 });
    cleanups.push(() => consumer.endAsync(true));
    const received: string[] = [];
    consumer.on('message', (_topic, payload) => {
      for (const row of JSON.parse(payload.toString()) as Row[]) received.push(key(row));
    });
    await consumer.subscribeAsync(LIVE_WILDCARD, { qos: 0 });
    await waitFor('the live connection through the relay', () => relay!.found() || undefined);
    relay!.stall();

    const live = () => sink.stats().live!;
    let sent = 0;
    let largestQueue = 0;
    const postRound = async (round: number) => {
      const points = Array.from({ length: 2_000 }, (_, i) => ({ drone_id: `stalled-${i % 20}`, seq: round * 100 + Math.floor(i / 20), ts: Date.now() - 5_000 + round, lat: 47.123456789012, lon: 8.5, alt_m: 512.25, battery_pct: 80, gps_fix: '3d', flight_state: 'cruise', mission_id: 'm-0123456789' }));
      expect(await post(points)).toBe(200);
      sent += points.length;
      // The lake does not wait for the port; the port takes a commit's points once its acks are out.
      await waitFor(`${sent} points committed and sent live`, () => (sink.stats().pointsCommitted === sent && live().points === sent) || undefined, 30_000);
      const l = live();
      largestQueue = Math.max(largestQueue, l.mqttQueuedBytes);
      expect(l.mqttPublishedPoints + l.mqttDroppedPoints + l.mqttQueuedPoints).toBe(sent);
    };
    // About 900 KB of rows a round: rounds until the socket's and the relay's buffers are full
    // and the queue overflows, at most 60 (54 MB).
    let round = 0;
    while (round < 60 && live().mqttDroppedPoints === 0) await postRound(round++);
    // Two more rounds while the queue is full: still committed, still bounded.
    for (const end = round + 2; round < end; ) await postRound(round++);
    expect(live().mqttDroppedPoints).toBeGreaterThan(0);
    expect(live().mqttQueuedPoints).toBeGreaterThan(0);
    // Full to within one message (100 rows, about 40 KB), never beyond.
    expect(largestQueue).toBeGreaterThan(1024 * 1024 - 64 * 1024);
    expect(largestQueue).toBeLessThanOrEqual(1024 * 1024);

    // The link reads again: the queue empties, and what was published reaches the consumer.
    relay!.resume();
    await waitFor('the queue to empty', () => live().mqttQueuedPoints === 0 || undefined, 30_000);
    const l = live();
    expect(l.points).toBe(sent);
    expect(l.mqttPublishedPoints + l.mqttDroppedPoints).toBe(sent);
    const brokerDropped = () => broker.stats().consumerDrops.points['ops-map'] ?? 0;
    await waitFor('the consumer to account for every published point', () => received.length + brokerDropped() === l.mqttPublishedPoints || undefined, 30_000);
    expect(received.length + brokerDropped()).toBe(l.mqttPublishedPoints);
    expect(new Set(received).size).toBe(received.length);
    const [lakeRows] = await duck(`SELECT count(*)::INTEGER AS n, count(DISTINCT (drone_id, stream, seq))::INTEGER AS distinct_keys FROM read_parquet('${lakeGlob(lake)}')`);
    expect(lakeRows).toEqual({ n: sent, distinct_keys: sent });
  });

  it('closes a consumer still behind after --consumer-max-behind, counting it, what it missed and the bytes held for it', async () => {
    const { broker, sink, post, secrets } = await setUp('behind', { flushInterval: 0.2, alertSilence: 0 }, { consumerMaxBehind: 1 });
    const consumer = await mqtt.connectAsync(broker.url, { clientId: 'ops-map-behind', username: 'ops-map', password: secrets.get('ops-map')!, reconnectPeriod: 0 });
    cleanups.push(() => consumer.endAsync(true));
    const gone = new Promise<void>((resolve) => consumer.once('close', () => resolve()));
    await consumer.subscribeAsync(LIVE_WILDCARD, { qos: 0 });
    consumer.stream.pause();
    let sent = 0;
    // Rounds until the broker gives up on it, at most 100 (20 MB of rows).
    for (let round = 0; round < 100 && broker.stats().consumerDrops.closed === 0; round++) {
      const points = Array.from({ length: 500 }, (_, i) => ({ drone_id: `behind-${i % 50}`, seq: round * 10 + Math.floor(i / 50), ts: Date.now() - 5_000 + round, lat: 47.123456789012, lon: 8.5, mission_id: 'm-0123456789' }));
      expect(await post(points)).toBe(200);
      sent += points.length;
      await waitFor(`${sent} points committed`, () => sink.stats().pointsCommitted === sent || undefined, 30_000);
    }
    const drops = broker.stats().consumerDrops;
    expect(drops.closed).toBe(1);
    expect(drops.closedUnsentBytes).toBeGreaterThan(0);
    expect(drops.points['ops-map']).toBeGreaterThan(0);
    consumer.stream.resume();
    await within('the consumer to see its connection closed', gone, 10_000);
    // The lake never waited for it.
    expect(sink.stats().pointsCommitted).toBe(sent);
    expect(sink.stats().live!.mqttDroppedPoints).toBe(0);
  });

  it('with --live-format v2, gives a consumer the accepted points as wire v2 columnar batches, value for value, while SSE stays JSON', async () => {
    const { broker, sink, post, secrets } = await setUp('v2', { liveFormat: 'v2', flushInterval: 0.2, alertSilence: 0 });
    const consumer = await mqtt.connectAsync(broker.url, { clientId: 'ops-map-v2', username: 'ops-map', password: secrets.get('ops-map')! });
    cleanups.push(() => consumer.endAsync());
    const received: Array<{ topic: string; gatewayId: string; point: TelemetryPoint }> = [];
    // What the broker counts for a message it drops, read off the payload without decoding it.
    const counted: Array<[number, number]> = [];
    consumer.on('message', (topic, payload) => {
      const batch = decodeColumnar(payload);
      counted.push([livePointCount(topic, payload), batch.points.count]);
      for (let i = 0; i < batch.points.count; i++) received.push({ topic, gatewayId: batch.gateway_id, point: pointAt(batch.points, i) });
    });
    await consumer.subscribeAsync(LIVE_WILDCARD, { qos: 0 });
    const sse = await sseClient(`${sink.http!}/live`);
    cleanups.push(async () => sse.close());

    const ts = Date.now() - 10_000;
    const valid = Array.from({ length: 60 }, (_, i) => ({ drone_id: `v2-${i % 3}`, seq: Math.floor(i / 3), ts: ts + i, lat: 47.3816147, lon: 8.5, battery_pct: 80, gps_fix: '3d', flight_state: 'cruise' }));
    expect(await post([...valid, { drone_id: 'v2-bad', seq: 0, ts, lat: 91 }])).toBe(422);
    await waitFor('60 live points over MQTT', () => received.length >= 60 || undefined);
    await waitFor('60 live points over SSE', () => sse.points.length >= 60 || undefined);
    expect(received.length).toBe(60);
    expect(counted.every(([read, decoded]) => read === decoded)).toBe(true);
    expect(counted.reduce((n, [read]) => n + read, 0)).toBe(60);
    expect(new Set(received.map((r) => `${r.point.drone_id}/${r.point.seq}`))).toEqual(new Set(valid.map((p) => `${p.drone_id}/${p.seq}`)));
    for (const r of received) {
      expect(r.topic).toBe(liveTopic(r.point.drone_id));
      expect(r.gatewayId).toBe('gw-live');
      expect(r.point).toMatchObject({ lat: 47.3816147, lon: 8.5, battery_pct: 80, gps_fix: GpsFix.fix3d, flight_state: FlightState.cruise });
      // The ingest API takes milliseconds; the lake counts microseconds.
      expect(r.point.ts).toBe((ts + valid.findIndex((p) => p.drone_id === r.point.drone_id && p.seq === r.point.seq)) * 1000);
    }
    expect(sse.points[0]).toMatchObject({ gps_fix: '3d', flight_state: 'cruise', gateway_id: 'gw-live' });
    const product = sink.catalog.product as { outputPorts: Array<{ name: string; customProperties: Array<{ property: string; value: unknown }> }> };
    expect(product.outputPorts.find((p) => p.name === 'live')?.customProperties.find((c) => c.property === 'format')?.value).toBe('v2');
  });

  it('sends points as soon as they are accepted with --live-after accept, before any commit', async () => {
    const { sink, post } = await setUp('accept', { liveAfter: 'accept', flushInterval: 600, alertSilence: 0 });
    const sse = await sseClient(`${sink.http!}/live`);
    cleanups.push(async () => sse.close());
    const ts = Date.now() - 5_000;
    expect(await post(Array.from({ length: 20 }, (_, i) => ({ drone_id: 'fast-1', seq: i, ts: ts + i })))).toBe(200);
    await waitFor('20 live points', () => sse.points.length >= 20 || undefined);
    expect(sink.stats().pointsCommitted).toBe(0);
    expect(sse.points.map((r) => r['seq'])).toEqual(Array.from({ length: 20 }, (_, i) => i));
    const product = sink.catalog.product as { outputPorts: Array<{ name: string; customProperties: Array<{ property: string; value: unknown }> }> };
    const livePort = product.outputPorts.find((p) => p.name === 'live');
    expect(livePort?.customProperties.find((c) => c.property === 'delivery')?.value).toBe('after-accept');
    expect(product.outputPorts.map((p) => p.name)).toEqual(['telemetry', 'quarantine', 'live', 'events']);
  });

  it('raises battery_low, emergency and silent events exactly when their conditions start to hold', async () => {
    const { broker, sink, post, secrets } = await setUp('alerts', { flushInterval: 0.2, alertBatteryPct: 20, alertSilence: 2 });
    const events: Row[] = [];
    const listener = await mqtt.connectAsync(broker.url, { clientId: 'ops-map-events', username: 'ops-map', password: secrets.get('ops-map')! });
    cleanups.push(() => listener.endAsync());
    listener.on('message', (_t, payload) => events.push(JSON.parse(payload.toString()) as Row));
    await listener.subscribeAsync(EVENTS_WILDCARD, { qos: 0 });

    const ts = Date.now() - 5_000;
    const battery = [50, 30, 19, 18, 25, 15, null, 16];
    const states = ['cruise', 'emergency', 'emergency', 'cruise', 'emergency'];
    expect(
      await post([
        ...battery.map((b, seq) => ({ drone_id: 'alert-batt', seq, ts: ts + seq, ...(b !== null && { battery_pct: b }) })),
        ...states.map((s, seq) => ({ drone_id: 'alert-mode', seq, ts: ts + seq, flight_state: s })),
      ]),
    ).toBe(200);
    await waitFor('13 points committed', () => sink.stats().pointsCommitted === 13 || undefined);
    await waitFor('both drones reported silent', () => events.filter((e) => e['event'] === 'silent').length >= 2 || undefined, 10_000);
    const summary = events.map((e) => [e['event'], e['drone_id'], e['battery_pct'] ?? e['flight_state'] ?? null]);
    expect(summary.filter(([kind]) => kind !== 'silent')).toEqual([
      ['battery_low', 'alert-batt', 19],
      ['battery_low', 'alert-batt', 15],
      ['emergency', 'alert-mode', 'emergency'],
      ['emergency', 'alert-mode', 'emergency'],
    ]);
    expect(summary.filter(([kind]) => kind === 'silent').map(([, drone]) => drone).sort()).toEqual(['alert-batt', 'alert-mode']);
    const silent = events.find((e) => e['event'] === 'silent')!;
    expect(silent['silent_seconds']).toBeGreaterThanOrEqual(2);
    expect(sink.stats().live?.events).toEqual({ emergency: 2, battery_low: 2, silent: 2 });
  });
});
