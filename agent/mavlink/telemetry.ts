import type { TelemetryPoint } from '../../proto/types';
import type { Frame } from './frame';
import { flightState, MAV_AUTOPILOT_INVALID, MAV_MODE_FLAG_SAFETY_ARMED, MAV_TYPE_GCS } from './modes';
import { newFramingStats, type FramingStats } from './scanner';

// Message ids and the payload offsets read here (MAVLink common.xml / minimal.xml).
const HEARTBEAT = 0;
const SYS_STATUS = 1;
const GPS_RAW_INT = 24;
const ATTITUDE = 30;
const GLOBAL_POSITION_INT = 33;
const VFR_HUD = 74;
const BATTERY_STATUS = 147;
// The longest payload read: BATTERY_STATUS up to voltages_ext.
const MAX_READ = 49;

const UINT16_MAX = 0xffff;
const SATELLITES_UNKNOWN = 255;
// GPS_FIX_TYPE 7 (STATIC) and 8 (PPP) are 3D fixes at least; the contract's enum stops at 6.
const FIX_3D = 3;
const MAX_CONTRACT_FIX = 6;

export const MESSAGE_NAMES = ['heartbeat', 'sys_status', 'gps_raw_int', 'attitude', 'global_position_int', 'vfr_hud', 'battery_status'] as const;
export type MessageName = (typeof MESSAGE_NAMES)[number];
const MESSAGE_BY_ID: Readonly<Record<number, MessageName>> = {
  [HEARTBEAT]: 'heartbeat',
  [SYS_STATUS]: 'sys_status',
  [GPS_RAW_INT]: 'gps_raw_int',
  [ATTITUDE]: 'attitude',
  [GLOBAL_POSITION_INT]: 'global_position_int',
  [VFR_HUD]: 'vfr_hud',
  [BATTERY_STATUS]: 'battery_status',
};

export interface MavlinkStats extends FramingStats {
  /** Valid packets of each message type the points are built from. */
  messages: Record<MessageName, number>;
  /** Heartbeats of ground stations and other non-autopilot components, ignored. */
  ignoredHeartbeats: number;
  /** Vehicles (system ids) seen. */
  vehicles: number;
  points: number;
  /** Points without a position (lat = lon = 0: no GPS fix yet); emitted with lat, lon and alt_m null. */
  noFix: number;
  /** Position reports not turned into points: over the rate limit, repeated (same time_boot_ms), or while the agent was full. */
  skipped: { downsampled: number; duplicate: number; paused: number };
}

export function newMavlinkStats(): MavlinkStats {
  return {
    ...newFramingStats(),
    messages: Object.fromEntries(MESSAGE_NAMES.map((n) => [n, 0])) as Record<MessageName, number>,
    ignoredHeartbeats: 0,
    vehicles: 0,
    points: 0,
    noFix: 0,
    skipped: { downsampled: 0, duplicate: 0, paused: 0 },
  };
}

export interface TelemetryOptions {
  droneId: (sysid: number) => string;
  /** At most this many points per second of event time per vehicle; 0 keeps every position report. */
  hz: number;
  /** The seq of a vehicle's first point, read when the vehicle is first seen. */
  firstSeq: (droneId: string) => number;
  emit: (point: TelemetryPoint) => void;
  /** False while the agent is full: the state still follows the vehicle, but no point is made. */
  canEmit: () => boolean;
  /**
   * Event time of a raw stream, which has no timestamps: a vehicle's first position report
   * is at this time (µs), and later ones follow by their time_boot_ms.
   */
  rawStartUs?: number;
}

/** What is known of one vehicle: the latest value of each field, null when unknown. */
interface Vehicle {
  /** One point object per vehicle: the batcher encodes a point as it is emitted. */
  readonly point: TelemetryPoint;
  seq: number;
  lastSlot: number;
  lastBootMs: number;
  /** Raw streams: event time = bootAnchorUs + time_boot_ms * 1000. */
  bootAnchorUs: number;
  lastTs: number;
  sysPct: number | null;
  sysVolts: number | null;
  batPct: number | null;
  batVolts: number | null;
  hudHeading: number | null;
  yawHeading: number | null;
}

