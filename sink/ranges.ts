/**
 * A set of non-negative integers kept as sorted, disjoint, non-adjacent inclusive
 * ranges. Sequence numbers arrive mostly in order, so the set stays a handful of
 * ranges however many numbers it holds.
 */
export class RangeSet {
  // starts[i]..ends[i], sorted, with starts[i+1] > ends[i] + 1.
  private readonly starts: number[] = [];
  private readonly ends: number[] = [];

  get rangeCount(): number {
    return this.starts.length;
  }

  /** Index of the last range starting at or before n, or -1. */
  private floor(n: number): number {
    let lo = 0;
    let hi = this.starts.length - 1;
    let found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      if (this.starts[mid]! <= n) {
        found = mid;
        lo = mid + 1;
      } else {
        hi = mid - 1;
      }
    }
    return found;
  }

  has(n: number): boolean {
    const i = this.floor(n);
    return i >= 0 && n <= this.ends[i]!;
  }

  /** Adds n; returns false when it was already present. */
  add(n: number): boolean {
    const i = this.floor(n);
    if (i >= 0 && n <= this.ends[i]!) return false;
    const joinsLeft = i >= 0 && this.ends[i]! + 1 === n;
    const joinsRight = i + 1 < this.starts.length && this.starts[i + 1]! === n + 1;
    if (joinsLeft && joinsRight) {
      this.ends[i] = this.ends[i + 1]!;
      this.starts.splice(i + 1, 1);
      this.ends.splice(i + 1, 1);
    } else if (joinsLeft) {
      this.ends[i] = n;
    } else if (joinsRight) {
      this.starts[i + 1] = n;
    } else {
      this.starts.splice(i + 1, 0, n);
      this.ends.splice(i + 1, 0, n);
    }
    return true;
  }

  /** Adds every number in [from, to]. */
  addRange(from: number, to: number): void {
    let n = from;
    while (n <= to) {
      const covering = this.floor(n);
      if (covering >= 0 && n <= this.ends[covering]!) {
        n = this.ends[covering]! + 1;
        continue;
      }
      this.add(n);
      const i = this.floor(n);
      // Stretch the range holding n up to `to`, short of the next range, then join it if they touch.
      this.ends[i] = Math.max(this.ends[i]!, Math.min(to, (this.starts[i + 1] ?? Number.POSITIVE_INFINITY) - 1));
      if (this.starts[i + 1] === this.ends[i]! + 1) {
        this.ends[i] = this.ends[i + 1]!;
        this.starts.splice(i + 1, 1);
        this.ends.splice(i + 1, 1);
      }
      n = this.ends[i]! + 1;
    }
  }

  /** The ranges as [start, end] pairs, inclusive. */
  ranges(): Array<[number, number]> {
    return this.starts.map((s, i) => [s, this.ends[i]!]);
  }
}
