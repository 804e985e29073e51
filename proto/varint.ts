// Varints (LEB128, as protobuf's) and zigzag for every integer a JS number holds exactly:
// up to 2^53, past the 32 bits that bitwise operators would cut them to. Used for the
// column data of wire v2 (proto/columnar.ts), one value at a time on the hot path, so
// neither side allocates per value; below 2^32 (nearly every delta) they take a bitwise
// path, the rest a float one.

/** Largest zigzag-coded magnitude the columns use: |value| <= 2^52 codes below 2^53. */
export const MAX_ZIGZAG_INPUT = 2 ** 52;

/** Most bytes one varint of up to 2^53 takes. */
export const MAX_VARINT_BYTES = 8;

const TWO_32 = 2 ** 32;
const SMALL = 2 ** 30;

/**
 * Within ±2^30 bitwise, with no branch on the sign: deltas change sign from one value to
 * the next, and a branch on it was mispredicted about every other value.
 */
export const zigzag = (v: number): number => (v >= -SMALL && v < SMALL ? ((v << 1) ^ (v >> 31)) >>> 0 : v >= 0 ? v * 2 : -v * 2 - 1);
/** Below 2^32 bitwise; above, in floats without `%`, which V8 runs as a call on doubles. */
export function unzigzag(u: number): number {
  if (u < TWO_32) return (u >>> 1) ^ -(u & 1);
  const half = Math.floor(u / 2);
  return u === half * 2 ? half : -half - 1;
}

/**
 * Writes the non-negative integer `v` (up to 2^53) at `at`, which must have room for
 * MAX_VARINT_BYTES; returns the offset past it.
 */
export function putVarint(buf: Uint8Array, at: number, v: number): number {
  if (v < 0x4000) {
    // One byte or two, without a branch between them: column data mixes both from one
    // value to the next. The second byte is written either way, into the room the caller
    // made; when the value takes one byte, the next write covers it.
    const two = (0x7f - v) >>> 31;
    buf[at] = (v & 0x7f) | (two << 7);
    buf[at + 1] = v >>> 7;
    return at + 1 + two;
  }
  // Past 32 bits: seven bits at a time in floats, until the rest fits the bitwise path.
  while (v >= TWO_32) {
    buf[at++] = (v % 0x80) | 0x80;
    v = Math.floor(v / 0x80);
  }
  while (v >= 0x80) {
    buf[at++] = (v & 0x7f) | 0x80;
    v >>>= 7;
  }
  buf[at] = v;
  return at + 1;
}

/**
 * putVarint(buf, at, zigzag(v)) in one step: a value within ±2^13 zigzags below 2^14, into
 * one byte or two, with one range check in place of zigzag's and putVarint's each. Column
 * deltas nearly always are.
 */
export function putZigzag(buf: Uint8Array, at: number, v: number): number {
  if (v >= -0x2000 && v < 0x2000) {
    const z = (v << 1) ^ (v >> 31);
    const two = (0x7f - z) >>> 31;
    buf[at] = (z & 0x7f) | (two << 7);
    buf[at + 1] = z >>> 7;
    return at + 1 + two;
  }
  return putVarint(buf, at, zigzag(v));
}

/** A growable byte buffer that varints and doubles are appended to. */
export class ByteWriter {
  buf = new Uint8Array(1024);
  private view = new DataView(this.buf.buffer);
  length = 0;

  /** Makes room for `n` more bytes; the hot loops then write into `buf` at `length` themselves. */
  reserve(n: number): Uint8Array {
    if (this.length + n > this.buf.length) {
      const next = new Uint8Array(Math.max(this.buf.length * 2, this.length + n));
      next.set(this.buf.subarray(0, this.length));
      this.buf = next;
      this.view = new DataView(next.buffer);
    }
    return this.buf;
  }

  /** A non-negative integer up to 2^53. */
  varint(v: number): void {
    this.length = putVarint(this.reserve(MAX_VARINT_BYTES), this.length, v);
  }

  float64(v: number): void {
    this.reserve(8);
    this.view.setFloat64(this.length, v, true);
    this.length += 8;
  }
}

/** Reads what a ByteWriter wrote; throws on bytes that end early or hold an over-long varint. */
export class ByteReader {
  private at = 0;
  private readonly view: DataView;

  constructor(private readonly buf: Uint8Array) {
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  }

  get done(): boolean {
    return this.at >= this.buf.length;
  }

  varint(): number {
    const buf = this.buf;
    let at = this.at;
    let b = buf[at++];
    if (b === undefined) throw new Error('column data ends inside a value');
    if (b < 0x80) {
      this.at = at;
      return b;
    }
    // Four bytes carry 28 bits: bitwise while the value stays below 2^31.
    let v = b & 0x7f;
    let shift = 7;
    for (;;) {
      b = buf[at++];
      if (b === undefined) throw new Error('column data ends inside a value');
      if (shift < 28) {
        v |= (b & 0x7f) << shift;
        shift += 7;
        if (b < 0x80) break;
        continue;
      }
      v += (b & 0x7f) * 2 ** shift;
      if (b < 0x80) break;
      shift += 7;
      // 8 bytes carry 56 bits: anything longer is no integer a number holds.
      if (shift > 49) throw new Error('varint overflows 2^53');
    }
    if (v > Number.MAX_SAFE_INTEGER) throw new Error('varint overflows 2^53');
    this.at = at;
    return v;
  }

  /**
   * The next `m` varints, unzigzagged, into `out`. Column data is nearly all deltas of
   * one byte or two (putZigzag), read here inline; a longer one goes through varint().
   * Decoding a batch a value at a time through varint() cost a third more.
   */
  zigzags(out: Float64Array, m: number): void {
    const buf = this.buf;
    const end = buf.length;
    let at = this.at;
    for (let k = 0; k < m; k++) {
      const b0 = at < end ? buf[at]! : 0x100;
      let u: number;
      if (b0 < 0x80) {
        u = b0;
        at++;
      } else {
        const b1 = at + 1 < end ? buf[at + 1]! : 0x100;
        if (b0 < 0x100 && b1 < 0x80) {
          u = (b0 & 0x7f) | (b1 << 7);
          at += 2;
        } else {
          this.at = at;
          out[k] = unzigzag(this.varint());
          at = this.at;
          continue;
        }
      }
      out[k] = (u >>> 1) ^ -(u & 1);
    }
    this.at = at;
  }

  float64(): number {
    if (this.at + 8 > this.buf.length) throw new Error('column data ends inside a value');
    const v = this.view.getFloat64(this.at, true);
    this.at += 8;
    return v;
  }
}
