import { describe, expect, it } from 'vitest';
import { damageRound } from './spool-damage';

const ROUNDS = 2000;

describe('the spool under power cuts (soak)', () => {
  it(`reopens after ${ROUNDS} cuts and bit flips, losing only the damaged records, and counts them`, async () => {
    for (let seed = 1; seed <= ROUNDS; seed++) {
      const round = await damageRound(seed);
      const where = `seed ${seed}: ${round.how} of a ${round.hit} record in ${round.file}`;
      expect(round.recovered, where).toEqual(round.expected);
      expect(round.payloadsIntact && round.counted && round.newStream, where).toBe(true);
    }
  }, 600_000);
});
