import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { common, MavLinkPacketParser, MavLinkPacketSplitter, MavLinkProtocolV1, type MavLinkPacket } from 'node-mavlink';
import { describe, expect, it } from 'vitest';
import { detectFormat, MavlinkScanner, type StreamFormat } from '../agent/mavlink/scanner';
import { MavlinkTelemetry, type MavlinkStats } from '../agent/mavlink/telemetry';
import { FlightState, GpsFix, type TelemetryPoint } from '../proto/types';
import { ROOT } from './helpers';

const FIXTURES = path.resolve(ROOT, '../shared/fixtures');
const HAS_FIXTURES = existsSync(path.join(FIXTURES, 'mavlink'));
// Named so that a run without the fixtures says why these tests did not run.
const SKIP = HAS_FIXTURES ? '' : ' (skipped: ../shared/fixtures is not there)';
const fixture = (name: string) => readFileSync(path.join(FIXTURES, 'mavlink', name));
// Raw streams have no timestamps; the replay's --start plays this part.
const RAW_START_US = Date.UTC(2025, 0, 1) * 1000;

function decode(buf: Buffer, format: StreamFormat, hz = 0): { points: TelemetryPoint[]; stats: MavlinkStats } {
  const points: TelemetryPoint[] = [];
  const telemetry = new MavlinkTelemetry({
    droneId: (sysid) => `gw-sys${sysid}`,
    hz,
    firstSeq: () => 100,
    emit: (p) => points.push({ ...p }),
    canEmit: () => true,
    rawStartUs: RAW_START_US,
  });
  const scanner = new MavlinkScanner(format, telemetry.stats, (b, frame, tlogUs) => telemetry.onFrame(b, frame, tlogUs));
  scanner.scan(buf, buf.length, true);
  return { points, stats: telemetry.stats };
}

/** Decodes a stream in chunks of `size` bytes, carrying the unread tail, as the file source does. */
function decodeChunked(buf: Buffer, format: StreamFormat, size: number): MavlinkStats {
  const telemetry = new MavlinkTelemetry({ droneId: (s) => `gw-sys${s}`, hz: 0, firstSeq: () => 0, emit: () => {}, canEmit: () => true, rawStartUs: RAW_START_US });
  const scanner = new MavlinkScanner(format, telemetry.stats, (b, frame, tlogUs) => telemetry.onFrame(b, frame, tlogUs));
  const work = Buffer.alloc(size + 512);
  let tail = 0;
  for (let at = 0; at < buf.length; at += size) {
    const n = buf.copy(work, tail, at, at + size);
    const end = tail + n;
    const rest = scanner.scan(work, end, at + size >= buf.length);
    work.copyWithin(0, rest, end);
    tail = end - rest;
  }
  return telemetry.stats;
}

/** node-mavlink's packets of a raw stream, read in one chunk: the independent count. */
async function nodeMavlinkPackets(buf: Buffer): Promise<MavLinkPacket[]> {
  const packets: MavLinkPacket[] = [];
  const stream = Readable.from([buf]).pipe(new MavLinkPacketSplitter()).pipe(new MavLinkPacketParser());
  for await (const p of stream) packets.push(p as MavLinkPacket);
  return packets;
}

/** A minimal .tlog walk that trusts the framing (no CRC): [8-byte ts][STX][len]... back to back. */
function walkTlog(buf: Buffer): Array<{ ts: number; msgid: number; at: number; total: number }> {
  const records = [];
  let i = 0;
  while (i < buf.length) {
    const stx = buf[i + 8];
    const len = buf[i + 9]!;
    const total = stx === 0xfe ? 8 + len : 12 + len + (buf[i + 10]! & 1 ? 13 : 0);
    const msgid = stx === 0xfe ? buf[i + 13]! : buf.readUIntLE(i + 15, 3);
    records.push({ ts: Number(buf.readBigUInt64BE(i)), msgid, at: i + 8, total });
    i += 8 + total;
  }
  expect(i).toBe(buf.length);
  return records;
}

