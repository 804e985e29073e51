import dgram from 'node:dgram';
import { once } from 'node:events';
import path from 'node:path';
import mqtt from 'mqtt';
import { common, minimal, MavLinkProtocolV1, MavLinkProtocolV2, type MavLinkData } from 'node-mavlink';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAgent } from '../agent/agent';
import { droneIdOf, parseDroneTable, parseEndpoints } from '../agent/mavlink/config';
import { flightState } from '../agent/mavlink/modes';
import { openMavlinkUdp, type MavlinkUdpSource } from '../agent/mavlink/udp';
import { agentConfig } from '../agent/options';
import type { SourceOutput } from '../agent/source';
import { startBroker, type Broker } from '../broker/server';
import { nowMicros } from '../proto/time';
import { FlightState, GpsFix, type TelemetryPoint } from '../proto/types';
import { freePort, observedBatch, quietLog, tempDir, TELEMETRY_FILTERS, waitFor } from './helpers';

// MAVLink enum values used below (common.xml).
const MAV_TYPE_FIXED_WING = 1;
const MAV_TYPE_QUADROTOR = 2;
const MAV_TYPE_GCS = 6;
const MAV_AUTOPILOT_ARDUPILOTMEGA = 3;
const MAV_AUTOPILOT_INVALID = 8;
const MAV_AUTOPILOT_PX4 = 12;
const ARMED = 0x80 | 0x01;
const DISARMED = 0x01;
const COPTER_RTL = 6;
const COPTER_LAND = 9;

function heartbeat(type: number, autopilot: number, baseMode: number, customMode: number, systemStatus = 4): MavLinkData {
  return Object.assign(new minimal.Heartbeat(), { type, autopilot, baseMode, customMode, systemStatus, mavlinkVersion: 3 });
}

function position(timeBootMs: number, fields: Partial<Record<'lat' | 'lon' | 'alt' | 'relativeAlt' | 'vx' | 'vy' | 'vz' | 'hdg', number>> = {}): MavLinkData {
  return Object.assign(new common.GlobalPositionInt(), { timeBootMs, lat: 473977420, lon: 85455940, alt: 488120, relativeAlt: 30250, vx: 300, vy: 400, vz: -150, hdg: 9005, ...fields });
}

function sysStatus(voltageBattery: number, batteryRemaining: number): MavLinkData {
  return Object.assign(new common.SysStatus(), {
    onboardControlSensorsPresent: 0,
    onboardControlSensorsEnabled: 0,
    onboardControlSensorsHealth: 0,
    load: 0,
    voltageBattery,
    currentBattery: -1,
    batteryRemaining,
    dropRateComm: 0,
    errorsComm: 0,
    errorsCount1: 0,
    errorsCount2: 0,
    errorsCount3: 0,
    errorsCount4: 0,
  });
}

function batteryStatus(id: number, cells: number[], batteryRemaining: number): MavLinkData {
  const voltages = [...cells, ...new Array<number>(10 - cells.length).fill(0xffff)];
  return Object.assign(new common.BatteryStatus(), {
    id,
    batteryFunction: 1,
    type: 1,
    temperature: 32767,
    voltages,
    currentBattery: -1,
    currentConsumed: -1,
    energyConsumed: -1,
    batteryRemaining,
    timeRemaining: 0,
    chargeState: 1,
    voltagesExt: [0, 0, 0, 0],
    mode: 0,
    faultBitmask: 0,
  });
}

function gpsRaw(fixType: number, satellitesVisible: number): MavLinkData {
  return Object.assign(new common.GpsRawInt(), { timeUsec: 0n, fixType, lat: 0, lon: 0, alt: 0, eph: 65535, epv: 65535, vel: 0, cog: 0, satellitesVisible });
}

let mavSeq = 0;
const v2 = (sysid: number, msg: MavLinkData, compid = 1) => new MavLinkProtocolV2(sysid, compid).serialize(msg, mavSeq++ & 0xff);
const v1 = (sysid: number, msg: MavLinkData, compid = 1) => new MavLinkProtocolV1(sysid, compid).serialize(msg, mavSeq++ & 0xff);

