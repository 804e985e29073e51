import { decodeBatch } from '../proto/codec';
import { gatewayOfTelemetryTopic } from '../proto/topics';
import type { TelemetryBatch } from '../proto/types';
import type { BatchRejectReason } from './stats';

export type Decoded =
  | { ok: true; batch: TelemetryBatch }
  | { ok: false; reason: BatchRejectReason; detail: string; gatewayId: string | null };

/**
 * Turns an MQTT message into a batch, or says why it is not one. The gateway id in the
 * payload must equal the topic's: a gateway writes only under its own id, and random
 * bytes that happen to parse as protobuf fail here.
 */
export function decodeTelemetry(topic: string, payload: Uint8Array): Decoded {
  const gatewayId = gatewayOfTelemetryTopic(topic);
  let batch: TelemetryBatch;
  try {
    batch = decodeBatch(payload);
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
    return { ok: false, reason: 'batch_seq_range', detail: `batch_seq ${batch.batch_seq}`, gatewayId };
  }
  return { ok: true, batch };
}
