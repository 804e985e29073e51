import CRC32 from 'crc-32';
import * as z from 'zod';
import { gatewayOfTelemetryTopic } from '../proto/topics';

/** This sink's share of the fleet: the gateways whose id hashes to `index` of `count`. */
export interface Shard {
  index: number;
  count: number;
}

export const shardSchema = z
  .string()
  .regex(/^\d{1,4}\/\d{1,4}$/, 'expected I/N, e.g. 0/2')
  .transform((s): Shard => {
    const [index, count] = s.split('/').map(Number) as [number, number];
    return { index, count };
  })
  .refine((s) => s.count >= 1 && s.index < s.count, 'expected I/N with 0 <= I < N');

/** The shard that owns a gateway: CRC-32 of its id, modulo the shard count, the same in every sink. */
export const shardOf = (gatewayId: string, count: number): number => (CRC32.str(gatewayId) >>> 0) % count;

/**
 * Whether a message on `topic` is this shard's. A topic with no gateway id is shard 0's,
 * so that exactly one sink quarantines it.
 */
export function ownsTopic(shard: Shard, topic: string): boolean {
  const gatewayId = gatewayOfTelemetryTopic(topic);
  return (gatewayId === null ? 0 : shardOf(gatewayId, shard.count)) === shard.index;
}