/**
 * Turns MAVLink packets into telemetry points: one per GLOBAL_POSITION_INT, carrying the
 * latest values of the vehicle's other messages. Units are converted exactly (integers are
 * divided, never multiplied by a rounded factor) and values meaning "unknown" become null.
 */
export class MavlinkTelemetry {
  readonly stats = newMavlinkStats();
  private readonly vehicles = new Map<number, Vehicle>();
  // Payloads are copied here and zero-extended: MAVLink 2 trims trailing zero bytes.
  private readonly payload = new DataView(new ArrayBuffer(256));
  private readonly payloadBytes = new Uint8Array(this.payload.buffer);
  private readonly slotUs: number;

  constructor(private readonly opts: TelemetryOptions) {
    this.slotUs = opts.hz > 0 ? 1e6 / opts.hz : 0;
  }

  /** Handles one valid frame; `tsUs` is its event time, or null in a raw stream. */
  onFrame(buf: Uint8Array, frame: Frame, tsUs: number | null): void {
    const name = MESSAGE_BY_ID[frame.msgid];
    if (name === undefined) return;
    this.stats.messages[name]++;
    const n = Math.min(frame.payloadLen, MAX_READ);
    const bytes = this.payloadBytes;
    for (let k = 0; k < n; k++) bytes[k] = buf[frame.payloadAt + k]!;
    bytes.fill(0, n, MAX_READ);
    const p = this.payload;
    if (frame.msgid === HEARTBEAT) {
      const type = p.getUint8(4);
      const autopilot = p.getUint8(5);
      if (type === MAV_TYPE_GCS || autopilot === MAV_AUTOPILOT_INVALID) {
        this.stats.ignoredHeartbeats++;
        return;
      }
      const baseMode = p.getUint8(6);
      const v = this.vehicle(frame.sysid);
      v.point.armed = (baseMode & MAV_MODE_FLAG_SAFETY_ARMED) !== 0;
      v.point.flight_state = flightState(type, autopilot, baseMode, p.getUint32(0, true), p.getUint8(7));
      return;
    }
    const v = this.vehicle(frame.sysid);
    switch (frame.msgid) {
      case SYS_STATUS: {
        const mv = p.getUint16(14, true);
        v.sysVolts = mv === 0 || mv === UINT16_MAX ? null : mv / 1000;
        v.sysPct = percent(p.getInt8(30));
        return;
      }
      case BATTERY_STATUS: {
        // Other ids are other batteries (payload, avionics); the point carries the main one.
        if (p.getUint8(32) !== 0) return;
        let mv = 0;
        let cells = 0;
        for (let at = 10; at < 30; at += 2) {
          const c = p.getUint16(at, true);
          if (c !== UINT16_MAX) {
            mv += c;
            cells++;
          }
        }
        // voltages_ext marks an absent cell with 0 as well.
        for (let at = 41; at < 49; at += 2) {
          const c = p.getUint16(at, true);
          if (c !== UINT16_MAX && c !== 0) {
            mv += c;
            cells++;
          }
        }
        v.batVolts = cells > 0 && mv > 0 ? mv / 1000 : null;
        v.batPct = percent(p.getInt8(35));
        return;
      }
      case GPS_RAW_INT: {
        const fix = p.getUint8(28);
        // 0 is NO_GPS: no receiver, so the fix is unknown rather than "none".
        v.point.gps_fix = fix === 0 ? null : fix > MAX_CONTRACT_FIX ? FIX_3D : fix;
        const sats = p.getUint8(29);
        v.point.satellites = sats === SATELLITES_UNKNOWN ? null : sats;
        return;
      }
      case VFR_HUD: {
        const h = p.getInt16(16, true);
        v.hudHeading = h >= 0 && h <= 360 ? h % 360 : null;
        return;
      }
      case ATTITUDE: {
        const yaw = p.getFloat32(12, true);
        v.yawHeading = Number.isFinite(yaw) ? (((yaw * 180) / Math.PI) % 360 + 360) % 360 : null;
        return;
      }
      case GLOBAL_POSITION_INT:
        this.position(v, tsUs);
        return;
    }
  }

