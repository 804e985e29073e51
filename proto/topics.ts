import CRC32 from 'crc-32';

// Topic scheme of the contract. Ids become topic levels, so they must never hold
// MQTT's separators or wildcards: the id pattern below excludes them.

export const ID_PATTERN = /^[A-Za-z0-9._-]{1,64}$/;

const TELEMETRY_PREFIX = 'dronelake/v1/telemetry/';
const ACK_PREFIX = 'dronelake/v1/ack/';
const LIVE_PREFIX = 'dronelake/v1/live/';
const EVENTS_PREFIX = 'dronelake/v1/events/';

/** Every gateway's wire v1 telemetry (deprecated: every sink shard hears every message). */
export const TELEMETRY_WILDCARD = `${TELEMETRY_PREFIX}+`;

/** Wire v1 (deprecated): row batches on dronelake/v1/telemetry/{gateway_id}. */
export function telemetryTopic(gatewayId: string): string {
  return TELEMETRY_PREFIX + gatewayId;
}

const TELEMETRY_V2_PREFIX = 'dronelake/v2/telemetry/';

/**
 * Buckets of wire v2 telemetry topics. Fixed for good: a gateway's topic follows from its
 * id alone, and a sink shard subscribes to whole buckets, so the broker sends each message
 * to one shard. 64 allows up to 64 shards; shard counts that divide it split the buckets
 * evenly.
 */
export const TELEMETRY_BUCKETS = 64;

/** A gateway's bucket: CRC-32 of its id modulo the bucket count, the same everywhere. */
export const bucketOf = (gatewayId: string): number => (CRC32.str(gatewayId) >>> 0) % TELEMETRY_BUCKETS;

/** Wire v2: columnar batches on dronelake/v2/telemetry/{bucket}/{gateway_id}. */
export function telemetryTopicV2(gatewayId: string): string {
  return `${TELEMETRY_V2_PREFIX}${bucketOf(gatewayId)}/${gatewayId}`;
}

/** Every gateway's wire v2 telemetry: what an unsharded sink subscribes to. */
export const TELEMETRY_V2_WILDCARD = `${TELEMETRY_V2_PREFIX}+/+`;

/** The wire v2 telemetry of one bucket's gateways. */
export const bucketFilter = (bucket: number): string => `${TELEMETRY_V2_PREFIX}${bucket}/+`;

/** The bucket a v2 topic or filter names, or null when it names none this scheme has. */
function bucketOfLevel(level: string): number | null {
  if (!/^\d{1,2}$/.test(level)) return null;
  const bucket = Number(level);
  return bucket < TELEMETRY_BUCKETS && String(bucket) === level ? bucket : null;
}

/** Whether a subscription filter is one of a v2 bucket's (or every bucket's). */
export function isTelemetryV2Filter(filter: string): boolean {
  if (filter === TELEMETRY_V2_WILDCARD) return true;
  if (!filter.startsWith(TELEMETRY_V2_PREFIX) || !filter.endsWith('/+')) return false;
  return bucketOfLevel(filter.slice(TELEMETRY_V2_PREFIX.length, -2)) !== null;
}

export type Wire = 'v1' | 'v2';

/** The wire and gateway a telemetry topic names; null when it is none, or a v2 topic in another bucket than its gateway's. */
export function parseTelemetryTopic(topic: string): { wire: Wire; gatewayId: string } | null {
  if (topic.startsWith(TELEMETRY_PREFIX)) {
    const id = topic.slice(TELEMETRY_PREFIX.length);
    return ID_PATTERN.test(id) ? { wire: 'v1', gatewayId: id } : null;
  }
  if (!topic.startsWith(TELEMETRY_V2_PREFIX)) return null;
  const rest = topic.slice(TELEMETRY_V2_PREFIX.length);
  const slash = rest.indexOf('/');
  const id = rest.slice(slash + 1);
  if (slash < 0 || !ID_PATTERN.test(id)) return null;
  return bucketOfLevel(rest.slice(0, slash)) === bucketOf(id) ? { wire: 'v2', gatewayId: id } : null;
}

/** The wire a telemetry topic is of, gateway id or not: it decides how its payload is read. */
export const wireOfTopic = (topic: string): Wire => (topic.startsWith(TELEMETRY_V2_PREFIX) ? 'v2' : 'v1');

export function ackTopic(gatewayId: string): string {
  return ACK_PREFIX + gatewayId;
}

/** The gateway id a telemetry topic (v1 or v2) names, or null when the topic is not one. */
export function gatewayOfTelemetryTopic(topic: string): string | null {
  return parseTelemetryTopic(topic)?.gatewayId ?? null;
}

/** The live output port: accepted points of one drone, published by the sink (JSON). */
export function liveTopic(droneId: string): string {
  return LIVE_PREFIX + droneId;
}

/** Derived events of one drone (emergency, low battery, silence), published by the sink (JSON). */
export function eventsTopic(droneId: string): string {
  return EVENTS_PREFIX + droneId;
}

export const LIVE_WILDCARD = `${LIVE_PREFIX}+`;
export const EVENTS_WILDCARD = `${EVENTS_PREFIX}+`;

/** Whether a topic, or a subscription filter, lies within the live or events port: `+` for all drones, or one drone's id. */
export function isOutputPortTopic(topic: string): boolean {
  for (const prefix of [LIVE_PREFIX, EVENTS_PREFIX]) {
    if (!topic.startsWith(prefix)) continue;
    const rest = topic.slice(prefix.length);
    return rest === '+' || ID_PATTERN.test(rest);
  }
  return false;
}
