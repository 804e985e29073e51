import { describe, expect, it } from 'vitest';
import { pointAt } from '../proto/columnar';
import { telemetryTopic, telemetryTopicV2 } from '../proto/topics';
import type { TelemetryBatch } from '../proto/types';
import { decodeTelemetry } from '../sink/decode';
import { cruisePoint, WIRES, wireMessage } from './helpers';

// The sink's first step: an MQTT message into a batch of typed columns, or the reason it
// is not one (invariant 5: quarantined with that reason, never a crash).

const T0 = Date.UTC(2026, 0, 2, 3) * 1000;
const BATCH: TelemetryBatch = {
  gateway_id: 'gw-dec',
  batch_seq: 7,
  sent_at: T0 + 1_000_000,
  dropped_points: 3,
  stream: 1234,
  points: [cruisePoint('d-1', 0, T0), cruisePoint('d-1', 1, T0 + 100_000), { drone_id: 'd-2', seq: 5, ts: T0 + 50, stream: 99 }],
};

describe('sink step: decode', () => {
  it.each(WIRES)('takes a %s batch: its head, and every point with the values sent', (wire) => {
    const { topic, payload } = wireMessage(wire, BATCH);
    const decoded = decodeTelemetry(topic, payload);
    if (!decoded.ok) throw new Error(`not decoded: ${decoded.detail}`);
    const { batch } = decoded;
    expect({ gateway: batch.gateway_id, seq: batch.batch_seq, dropped: batch.dropped_points, stream: batch.stream, count: batch.points.count }).toEqual({
      gateway: 'gw-dec',
      seq: 7,
      dropped: 3,
      stream: 1234,
      count: 3,
    });
    const points = Array.from({ length: batch.points.count }, (_, i) => pointAt(batch.points, i));
    // Encoders may group points by drone; each point keeps its values, and absent ones stay absent.
    const byKey = new Map(points.map((p) => [`${p.drone_id}/${p.seq}`, p]));
    expect([...byKey.keys()].sort()).toEqual(['d-1/0', 'd-1/1', 'd-2/5']);
    expect(byKey.get('d-1/0')).toEqual(BATCH.points[0]);
    expect(byKey.get('d-1/1')).toEqual(BATCH.points[1]);
    expect(byKey.get('d-2/5')).toEqual({ drone_id: 'd-2', seq: 5, ts: T0 + 50, stream: 99 });
  });

  it.each([
    ['v1', telemetryTopic('gw-dec')],
    ['v2', telemetryTopicV2('gw-dec')],
  ])('names a %s payload that is not a batch undecodable, with the gateway of its topic', (_, topic) => {
    const decoded = decodeTelemetry(topic, Uint8Array.from([0xff, 0xff, 0xff, 0xff]));
    expect(decoded).toMatchObject({ ok: false, reason: 'undecodable', gatewayId: 'gw-dec' });
    expect(decoded.ok ? '' : decoded.detail).not.toBe('');
  });

  it.each(WIRES)("refuses a %s batch whose gateway_id is not its topic's", (wire) => {
    const { payload } = wireMessage(wire, BATCH);
    const topic = wire === 'v1' ? telemetryTopic('gw-other') : telemetryTopicV2('gw-other');
    expect(decodeTelemetry(topic, payload)).toEqual({ ok: false, reason: 'gateway_mismatch', detail: `topic ${topic} carries gateway_id "gw-dec"`, gatewayId: 'gw-other' });
  });

  it.each(WIRES)('refuses a %s batch_seq past 2^53, which no sequence number can be', (wire) => {
    const seq = 2 ** 60;
    const { topic, payload } = wireMessage(wire, { ...BATCH, batch_seq: seq });
    expect(decodeTelemetry(topic, payload)).toEqual({ ok: false, reason: 'batch_seq_range', detail: `batch_seq ${seq}`, gatewayId: 'gw-dec' });
  });
});
