import { describe, expect, it } from 'vitest';
import { BatchLedger, PointLedger, takeSeq, type PointKeys } from '../sink/dedupe';

/** Dedupes one point as the sink does, for a run of one. */
const take = (ledger: PointLedger, drone: string, stream: number, seq: number, staged: PointKeys, alsoStaged: PointKeys | null): boolean => takeSeq(ledger.run(drone, stream, staged, alsoStaged), seq);

// Invariant 3, step by step: a batch is (gateway_id, batch_seq) and a point (drone_id,
// stream, seq); a re-send is recognised, two observations never collapse into one.

describe('sink step: dedupe of batches', () => {
  it('follows a batch from new to staged to committed, and forgets a failed commit', () => {
    const ledger = new BatchLedger();
    expect(ledger.state('gw-a', 1)).toBe('new');
    ledger.markStaged('gw-a', 1);
    ledger.markStaged('gw-a', 2);
    expect([ledger.state('gw-a', 1), ledger.state('gw-a', 2), ledger.state('gw-b', 1)]).toEqual(['staged', 'staged', 'new']);
    ledger.markCommitted('gw-a', 1);
    // A commit that failed: its batch is taken again when the gateway re-sends it.
    ledger.unstage('gw-a', 2);
    expect([ledger.state('gw-a', 1), ledger.state('gw-a', 2)]).toEqual(['committed', 'new']);
  });

  it('keeps committed batches as ranges per gateway, and restores them as a checkpoint lists them', () => {
    const ledger = new BatchLedger();
    for (const seq of [0, 1, 2, 3, 7, 8, 10]) ledger.markCommitted('gw-a', seq);
    ledger.markCommitted('gw-b', 5);
    expect(ledger.export()).toEqual({ 'gw-a': [[0, 3], [7, 8], [10, 10]], 'gw-b': [[5, 5]] });
    const restored = new BatchLedger();
    for (const [gateway, ranges] of Object.entries(ledger.export())) restored.restore(gateway, ranges);
    expect([0, 3, 4, 6, 7, 9, 10, 11].map((seq) => restored.state('gw-a', seq))).toEqual(['committed', 'committed', 'new', 'new', 'committed', 'new', 'committed', 'new']);
    expect(restored.export()).toEqual(ledger.export());
  });
});

describe('sink step: dedupe of points', () => {
  it('takes a key once, whether it is staged in this buffer, in the one being committed, or committed', () => {
    const ledger = new PointLedger();
    const open: PointKeys = new Map();
    const committing: PointKeys = new Map();
    expect(take(ledger, 'd-1', 7, 0, committing, null)).toBe(true);
    expect(take(ledger, 'd-1', 7, 1, open, committing)).toBe(true);
    // Already in the buffer, and in the buffer being committed.
    expect(take(ledger, 'd-1', 7, 1, open, committing)).toBe(false);
    expect(take(ledger, 'd-1', 7, 0, open, committing)).toBe(false);
    // The same seq in another stream, or of another drone, is another observation.
    expect(take(ledger, 'd-1', 8, 0, open, committing)).toBe(true);
    expect(take(ledger, 'd-2', 7, 0, open, committing)).toBe(true);
    ledger.commit(committing, 1_000);
    expect(take(ledger, 'd-1', 7, 0, new Map(), null)).toBe(false);
    expect(ledger.streams).toBe(1);
    expect(ledger.export()).toEqual({ 'd-1': { '7': { ranges: [[0, 0]], last_at: 1_000 } } });
  });

  it('forgets a stream no commit added to since the horizon, and only that one', () => {
    const ledger = new PointLedger();
    ledger.restore('d-old', 1, [[0, 99]], 1_000);
    ledger.restore('d-new', 1, [[0, 9]], 5_000);
    ledger.restore('d-new', 2, [[0, 9]], 2_000);
    expect(ledger.streams).toBe(3);
    expect(ledger.evictIdle(3_000)).toBe(2);
    expect(ledger.streams).toBe(1);
    expect(ledger.export()).toEqual({ 'd-new': { '1': { ranges: [[0, 9]], last_at: 5_000 } } });
    // The evicted stream's points are no longer known: only its batches stay deduped.
    expect(take(ledger, 'd-old', 1, 50, new Map(), null)).toBe(true);
    expect(take(ledger, 'd-new', 1, 5, new Map(), null)).toBe(false);
  });

  it('takes a run of one drone and stream as ranges, refusing a seq already there', () => {
    const keys: PointKeys = new Map();
    const run = new PointLedger().run('d-1', 3, keys, null);
    expect([0, 1, 2, 1, 5].map((seq) => takeSeq(run, seq))).toEqual([true, true, true, false, true]);
    expect(keys.get('d-1')?.get(3)?.ranges()).toEqual([[0, 2], [5, 5]]);
  });
});
