import type http from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import type { MqttClient } from 'mqtt';
import { ColumnsBuilder, encodeColumnar } from '../proto/columnar';
import { LAKE_COLUMNS } from '../proto/columns';
import { nowMicros } from '../proto/time';
import { FlightState, type TelemetryPoint } from '../proto/types';
import { eventsTopic, ID_PATTERN, liveTopic } from '../proto/topics';

// The live output port: the points the sink accepted (valid, not duplicates), for consumers
// that cannot wait for files. One MQTT message per drone per delivery, on
// dronelake/v1/live/{drone_id}: lake rows in JSON, or (--live-format v2) the points as a
// wire v2 ColumnarBatch; Server-Sent Events always carry the JSON rows. A slow
// consumer never slows the lake (invariant 6): send() never waits. MQTT messages go into a
// queue bounded in bytes (--live-queue-mib), written out at QoS 0 as fast as the broker link
// takes them, so a commit's burst is paced rather than dropped; only when the queue is full
// (the link down or stalled for longer than the bound covers) is its oldest message dropped,
// counted. The broker then drops and counts per consumer what a consumer cannot take
// (broker/consumers.ts). An SSE client that falls behind misses events, counted, and is told
// how many once it catches up.

/** When a point goes live: once durably in the lake (commit), or as soon as validated (accept). */
export const LIVE_AFTER = ['commit', 'accept'] as const;
export type LiveAfter = (typeof LIVE_AFTER)[number];

/** One point as the lake holds it: enums by name, times as RFC 3339 with microseconds. */
export type LiveRow = Record<string, string | number | boolean | null>;

/** How MQTT live messages are encoded: JSON rows, or a wire v2 ColumnarBatch of the points. */
export const LIVE_FORMATS = ['json', 'v2'] as const;
export type LiveFormat = (typeof LIVE_FORMATS)[number];

/** An accepted point waiting to go live, with what the lake adds to it. */
export interface LivePoint {
  point: TelemetryPoint;
  gatewayId: string;
  ingestedAtUs: number;
}

export type AlertKind = 'emergency' | 'battery_low' | 'silent';

export interface LiveSettings {
  after: LiveAfter;
  format: LiveFormat;
  /** battery_low fires when a drone's battery_pct falls below this. */
  alertBatteryPct: number;
  /** silent fires when a drone sent nothing for this many seconds; 0 turns it off. */
  alertSilenceSeconds: number;
}

export interface LiveStats {
  points: number;
  messages: number;
  /** Points written to the broker link; with the dropped and the queued ones, `points`. */
  mqttPublishedPoints: number;
  /** Points dropped from a full queue (the broker link down or stalled), or still queued at shutdown. */
  mqttDroppedPoints: number;
  /** Alerts dropped likewise. */
  mqttDroppedAlerts: number;
  /** What waits in the queue for the broker link now. */
  mqttQueuedPoints: number;
  mqttQueuedBytes: number;
  sseClients: number;
  /** Points and alerts not sent to an SSE client that was behind, all clients. */
  sseDroppedPoints: number;
  sseDroppedAlerts: number;
  /** SSE clients disconnected for staying behind SSE_MAX_BEHIND_MS. */
  sseDisconnected: number;
  events: Record<AlertKind, number>;
}

/** The port's MQTT connection to the broker, as the queue sees it. */
export interface LiveLink {
  /** Bytes written to the connection that its socket has not yet handed on; null while it is down. */
  unsent(): number | null;
  /** Writes one message at QoS 0; called only while the link is up. */
  publish(topic: string, payload: string | Uint8Array): void;
  /** Calls `wake` once, when the socket drains or the connection comes (back) up. */
  wait(wake: () => void): void;
}

