import type http from 'node:http';
import { ColumnsBuilder, encodeColumnar } from '../proto/columnar';
import { LAKE_COLUMNS } from '../proto/columns';
import { nowMicros } from '../proto/time';
import { FlightState, type TelemetryPoint } from '../proto/types';
import { eventsTopic, ID_PATTERN, liveTopic } from '../proto/topics';

// The live output port: the points the sink accepted (valid, not duplicates), for consumers
// that cannot wait for files. One MQTT message per drone per delivery, on
// dronelake/v1/live/{drone_id}: lake rows in JSON, or (--live-format v2) the points as a
// wire v2 ColumnarBatch; Server-Sent Events always carry the JSON rows. A slow
// consumer never slows the lake (invariant 6): MQTT goes out at QoS 0 and is dropped,
// counted, while the broker link is down or backed up (the broker then drops and counts per
// consumer, broker/consumers.ts); an SSE client that falls behind misses events, counted,
// and is told how many once it catches up.

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
  /** Points not published on MQTT because the broker link was down or backed up. */
  mqttDroppedPoints: number;
  sseClients: number;
  /** Points and alerts not sent to an SSE client that was behind, all clients. */
  sseDroppedPoints: number;
  sseDroppedAlerts: number;
  /** SSE clients disconnected for staying behind SSE_MAX_BEHIND_MS. */
  sseDisconnected: number;
  events: Record<AlertKind, number>;
}

/** Where the port publishes: false when the message was dropped (no broker link). */
export type LivePublish = (topic: string, payload: string | Uint8Array) => boolean;

export interface LivePort {
  readonly settings: LiveSettings;
  /** Publishes points, in order; called per batch (accept) or per commit (commit). */
  send(points: readonly LivePoint[]): void;
  /** GET /live?drone=ID[,ID...]: an SSE stream of `points` and `alert` events. */
  sse(req: http.IncomingMessage, res: http.ServerResponse): void;
  stats(): LiveStats;
  close(): void;
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

export function createLivePort(settings: LiveSettings, publish: LivePublish): LivePort {
  // sseClients is read off `clients` when asked for, not kept in step with it.
  const stats: Omit<LiveStats, 'sseClients'> = { points: 0, messages: 0, mqttDroppedPoints: 0, sseDroppedPoints: 0, sseDroppedAlerts: 0, sseDisconnected: 0, events: { emergency: 0, battery_low: 0, silent: 0 } };
  const drones = new Map<string, DroneState>();
  const clients = new Set<SseClient>();

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
    publish(eventsTopic(droneId), json);
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
        if (!publish(liveTopic(droneId), message(list, json))) stats.mqttDroppedPoints += list.length;
        stats.messages++;
        toSse('points', droneId, json, list.length);
      }
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
    close() {
      if (silence) clearInterval(silence);
      for (const client of clients) client.res.end();
      clients.clear();
    },
  };
}
