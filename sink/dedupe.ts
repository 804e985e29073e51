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

  /** Marks committed ranges, as a commit record lists them. */
  restore(gatewayId: string, ranges: Array<[number, number]>): void {
    let set = this.committed.get(gatewayId);
    if (!set) this.committed.set(gatewayId, (set = new RangeSet()));
    for (const [from, to] of ranges) set.addRange(from, to);
  }

  /** Forgets a staged batch whose commit failed, so a re-send is taken again. */
  unstage(gatewayId: string, batchSeq: number): void {
    this.staged.get(gatewayId)?.delete(batchSeq);
  }
}

/**
 * Invariant 3 for points: which (drone_id, seq) are committed or staged. A point sent
 * twice, in two batches and hours apart (an agent re-sending after a crash, a client
 * retrying its ingest request), is stored once. `seq` only grows per drone, so each
 * drone's set stays a few ranges. Staged points are kept per buffer, so a failed commit
 * forgets exactly its own.
 */
export class PointLedger {
  private readonly committed = new Map<string, RangeSet>();

  /** Records the point in `staged` unless it is already committed or staged; false for a duplicate. */
  take(droneId: string, seq: number, staged: Map<string, RangeSet>, alsoStaged: Map<string, RangeSet> | null): boolean {
    if (this.committed.get(droneId)?.has(seq)) return false;
    if (alsoStaged?.get(droneId)?.has(seq)) return false;
    let set = staged.get(droneId);
    if (!set) staged.set(droneId, (set = new RangeSet()));
    return set.add(seq);
  }

  /** Marks committed ranges, as a commit record lists them. */
  restore(droneId: string, ranges: Array<[number, number]>): void {
    let set = this.committed.get(droneId);
    if (!set) this.committed.set(droneId, (set = new RangeSet()));
    for (const [from, to] of ranges) set.addRange(from, to);
  }

  /** Moves a committed buffer's points into the committed set. */
  commit(staged: Map<string, RangeSet>): void {
    for (const [droneId, set] of staged) {
      let into = this.committed.get(droneId);
      if (!into) this.committed.set(droneId, (into = new RangeSet()));
      for (const [from, to] of set.ranges()) into.addRange(from, to);
    }
  }
}
