import type { MqttClient } from 'mqtt';
import { encodeAck } from '../proto/codec';
import { nowMicros } from '../proto/time';
import { ackTopic } from '../proto/topics';

/** How long to wait for the broker to take the acks. The rows are committed either way. */
const ACK_TIMEOUT_MS = 10_000;

/**
 * Invariant 2: tells each gateway which of its batches are in the lake. Called only
 * after the commit that holds them is visible. Resolves once the broker has them, or
 * after ACK_TIMEOUT_MS while the broker is away: a gateway whose ack is lost sends the
 * batch again, and the sink, finding it committed, acks it again.
 */
export async function publishAcks(client: MqttClient, batches: Map<string, number[]>): Promise<number> {
  const committedAt = nowMicros();
  const sends = [...batches].map(([gatewayId, seqs]) =>
    client.publishAsync(ackTopic(gatewayId), Buffer.from(encodeAck({ gateway_id: gatewayId, batch_seqs: seqs, committed_at: committedAt })), {
      qos: 1,
    }),
  );
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), ACK_TIMEOUT_MS)));
  // Settled, not all: a publish the client refuses (it is ending, say) rejects, and the
  // commit has landed by now, so that must not fail it and unstage its batches (invariant 2:
  // the gateway sends the batch again, and the sink, finding it committed, acks it then).
  const outcome = await Promise.race([Promise.allSettled(sends), timedOut]);
  clearTimeout(timer);
  return outcome === 'timeout' ? 0 : outcome.filter((s) => s.status === 'fulfilled').length;
}
