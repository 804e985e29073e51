import type { AedesPublishPacket, Client } from 'aedes';
import { livePointCount } from '../proto/live';
import { SOCKET_HIGH_WATER_MARK } from './listeners';

// Deliveries of the live and events ports to their consumers. A consumer that does not read
// must never make the sink wait (invariant 6: a slow consumer never slows the lake): Aedes
// makes a publisher wait while one of its deliveries waits for a receiver's socket to drain,
// which happens once a write leaves the socket's high-water mark or more unsent. So a
// delivery goes out only if it fits under that mark with what is still unsent to the
// consumer; otherwise it is dropped for that consumer alone, and counted under its identity,
// in messages and in points. The consumer keeps its connection: what reached its socket
// arrives once it reads again, so points received + points dropped for it == points
// published on the topics it subscribed to. One that stays behind for `maxBehindMs` (no
// delivery admitted that long while messages came) is closed, and counted.

/** What the port's consumers missed, per consumer identity ('anonymous' without a registry). */
export interface ConsumerDrops {
  messages: Record<string, number>;
  points: Record<string, number>;
  /** Consumers closed for staying behind, and the bytes the broker still held for them then. */
  closed: number;
  closedUnsentBytes: number;
}

export interface PortDelivery {
  /** Whether this delivery to `client` (of identity `consumer`) goes out; if not, it is counted as dropped. */
  admit(client: Client, consumer: string, packet: AedesPublishPacket): boolean;
  drops(): ConsumerDrops;
}

interface ConsumerState {
  /** Bytes of deliveries admitted whose write is not yet on the socket (Aedes writes them on the next turn). */
  reserved: number;
  /** When its first drop since its last admitted delivery happened; 0 while it keeps up. */
  behindSince: number;
}

/** A PUBLISH's bytes on the wire, near enough from above: fixed header (up to 5), topic length (2), topic, payload (QoS 0: no packet id). */
const wireBytes = (packet: AedesPublishPacket): number =>
  7 + packet.topic.length + (typeof packet.payload === 'string' ? Buffer.byteLength(packet.payload) : packet.payload.length);

/**
 * A delivery admitted now is written by Aedes in a setImmediate it queues after this returns;
 * one queued from that turn runs after it, so the reservation lasts until the bytes are in
 * the socket's count (or already sent).
 */
function releaseNextTurn(state: ConsumerState, bytes: number): void {
  setImmediate(release, state, bytes);
}
function release(state: ConsumerState, bytes: number): void {
  state.reserved -= bytes;
}

export function createPortDelivery(maxBehindMs: number, onClose: (client: Client, consumer: string, unsentBytes: number) => void): PortDelivery {
  const states = new WeakMap<Client, ConsumerState>();
  const messages = new Map<string, number>();
  const points = new Map<string, number>();
  let closed = 0;
  let closedUnsentBytes = 0;

  return {
    admit(client, consumer, packet) {
      let state = states.get(client);
      if (!state) states.set(client, (state = { reserved: 0, behindSince: 0 }));
      const conn = client.conn;
      const bytes = wireBytes(packet);
      if (!conn.destroyed && conn.writableLength + state.reserved + bytes < SOCKET_HIGH_WATER_MARK) {
        state.reserved += bytes;
        state.behindSince = 0;
        setImmediate(releaseNextTurn, state, bytes);
        return true;
      }
      messages.set(consumer, (messages.get(consumer) ?? 0) + 1);
      points.set(consumer, (points.get(consumer) ?? 0) + livePointCount(packet.topic, packet.payload));
      if (conn.destroyed) return false;
      const now = Date.now();
      if (state.behindSince === 0) state.behindSince = now;
      else if (maxBehindMs > 0 && now - state.behindSince >= maxBehindMs) {
        closed++;
        closedUnsentBytes += conn.writableLength;
        onClose(client, consumer, conn.writableLength);
        conn.destroy(new Error(`slow consumer: behind on the live port for ${Math.round((now - state.behindSince) / 1000)} s`));
      }
      return false;
    },
    drops: () => ({ messages: Object.fromEntries(messages), points: Object.fromEntries(points), closed, closedUnsentBytes }),
  };
}
