import mqtt from 'mqtt';
import type { Logger } from 'pino';
import { brokerConnectOptions } from '../deploy/runtime/broker-url';
import { watchLink } from '../deploy/runtime/link-log';
import { wireOfPayload } from '../proto/columnar';
import { ackTopic, telemetryTopic, telemetryTopicV2 } from '../proto/topics';
import { ackedSeqs } from './acks';
import { backoffDelayMs } from './backoff';
import type { ClosedBatch } from './batcher';
import type { Spool } from './spool';

export interface PublisherConfig {
  broker: string;
  gatewayId: string;
  clientId: string;
  /** Batches sent and not yet acked by the sink, at most. */
  window: number;
  /** Re-send a batch when its commit ack is this late. */
  ackTimeoutMs: number;
  reconnectMinMs: number;
  reconnectMaxMs: number;
  username?: string | undefined;
  password?: string | undefined;
  /** The PEM contents for TLS to the broker, read at start-up (readTlsFiles). */
  tls: { ca?: Buffer; cert?: Buffer; key?: Buffer };
}

export interface PublisherStats {
  sent: number;
  resent: number;
  acked: number;
  pointsAcked: number;
  badAcks: number;
  connected: boolean;
  reconnects: number;
}

/**
 * Sends pending batches at QoS 1, at most `window` unacknowledged at once, and frees each
 * only on the sink's commit ack (invariant 2): a PUBACK says only that the broker got it.
 */
export class Publisher {
  private readonly client: mqtt.MqttClient;
  // Batches made while the link is up go out first; what piled up during an outage (and
  // what the spool held at start) drains in the window's remaining room, so live points
  // keep flowing while the backlog drains.
  private readonly live = new Queue();
  private readonly backlog = new Queue();
  private reconnectAttempt = 0;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private closing = false;
  private announced = false;
  /** Sent and not yet acked, each with its send; a new send (a reconnect, a late ack) replaces it. */
  private readonly inFlight = new Map<number, Send>();
  private readonly resendTimer: NodeJS.Timeout;
  readonly stats: PublisherStats = { sent: 0, resent: 0, acked: 0, pointsAcked: 0, badAcks: 0, connected: false, reconnects: 0 };

  constructor(
    private readonly config: PublisherConfig,
    private readonly pending: Spool,
    private readonly log: Logger,
  ) {
    const topic = ackTopic(config.gatewayId);
    this.client = mqtt.connect({
      ...brokerConnectOptions(config.broker),
      clientId: config.clientId,
      clean: true,
      // Reconnects are scheduled below, with backoff and jitter.
      reconnectPeriod: 0,
      connectTimeout: 10_000,
      // MQTT.js otherwise builds 65,536 two-byte Buffers for packet ids on its first
      // write: 6 MB of heap that an agent on a small gateway cannot spare (invariant 6).
      writeCache: false,
      ...(config.username ? { username: config.username } : {}),
      ...(config.password ? { password: config.password } : {}),
      ...config.tls,
    });
    for (const seq of pending.seqs()) this.backlog.push(seq);
    this.client.on('connect', () => {
      // Send only once acks can be heard. With a clean session, acks published while
      // the link was down are gone, so whatever was in flight is sent again at once.
      this.client.subscribe(topic, { qos: 1 }, (err) => {
        if (err) {
          log.warn({ err: err.message }, 'ack subscription failed; reconnecting');
          this.client.reconnect();
          return;
        }
        this.stats.connected = true;
        this.reconnectAttempt = 0;
        // Once: a reconnect is logged as the end of its outage (deploy/runtime/link-log.ts).
        if (!this.announced) log.info({ broker: config.broker }, 'agent connected');
        this.announced = true;
        this.requeueInFlight();
        this.pump();
      });
    });
    this.client.on('close', () => {
      this.stats.connected = false;
      this.scheduleReconnect();
    });
    // One line per outage, not per attempt (deploy/runtime/link-log.ts).
    watchLink(this.client, log, 'telemetry');
    this.client.on('message', (t, payload) => {
      if (t === topic) this.onAck(payload);
    });
    this.resendTimer = setInterval(() => this.resend(Date.now() - config.ackTimeoutMs), Math.max(100, config.ackTimeoutMs / 4));
  }

  enqueue(batch: ClosedBatch): void {
    (this.stats.connected ? this.live : this.backlog).push(batch.seq);
    this.pump();
  }

  private pump(): void {
    // A closing publisher sends nothing more: its batches stay in the spool for the next start.
    while (this.stats.connected && !this.closing && this.inFlight.size < this.config.window) {
      const seq = this.next();
      if (seq === undefined) break;
      this.send(seq, false);
    }
  }

  /**
   * Live batches first, then the backlog, each only if the spool's memory bound has room for
   * it (invariant 6): batches already in memory go while the others wait for acks to free
   * room. One batch always goes, so a batch larger than the bound cannot stall the link.
   */
  private next(): number | undefined {
    for (const queue of [this.live, this.backlog]) {
      const seq = queue.peek();
      if (seq !== undefined && this.pending.roomFor(seq)) return queue.shift();
    }
    return this.inFlight.size === 0 ? (this.live.shift() ?? this.backlog.shift()) : undefined;
  }

