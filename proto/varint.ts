// Varints (LEB128, as protobuf's) and zigzag for every integer a JS number holds exactly:
// up to 2^53, past the 32 bits that bitwise operators would cut them to. Used for the
// column data of wire v2 (proto/columnar.ts), one value at a time on the hot path, so
// neither side allocates per value.

/** Largest zigzag-coded magnitude the columns use: |value| <= 2^52 codes below 2^53. */
export const MAX_ZIGZAG_INPUT = 2 ** 52;

export const zigzag = (v: number): number => (v >= 0 ? v * 2 : -v * 2 - 1);
export const unzigzag = (u: number): number => (u % 2 === 0 ? u / 2 : -(u + 1) / 2);

/** A growable byte buffer that varints and doubles are appended to. */
export class ByteWriter {
  private buf = new Uint8Array(1024);
  private view = new DataView(this.buf.buffer);
  length = 0;

  private room(n: number): void {
    if (this.length + n <= this.buf.length) return;
    const next = new Uint8Array(Math.max(this.buf.length * 2, this.length + n));
    next.set(this.buf.subarray(0, this.length));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }

  /** A non-negative integer up to 2^53. */
  varint(v: number): void {
    this.room(8);
    const buf = this.buf;
    let at = this.length;
    while (v >= 0x80) {
      buf[at++] = (v % 0x80) | 0x80;
      v = Math.floor(v / 0x80);
    }
    buf[at++] = v;
    this.length = at;
  }

  float64(v: number): void {
    this.room(8);
    this.view.setFloat64(this.length, v, true);
    this.length += 8;
  }

  /** What was written, copied out; the writer is empty afterwards. */
  take(): Uint8Array {
    const out = this.buf.slice(0, this.length);
    this.length = 0;
    return out;
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
    let b = buf[this.at++];
    if (b === undefined) throw new Error('column data ends inside a value');
    if (b < 0x80) return b;
    let v = b & 0x7f;
    let scale = 0x80;
    for (;;) {
      b = buf[this.at++];
      if (b === undefined) throw new Error('column data ends inside a value');
      v += (b & 0x7f) * scale;
      if (b < 0x80) break;
      scale *= 0x80;
      // 8 bytes carry 56 bits: anything longer is no integer a number holds.
      if (scale > 2 ** 49) throw new Error('varint overflows 2^53');
    }
    if (v > Number.MAX_SAFE_INTEGER) throw new Error('varint overflows 2^53');
    return v;
  }

  float64(): number {
    if (this.at + 8 > this.buf.length) throw new Error('column data ends inside a value');
    const v = this.view.getFloat64(this.at, true);
    this.at += 8;
    return v;
  }
}
