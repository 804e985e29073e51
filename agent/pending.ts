import type { ClosedBatch } from './batcher';

/**
 * Batches the agent holds until the sink says they are committed (invariant 2). This one
 * keeps them in memory; the disk spool takes the same place behind the same methods.
 */
export class PendingBatches {
  private readonly batches = new Map<number, ClosedBatch>();
  private byteCount = 0;
  private pointCount = 0;

  get count(): number {
    return this.batches.size;
  }

  get bytes(): number {
    return this.byteCount;
  }

  get points(): number {
    return this.pointCount;
  }

  append(batch: ClosedBatch): void {
    this.batches.set(batch.seq, batch);
    this.byteCount += batch.payload.length;
    this.pointCount += batch.points;
  }

  get(seq: number): ClosedBatch | undefined {
    return this.batches.get(seq);
  }

  /** Frees a committed batch; returns it, or undefined if it was not pending. */
  free(seq: number): ClosedBatch | undefined {
    const batch = this.batches.get(seq);
    if (!batch) return undefined;
    this.batches.delete(seq);
    this.byteCount -= batch.payload.length;
    this.pointCount -= batch.points;
    return batch;
  }
}