/** A connection of the sink's own to the broker as the port's link. */
export function mqttLiveLink(client: MqttClient): LiveLink {
  return {
    unsent: () => (client.connected ? client.stream.writableLength : null),
    publish: (topic, payload) => client.publish(topic, typeof payload === 'string' ? payload : Buffer.from(payload.buffer, payload.byteOffset, payload.length), { qos: 0 }),
    wait(wake) {
      const stream = client.stream;
      const once = (): void => {
        stream.off('drain', once);
        client.off('connect', once);
        wake();
      };
      // A socket holding more than its high-water mark emits 'drain' once it has handed
      // everything on; a closed one never does, and the reconnect wakes the queue instead.
      if (client.connected) stream.on('drain', once);
      client.on('connect', once);
    },
  };
}

export interface LivePort {
  readonly settings: LiveSettings;
  /** Publishes points, in order; called per batch (accept) or per commit (commit). Never waits. */
  send(points: readonly LivePoint[]): void;
  /** GET /live?drone=ID[,ID...]: an SSE stream of `points` and `alert` events. */
  sse(req: http.IncomingMessage, res: http.ServerResponse): void;
  stats(): LiveStats;
  /** Ends SSE streams, gives the queue up to LIVE_CLOSE_MS to reach the broker, and counts what is left as dropped. */
  close(): Promise<void>;
}

/** Microseconds since the epoch as RFC 3339 UTC, keeping all six digits. */
const micros = (us: number): string => `${new Date(Math.floor(us / 1000)).toISOString().slice(0, 19)}.${String(us % 1_000_000).padStart(6, '0')}Z`;

const POINT_COLUMNS = LAKE_COLUMNS.filter((c) => c.origin === 'point');
const EMERGENCY = LAKE_COLUMNS.find((c) => c.name === 'flight_state')!.enumNames![FlightState.emergency]!;

/** A point as a lake row, its columns derived from the contract like the Parquet files'. */
function liveRow({ point: p, gatewayId, ingestedAtUs }: LivePoint): LiveRow {
  const row: LiveRow = {};
  for (const column of POINT_COLUMNS) {
    const v = p[column.name as keyof TelemetryPoint];
    if (v == null) row[column.name] = null;
    else if (column.enumNames) row[column.name] = column.enumNames[v as number] ?? null;
    else if (column.kind === 'timestamp') row[column.name] = micros(v as number);
    else row[column.name] = v;
  }
  row['gateway_id'] = gatewayId;
  row['ingested_at'] = micros(ingestedAtUs);
  return row;
}

/**
 * Bytes the queue lets the link's socket hold unsent before it waits for a drain: enough to
 * keep a loopback or LAN link busy between wake-ups, small beside the queue's bound.
 */
const LIVE_SOCKET_BYTES = 1024 * 1024;
/** How long a closing port waits for its queue to reach the broker. */
const LIVE_CLOSE_MS = 2000;

/** A message waiting for the broker link: `points` 0 for an alert. */
interface Queued {
  topic: string;
  payload: string | Uint8Array;
  bytes: number;
  points: number;
}

/** A write of more than this many bytes still waiting means the SSE client is behind. */
const SSE_MAX_BUFFERED = 1024 * 1024;
/** An SSE client sent nothing for this long, for being behind, is disconnected: as the broker's --consumer-max-behind default. */
const SSE_MAX_BEHIND_MS = 5 * 60_000;

interface DroneState {
  battery: number | null;
  emergency: boolean;
  lastSeenMs: number;
}

interface SseClient {
  res: http.ServerResponse;
  /** Drone ids to send, or null for all. */
  drones: Set<string> | null;
  /** What was dropped for it since it was last told, in points and alerts. */
  missedPoints: number;
  missedAlerts: number;
  /** When its first drop since its last event happened; 0 while it keeps up. */
  behindSince: number;
}

