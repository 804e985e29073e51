// Topic scheme of the contract. Ids become topic levels, so they must never hold
// MQTT's separators or wildcards: the id pattern below excludes them.

export const ID_PATTERN = /^[A-Za-z0-9._-]{1,64}$/;

const TELEMETRY_PREFIX = 'dronelake/v1/telemetry/';
const ACK_PREFIX = 'dronelake/v1/ack/';
const LIVE_PREFIX = 'dronelake/v1/live/';
const EVENTS_PREFIX = 'dronelake/v1/events/';

/** What a sink subscribes to: every gateway's telemetry. */
export const TELEMETRY_WILDCARD = `${TELEMETRY_PREFIX}+`;

export function telemetryTopic(gatewayId: string): string {
  return TELEMETRY_PREFIX + gatewayId;
}

export function ackTopic(gatewayId: string): string {
  return ACK_PREFIX + gatewayId;
}

/** The gateway id a telemetry topic names, or null when the topic is not one. */
export function gatewayOfTelemetryTopic(topic: string): string | null {
  if (!topic.startsWith(TELEMETRY_PREFIX)) return null;
  const id = topic.slice(TELEMETRY_PREFIX.length);
  return ID_PATTERN.test(id) ? id : null;
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
