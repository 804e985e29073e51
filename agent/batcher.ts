import { BatchWriter } from '../proto/codec';
import { ColumnarWriter, type Compression } from '../proto/columnar';
import type { Wire } from '../proto/topics';
import { nowMicros } from '../proto/time';
import type { TelemetryPoint } from '../proto/types';

export interface BatcherConfig {
  gatewayId: string;
  maxPoints: number;
  maxBytes: number;
  lingerMs: number;
  /** batch_seq of the first batch this batcher closes; then +1 per batch. */
  firstSeq: number;
  /** The stream the points' seqs count in: the spool's (invariant 3). */
  stream: number;
  /** v2: columnar batches, compressed as `compression` says; v1: row batches, for sinks before v2. */
  wire: Wire;
  compression: Compression;
  /** Points the spool has dropped so far, reported in every batch. */
  droppedPoints?: () => number;
}

export interface ClosedBatch {
  seq: number;
  points: number;
  payload: Uint8Array;
}

/**
 * Groups points into batches, closing one at a point count, a byte size or a linger time,
 * whichever comes first. On v1 points are encoded as they arrive, so the size is exact;
 * on v2 they go into typed columns, encoded when the batch closes, and the size is an
 * upper bound.
 */
export class Batcher {
  private readonly writer: BatchWriter | ColumnarWriter;
  private nextSeq: number;
  private lingerTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly config: BatcherConfig,
    private readonly onBatch: (batch: ClosedBatch) => void,
  ) {
    this.nextSeq = config.firstSeq;
    this.writer = config.wire === 'v1' ? new BatchWriter() : new ColumnarWriter(config.compression);
  }

  add(point: TelemetryPoint): void {
    this.writer.add(point);
    if (this.writer.pointCount >= this.config.maxPoints || this.writer.byteLength >= this.config.maxBytes) {
      this.close();
    } else if (this.lingerTimer === undefined) {
      this.lingerTimer = setTimeout(() => this.close(), this.config.lingerMs);
    }
  }

  /** Closes the open batch now, if it holds any point. */
  close(): void {
    clearTimeout(this.lingerTimer);
    this.lingerTimer = undefined;
    const points = this.writer.pointCount;
    if (points === 0) return;
    const seq = this.nextSeq++;
    const { gatewayId, stream } = this.config;
    this.onBatch({ seq, points, payload: this.writer.finish({ gatewayId, batchSeq: seq, sentAt: nowMicros(), droppedPoints: this.config.droppedPoints?.() ?? 0, stream }) });
  }
}