/** A UDP sender on loopback, as a MAVLink router would be. */
async function sender(address: string) {
  const [{ host, port }] = parseEndpoints(address) as [{ host: string; port: number }];
  const socket = dgram.createSocket('udp4');
  return {
    send: async (...datagrams: Buffer[]) => {
      for (const d of datagrams) await new Promise<void>((resolve, reject) => socket.send(d, port, host, (err) => (err ? reject(err) : resolve())));
    },
    close: () => new Promise<void>((resolve) => socket.close(() => resolve())),
  };
}

/** A source output that records copies of what it is given. */
function recorder(accepting = () => true): SourceOutput & { points: TelemetryPoint[] } {
  const points: TelemetryPoint[] = [];
  return {
    points,
    emit: (p) => points.push({ ...p }),
    get accepting() {
      return accepting();
    },
    flush: async () => {},
  };
}

describe('the MAVLink UDP source', () => {
  let source: MavlinkUdpSource;
  let out: ReturnType<typeof recorder>;
  let accepting = true;
  let link: Awaited<ReturnType<typeof sender>>;
  const seqStart = new Map([['drone-a', 41]]);

  beforeAll(async () => {
    source = await openMavlinkUdp({
      endpoints: parseEndpoints('udp:127.0.0.1:0'),
      droneId: droneIdOf('gw-u', parseDroneTable('7=drone-a')),
      hz: 0,
      firstSeq: (id) => seqStart.get(id) ?? 0,
    });
    out = recorder(() => accepting);
    source.start(out);
    link = await sender(source.addresses[0]!);
  });
  afterAll(async () => {
    await link.close();
    await source.stop();
  });

  const packetsAfter = async (before: number, n: number) => waitFor(`${n} packets`, () => source.stats().packets + source.stats().unknownMessages >= before + n || undefined, 5000);

  it('converts units exactly, v1 and v2 alike, and fills the latest state of the other messages', async () => {
    const before = source.stats().packets;
    await link.send(
      v2(7, heartbeat(MAV_TYPE_QUADROTOR, MAV_AUTOPILOT_ARDUPILOTMEGA, ARMED, COPTER_RTL)),
      v2(7, sysStatus(15_872, 64)),
      v2(7, gpsRaw(3, 14)),
      v2(7, position(1000)),
      v1(7, position(1200, { lat: -338688000, lon: 1512093000, alt: -1500, relativeAlt: 0, vx: 0, vy: 0, vz: 250, hdg: 0 })),
    );
    const t0 = nowMicros();
    await packetsAfter(before, 5);
    const [a, b] = out.points;
    expect(out.points.length).toBe(2);
    expect(a).toMatchObject({
      drone_id: 'drone-a',
      seq: 41,
      lat: 47.397742,
      lon: 8.545594,
      alt_m: 488.12,
      rel_alt_m: 30.25,
      ground_speed_mps: 5,
      vertical_speed_mps: 1.5,
      heading_deg: 90.05,
      battery_pct: 64,
      battery_voltage_v: 15.872,
      gps_fix: GpsFix.fix3d,
      satellites: 14,
      flight_state: FlightState.returning,
      armed: true,
    });
    expect(b).toMatchObject({ drone_id: 'drone-a', seq: 42, lat: -33.8688, lon: 151.2093, alt_m: -1.5, rel_alt_m: 0, ground_speed_mps: 0, vertical_speed_mps: -2.5, heading_deg: 0 });
    // Live points carry the time they were received.
    expect(Math.abs(a!.ts - t0)).toBeLessThan(5_000_000);
    expect(b!.ts).toBeGreaterThanOrEqual(a!.ts);
  });

  it('stores unknown values as null: no fix, unknown battery, unknown heading', async () => {
    const before = source.stats().packets;
    const n = out.points.length;
    const noFix = source.stats().noFix;
    await link.send(
      v2(9, sysStatus(0xffff, -1)),
      v2(9, gpsRaw(0, 255)),
      v2(9, position(5000, { lat: 0, lon: 0, alt: 0, hdg: 0xffff })),
      // An unknown SYS_STATUS does not hide what BATTERY_STATUS knows; cells marked UINT16_MAX are absent.
      v2(9, batteryStatus(0, [4100, 4100, 4100, 4100], -1)),
      v2(9, sysStatus(0, 55)),
      // A second battery (id 1) is not the main one.
      v2(9, batteryStatus(1, [3000], 3)),
      v2(9, Object.assign(new common.VfrHud(), { airspeed: 0, groundspeed: 0, heading: 271, throttle: 0, alt: 0, climb: 0 })),
      v2(9, position(5200, { hdg: 0xffff })),
    );
    await packetsAfter(before, 8);
    const [p, q] = out.points.slice(n);
    expect(p).toMatchObject({ drone_id: 'gw-u-sys9', seq: 0, lat: null, lon: null, alt_m: null, rel_alt_m: 30.25, heading_deg: null, battery_pct: null, battery_voltage_v: null, gps_fix: null, satellites: null, armed: null, flight_state: null });
    expect(q).toMatchObject({ lat: 47.397742, heading_deg: 271, battery_voltage_v: 16.4, battery_pct: 55 });
    expect(source.stats().noFix).toBe(noFix + 1);
  });

  it('ignores ground-station heartbeats and maps flight modes; disarmed is idle', async () => {
    const before = source.stats().packets;
    const n = out.points.length;
    const ignored = source.stats().ignoredHeartbeats;
    await link.send(
      v2(11, heartbeat(MAV_TYPE_QUADROTOR, MAV_AUTOPILOT_ARDUPILOTMEGA, ARMED, COPTER_LAND)),
      v2(11, position(100)),
      // A GCS (type 6, autopilot 8) on the same link, and another component of the vehicle with autopilot 8.
      v2(255, heartbeat(MAV_TYPE_GCS, MAV_AUTOPILOT_INVALID, 0, 0), 190),
      v2(11, heartbeat(18, MAV_AUTOPILOT_INVALID, 0, 0), 191),
      v2(11, position(200)),
      v2(11, heartbeat(MAV_TYPE_QUADROTOR, MAV_AUTOPILOT_ARDUPILOTMEGA, DISARMED, COPTER_LAND)),
      v2(11, position(300)),
      // PX4 AUTO.TAKEOFF: main mode 4, sub mode 2.
      v2(11, heartbeat(MAV_TYPE_QUADROTOR, MAV_AUTOPILOT_PX4, ARMED, (2 << 24) | (4 << 16))),
      v2(11, position(400)),
      // A custom mode no table knows.
      v2(11, heartbeat(MAV_TYPE_QUADROTOR, MAV_AUTOPILOT_ARDUPILOTMEGA, ARMED, 99)),
      v2(11, position(500)),
    );
    await packetsAfter(before, 11);
    expect(out.points.slice(n).map((p) => [p.flight_state, p.armed])).toEqual([
      [FlightState.landing, true],
      [FlightState.landing, true],
      [FlightState.idle, false],
      [FlightState.takeoff, true],
      [null, true],
    ]);
    expect(source.stats().ignoredHeartbeats).toBe(ignored + 2);
  });

  it('has a flight-mode table for ArduCopter, ArduPlane and PX4', () => {
    const armed = (type: number, autopilot: number, mode: number) => flightState(type, autopilot, ARMED, mode, 4);
    expect(armed(MAV_TYPE_QUADROTOR, MAV_AUTOPILOT_ARDUPILOTMEGA, 5)).toBe(FlightState.cruise); // LOITER
    expect(armed(MAV_TYPE_QUADROTOR, MAV_AUTOPILOT_ARDUPILOTMEGA, 21)).toBe(FlightState.returning); // SMART_RTL
    expect(armed(MAV_TYPE_FIXED_WING, MAV_AUTOPILOT_ARDUPILOTMEGA, 13)).toBe(FlightState.takeoff); // TAKEOFF
    expect(armed(MAV_TYPE_FIXED_WING, MAV_AUTOPILOT_ARDUPILOTMEGA, 21)).toBe(FlightState.returning); // QRTL
    expect(armed(MAV_TYPE_FIXED_WING, MAV_AUTOPILOT_ARDUPILOTMEGA, 20)).toBe(FlightState.landing); // QLAND
    // The same number means different modes on a copter and a plane: 9 is LAND on one, unused on the other.
    expect(armed(MAV_TYPE_FIXED_WING, MAV_AUTOPILOT_ARDUPILOTMEGA, 9)).toBeNull();
    expect(armed(MAV_TYPE_QUADROTOR, MAV_AUTOPILOT_PX4, 3 << 16)).toBe(FlightState.cruise); // POSCTL
    expect(armed(MAV_TYPE_QUADROTOR, MAV_AUTOPILOT_PX4, (5 << 24) | (4 << 16))).toBe(FlightState.returning); // AUTO.RTL
    expect(armed(MAV_TYPE_QUADROTOR, MAV_AUTOPILOT_PX4, (6 << 24) | (4 << 16))).toBe(FlightState.landing); // AUTO.LAND
    expect(armed(MAV_TYPE_QUADROTOR, 0, 5)).toBeNull(); // a generic autopilot
    expect(flightState(MAV_TYPE_QUADROTOR, MAV_AUTOPILOT_ARDUPILOTMEGA, ARMED, 5, 6)).toBe(FlightState.emergency); // MAV_STATE_EMERGENCY
    expect(flightState(MAV_TYPE_QUADROTOR, MAV_AUTOPILOT_ARDUPILOTMEGA, 0x80, 5, 4)).toBeNull(); // no custom mode
  });

  it('counts and skips garbage, bad CRCs and truncated packets, and keeps decoding', async () => {
    const s0 = { ...source.stats() };
    const n = out.points.length;
    const good = v2(13, position(100));
    const corrupt = Buffer.from(new MavLinkProtocolV2(13, 1).serialize(position(200), 0));
    corrupt[14] = corrupt[14]! ^ 0xff;
    const cut = new MavLinkProtocolV2(13, 1).serialize(position(300), 0).subarray(0, 20);
    // Exact counts need damaged bytes with no other STX inside, which would start a frame of its own.
    for (const b of [corrupt, cut]) expect(b.subarray(1).some((x) => x === 0xfd || x === 0xfe)).toBe(false);
    const garbage = Buffer.from('not mavlink at all');
    await link.send(
      Buffer.concat([garbage, good, garbage]),
      corrupt,
      cut,
      // A stray STX before a packet: read as a v1 HEARTBEAT of 5 bytes, it fails its CRC.
      Buffer.concat([v1(13, position(400)), Buffer.from([0xfe, 0x05]), v2(13, position(500))]),
    );
    await waitFor('the last position', () => out.points.length >= n + 3 || undefined, 5000);
    const s = source.stats();
    expect(out.points.slice(n).map((p) => p.seq)).toEqual([0, 1, 2]);
    expect(s.badCrc - s0.badCrc).toBe(2);
    expect(s.truncated - s0.truncated).toBe(1);
    expect(s.garbageBytes - s0.garbageBytes).toBe(2 * garbage.length + corrupt.length + 20 + 2);
    expect(s.packets - s0.packets).toBe(3);
  });

  it('drops a report received twice (same time_boot_ms), as from two links', async () => {
    const n = out.points.length;
    const duplicates = source.stats().skipped.duplicate;
    const same = v2(23, position(777));
    await link.send(same, same, v2(23, position(778)));
    await waitFor('both reports', () => out.points.length === n + 2 || undefined, 5000);
    expect(source.stats().skipped.duplicate).toBe(duplicates + 1);
  });

  it('keeps at most --mavlink-hz points per second per vehicle', async () => {
    const limited = await openMavlinkUdp({ endpoints: parseEndpoints('udp:127.0.0.1:0'), droneId: (s) => `gw-sys${s}`, hz: 5, firstSeq: () => 0 });
    const rec = recorder();
    limited.start(rec);
    const l = await sender(limited.addresses[0]!);
    try {
      const sent = 40;
      const from = nowMicros();
      for (let i = 0; i < sent; i++) await l.send(v2(1, position(1000 + i * 10)));
      await waitFor('every report', () => limited.stats().messages.global_position_int === sent || undefined, 5000);
      const to = nowMicros();
      // Slots are 200 ms of receive time: the first report always opens one, and the burst spans at most these.
      const slots = Math.floor(to / 200_000) - Math.floor(from / 200_000) + 1;
      expect(rec.points.length).toBeGreaterThanOrEqual(1);
      expect(rec.points.length).toBeLessThanOrEqual(slots);
      expect(rec.points.length + limited.stats().skipped.downsampled).toBe(sent);
      expect(new Set(rec.points.map((p) => Math.floor(p.ts / 200_000))).size).toBe(rec.points.length);
    } finally {
      await l.close();
      await limited.stop();
    }
  });

  it('drops (and counts) reports while the agent is full, but keeps following the vehicle', async () => {
    const before = source.stats().skipped.paused;
    const n = out.points.length;
    accepting = false;
    await link.send(v2(21, heartbeat(MAV_TYPE_QUADROTOR, MAV_AUTOPILOT_ARDUPILOTMEGA, ARMED, 5)), v2(21, position(100)));
    await waitFor('the paused report', () => source.stats().skipped.paused === before + 1 || undefined, 5000);
    accepting = true;
    await link.send(v2(21, position(200)));
    await waitFor('the next report', () => out.points.length === n + 1 || undefined, 5000);
    expect(out.points.at(-1)).toMatchObject({ drone_id: 'gw-u-sys21', seq: 0, flight_state: FlightState.cruise, armed: true });
  });
});