/** `maxQueuedBytes` bounds the MQTT messages waiting for the broker link (invariant 6). */
export function createLivePort(settings: LiveSettings, link: LiveLink, maxQueuedBytes: number): LivePort {
  // sseClients is read off `clients` when asked for, not kept in step with it.
  const stats: Omit<LiveStats, 'sseClients'> = {
    points: 0,
    messages: 0,
    mqttPublishedPoints: 0,
    mqttDroppedPoints: 0,
    mqttDroppedAlerts: 0,
    mqttQueuedPoints: 0,
    mqttQueuedBytes: 0,
    sseDroppedPoints: 0,
    sseDroppedAlerts: 0,
    sseDisconnected: 0,
    events: { emergency: 0, battery_low: 0, silent: 0 },
  };
  const drones = new Map<string, DroneState>();
  const clients = new Set<SseClient>();
  /** The MQTT queue, oldest first from `head`; one entry per message, not per point. */
  let queue: Queued[] = [];
  let head = 0;
  let waiting = false;

  function dequeue(): Queued {
    const m = queue[head++]!;
    stats.mqttQueuedBytes -= m.bytes;
    stats.mqttQueuedPoints -= m.points;
    // The consumed front is cut off now and then, so the array stays the size of what waits.
    if (head === queue.length || (head >= 1024 && head * 2 >= queue.length)) {
      queue = queue.slice(head);
      head = 0;
    }
    return m;
  }

  function drop(m: Queued): void {
    if (m.points > 0) stats.mqttDroppedPoints += m.points;
    else stats.mqttDroppedAlerts++;
  }

  /** Writes what waits while the link takes it; otherwise asks to be woken when it can take more. */
  function pump(): void {
    while (head < queue.length) {
      const unsent = link.unsent();
      if (unsent === null || unsent >= LIVE_SOCKET_BYTES) {
        if (!waiting) {
          waiting = true;
          link.wait(() => {
            waiting = false;
            pump();
          });
        }
        return;
      }
      const m = dequeue();
      link.publish(m.topic, m.payload);
      stats.mqttPublishedPoints += m.points;
    }
  }

  function publish(topic: string, payload: string | Uint8Array, points: number): void {
    const bytes = typeof payload === 'string' ? Buffer.byteLength(payload) : payload.length;
    queue.push({ topic, payload, bytes, points });
    stats.mqttQueuedBytes += bytes;
    stats.mqttQueuedPoints += points;
    // Invariant 6: the queue never holds more than its bound; the oldest go first, counted.
    while (stats.mqttQueuedBytes > maxQueuedBytes) drop(dequeue());
  }

  /** `points`: the rows in `json`, 0 for an alert. */
  function toSse(event: 'points' | 'alert', droneId: string, json: string, points: number): void {
    for (const client of clients) {
      if (client.drones && !client.drones.has(droneId)) continue;
      if (client.res.writableLength > SSE_MAX_BUFFERED) {
        // Invariant 6: a reader that does not keep up is not buffered for: it misses this
        // event, counted, and hears the count once it catches up.
        if (event === 'points') {
          client.missedPoints += points;
          stats.sseDroppedPoints += points;
        } else {
          client.missedAlerts++;
          stats.sseDroppedAlerts++;
        }
        const now = Date.now();
        if (client.behindSince === 0) client.behindSince = now;
        else if (now - client.behindSince >= SSE_MAX_BEHIND_MS) {
          stats.sseDisconnected++;
          clients.delete(client);
          client.res.destroy();
        }
        continue;
      }
      if (client.behindSince !== 0) {
        client.res.write(`event: dropped\ndata: {"points":${client.missedPoints},"alerts":${client.missedAlerts}}\n\n`);
        client.missedPoints = 0;
        client.missedAlerts = 0;
        client.behindSince = 0;
      }
      client.res.write(`event: ${event}\ndata: ${json}\n\n`);
    }
  }

  function alert(kind: AlertKind, droneId: string, body: Record<string, unknown>): void {
    stats.events[kind]++;
    const json = JSON.stringify({ event: kind, drone_id: droneId, at: new Date().toISOString(), ...body });
    publish(eventsTopic(droneId), json, 0);
    toSse('alert', droneId, json, 0);
  }

  /** The documented conditions: entering emergency, and falling below the battery threshold; each fires on the change, not on every point. */
  function watch(p: TelemetryPoint, nowMs: number): void {
    const droneId = p.drone_id;
    let state = drones.get(droneId);
    if (!state) drones.set(droneId, (state = { battery: null, emergency: false, lastSeenMs: nowMs }));
    state.lastSeenMs = nowMs;
    const emergency = p.flight_state === FlightState.emergency;
    if (emergency && !state.emergency) alert('emergency', droneId, { ts: micros(p.ts), flight_state: EMERGENCY });
    state.emergency = emergency || (p.flight_state == null && state.emergency);
    const battery = p.battery_pct;
    if (battery != null) {
      if (battery < settings.alertBatteryPct && (state.battery === null || state.battery >= settings.alertBatteryPct)) {
        alert('battery_low', droneId, { ts: micros(p.ts), battery_pct: battery, threshold_pct: settings.alertBatteryPct });
      }
      state.battery = battery;
    }
  }

  /** A drone's points as one MQTT message in the port's format. */
  function message(list: readonly LivePoint[], json: string): string | Uint8Array {
    if (settings.format === 'json') return json;
    const builder = new ColumnsBuilder(list.length);
    for (const { point } of list) builder.add(point);
    // The batch names the gateway of the drone's first point; batch_seq numbers the port's messages.
    return encodeColumnar({ gatewayId: list[0]!.gatewayId, batchSeq: stats.messages, sentAt: nowMicros() }, builder.view());
  }

  const silenceMs = settings.alertSilenceSeconds * 1000;
  const silence =
    silenceMs > 0
      ? setInterval(() => {
          const now = Date.now();
          for (const [droneId, state] of drones) {
            if (now - state.lastSeenMs < silenceMs) continue;
            // Forgotten once reported, so the map holds only drones that are flying.
            drones.delete(droneId);
            alert('silent', droneId, { last_seen: new Date(state.lastSeenMs).toISOString(), silent_seconds: Math.round((now - state.lastSeenMs) / 1000) });
          }
          pump();
        }, Math.min(1000, silenceMs / 4))
      : null;
  silence?.unref();

  return {
    settings,
    send(points) {
      if (points.length === 0) return;
      const now = Date.now();
      const byDrone = new Map<string, LivePoint[]>();
      for (const live of points) {
        const droneId = live.point.drone_id;
        const list = byDrone.get(droneId);
        if (list) list.push(live);
        else byDrone.set(droneId, [live]);
        watch(live.point, now);
      }
      for (const [droneId, list] of byDrone) {
        const json = JSON.stringify(list.map(liveRow));
        stats.points += list.length;
        publish(liveTopic(droneId), message(list, json), list.length);
        stats.messages++;
        toSse('points', droneId, json, list.length);
      }
      // Alerts raised by watch() are queued too: the whole delivery goes out as one paced burst.
      pump();
    },
    sse(req, res) {
      const query = new URL(req.url ?? '/', 'http://localhost').searchParams;
      const ids = query.getAll('drone').flatMap((d) => d.split(',')).filter((d) => d.length > 0);
      const bad = ids.find((d) => !ID_PATTERN.test(d));
      if (bad !== undefined) {
        res.writeHead(400, { 'Content-Type': 'application/json' });
        res.end(`${JSON.stringify({ error: `drone ${JSON.stringify(bad.slice(0, 80))} is not a drone id` })}\n`);
        return;
      }
      res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache', Connection: 'keep-alive' });
      res.write(`: dronelake live port, points ${settings.after === 'commit' ? 'once committed' : 'as accepted'}\n\n`);
      const client: SseClient = { res, drones: ids.length > 0 ? new Set(ids) : null, missedPoints: 0, missedAlerts: 0, behindSince: 0 };
      clients.add(client);
      res.on('close', () => clients.delete(client));
    },
    stats: () => ({ ...stats, sseClients: clients.size, events: { ...stats.events } }),
    async close() {
      if (silence) clearInterval(silence);
      for (const client of clients) client.res.end();
      clients.clear();
      // The last commit's points go out if the link takes them soon; a down or stalled link
      // does not hold up shutdown. Polled: a drain may never come.
      const end = Date.now() + LIVE_CLOSE_MS;
      for (let unsent = link.unsent(); unsent !== null && (head < queue.length || unsent > 0) && Date.now() < end; unsent = link.unsent()) {
        pump();
        await sleep(20);
      }
      while (head < queue.length) drop(dequeue());
    },
  };
}
