import type { AedesPublishPacket, Client } from 'aedes';
import { writeToStream } from 'mqtt-packet';
import { livePointCount } from '../proto/live';
import { SOCKET_HIGH_WATER_MARK } from './listeners';

// Deliveries of the live and events ports to their consumers. A consumer that does not read
// must never make the sink wait (invariant 6: a slow consumer never slows the lake). Aedes
// makes a publisher wait while one of its deliveries waits for a receiver's socket to drain,
// so the broker writes these deliveries itself, as QoS 0 PUBLISH packets, and never waits:
// a delivery goes out if it fits under MAX_UNSENT with what is still unsent to the consumer,
// and is dropped for that consumer alone otherwise, counted under its identity, in messages
// and in points. The consumer keeps its connection: what reached its socket arrives once it
// reads again, so points received + points dropped for it == points published on the topics
// it subscribed to. One that stays behind for `maxBehindMs` (nothing sent to it that long
// while messages came) is closed, and counted.

/**
 * Bytes a consumer may leave unsent before its deliveries are dropped. Half the socket's
 * high-water mark, so that what Aedes itself writes to it (a PINGRESP) never finds the socket
 * full: Aedes would wait for a drain, and close a consumer that stays behind after
 * --drain-timeout, with what it held uncounted.
 */
const MAX_UNSENT = SOCKET_HIGH_WATER_MARK / 2;

/** What the ports' consumers missed, per consumer identity ('anonymous' without a registry). */
export interface ConsumerDrops {
  messages: Record<string, number>;
  points: Record<string, number>;
  /** Consumers closed for staying behind, and the bytes the broker still held for them then. */
  closed: number;
  closedUnsentBytes: number;
}

export interface PortDelivery {
  /** Writes a delivery to `client` (of identity `consumer`), or drops it, counted: whether it was written. */
  deliver(client: Client, consumer: string, packet: AedesPublishPacket): boolean;
  drops(): ConsumerDrops;
}

/** Bytes of MQTT's remaining length field for a packet body of `remaining` bytes. */
const lengthBytes = (remaining: number): number => (remaining < 128 ? 1 : remaining < 16_384 ? 2 : remaining < 2_097_152 ? 3 : 4);

export function createPortDelivery(maxBehindMs: number, onClose: (client: Client, consumer: string, unsentBytes: number) => void): PortDelivery {
  /** When each consumer's first drop since its last delivery happened; absent while it keeps up. */
  const behindSince = new WeakMap<Client, number>();
  const messages = new Map<string, number>();
  const points = new Map<string, number>();
  let closed = 0;
  let closedUnsentBytes = 0;

  return {
    deliver(client, consumer, packet) {
      const conn = client.conn;
      const open = client.connected && !conn.destroyed;
      const payload = packet.payload;
      const payloadBytes = typeof payload === 'string' ? Buffer.byteLength(payload) : payload.length;
      const topicBytes = Buffer.byteLength(packet.topic);
      const body = 2 + topicBytes + payloadBytes;
      // A message larger than the bound goes out alone, on a socket that holds nothing unsent.
      if (open && (conn.writableLength === 0 || conn.writableLength + 1 + lengthBytes(body) + body <= MAX_UNSENT)) {
        // Written whatever write() answers: what stays unsent is bounded by the test above.
        // mqtt-packet, as Aedes writes packets: header and topic, then the payload uncopied.
        writeToStream({ cmd: 'publish', topic: packet.topic, payload, qos: 0, retain: packet.retain, dup: false }, conn);
        behindSince.delete(client);
        return true;
      }
      messages.set(consumer, (messages.get(consumer) ?? 0) + 1);
      points.set(consumer, (points.get(consumer) ?? 0) + livePointCount(packet.topic, payload));
      if (!open) return false;
      const now = Date.now();
      const since = behindSince.get(client);
      if (since === undefined) behindSince.set(client, now);
      else if (maxBehindMs > 0 && now - since >= maxBehindMs) {
        closed++;
        closedUnsentBytes += conn.writableLength;
        onClose(client, consumer, conn.writableLength);
        conn.destroy(new Error(`slow consumer: behind on the live port for ${Math.round((now - since) / 1000)} s`));
      }
      return false;
    },
    drops: () => ({ messages: Object.fromEntries(messages), points: Object.fromEntries(points), closed, closedUnsentBytes }),
  };
}