describe('the agent with --mavlink', () => {
  let broker: Broker;
  const cleanups: Array<() => Promise<unknown>> = [];
  beforeAll(async () => {
    broker = await startBroker({ host: '127.0.0.1', port: 0 }, quietLog);
    cleanups.push(() => broker.close());
  });
  afterAll(async () => {
    for (const c of cleanups.reverse()) await c();
  });

  it('continues each drone seq across a restart with the same spool, and exposes its counters as metrics', async () => {
    const { dir, remove } = await tempDir('mavlink-agent');
    cleanups.push(remove);
    const wire = new Map<string, TelemetryPoint>();
    const observer = await mqtt.connectAsync(broker.url, { clientId: 'mavlink-observer' });
    cleanups.push(() => observer.endAsync());
    observer.on('message', (topic, payload) => {
      for (const p of observedBatch(topic, payload).points) wire.set(`${p.drone_id}/${p.seq}`, p);
    });
    await observer.subscribeAsync(TELEMETRY_FILTERS);

    const httpPort = await freePort();
    // Two vehicles on one link, their reports interleaved: each one's last seq must reach the spool.
    const run = async (boots: Array<[sysid: number, bootMs: number]>) => {
      const config = agentConfig({ broker: broker.url, gateway: 'gw-m', spool: path.join(dir, 'spool'), mavlink: 'udp:127.0.0.1:0', mavlinkHz: 0, linger: 0.05, http: `127.0.0.1:${httpPort}` });
      const agent = await startAgent(config, quietLog);
      const link = await sender(agent.mavlink!.addresses[0]!);
      await link.send(Buffer.from([0xfd, 0x01, 0x00]), ...boots.map(([sysid, b]) => v2(sysid, position(b))));
      await waitFor('the points on the wire', () => agent.stats().pointsIn === boots.length && wire.size >= boots.length || undefined, 10_000);
      const metrics = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text();
      await link.close();
      await agent.close();
      return metrics;
    };
    const first = await run([[3, 10], [4, 10], [3, 20], [4, 20], [3, 30]]);
    expect(first).toMatch(/^dronelake_agent_mavlink_points_total 5$/m);
    expect(first).toMatch(/^dronelake_agent_mavlink_packets_total 5$/m);
    expect(first).toMatch(/^dronelake_agent_mavlink_truncated_total 1$/m);
    await run([[4, 30], [3, 40], [3, 50]]);
    await waitFor('eight points on the wire', () => wire.size === 8 || undefined, 10_000);
    const points = [...wire.values()].sort((a, b) => a.drone_id.localeCompare(b.drone_id) || a.seq - b.seq);
    expect(points.map((p) => `${p.drone_id}/${p.seq}`)).toEqual(['gw-m-sys3/0', 'gw-m-sys3/1', 'gw-m-sys3/2', 'gw-m-sys3/3', 'gw-m-sys3/4', 'gw-m-sys4/0', 'gw-m-sys4/1', 'gw-m-sys4/2']);
    expect(points[3]!.ts).toBeGreaterThan(points[2]!.ts);
  });

  it('fails to start, in one clear error, when the MAVLink port is taken', async () => {
    const taken = dgram.createSocket('udp4');
    taken.bind(0, '127.0.0.1');
    await once(taken, 'listening');
    cleanups.push(() => new Promise((r) => taken.close(() => r(undefined))));
    const { dir, remove } = await tempDir('mavlink-taken');
    cleanups.push(remove);
    const config = agentConfig({ broker: broker.url, gateway: 'gw-t', spool: dir, mavlink: `udp:127.0.0.1:${taken.address().port}` });
    await expect(startAgent(config, quietLog)).rejects.toThrow(/EADDRINUSE/);
  });
});
