import { describe, expect, it } from 'vitest';
import { BatchWriter, decodeAck, decodeBatch, encodeAck, encodeBatch } from '../proto/codec';
import { LAKE_COLUMNS } from '../proto/columns';
import { FLIGHT_STATE_NAMES, GPS_FIX_NAMES, PointType, PROTO_PATH, root } from '../proto/schema';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';
import { DESCRIPTOR_MODULE, descriptorModule } from '../tsup.config';
import CRC32 from 'crc-32';
import { ackTopic, bucketOf, gatewayOfTelemetryTopic, parseTelemetryTopic, TELEMETRY_BUCKETS, telemetryTopic, telemetryTopicV2 } from '../proto/topics';
import { shardFilters, shardOf } from '../sink/shard';
import { FlightState, GpsFix, type TelemetryPoint } from '../proto/types';
import { invalidReason, MIN_TS_MICROS } from '../proto/validate';

// Compile-time: naming every key of TelemetryPoint, and only those, is required here.
const POINT_KEYS = {
  drone_id: true,
  seq: true,
  ts: true,
  lat: true,
  lon: true,
  alt_m: true,
  rel_alt_m: true,
  ground_speed_mps: true,
  vertical_speed_mps: true,
  heading_deg: true,
  battery_pct: true,
  battery_voltage_v: true,
  gps_fix: true,
  satellites: true,
  flight_state: true,
  armed: true,
  mission_id: true,
  stream: true,
} satisfies Record<keyof TelemetryPoint, true>;

const NOW = 1_767_225_600_000_000; // 2026-01-01T00:00:00Z

const full: TelemetryPoint = {
  drone_id: 'gw-1.d_0001',
  seq: 2 ** 40 + 7,
  ts: NOW - 1234,
  lat: 47.3769123,
  lon: -8.5417456,
  alt_m: 512.25,
  rel_alt_m: 104.5,
  ground_speed_mps: 14.75,
  vertical_speed_mps: -1.5,
  heading_deg: 271.5,
  battery_pct: 63.5,
  battery_voltage_v: 22.81,
  gps_fix: GpsFix.rtkFixed,
  satellites: 17,
  flight_state: FlightState.delivering,
  armed: true,
  mission_id: 'M-42',
};

