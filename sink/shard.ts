import * as z from 'zod';
import { bucketFilter, bucketOf, gatewayOfTelemetryTopic, TELEMETRY_BUCKETS, TELEMETRY_V2_WILDCARD } from '../proto/topics';

/**
 * This sink's share of the fleet: the telemetry buckets b with b mod count = index, and so
 * the gateways in them. Resharding moves whole buckets; with a count that divides the
 * bucket count, the same gateways as CRC-32 of the id modulo the count, as before buckets.
 */
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
  .refine((s) => s.count >= 1 && s.index < s.count, 'expected I/N with 0 <= I < N')
  .refine((s) => s.count <= TELEMETRY_BUCKETS, `at most ${TELEMETRY_BUCKETS} shards: a shard owns whole telemetry buckets`);

/** The shard that owns a gateway: its bucket's, the same in every sink. */
export const shardOf = (gatewayId: string, count: number): number => bucketOf(gatewayId) % count;

/** The wire v2 filters a shard subscribes to: its buckets only, so the broker sends it only its gateways' messages. */
export function shardFilters(shard: Shard | undefined): string[] {
  if (!shard || shard.count === 1) return [TELEMETRY_V2_WILDCARD];
  const filters: string[] = [];
  for (let b = shard.index; b < TELEMETRY_BUCKETS; b += shard.count) filters.push(bucketFilter(b));
  return filters;
}

/**
 * Whether a message on `topic` is this shard's. A topic with no gateway id is shard 0's,
 * so that exactly one sink quarantines it.
 */
export function ownsTopic(shard: Shard, topic: string): boolean {
  const gatewayId = gatewayOfTelemetryTopic(topic);
  return (gatewayId === null ? 0 : shardOf(gatewayId, shard.count)) === shard.index;
}
