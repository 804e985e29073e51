import { decodeBatch } from '../proto/codec';
import { columnsOfPoints, decodeColumnar, type ColumnArena, type PointColumns } from '../proto/columnar';
import { parseTelemetryTopic, wireOfTopic } from '../proto/topics';
import type { BatchRejectReason } from './stats';

/** A batch as the sink takes it, from either wire: its head, and its points as typed columns. */
export interface TakenBatch {
  gateway_id: string;
  batch_seq: number;
  dropped_points: number;
  /** The stream the points' seqs count in, unless a point names its own; 0 is the legacy stream. */
  stream: number;
  points: PointColumns;
}

export type Decoded =
  | { ok: true; batch: TakenBatch }
  | { ok: false; reason: BatchRejectReason; detail: string; gatewayId: string | null };

/** The payload as a batch of the topic's wire: v2 columns as they come, v1 rows turned into columns. */
function decodeWire(topic: string, payload: Uint8Array, arena: ColumnArena | null): TakenBatch {
  if (wireOfTopic(topic) === 'v2') return decodeColumnar(payload, arena);
  const batch = decodeBatch(payload);
  return { gateway_id: batch.gateway_id, batch_seq: batch.batch_seq, dropped_points: batch.dropped_points ?? 0, stream: batch.stream ?? 0, points: columnsOfPoints(batch.points) };
}

/**
 * Turns an MQTT message into a batch, or says why it is not one. The gateway id in the
 * payload must equal the topic's: a gateway writes only under its own id, and random
 * bytes that happen to parse as protobuf fail here. A v2 batch's values go into `arena`
 * when one is given: valid until the next call with it.
 */
export function decodeTelemetry(topic: string, payload: Uint8Array, arena: ColumnArena | null = null): Decoded {
  const gatewayId = parseTelemetryTopic(topic)?.gatewayId ?? null;
  let batch: TakenBatch;
  try {
    batch = decodeWire(topic, payload, arena);
  } catch (err) {
    return { ok: false, reason: 'undecodable', detail: (err as Error).message, gatewayId };
  }
  if (gatewayId === null || batch.gateway_id !== gatewayId) {
    return {
      ok: false,
      reason: 'gateway_mismatch',
      detail: `topic ${topic} carries gateway_id "${String(batch.gateway_id).slice(0, 80)}"`,
      gatewayId,
    };
  }
  if (!Number.isSafeInteger(batch.batch_seq) || batch.batch_seq < 0) {
    return { ok: false, reason: 'batch_seq_range', detail: `batch_seq ${batch.batch_seq}` , gatewayId };
  }
  return { ok: true, batch };
}
