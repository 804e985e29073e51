import type { MqttClient } from 'mqtt';
import { encodeAck } from '../proto/codec';
import { nowMicros } from '../proto/time';
import { ackTopic } from '../proto/topics';

/**
 * Invariant 2: tells each gateway which of its batches are in the lake. Called only
 * after the commit that holds them is visible. Resolves once the broker has them.
 */
export async function publishAcks(client: MqttClient, batches: Map<string, number[]>): Promise<number> {
  const committedAt = nowMicros();
  const sends = [...batches].map(([gatewayId, seqs]) =>
    client.publishAsync(ackTopic(gatewayId), Buffer.from(encodeAck({ gateway_id: gatewayId, batch_seqs: seqs, committed_at: committedAt })), {
      qos: 1,
    }),
  );
  await Promise.all(sends);
  return sends.length;
}