describe('MAVLink fixtures decode to exact counts', () => {
  it.skipIf(!HAS_FIXTURES)(`vtol.tlog: one point per GLOBAL_POSITION_INT, at the tlog's timestamps${SKIP}`, () => {
    const buf = fixture('vtol.tlog');
    expect(detectFormat(buf.subarray(0, 65536))).toBe('tlog');
    const { points, stats } = decode(buf, 'tlog');
    expect(stats.packets).toBe(23894);
    expect(stats.messages).toEqual({ heartbeat: 199, sys_status: 796, gps_raw_int: 799, attitude: 888, global_position_int: 807, vfr_hud: 878, battery_status: 0 });
    expect([stats.badCrc, stats.garbageBytes, stats.truncated, stats.unknownMessages, stats.ignoredHeartbeats]).toEqual([0, 0, 0, 0, 0]);
    expect(points.length).toBe(807);
    expect(stats.points).toBe(807);
    expect(stats.vehicles).toBe(1);

    // Independently: a plain walk of the records finds the same packets and timestamps.
    const records = walkTlog(buf);
    expect(records.length).toBe(23894);
    const gpi = records.filter((r) => r.msgid === 33);
    expect(gpi.length).toBe(807);
    expect(points.map((p) => p.ts)).toEqual(gpi.map((r) => r.ts));
    expect(points.map((p) => p.seq)).toEqual(points.map((_, i) => 100 + i));
    expect(points.every((p) => p.drone_id === 'gw-sys1')).toBe(true);

    // Units: the first report's raw integers against node-mavlink's decoding of the same bytes.
    const first = gpi[0]!;
    const raw = decodeGpi(buf.subarray(first.at, first.at + first.total));
    expect(raw).toMatchObject({ lat: -353629904, lon: 1491649392, alt: 587850, relativeAlt: 6750, vx: -188, vy: 6, vz: 0, hdg: 14037 });
    const p0 = points[0]!;
    expect(p0.lat).toBe(-35.3629904);
    expect(p0.lon).toBe(149.1649392);
    expect(p0.alt_m).toBe(587.85);
    expect(p0.rel_alt_m).toBe(6.75);
    expect(p0.heading_deg).toBe(140.37);
    expect(p0.ground_speed_mps).toBe(1.88);
    expect(p0.vertical_speed_mps).toBe(0);
    expect(p0.ts).toBe(1533737161912000);
    // SITL reports no battery: voltage 0 and remaining -1 are unknown, not empty.
    expect(points.every((p) => p.battery_pct === null && p.battery_voltage_v === null)).toBe(true);
    expect(p0.gps_fix).toBe(GpsFix.rtkFixed);
    expect(p0.satellites).toBe(10);
    // Before the first HEARTBEAT nothing is known of the mode.
    expect([p0.armed, p0.flight_state]).toEqual([null, null]);

    // Every position equals its raw degE7 integers, read straight from the records.
    expect(points.map((p) => [p.lat, p.lon])).toEqual(gpi.map((r) => [buf.readInt32LE(r.at + 10) / 1e7, buf.readInt32LE(r.at + 14) / 1e7]));
    const lats = points.map((p) => p.lat!);
    const lons = points.map((p) => p.lon!);
    // SITL's home, CMAC near Canberra; the flight stays within half a kilometre of it.
    expect(Math.min(...lats)).toBeGreaterThan(-35.37);
    expect(Math.max(...lats)).toBeLessThan(-35.35);
    expect(Math.min(...lons)).toBeGreaterThan(149.15);
    expect(Math.max(...lons)).toBeLessThan(149.17);
    // ArduPlane (QuadPlane) modes: QLOITER, CIRCLE and GUIDED cruise, QLAND lands, disarmed is idle.
    const states = new Map<string, number>();
    for (const p of points) states.set(`${p.flight_state}/${p.armed}`, (states.get(`${p.flight_state}/${p.armed}`) ?? 0) + 1);
    expect(Object.fromEntries(states)).toEqual({
      'null/null': 4,
      [`${FlightState.cruise}/true`]: 459,
      [`${FlightState.landing}/true`]: 220,
      [`${FlightState.idle}/false`]: 124,
    });
  });

  it.skipIf(!HAS_FIXTURES)(`vtol.tlog downsampled to 1 Hz keeps one point per second of flight${SKIP}`, () => {
    const { points, stats } = decode(fixture('vtol.tlog'), 'tlog', 1);
    const seconds = new Set(walkTlog(fixture('vtol.tlog')).filter((r) => r.msgid === 33).map((r) => Math.floor(r.ts / 1e6)));
    expect(points.length).toBe(seconds.size);
    expect(points.length).toBe(162);
    expect(stats.skipped.downsampled).toBe(807 - 162);
  });

  it.skipIf(!HAS_FIXTURES)(`mavlink-v2-3412-packets.bin: a PX4 stream with BATTERY_STATUS${SKIP}`, async () => {
    const buf = fixture('mavlink-v2-3412-packets.bin');
    expect(detectFormat(buf.subarray(0, 65536))).toBe('raw');
    const { points, stats } = decode(buf, 'raw');
    expect(stats.packets).toBe(3398);
    expect(stats.unknownMessages).toBe(14);
    expect(stats.packets + stats.unknownMessages).toBe(3412);
    expect([stats.badCrc, stats.garbageBytes, stats.truncated]).toEqual([0, 0, 0]);
    expect(stats.messages).toEqual({ heartbeat: 10, sys_status: 10, gps_raw_int: 10, attitude: 505, global_position_int: 505, vfr_hud: 41, battery_status: 5 });
    expect(points.length).toBe(505);

    const independent = await nodeMavlinkPackets(buf);
    expect(independent.length).toBe(3398);
    const gpi = independent.filter((p) => p.header.msgid === 33).map((p) => p.protocol.data(p.payload, common.GlobalPositionInt));
    expect(gpi.length).toBe(505);
    expect(points.map((p) => p.lat)).toEqual(gpi.map((g) => g.lat / 1e7));
    expect(points.map((p) => p.alt_m)).toEqual(gpi.map((g) => g.alt / 1000));
    // Raw streams: the first report is at --start, later ones by time_boot_ms.
    expect(points.map((p) => p.ts)).toEqual(gpi.map((g) => RAW_START_US + (g.timeBootMs - gpi[0]!.timeBootMs) * 1000));

    const last = points.at(-1)!;
    // BATTERY_STATUS: four cells of 4050 mV; remaining 100 %.
    expect([last.battery_voltage_v, last.battery_pct]).toEqual([16.2, 100]);
    // PX4 AUTO_LOITER, disarmed: idle.
    expect([last.armed, last.flight_state, last.gps_fix, last.satellites]).toEqual([false, FlightState.idle, GpsFix.fix3d, 10]);
  });

  it.skipIf(!HAS_FIXTURES)(`data.mavlink: no GPS fix, so no position, and unknown battery values are null${SKIP}`, async () => {
    const buf = fixture('data.mavlink');
    const { points, stats } = decode(buf, 'raw');
    expect(stats.packets).toBe(1476);
    expect(stats.messages.global_position_int).toBe(63);
    expect(points.length).toBe(63);
    expect(stats.noFix).toBe(63);
    // The file ends inside a packet: its 11 bytes are counted, not decoded.
    expect([stats.garbageBytes, stats.truncated, stats.badCrc]).toEqual([11, 1, 0]);
    const independent = await nodeMavlinkPackets(buf);
    expect(independent.length).toBe(1476);
    expect(independent.reduce((n, p) => n + p.buffer.length, 0) + stats.garbageBytes).toBe(buf.length);
    for (const p of points) {
      expect([p.lat, p.lon, p.alt_m]).toEqual([null, null, null]);
      expect([p.battery_pct, p.battery_voltage_v]).toEqual([null, null]);
      expect(p.rel_alt_m).not.toBeNull();
    }
    // GPS_RAW_INT fix_type 0 (no receiver) is unknown; satellites_visible 0 is a real count.
    expect(points.at(-1)!.gps_fix).toBeNull();
    expect(points.at(-1)!.satellites).toBe(0);
  });

  it.skipIf(!HAS_FIXTURES)(`GH-5.bin: the damaged stream is survived and its damage counted${SKIP}`, async () => {
    const buf = fixture('GH-5.bin');
    const { points, stats } = decode(buf, 'raw');
    expect(stats.packets).toBe(136);
    expect(stats.unknownMessages).toBe(2);
    expect(stats.garbageBytes).toBe(5);
    expect(stats.messages.global_position_int).toBe(0);
    expect(points.length).toBe(0);
    expect((await nodeMavlinkPackets(buf)).length).toBe(136);
  });

  it.skipIf(!HAS_FIXTURES)(`damage made on purpose (bit flips, garbage, a cut) costs only the packets it hits${SKIP}`, () => {
    const clean = fixture('vtol.tlog');
    const records = walkTlog(clean);
    const buf = Buffer.from(clean);
    // Flip one payload byte of 50 GLOBAL_POSITION_INT packets: their CRCs fail.
    const hit = records.filter((r) => r.msgid === 33).filter((_, i) => i % 16 === 0).slice(0, 50);
    for (const r of hit) buf[r.at + 8] = buf[r.at + 8]! ^ 0x40;
    const cut = buf.subarray(0, buf.length - 10);
    const garbage = Buffer.from([0xfe, 0x09, 0x00, 0xfd, 0xff, 0x13, 0x37, 0xfe]);
    // Garbage before the first record, and between two records in the middle.
    const between = records.find((r) => r.at > 500_000)!.at - 8;
    const damaged = Buffer.concat([garbage, cut.subarray(0, between), garbage, cut.subarray(between)]);
    const { points, stats } = decode(damaged, 'tlog');
    expect(stats.badCrc).toBe(50);
    expect(points.length).toBe(807 - 50);
    expect(stats.truncated).toBe(1);
    expect(stats.garbageBytes).toBeGreaterThanOrEqual(2 * garbage.length);
    expect(stats.packets).toBe(23894 - 50 - 1);
    // Chunked reading (as the replay does) finds exactly the same.
    const chunked = decodeChunked(damaged, 'tlog', 4096);
    expect({ ...chunked, messages: null }).toEqual({ ...stats, messages: null });
  });
});

/** node-mavlink's decoding of one MAVLink v1 GLOBAL_POSITION_INT frame. */
function decodeGpi(frame: Buffer): common.GlobalPositionInt {
  const protocol = new MavLinkProtocolV1();
  expect(protocol.header(frame).msgid).toBe(33);
  return protocol.data(protocol.payload(frame), common.GlobalPositionInt);
}