  private scheduleReconnect(): void {
    if (this.closing || this.reconnectTimer) return;
    const delay = backoffDelayMs(this.reconnectAttempt++, this.config.reconnectMinMs, this.config.reconnectMaxMs);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      this.stats.reconnects++;
      this.client.reconnect();
    }, delay);
  }

  /**
   * With a clean session, acks published while the link was down are gone: whatever was
   * in flight goes back to the front of the backlog, oldest first.
   */
  private requeueInFlight(): void {
    const seqs = [...this.inFlight.keys()].sort((a, b) => a - b);
    this.inFlight.clear();
    for (let i = seqs.length - 1; i >= 0; i--) this.backlog.unshift(seqs[i]!);
    this.live.drainInto(this.backlog);
  }

  /**
   * Takes a place in the window, then publishes once the spool hands the payload over (from
   * memory, or read back from disk).
   */
  private send(seq: number, again: boolean): void {
    const send: Send = { sentAt: Date.now() };
    this.inFlight.set(seq, send);
    this.pending.load(seq).then(
      (batch) => {
        // Acked, or taken back by a reconnect and sent anew, while it was read.
        if (this.inFlight.get(seq) !== send) return;
        if (!batch) {
          this.inFlight.delete(seq);
          this.pump();
          return;
        }
        // Disconnected or closing meanwhile: the next connect sends whatever is in flight again.
        if (!this.stats.connected || this.closing) return;
        // Each batch goes on the topic of its own wire: a spool written before a --wire
        // change still holds batches of the other one.
        const topic = wireOfPayload(batch.payload) === 'v2' ? telemetryTopicV2(this.config.gatewayId) : telemetryTopic(this.config.gatewayId);
        this.client.publish(topic, Buffer.from(batch.payload.buffer, batch.payload.byteOffset, batch.payload.length), { qos: 1 });
        if (again) this.stats.resent++;
        else this.stats.sent++;
      },
      // It stays in flight, so the ack timeout tries the read again.
      (err: unknown) => this.log.warn({ seq, err: (err as Error).message }, 'reading a batch back from the spool failed; retried after --ack-timeout'),
    );
  }

  private onAck(payload: Buffer): void {
    const seqs = ackedSeqs(payload, this.config.gatewayId);
    if (typeof seqs === 'string') {
      this.stats.badAcks++;
      this.log.warn({ reason: seqs }, 'ignored a malformed commit ack');
      return;
    }
    for (const seq of seqs) {
      this.inFlight.delete(seq);
      const points = this.pending.pointsOf(seq);
      // invariant 2: free only after the sink's commit ack.
      if (points !== undefined && this.pending.ack(seq)) {
        this.stats.acked++;
        this.stats.pointsAcked += points;
      }
    }
    this.pump();
  }

  /** Sends again every in-flight batch sent before `sentBefore` (ms since the epoch). */
  private resend(sentBefore: number): void {
    if (!this.stats.connected) return;
    for (const [seq, { sentAt }] of this.inFlight) {
      if (sentAt < sentBefore) this.send(seq, true);
    }
  }

  /**
   * Tries the broker now, without waiting out the backoff, and resolves once the link is up
   * (acks can be heard), the attempt failed, or `timeoutMs` passed: what a stop does before
   * it waits for acks, so that it neither waits for a broker that is away nor gives up on one
   * that came back during the backoff.
   */
  async tryNow(timeoutMs: number): Promise<void> {
    if (this.stats.connected || this.closing) return;
    // A scheduled attempt is taken now; without one, an attempt is under way: its outcome is awaited.
    if (this.reconnectTimer) {
      clearTimeout(this.reconnectTimer);
      this.reconnectTimer = undefined;
      this.stats.reconnects++;
      this.client.reconnect();
    }
    const deadline = Date.now() + timeoutMs;
    let failed = false;
    const onClose = () => (failed = true);
    this.client.once('close', onClose);
    try {
      while (!this.stats.connected && !failed && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    } finally {
      this.client.off('close', onClose);
    }
  }

  async close(): Promise<void> {
    this.closing = true;
    clearTimeout(this.reconnectTimer);
    clearInterval(this.resendTimer);
    await this.client.endAsync(!this.client.connected);
  }
}

interface Send {
  /** ms since the epoch. */
  sentAt: number;
}

/** A FIFO of batch numbers with O(1) shift. */
class Queue {
  private items: number[] = [];
  private head = 0;

  get size(): number {
    return this.items.length - this.head;
  }

  push(seq: number): void {
    this.items.push(seq);
  }

  unshift(seq: number): void {
    if (this.head > 0) this.items[--this.head] = seq;
    else this.items.unshift(seq);
  }

  peek(): number | undefined {
    return this.items[this.head];
  }

  shift(): number | undefined {
    if (this.head >= this.items.length) return undefined;
    const seq = this.items[this.head++];
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return seq;
  }

  /** Moves every item to the end of `other`, in order. */
  drainInto(other: Queue): void {
    for (let seq = this.shift(); seq !== undefined; seq = this.shift()) other.push(seq);
  }
}
