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

  /** The committed batches as ranges per gateway, for a state checkpoint. */
  export(): Record<string, Array<[number, number]>> {
    return Object.fromEntries([...this.committed].map(([gatewayId, set]) => [gatewayId, set.ranges()]));
  }

  /** Forgets a staged batch whose commit failed, so a re-send is taken again. */
  unstage(gatewayId: string, batchSeq: number): void {
    this.staged.get(gatewayId)?.delete(batchSeq);
  }
}

/** Point keys as ranges: drone_id -> stream -> seqs. */
export type PointKeys = Map<string, Map<number, RangeSet>>;

/** The sets of one (drone_id, stream) that dedupe a point against: PointLedger.run. */
export interface StreamRun {
  readonly droneId: string;
  readonly stream: number;
  readonly committed: RangeSet | null;
  readonly alsoStaged: RangeSet | null;
  readonly staged: PointKeys;
  /** The run's set in `staged`, made on its first point. */
  stagedSet: RangeSet | null;
}

/** Records the point's seq as staged unless it is already committed or staged; false for a duplicate. */
export function takeSeq(run: StreamRun, seq: number): boolean {
  if (run.committed?.has(seq) || run.alsoStaged?.has(seq)) return false;
  if (run.stagedSet === null) {
    let byStream = run.staged.get(run.droneId);
    if (!byStream) run.staged.set(run.droneId, (byStream = new Map()));
    let set = byStream.get(run.stream);
    if (!set) byStream.set(run.stream, (set = new RangeSet()));
    run.stagedSet = set;
  }
  return run.stagedSet.add(seq);
}

interface StreamState {
  readonly seqs: RangeSet;
  /** When a commit last added to the stream, ms since the epoch. */
  lastAt: number;
}

/**
 * Invariant 3 for points: which (drone_id, stream, seq) are committed or staged. A point
 * sent twice, in two batches and hours apart (an agent re-sending after a crash, a client
 * retrying its ingest request), is stored once; two points that differ in stream are two
 * observations, whatever their seqs. A stream's seqs only grow, so each stream stays a few
 * ranges. Staged points are kept per buffer, so a failed commit forgets exactly its own.
 *
 * Invariant 6: a stream idle for longer than the horizon leaves memory (`evictIdle`). Its
 * batches stay deduped for ever by the batch ledger; only a point re-sent in a new batch
 * after that long (an ingest client retrying a day later) would be stored again.
 */
export class PointLedger {
  private readonly committed = new Map<string, Map<number, StreamState>>();
  private streamCount = 0;

  /** Streams held in memory. */
  get streams(): number {
    return this.streamCount;
  }

  /**
   * The sets a point of (drone_id, stream) is deduped against (takeSeq), looked up once
   * for a run of points: the sink takes a v2 batch's points grouped by drone.
   */
  run(droneId: string, stream: number, staged: PointKeys, alsoStaged: PointKeys | null): StreamRun {
    return { droneId, stream, committed: this.committed.get(droneId)?.get(stream)?.seqs ?? null, alsoStaged: alsoStaged?.get(droneId)?.get(stream) ?? null, staged, stagedSet: staged.get(droneId)?.get(stream) ?? null };
  }

  private state(droneId: string, stream: number, atMs: number): StreamState {
    let byStream = this.committed.get(droneId);
    if (!byStream) this.committed.set(droneId, (byStream = new Map()));
    let state = byStream.get(stream);
    if (!state) {
      byStream.set(stream, (state = { seqs: new RangeSet(), lastAt: atMs }));
      this.streamCount++;
    }
    state.lastAt = Math.max(state.lastAt, atMs);
    return state;
  }

  /** Marks committed ranges, as a commit record lists them, committed at `atMs`. */
  restore(droneId: string, stream: number, ranges: Array<[number, number]>, atMs: number): void {
    const { seqs } = this.state(droneId, stream, atMs);
    for (const [from, to] of ranges) seqs.addRange(from, to);
  }

  /** Moves a committed buffer's points into the committed set. */
  commit(staged: PointKeys, atMs: number): void {
    for (const [droneId, byStream] of staged) {
      for (const [stream, set] of byStream) {
        const { seqs } = this.state(droneId, stream, atMs);
        for (const [from, to] of set.ranges()) seqs.addRange(from, to);
      }
    }
  }

  /** Every stream's committed ranges and last commit time, for a state checkpoint. */
  export(): Record<string, Record<string, { ranges: Array<[number, number]>; last_at: number }>> {
    const out: Record<string, Record<string, { ranges: Array<[number, number]>; last_at: number }>> = {};
    for (const [droneId, byStream] of this.committed) {
      const streams: Record<string, { ranges: Array<[number, number]>; last_at: number }> = (out[droneId] = {});
      for (const [stream, state] of byStream) streams[String(stream)] = { ranges: state.seqs.ranges(), last_at: state.lastAt };
    }
    return out;
  }

  /** Forgets the streams no commit added to since `beforeMs`; returns how many. */
  evictIdle(beforeMs: number): number {
    let evicted = 0;
    for (const [droneId, byStream] of this.committed) {
      for (const [stream, state] of byStream) {
        if (state.lastAt >= beforeMs) continue;
        byStream.delete(stream);
        evicted++;
      }
      if (byStream.size === 0) this.committed.delete(droneId);
    }
    this.streamCount -= evicted;
    return evicted;
  }
}