  private position(v: Vehicle, tsUs: number | null): void {
    const p = this.payload;
    const { stats, opts } = this;
    const bootMs = p.getUint32(0, true);
    // Redundant links (two radios, a router that loops) deliver the same report twice.
    if (bootMs === v.lastBootMs) {
      stats.skipped.duplicate++;
      return;
    }
    const rebooted = bootMs < v.lastBootMs;
    v.lastBootMs = bootMs;
    let ts: number;
    if (tsUs !== null) {
      ts = tsUs;
    } else {
      if (opts.rawStartUs === undefined) throw new Error('a raw MAVLink stream needs a start time');
      // After a reboot the boot clock starts over: the next report follows the last one.
      if (v.lastTs === 0) v.bootAnchorUs = opts.rawStartUs - bootMs * 1000;
      else if (rebooted) v.bootAnchorUs = v.lastTs + 1000 - bootMs * 1000;
      ts = v.bootAnchorUs + bootMs * 1000;
    }
    v.lastTs = ts;
    if (this.slotUs > 0) {
      const slot = Math.floor(ts / this.slotUs);
      // Equal, not lower-or-equal: a clock stepped back must not silence a vehicle.
      if (slot === v.lastSlot) {
        stats.skipped.downsampled++;
        return;
      }
      v.lastSlot = slot;
    }
    if (!opts.canEmit()) {
      stats.skipped.paused++;
      return;
    }
    const point = v.point;
    const lat = p.getInt32(4, true);
    const lon = p.getInt32(8, true);
    if (lat === 0 && lon === 0) {
      // Before a GPS fix autopilots report 0/0 and an altitude that means nothing.
      point.lat = point.lon = point.alt_m = null;
      stats.noFix++;
    } else {
      point.lat = lat / 1e7;
      point.lon = lon / 1e7;
      point.alt_m = p.getInt32(12, true) / 1000;
    }
    point.rel_alt_m = p.getInt32(16, true) / 1000;
    const vx = p.getInt16(20, true);
    const vy = p.getInt16(22, true);
    // The components are whole cm/s, so is their magnitude: the digits of the square root
    // past that are no measurement, and would cost 8 bytes a point on the wire (wire v2
    // sends decimal values as small integers).
    point.ground_speed_mps = Math.round(Math.sqrt(vx * vx + vy * vy)) / 100;
    // NED: vz is positive down, the contract's vertical speed up; `|| 0` keeps -0 out of the lake.
    point.vertical_speed_mps = -p.getInt16(24, true) / 100 || 0;
    const hdg = p.getUint16(26, true);
    point.heading_deg = hdg !== UINT16_MAX ? (hdg % 36000) / 100 : (v.hudHeading ?? v.yawHeading);
    point.battery_pct = v.batPct ?? v.sysPct;
    point.battery_voltage_v = v.batVolts ?? v.sysVolts;
    point.ts = ts;
    point.seq = v.seq++;
    stats.points++;
    opts.emit(point);
  }

  private vehicle(sysid: number): Vehicle {
    let v = this.vehicles.get(sysid);
    if (v === undefined) {
      const droneId = this.opts.droneId(sysid);
      const seq = this.opts.firstSeq(droneId);
      if (!Number.isSafeInteger(seq) || seq < 0) throw new RangeError(`firstSeq(${droneId}) gave ${seq}`);
      v = {
        point: { drone_id: droneId, seq, ts: 0, gps_fix: null, satellites: null, flight_state: null, armed: null },
        seq,
        lastSlot: -1,
        lastBootMs: -1,
        bootAnchorUs: 0,
        lastTs: 0,
        sysPct: null,
        sysVolts: null,
        batPct: null,
        batVolts: null,
        hudHeading: null,
        yawHeading: null,
      };
      this.vehicles.set(sysid, v);
      this.stats.vehicles++;
    }
    return v;
  }
}

/** battery_remaining: -1 means unknown; anything outside 0-100 cannot be a charge. */
const percent = (v: number): number | null => (v >= 0 && v <= 100 ? v : null);
