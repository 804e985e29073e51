import type { Registry } from 'prom-client';
import { statsRegistry } from '../deploy/runtime/metrics';
import type { BrokerStats } from './stats';

/** Prometheus metrics read from the broker's counters at scrape time. */
export function brokerMetrics(stats: () => BrokerStats): Registry {
  const { registry, counter, byLabel, gauge } = statsRegistry(stats);
  gauge('dronelake_broker_connected_clients', 'Clients connected now.', (s) => s.clients);
  counter('dronelake_broker_connections_total', 'Connections accepted (CONNACK 0).', (s) => s.connects);
  counter('dronelake_broker_messages_in_total', 'PUBLISH packets taken from clients.', (s) => s.messagesIn);
  counter('dronelake_broker_messages_out_total', 'Messages delivered to subscribers.', (s) => s.messagesOut);
  counter('dronelake_broker_payload_bytes_in_total', 'Payload bytes of the messages taken from clients.', (s) => s.bytesIn);
  counter('dronelake_broker_payload_bytes_out_total', 'Payload bytes of the messages delivered to subscribers.', (s) => s.bytesOut);
  byLabel('dronelake_broker_auth_failures_total', 'CONNECTs refused, by reason.', 'reason', (s) => s.authFailures);
  byLabel('dronelake_broker_acl_denials_total', 'Publishes, subscriptions and deliveries denied by the access rules.', 'action', (s) => s.aclDenials);
  counter('dronelake_broker_client_errors_total', 'Connections closed for an error after their CONNECT (protocol errors, denied publishes, limits, keepalive).', (s) => s.clientErrors);
  counter('dronelake_broker_connection_errors_total', 'Connections closed for an error before a CONNECT was accepted (garbage, timeouts, TLS).', (s) => s.connectionErrors);
  counter('dronelake_broker_oversized_packets_total', 'Connections closed for a packet over --max-packet-bytes.', (s) => s.oversizedPackets);
  counter('dronelake_broker_slow_consumer_disconnects_total', 'Gateway connections closed for not reading what the broker sent them.', (s) => s.slowConsumers);
  const sum = (r: Record<string, number>) => Object.values(r).reduce((a, b) => a + b, 0);
  counter('dronelake_broker_consumer_dropped_messages_total', 'Live and events messages not sent to a consumer that was behind, all consumers.', (s) => sum(s.consumerDrops.messages));
  counter('dronelake_broker_consumer_dropped_points_total', 'Live points in those messages, all consumers.', (s) => sum(s.consumerDrops.points));
  byLabel('dronelake_broker_consumer_dropped_messages_by_consumer_total', 'Live and events messages not sent to a consumer that was behind, by consumer identity.', 'consumer', (s) => s.consumerDrops.messages);
  byLabel('dronelake_broker_consumer_dropped_points_by_consumer_total', 'Live points in those messages, by consumer identity.', 'consumer', (s) => s.consumerDrops.points);
  counter('dronelake_broker_consumer_behind_disconnects_total', 'Consumers closed for staying behind for --consumer-max-behind.', (s) => s.consumerDrops.closed);
  counter('dronelake_broker_consumer_behind_unsent_bytes_total', 'Bytes the broker still held for those consumers when it closed them.', (s) => s.consumerDrops.closedUnsentBytes);
  gauge('dronelake_broker_registry_identities', 'Identities in the registry (0 without one).', (s) => s.identities);
  gauge('dronelake_broker_store_links_down', "A clustered broker's Redis connections that are down now (0 for a broker alone).", (s) => s.storeLinksDown);
  counter('dronelake_broker_registry_reload_failures_total', 'Registry file changes that could not be read (the previous registry stays).', (s) => s.registryReloadFailures);
  return registry;
}
