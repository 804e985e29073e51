import dgram from 'node:dgram';
import { once } from 'node:events';
import type { BlockList } from 'node:net';
import { nowMicros } from '../../proto/time';
import type { Source, SourceOutput } from '../source';
import type { UdpEndpoint } from './config';
import { MavlinkScanner } from './scanner';
import { createSignatureCheck, newSigningStats, type SigningKeys, type SigningStats } from './signing';
import { MavlinkTelemetry, type MavlinkStats } from './telemetry';

export interface MavlinkUdpOptions {
  endpoints: UdpEndpoint[];
  droneId: (sysid: number) => string;
  /** At most this many points per second per vehicle; 0 keeps every position report. */
  hz: number;
  firstSeq: (droneId: string) => number;
  /** Take only frames signed with these keys (MAVLink 2 signing); absent, signatures are not checked. */
  keys?: SigningKeys | undefined;
  /** Take only datagrams from these senders; absent, from anyone. */
  allow?: BlockList | undefined;
}

export interface MavlinkUdpStats extends MavlinkStats {
  signing: SigningStats;
}

export interface MavlinkUdpSource extends Source {
  /** The bound addresses, `udp:HOST:PORT`, with the ports the system chose for port 0. */
  readonly addresses: string[];
  stats(): MavlinkUdpStats;
}

/**
 * Listens for MAVLink on UDP, as a ground station does: a router or autopilot sends its
 * stream to these ports. Sockets are bound here, so a port in use fails the agent's start;
 * datagrams before start() are dropped. Each datagram is framed on its own (senders never
 * split a packet across datagrams); its points carry the receive time as event time.
 */
export async function openMavlinkUdp(opts: MavlinkUdpOptions): Promise<MavlinkUdpSource> {
  let out: SourceOutput | null = null;
  const telemetry = new MavlinkTelemetry({
    droneId: opts.droneId,
    hz: opts.hz,
    firstSeq: opts.firstSeq,
    emit: (p) => out?.emit(p),
    // UDP cannot be paused: while the agent is full, reports are dropped and counted.
    canEmit: () => out?.accepting ?? false,
  });
  let receivedUs = 0;
  const signing = newSigningStats();
  const signed = opts.keys ? createSignatureCheck(opts.keys, signing) : null;
  // A frame that fails the check is dropped whole, before it can change a vehicle's state.
  const scanner = new MavlinkScanner('raw', telemetry.stats, (buf, frame) => {
    if (signed === null || signed(buf, frame, receivedUs)) telemetry.onFrame(buf, frame, receivedUs);
  });
  const allow = opts.allow;
  const sockets: dgram.Socket[] = [];
  try {
    for (const ep of opts.endpoints) {
      const socket = dgram.createSocket({ type: ep.host.includes(':') ? 'udp6' : 'udp4' });
      sockets.push(socket);
      socket.on('message', (msg, from) => {
        if (out === null) return;
        if (allow && !allow.check(from.address, from.family === 'IPv6' ? 'ipv6' : 'ipv4')) {
          signing.refused.sender_denied++;
          return;
        }
        receivedUs = nowMicros();
        scanner.scan(msg, msg.length, true);
      });
      socket.bind(ep.port, ep.host);
      await Promise.race([once(socket, 'listening'), once(socket, 'error').then(([err]) => Promise.reject(err as Error))]);
      // Later errors (ICMP noise) must not crash the agent; the socket keeps receiving.
      socket.on('error', () => {});
    }
  } catch (err) {
    for (const s of sockets) s.close();
    throw err;
  }
  const addresses = sockets.map((s) => {
    const a = s.address();
    return `udp:${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`;
  });
  return {
    name: 'mavlink',
    addresses,
    stats: () => ({ ...telemetry.stats, signing }),
    start(o) {
      out = o;
    },
    async stop() {
      out = null;
      await Promise.all(sockets.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
      sockets.length = 0;
    },
  };
}
