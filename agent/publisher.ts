import mqtt from 'mqtt';
import type { Logger } from 'pino';
import { ackTopic, telemetryTopic } from '../proto/topics';
import { ackedSeqs } from './acks';
import type { ClosedBatch } from './batcher';
import type { PendingBatches } from './pending';

export interface PublisherConfig {
  broker: string;
  gatewayId: string;
  clientId: string;
  /** Batches sent and not yet acked by the sink, at most. */
  window: number;
  /** Re-send a batch when its commit ack is this late. */
  ackTimeoutMs: number;
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
  private readonly queue: number[] = [];
  private queueHead = 0;
  private readonly inFlight = new Map<number, number>();
  private readonly resendTimer: NodeJS.Timeout;
  readonly stats: PublisherStats = { sent: 0, resent: 0, acked: 0, pointsAcked: 0, badAcks: 0, connected: false, reconnects: 0 };

  constructor(
    private readonly config: PublisherConfig,
    private readonly pending: PendingBatches,
    private readonly log: Logger,
  ) {
    const topic = ackTopic(config.gatewayId);
    this.client = mqtt.connect(config.broker, { clientId: config.clientId, clean: true, reconnectPeriod: 1000 });
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
        log.info({ broker: config.broker }, 'agent connected');
        this.resend(Number.POSITIVE_INFINITY);
        this.pump();
      });
    });
    this.client.on('reconnect', () => this.stats.reconnects++);
    this.client.on('close', () => (this.stats.connected = false));
    this.client.on('error', (err) => log.warn({ err: err.message }, 'mqtt error'));
    this.client.on('message', (t, payload) => {
      if (t === topic) this.onAck(payload);
    });
    this.resendTimer = setInterval(() => this.resend(Date.now() - config.ackTimeoutMs), Math.max(100, config.ackTimeoutMs / 4));
  }

  get unsent(): number {
    return this.queue.length - this.queueHead;
  }

  get inFlightCount(): number {
    return this.inFlight.size;
  }

  enqueue(batch: ClosedBatch): void {
    this.queue.push(batch.seq);
    this.pump();
  }

  private pump(): void {
    while (this.stats.connected && this.inFlight.size < this.config.window && this.queueHead < this.queue.length) {
      const seq = this.queue[this.queueHead++]!;
      if (this.send(seq)) this.stats.sent++;
    }
    if (this.queueHead > 1024 && this.queueHead * 2 > this.queue.length) {
      this.queue.splice(0, this.queueHead);
      this.queueHead = 0;
    }
  }

  private send(seq: number): boolean {
    const batch = this.pending.get(seq);
    if (!batch) return false;
    this.inFlight.set(seq, Date.now());
    this.client.publish(telemetryTopic(this.config.gatewayId), Buffer.from(batch.payload.buffer, batch.payload.byteOffset, batch.payload.length), { qos: 1 });
    return true;
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
      // invariant 2: free only after the sink's commit ack.
      const freed = this.pending.free(seq);
      if (freed) {
        this.stats.acked++;
        this.stats.pointsAcked += freed.points;
      }
    }
    this.pump();
  }

  /** Sends again every in-flight batch sent before `sentBefore` (ms since the epoch). */
  private resend(sentBefore: number): void {
    if (!this.stats.connected) return;
    for (const [seq, sentAt] of this.inFlight) {
      if (sentAt >= sentBefore) continue;
      if (this.send(seq)) this.stats.resent++;
      else this.inFlight.delete(seq);
    }
  }

  async close(): Promise<void> {
    clearInterval(this.resendTimer);
    await this.client.endAsync(!this.client.connected);
  }
}
