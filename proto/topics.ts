// Topic scheme of the contract. Ids become topic levels, so they must never hold
// MQTT's separators or wildcards: the id pattern below excludes them.

export const ID_PATTERN = /^[A-Za-z0-9._-]{1,64}$/;

const TELEMETRY_PREFIX = 'dronelake/v1/telemetry/';
const ACK_PREFIX = 'dronelake/v1/ack/';

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
