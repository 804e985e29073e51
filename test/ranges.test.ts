import { describe, expect, it } from 'vitest';
import { RangeSet } from '../sink/ranges';

describe('RangeSet', () => {
  it('merges neighbours and reports duplicates', () => {
    const s = new RangeSet();
    for (const n of [5, 7, 6, 1, 2, 10]) expect(s.add(n)).toBe(true);
    expect(s.add(6)).toBe(false);
    expect(s.ranges()).toEqual([
      [1, 2],
      [5, 7],
      [10, 10],
    ]);
    s.add(3);
    s.add(4);
    expect(s.ranges()).toEqual([
      [1, 7],
      [10, 10],
    ]);
    expect(s.has(0)).toBe(false);
    expect(s.has(7)).toBe(true);
    expect(s.has(8)).toBe(false);
  });

  it('agrees with a plain Set on a shuffled sequence and stays one range once complete', () => {
    const s = new RangeSet();
    const reference = new Set<number>();
    let x = 12345;
    const order = Array.from({ length: 2000 }, (_, i) => i + 1_000_000);
    for (let i = order.length - 1; i > 0; i--) {
      x = (x * 1103515245 + 12345) % 2 ** 31;
      const j = x % (i + 1);
      [order[i], order[j]] = [order[j]!, order[i]!];
    }
    for (const n of order) {
      expect(s.add(n)).toBe(!reference.has(n));
      reference.add(n);
    }
    expect(s.ranges()).toEqual([[1_000_000, 1_001_999]]);
  });
});

describe('RangeSet.addRange', () => {
  it('agrees with adding one by one, for overlapping and touching ranges in any order', () => {
    let x = 99;
    const rand = (n: number) => (x = (x * 1103515245 + 12345) % 2 ** 31) % n;
    for (let trial = 0; trial < 200; trial++) {
      const a = new RangeSet();
      const b = new RangeSet();
      for (let k = 0; k < 6; k++) {
        const from = rand(200);
        const to = from + rand(40);
        a.addRange(from, to);
        for (let n = from; n <= to; n++) b.add(n);
      }
      expect(a.ranges()).toEqual(b.ranges());
    }
  });
});
