import { ACL_ACTIONS, type AclAction } from './acl';
import { AUTH_FAILURES, type AuthFailure } from './auth';
import type { ConsumerDrops } from './consumers';

export interface BrokerStats {
  /** Connected now. */
  clients: number;
  /** Connections accepted. */
  connects: number;
  /** Errors of connected clients. */
  clientErrors: number;
  /** Errors of connections without an accepted CONNECT. */
  connectionErrors: number;
  messagesIn: number;
  messagesOut: number;
  /** Payload bytes. */
  bytesIn: number;
  bytesOut: number;
  authFailures: Record<AuthFailure, number>;
  aclDenials: Record<AclAction, number>;
  oversizedPackets: number;
  /** Gateways closed for not reading their acks. */
  slowConsumers: number;
  /** Live and events deliveries dropped for consumers that were behind, and consumers closed for staying behind. */
  consumerDrops: ConsumerDrops;
  identities: number;
  registryReloadFailures: number;
  /** A clustered broker's Redis connections that are down now (broker/backends.ts); 0 alone. */
  storeLinksDown: number;
}

export function emptyBrokerStats(): BrokerStats {
  return {
    clients: 0,
    connects: 0,
    clientErrors: 0,
    connectionErrors: 0,
    messagesIn: 0,
    messagesOut: 0,
    bytesIn: 0,
    bytesOut: 0,
    authFailures: Object.fromEntries(Object.keys(AUTH_FAILURES).map((k) => [k, 0])) as Record<AuthFailure, number>,
    aclDenials: Object.fromEntries(ACL_ACTIONS.map((k) => [k, 0])) as Record<AclAction, number>,
    oversizedPackets: 0,
    slowConsumers: 0,
    consumerDrops: { messages: {}, points: {}, closed: 0, closedUnsentBytes: 0 },
    identities: 0,
    registryReloadFailures: 0,
    storeLinksDown: 0,
  };
}