describe('the wire contract', () => {
  it('builds the descriptor the CLI carries from telemetry.proto, and the codec reads the same', () => {
    const fromProto: unknown = protobuf.parse(readFileSync(PROTO_PATH, 'utf8'), { keepCase: true }).root.toJSON();
    expect(DESCRIPTOR_MODULE.test(fileURLToPath(new URL('../proto/descriptor.ts', import.meta.url)))).toBe(true);
    const built = /^export const DESCRIPTOR = (\{.*\});$/s.exec(descriptorModule());
    const descriptor: unknown = JSON.parse(built?.[1] ?? 'null');
    expect(descriptor).toEqual(fromProto);
    expect(root.toJSON()).toEqual(fromProto);
  });

  it('names the same point fields in telemetry.proto, proto/types.ts and the lake columns', () => {
    const protoFields = PointType.fieldsArray.map((f) => f.name).sort();
    expect(protoFields).toEqual(Object.keys(POINT_KEYS).sort());
    const pointColumns = LAKE_COLUMNS.filter((c) => c.origin === 'point').map((c) => c.name);
    expect(pointColumns.slice().sort()).toEqual(protoFields);
    expect(LAKE_COLUMNS.map((c) => c.name).slice(-2)).toEqual(['gateway_id', 'ingested_at']);
  });

  it('maps columns to lake types by the documented rule', () => {
    const types = Object.fromEntries(LAKE_COLUMNS.map((c) => [c.name, c.sqlType]));
    expect(types).toMatchObject({ drone_id: 'VARCHAR', seq: 'BIGINT', ts: 'TIMESTAMPTZ', lat: 'DOUBLE', satellites: 'BIGINT', armed: 'BOOLEAN', gps_fix: 'VARCHAR', flight_state: 'VARCHAR' });
  });

  it('derives enum short names from the proto and keeps MAVLink fix numbers', () => {
    expect(GPS_FIX_NAMES).toEqual(['unspecified', 'none', '2d', '3d', 'dgps', 'rtk_float', 'rtk_fixed']);
    expect(FLIGHT_STATE_NAMES).toEqual(['unspecified', 'idle', 'takeoff', 'cruise', 'delivering', 'returning', 'landing', 'landed', 'emergency']);
  });

  it('decodes to the contract\'s types, proto3 defaults included, checked rather than cast', () => {
    // Empty bytes are a valid message whose every field is its default: the checks in
    // codec.ts accept them, and the sink then turns the batch away for its gateway id.
    const empty = decodeBatch(new Uint8Array(0));
    expect([empty.gateway_id, empty.batch_seq, empty.sent_at, empty.points.length, empty.dropped_points, empty.stream]).toEqual(['', 0, 0, 0, 0, 0]);
    const ack = decodeAck(encodeAck({ gateway_id: 'gw', batch_seqs: [3, 2 ** 52], committed_at: NOW }));
    expect([ack.gateway_id, [...ack.batch_seqs], ack.committed_at]).toEqual(['gw', [3, 2 ** 52], NOW]);
    expect(() => decodeBatch(Uint8Array.of(0x0a, 0x05, 0x61))).toThrow();
  });

  it('round-trips a batch, keeping unknown fields absent rather than zero', () => {
    const sparse: TelemetryPoint = { drone_id: 'd1', seq: 0, ts: NOW, lat: 0, armed: false };
    const bytes = encodeBatch({ gateway_id: 'gw-1', batch_seq: 99, sent_at: NOW, points: [full, sparse] });
    const back = decodeBatch(bytes);
    expect(back.gateway_id).toBe('gw-1');
    expect(back.batch_seq).toBe(99);
    expect(back.points[0]).toMatchObject(full);
    const s = back.points[1]!;
    expect(s.lat).toBe(0);
    expect(s.armed).toBe(false);
    expect(s.lon).toBeNull();
    expect(s.battery_pct).toBeNull();
    expect(s.gps_fix).toBeNull();
    expect(s.mission_id).toBeNull();
  });

  it('builds with BatchWriter the same batch encodeBatch gives', () => {
    const writer = new BatchWriter();
    writer.add(full);
    writer.add({ drone_id: 'd2', seq: 5, ts: NOW });
    expect(writer.pointCount).toBe(2);
    const size = writer.byteLength;
    const bytes = writer.finish({ gatewayId: 'gw-9', batchSeq: 12345678901234, sentAt: NOW, stream: 2 ** 53 - 1 });
    expect(bytes.length).toBeGreaterThan(size);
    const batch = decodeBatch(bytes);
    expect(batch.stream).toBe(2 ** 53 - 1);
    expect(batch).toEqual(decodeBatch(encodeBatch({ gateway_id: 'gw-9', batch_seq: 12345678901234, sent_at: NOW, stream: 2 ** 53 - 1, points: [full, { drone_id: 'd2', seq: 5, ts: NOW }] })));
    expect(writer.pointCount).toBe(0);
  });

  it('round-trips a commit ack', () => {
    const ack = decodeAck(encodeAck({ gateway_id: 'gw-1', batch_seqs: [1, 2, 2 ** 50], committed_at: NOW }));
    expect(ack.batch_seqs).toEqual([1, 2, 2 ** 50]);
  });

  it('rejects truncated bytes', () => {
    const bytes = encodeBatch({ gateway_id: 'gw-1', batch_seq: 1, sent_at: NOW, points: [full] });
    expect(() => decodeBatch(bytes.subarray(0, bytes.length - 5))).toThrow();
  });

  it('keeps topics under the gateway id and refuses ids that would break them', () => {
    expect(telemetryTopic('gw-1')).toBe('dronelake/v1/telemetry/gw-1');
    expect(ackTopic('gw-1')).toBe('dronelake/v1/ack/gw-1');
    expect(gatewayOfTelemetryTopic('dronelake/v1/telemetry/gw-1')).toBe('gw-1');
    expect(gatewayOfTelemetryTopic('dronelake/v1/telemetry/a/b')).toBeNull();
    expect(gatewayOfTelemetryTopic('dronelake/v1/ack/gw-1')).toBeNull();
  });

  it('puts v2 telemetry in the bucket CRC-32 of the gateway id names, and reads no other bucket as that gateway', () => {
    // CRC-32 (IEEE) of "gw-1" is 2818520230; mod 64 that is 38.
    expect(bucketOf('gw-1')).toBe(2818520230 % TELEMETRY_BUCKETS);
    expect(telemetryTopicV2('gw-1')).toBe('dronelake/v2/telemetry/38/gw-1');
    expect(parseTelemetryTopic('dronelake/v2/telemetry/38/gw-1')).toEqual({ wire: 'v2', gatewayId: 'gw-1' });
    expect(parseTelemetryTopic('dronelake/v1/telemetry/gw-1')).toEqual({ wire: 'v1', gatewayId: 'gw-1' });
    for (const wrong of ['dronelake/v2/telemetry/37/gw-1', 'dronelake/v2/telemetry/038/gw-1', 'dronelake/v2/telemetry/102/gw-1', 'dronelake/v2/telemetry/gw-1', 'dronelake/v2/telemetry/38/a/b']) {
      expect(parseTelemetryTopic(wrong), wrong).toBeNull();
    }
    // A shard owns whole buckets: with 2 shards, the same gateways as CRC-32 mod 2 before buckets.
    const ids = Array.from({ length: 200 }, (_, i) => `gw-${i}`);
    expect(ids.every((id) => shardOf(id, 2) === (CRC32.str(id) >>> 0) % 2)).toBe(true);
    expect(shardFilters({ index: 1, count: 4 })).toEqual(Array.from({ length: 16 }, (_, k) => `dronelake/v2/telemetry/${1 + 4 * k}/+`));
    expect(shardFilters(undefined)).toEqual(['dronelake/v2/telemetry/+/+']);
  });
});

