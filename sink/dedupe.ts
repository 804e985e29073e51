import { RangeSet } from './ranges';

export type BatchState = 'new' | 'staged' | 'committed';

/**
 * Invariant 3: which (gateway_id, batch_seq) the sink has already taken. Committed
 * batches are kept as ranges per gateway, so the state stays small for any history.
 */
export class BatchLedger {
  private readonly committed = new Map<string, RangeSet>();
  private readonly staged = new Map<string, Set<number>>();

  state(gatewayId: string, batchSeq: number): BatchState {
    if (this.committed.get(gatewayId)?.has(batchSeq)) return 'committed';
    if (this.staged.get(gatewayId)?.has(batchSeq)) return 'staged';
    return 'new';
  }

  markStaged(gatewayId: string, batchSeq: number): void {
    let set = this.staged.get(gatewayId);
    if (!set) this.staged.set(gatewayId, (set = new Set()));
    set.add(batchSeq);
  }

  markCommitted(gatewayId: string, batchSeq: number): void {
    this.staged.get(gatewayId)?.delete(batchSeq);
    let ranges = this.committed.get(gatewayId);
    if (!ranges) this.committed.set(gatewayId, (ranges = new RangeSet()));
    ranges.add(batchSeq);
  }

  /** Forgets a staged batch whose commit failed, so a re-send is taken again. */
  unstage(gatewayId: string, batchSeq: number): void {
    this.staged.get(gatewayId)?.delete(batchSeq);
  }
}
