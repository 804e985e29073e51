import type { AedesOptions, Client } from 'aedes';
import { ackTopic, gatewayOfTelemetryTopic, ID_PATTERN, isOutputPortTopic, isTelemetryV2Filter, telemetryTopic, telemetryTopicV2, TELEMETRY_WILDCARD } from '../proto/topics';
import type { Authenticated } from './auth';

export const ACL_ACTIONS = ['publish', 'subscribe', 'deliver'] as const;
export type AclAction = (typeof ACL_ACTIONS)[number];

const ACK_PREFIX = ackTopic('');
const isAckTopic = (topic: string): boolean => topic.startsWith(ACK_PREFIX) && ID_PATTERN.test(topic.slice(ACK_PREFIX.length));

// The contract's topics are the only ones in use: a gateway sends its own telemetry (on
// its own v1 topic, or its own v2 topic in its own bucket) and hears its own acks; the sink hears every gateway's telemetry, acks any of them, and
// publishes the live and events output ports; a consumer reads those ports and nothing
// else (unvalidated gateway input is for sinks only), and publishes nothing.

function mayPublish(who: Authenticated, topic: string): boolean {
  switch (who.role) {
    case 'gateway':
      return topic === telemetryTopicV2(who.id) || topic === telemetryTopic(who.id);
    case 'sink':
      return isAckTopic(topic) || (isOutputPortTopic(topic) && !topic.endsWith('/+'));
    case 'consumer':
      return false;
  }
}

function maySubscribe(who: Authenticated, filter: string): boolean {
  switch (who.role) {
    case 'gateway':
      return filter === ackTopic(who.id);
    case 'sink':
      return filter === TELEMETRY_WILDCARD || isTelemetryV2Filter(filter) || gatewayOfTelemetryTopic(filter) !== null;
    case 'consumer':
      return isOutputPortTopic(filter);
  }
}

/** Whether a message on `topic` may reach this client: checked again at delivery, for what a stored session replays. */
export function mayReceive(who: Authenticated, topic: string): boolean {
  switch (who.role) {
    case 'gateway':
      return topic === ackTopic(who.id);
    case 'sink':
      return gatewayOfTelemetryTopic(topic) !== null;
    case 'consumer':
      return isOutputPortTopic(topic);
  }
}

export type DenialListener = (client: Client | null, action: AclAction, topic: string) => void;

/**
 * Aedes's hooks for a broker with a registry. A denied SUBSCRIBE is answered with return
 * code 128 in the SUBACK. MQTT 3.1.1 has no way to refuse a PUBLISH, so Aedes closes the
 * connection of a client whose publish is denied, and the message goes nowhere. Retained
 * messages are denied too: the contract never retains, and a retained message would
 * outlive its sender on disk; so are live and events messages above QoS 0.
 */
export function aclHooks(identityOf: (client: Client) => Authenticated | undefined, onDenial: DenialListener): Pick<AedesOptions, 'authorizePublish' | 'authorizeSubscribe'> {
  return {
    authorizePublish(client, packet, callback) {
      // client is null for the will of a client that died on another broker: not ours to vouch for.
      const who = client && identityOf(client);
      // Invariant 6: the output ports are QoS 0, so the broker never queues their messages
      // for a consumer, connected or not, whatever QoS it subscribed with.
      const queued = packet.qos > 0 && isOutputPortTopic(packet.topic);
      if (who && !packet.retain && !queued && mayPublish(who, packet.topic)) return callback(null);
      onDenial(client, 'publish', packet.topic);
      callback(new Error(`not authorized to publish to ${packet.topic}${packet.retain ? ' (retained)' : queued ? ` at QoS ${packet.qos} (the output ports are QoS 0)` : ''}`));
    },
    authorizeSubscribe(client, sub, callback) {
      const who = identityOf(client);
      if (who && maySubscribe(who, sub.topic)) return callback(null, sub);
      onDenial(client, 'subscribe', sub.topic);
      callback(null, null);
    },
  };
}
