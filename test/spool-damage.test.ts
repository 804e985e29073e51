import { describe, expect, it } from 'vitest';
import { damageRound } from './spool-damage';

// The soak variant (test/spool-damage.soak.ts, `npm run test:soak`) runs 2,000 rounds.
const ROUNDS = 100;

describe('the spool under power cuts', () => {
  it(`reopens after ${ROUNDS} cuts and bit flips in segments, checkpoints and acks.log, losing only the damaged records, and counts them`, async () => {
    const hits = new Map<string, number>();
    for (let seed = 1; seed <= ROUNDS; seed++) {
      const round = await damageRound(seed);
      const where = `seed ${seed}: ${round.how} of a ${round.hit} record in ${round.file}`;
      expect(round.recovered, where).toEqual(round.expected);
      expect(round.payloadsIntact, where).toBe(true);
      expect(round.counted, where).toBe(true);
      // Invariant 3: a damaged spool may have lost a drone's latest seq, so it counts in a new stream.
      expect(round.newStream, where).toBe(true);
      const kind = `${round.how} ${round.hit}`;
      hits.set(kind, (hits.get(kind) ?? 0) + 1);
    }
    // Every kind of record was hit, both ways.
    for (const how of ['flip', 'truncate']) for (const hit of ['batch', 'checkpoint', 'ack']) expect(hits.get(`${how} ${hit}`), `${how} ${hit}`).toBeGreaterThan(0);
  }, 60_000);
});