describe('point validation', () => {
  const skew = 300e6;
  const check = (patch: Partial<TelemetryPoint>) => invalidReason({ ...full, ...patch }, NOW, skew);

  it('accepts a full point, a sparse point and a flight logged long ago', () => {
    expect(check({})).toBeNull();
    expect(invalidReason({ drone_id: 'x', seq: 0, ts: NOW }, NOW, skew)).toBeNull();
    expect(check({ ts: MIN_TS_MICROS + 1 })).toBeNull();
    expect(check({ ts: NOW + skew })).toBeNull();
  });

  it.each([
    [{ drone_id: '' }, 'drone_id_pattern'],
    [{ drone_id: 'a/b' }, 'drone_id_pattern'],
    [{ drone_id: 'x'.repeat(65) }, 'drone_id_pattern'],
    [{ seq: -1 }, 'seq_range'],
    [{ ts: MIN_TS_MICROS - 1 }, 'ts_before_2000'],
    [{ ts: NOW + skew + 1 }, 'ts_in_future'],
    [{ lat: Number.NaN }, 'not_finite'],
    [{ alt_m: Number.POSITIVE_INFINITY }, 'not_finite'],
    [{ lat: 90.0001 }, 'lat_range'],
    [{ lon: -180.5 }, 'lon_range'],
    [{ battery_pct: 100.1 }, 'battery_pct_range'],
    [{ battery_pct: -0.5 }, 'battery_pct_range'],
    [{ gps_fix: 42 }, 'enum_unknown'],
    [{ flight_state: 9 }, 'enum_unknown'],
  ] as Array<[Partial<TelemetryPoint>, string]>)('rejects %o as %s', (patch, reason) => {
    expect(check(patch)).toBe(reason);
  });
});
