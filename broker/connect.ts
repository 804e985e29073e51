import type { ConnectPacket } from 'aedes';

/** The limits a CONNECT packet is held to, from the broker's options. */
export interface ConnectLimits {
  maxClientIdLength: number;
  /** Seconds; 0 for no limit. */
  maxKeepalive: number;
}

/** A rule of the CONNECT packet that the broker enforces on top of Aedes; every one is answered with CONNACK 2. */
export type ConnectFailure = 'empty_client_id' | 'client_id_too_long' | 'keepalive_too_long';

/**
 * The rule `packet` breaks, if any, with what broke it. MQTT 3.1.1 defines return codes 0-5
 * (section 3.2.2.3; 6-255 are reserved) and names none for a keepalive the server will not
 * take, so that one gets 2 (identifier rejected), as Mosquitto answers one above its
 * max_keepalive. Aedes then closes the connection [MQTT-3.2.2-5].
 */
export function connectRefusal(packet: ConnectPacket, limits: ConnectLimits): { reason: ConnectFailure; detail: string } | null {
  const id = packet.clientId;
  // [MQTT-3.1.3-8]: a zero-byte client id with CleanSession 0 is refused with 0x02. MQTT 3.1
  // (protocol level 3) requires 1-23 characters, so there an empty id is refused whatever
  // CleanSession says. With CleanSession 1 in 3.1.1, Aedes assigns a unique id [MQTT-3.1.3-6].
  if (id.length === 0 && (!packet.clean || packet.protocolVersion === 3)) {
    return { reason: 'empty_client_id', detail: packet.clean ? 'MQTT 3.1 requires a client id' : 'CleanSession 0' };
  }
  // [MQTT-3.1.3-5]: 1-23 characters MUST be allowed, more MAY be (--max-client-id-length is at
  // least 23); an id the server rejects gets 0x02 [MQTT-3.1.3-9]. Checked on the packet, not on
  // client.id: an id Aedes generated (42 characters) is not the client's to answer for.
  if (id.length > limits.maxClientIdLength) return { reason: 'client_id_too_long', detail: `${id.length} characters` };
  // Keepalive 0 turns the mechanism off (section 3.1.2.10) and is the client's right: no
  // [MQTT-3.1.2-24] timer then, and a dead link under it is found by TCP keepalive (see
  // listeners.ts). Only a keepalive above the limit is refused: broker policy, not a spec rule.
  const keepalive = packet.keepalive ?? 0;
  if (limits.maxKeepalive > 0 && keepalive > limits.maxKeepalive) return { reason: 'keepalive_too_long', detail: `keepalive ${keepalive} s` };
  return null;
}
