import zlib from 'node:zlib';
import protobuf from 'protobufjs/light';
import * as z from 'zod';
import type { BatchHead } from './codec';
import { LAKE_COLUMNS, type ColumnKind } from './columns';
import { PointType, PROTO_PACKAGE, root } from './schema';
import type { TelemetryPoint } from './types';
import { ByteReader, ByteWriter, MAX_VARINT_BYTES, MAX_ZIGZAG_INPUT, putVarint, putZigzag, unzigzag, zigzag } from './varint';

// Wire v2 (ColumnarBatch in telemetry.proto): a batch of points as typed columns. The
// agent appends points to a ColumnsBuilder and encodes the columns once per batch; the
// sink decodes them straight into typed arrays and validates, dedupes and stages them by
// index, with no object per point.

const ColumnarBatchType = root.lookupType(`${PROTO_PACKAGE}.ColumnarBatch`);
const ColumnarBodyType = root.lookupType(`${PROTO_PACKAGE}.ColumnarBody`);
const EncodingEnum = root.lookupEnum(`${PROTO_PACKAGE}.ColumnEncoding`);
const CompressionEnum = root.lookupEnum(`${PROTO_PACKAGE}.Compression`);

const enumValue = (e: protobuf.Enum, name: string): number => {
  const v = e.values[name];
  if (v === undefined) throw new Error(`telemetry.proto: ${e.name} has no ${name}`);
  return v;
};
const FLOAT64 = enumValue(EncodingEnum, 'COLUMN_ENCODING_FLOAT64');
const DELTA = enumValue(EncodingEnum, 'COLUMN_ENCODING_DELTA');
const DELTA_OF_DELTA = enumValue(EncodingEnum, 'COLUMN_ENCODING_DELTA_OF_DELTA');
const RLE = enumValue(EncodingEnum, 'COLUMN_ENCODING_RLE');
const DICTIONARY = enumValue(EncodingEnum, 'COLUMN_ENCODING_DICTIONARY');

/** Batch compressions, named as on the command line; zstd only where this Node has it. */
export const COMPRESSIONS = ['none', 'deflate', 'brotli', 'zstd'] as const;
export type Compression = (typeof COMPRESSIONS)[number];
const COMPRESSION_ID: Record<Compression, number> = {
  none: enumValue(CompressionEnum, 'COMPRESSION_NONE'),
  deflate: enumValue(CompressionEnum, 'COMPRESSION_DEFLATE'),
  brotli: enumValue(CompressionEnum, 'COMPRESSION_BROTLI'),
  zstd: enumValue(CompressionEnum, 'COMPRESSION_ZSTD'),
};

type ZstdCodec = (buf: Uint8Array, options?: { maxOutputLength?: number }) => Buffer;
// zlib.zstdCompressSync arrived in Node 22.15; Node 20's typings do not name it.
const zstd = zlib as typeof zlib & { zstdCompressSync?: ZstdCodec; zstdDecompressSync?: ZstdCodec };
export const HAS_ZSTD = typeof zstd.zstdCompressSync === 'function' && typeof zstd.zstdDecompressSync === 'function';

/** Most points a ColumnarBatch may carry: the agent's largest --batch-points. */
const MAX_COLUMNAR_POINTS = 1_000_000;
/** Most bytes a body of n points may decompress to: far past any real batch, and a small bomb of a message cannot take the sink's memory. */
const maxBodyBytes = (n: number): number => 1024 * 1024 + n * 512;
/** Decimal digits a scaled double column may carry: 10^15 and every integer below 2^53 are exact doubles. */
export const MAX_SCALE = 15;
const POW10 = Array.from({ length: MAX_SCALE + 1 }, (_, i) => 10 ** i);

/** A Point field as a column: its name and lake kind (proto/columns.ts), and its field number. */
export interface PointField {
  name: keyof TelemetryPoint;
  kind: ColumnKind;
  id: number;
}

/** The Point's fields in field-number order: the index of a column in PointColumns. */
export const POINT_FIELDS: readonly PointField[] = LAKE_COLUMNS.filter((c) => c.origin === 'point').map((c) => {
  const field = PointType.fields[c.name];
  if (!field) throw new Error(`telemetry.proto: Point has no field ${c.name}`);
  return { name: c.name as keyof TelemetryPoint, kind: c.kind, id: field.id };
});
const fieldIndex = (name: string): number => POINT_FIELDS.findIndex((f) => f.name === name);
export const DRONE_COLUMN = fieldIndex('drone_id');
export const SEQ_COLUMN = fieldIndex('seq');
export const TS_COLUMN = fieldIndex('ts');
export const STREAM_COLUMN = fieldIndex('stream');
const INDEX_OF_ID = new Map(POINT_FIELDS.map((f, i) => [f.id, i]));

/** One field of every point of a batch. */
export interface ColumnValues {
  /** A slot per point, 0 where the point has no value; for strings, indexes into `dictionary`. */
  values: Float64Array;
  /** Bit i (byte i >> 3, bit i & 7) set when point i has a value; null when every point has one. */
  present: Uint8Array | null;
  /** For strings: the distinct values. */
  dictionary: readonly string[] | null;
  /**
   * The least and greatest value the points have, as decoding found them, or NaN when
   * not known (raw float64 values, a v1 batch's): validation skips a column's check when
   * they show that every value meets it.
   */
  min: number;
  max: number;
}

/** The points of a batch as columns, indexed like POINT_FIELDS; null: no point has the field. */
export interface PointColumns {
  count: number;
  columns: ReadonlyArray<ColumnValues | null>;
}

export const isPresent = (present: Uint8Array | null, i: number): boolean => present === null || (present[i >> 3]! & (1 << (i & 7))) !== 0;

/** A column's value at point i, or null when the point has none; strings through the dictionary. */
function valueAt(column: ColumnValues | null, i: number): number | string | null {
  if (column === null || !isPresent(column.present, i)) return null;
  const v = column.values[i]!;
  return column.dictionary ? column.dictionary[v]! : v;
}

/** Point i as an object: for the paths that need one (quarantine, the live port), never the hot one. */
export function pointAt(points: PointColumns, i: number): TelemetryPoint {
  const p: Record<string, unknown> = {};
  for (let c = 0; c < POINT_FIELDS.length; c++) {
    const field = POINT_FIELDS[c]!;
    const v = valueAt(points.columns[c]!, i);
    if (v !== null) p[field.name] = field.kind === 'bool' ? v === 1 : v;
  }
  return { drone_id: '', seq: 0, ts: 0, ...p };
}

/** At most what one value takes in an encoded column: a varint of up to 2^53, or a double. */
const MAX_VALUE_BYTES = 9;

interface BuilderColumn {
  /** The column's values: a view of the builder's one array of values. */
  values: Float64Array;
  /**
   * Bit i set when point i has no value. add() writes bits only for the few values that
   * are absent, and view() turns them into a presence bitmap once per batch.
   */
  absent: Uint8Array;
  /** Points without a value. */
  missing: number;
  dictionary: Map<string, number> | null;
}

// add() reads each field by its name, in POINT_FIELDS order: a property read the engine
// resolves once for the points' common shape, where a read through a list of names cost a
// generic lookup per field and point (0.38 -> 0.15 us a point, measured; 0.09 with the
// absence bits below).
const ADD_ORDER = [
  'drone_id', 'seq', 'ts', 'lat', 'lon', 'alt_m', 'rel_alt_m', 'ground_speed_mps', 'vertical_speed_mps', 'heading_deg',
  'battery_pct', 'battery_voltage_v', 'gps_fix', 'satellites', 'flight_state', 'armed', 'mission_id', 'stream',
] as const satisfies readonly (keyof TelemetryPoint)[];
if (ADD_ORDER.length !== POINT_FIELDS.length || ADD_ORDER.some((name, c) => POINT_FIELDS[c]!.name !== name)) {
  throw new Error('ColumnsBuilder.add does not read the Point fields of telemetry.proto in their order');
}

/**
 * Collects points into columns. The agent keeps one per batcher and reuses its arrays from
 * batch to batch; the sink builds one per v1 batch to take it the v2 way.
 */
export class ColumnsBuilder {
  private columns: BuilderColumn[];
  private capacity: number;
  /**
   * Every column's values in one array, column c at c * capacity: add() stores each value
   * with one indexed write, not through its column's object and array.
   */
  private all: Float64Array;
  count = 0;
  /** Absent values and dictionary bytes so far: byteBound's terms, kept as counts on the hot path. */
  private missing = 0;
  private dictionaryBytes = 0;

  constructor(capacity = 1024) {
    this.capacity = Math.max(8, capacity);
    const { all, values, absent } = this.allocate();
    this.all = all;
    this.columns = POINT_FIELDS.map((f, c) => ({
      values: values[c]!,
      absent: absent[c]!,
      missing: 0,
      dictionary: f.kind === 'string' ? new Map<string, number>() : null,
    }));
  }

  /** At least the encoded size of the columns so far, uncompressed: what a batch's byte limit is held to. */
  get byteBound(): number {
    return (this.count * POINT_FIELDS.length - this.missing) * MAX_VALUE_BYTES + this.dictionaryBytes;
  }

  /**
   * Arrays for every column at the capacity, as views of one buffer of values and one of
   * absence bits: the sink builds a builder per v1 batch, and a typed array of its own per
   * column was an allocation outside the heap each, which cost more than filling them.
   */
  private allocate(): { all: Float64Array; values: Float64Array[]; absent: Uint8Array[] } {
    const n = this.capacity;
    // A bit per point, rounded up to whole bytes.
    const bytes = (n + 7) >> 3;
    const all = new Float64Array(n * POINT_FIELDS.length);
    const absent = new Uint8Array(bytes * POINT_FIELDS.length);
    return {
      all,
      values: POINT_FIELDS.map((_, c) => all.subarray(c * n, (c + 1) * n)),
      absent: POINT_FIELDS.map((_, c) => absent.subarray(c * bytes, (c + 1) * bytes)),
    };
  }

  private grow(): void {
    this.capacity *= 2;
    const { all, values, absent } = this.allocate();
    this.all = all;
    this.columns.forEach((c, i) => {
      values[i]!.set(c.values);
      absent[i]!.set(c.absent);
      c.values = values[i]!;
      c.absent = absent[i]!;
    });
  }

  /** Point i has no value in column c. Rare: off the hot path. */
  private lack(c: number, i: number): void {
    const column = this.columns[c]!;
    column.absent[i >> 3]! |= 1 << (i & 7);
    column.missing++;
    this.missing++;
  }

  /** The dictionary index of string `v` in column c. */
  private indexOf(c: number, v: string): number {
    const dictionary = this.columns[c]!.dictionary!;
    let id = dictionary.get(v);
    if (id === undefined) {
      dictionary.set(v, (id = dictionary.size));
      this.dictionaryBytes += Buffer.byteLength(v) + MAX_VALUE_BYTES;
    }
    return id;
  }

  add(p: TelemetryPoint): void {
    if (this.count === this.capacity) this.grow();
    const i = this.count++;
    const all = this.all;
    const n = this.capacity;
    const drone = p.drone_id;
    if (drone == null) this.lack(0, i);
    else all[i] = this.indexOf(0, drone);
    let v: number | null | undefined;
    if ((v = p.seq) == null) this.lack(1, i);
    else all[n + i] = v;
    if ((v = p.ts) == null) this.lack(2, i);
    else all[2 * n + i] = v;
    if ((v = p.lat) == null) this.lack(3, i);
    else all[3 * n + i] = v;
    if ((v = p.lon) == null) this.lack(4, i);
    else all[4 * n + i] = v;
    if ((v = p.alt_m) == null) this.lack(5, i);
    else all[5 * n + i] = v;
    if ((v = p.rel_alt_m) == null) this.lack(6, i);
    else all[6 * n + i] = v;
    if ((v = p.ground_speed_mps) == null) this.lack(7, i);
    else all[7 * n + i] = v;
    if ((v = p.vertical_speed_mps) == null) this.lack(8, i);
    else all[8 * n + i] = v;
    if ((v = p.heading_deg) == null) this.lack(9, i);
    else all[9 * n + i] = v;
    if ((v = p.battery_pct) == null) this.lack(10, i);
    else all[10 * n + i] = v;
    if ((v = p.battery_voltage_v) == null) this.lack(11, i);
    else all[11 * n + i] = v;
    if ((v = p.gps_fix) == null) this.lack(12, i);
    else all[12 * n + i] = v;
    if ((v = p.satellites) == null) this.lack(13, i);
    else all[13 * n + i] = v;
    if ((v = p.flight_state) == null) this.lack(14, i);
    else all[14 * n + i] = v;
    const armed = p.armed;
    if (armed == null) this.lack(15, i);
    else all[15 * n + i] = armed ? 1 : 0;
    const mission = p.mission_id;
    if (mission == null) this.lack(16, i);
    else all[16 * n + i] = this.indexOf(16, mission);
    if ((v = p.stream) == null) this.lack(17, i);
    else all[17 * n + i] = v;
  }

  /** The columns so far, as views of the builder's arrays: valid until the next add() or reset(). */
  view(): PointColumns {
    const n = this.count;
    const bytes = (n + 7) >> 3;
    return {
      count: n,
      columns: this.columns.map((c, index) => {
        const required = index === DRONE_COLUMN || index === SEQ_COLUMN || index === TS_COLUMN;
        if (c.missing === n && !required) return null;
        const dictionary = c.dictionary ? [...c.dictionary.keys()] : null;
        // proto3: a required field a point lacks is its default ("" for the drone id).
        if (dictionary && c.missing > 0) dictionary.push('');
        let present: Uint8Array | null = null;
        if (c.missing > 0) {
          present = new Uint8Array(bytes);
          for (let b = 0; b < bytes; b++) present[b] = ~c.absent[b]! & 0xff;
          // Bits past the last point stay clear.
          if (n & 7) present[bytes - 1]! &= (1 << (n & 7)) - 1;
        }
        return { values: c.values.subarray(0, n), present, dictionary, min: NaN, max: NaN };
      }),
    };
  }

  reset(): void {
    for (const c of this.columns) {
      c.values.fill(0, 0, this.count);
      c.absent.fill(0, 0, (this.count + 7) >> 3);
      c.missing = 0;
      c.dictionary?.clear();
    }
    this.count = 0;
    this.missing = 0;
    this.dictionaryBytes = 0;
  }
}

/** The points of one batch as columns: the builder of a v1 batch's points. */
export function columnsOfPoints(points: readonly TelemetryPoint[]): PointColumns {
  const builder = new ColumnsBuilder(points.length);
  for (const p of points) builder.add(p);
  return builder.view();
}

// ---- encoding ----

// The encoders read a column's values densely, in the sent order: gather() copies them
// once per column into one scratch array, so the per-value loops below index a plain
// typed array and write varints straight into the writer's buffer. encodeColumnar is
// synchronous, so one module-wide scratch serves every batch; it grows to the largest.
// A column every point has, already in the sent order, is read where it lies.
let denseScratch = new Float64Array(1024);

/** The values of the points that have one, in the sent order (`order`, or as they are when null). */
function gather(column: ColumnValues, order: Uint32Array | null): Float64Array {
  const { values, present } = column;
  const n = values.length;
  if (order === null && present === null) return values;
  if (denseScratch.length < n) denseScratch = new Float64Array(n);
  const dense = denseScratch;
  let m = 0;
  if (order === null) {
    for (let i = 0; i < n; i++) if ((present![i >> 3]! & (1 << (i & 7))) !== 0) dense[m++] = values[i]!;
  } else if (present === null) {
    for (let k = 0; k < n; k++) dense[k] = values[order[k]!]!;
    m = n;
  } else {
    for (let k = 0; k < n; k++) {
      const i = order[k]!;
      if ((present[i >> 3]! & (1 << (i & 7))) !== 0) dense[m++] = values[i]!;
    }
  }
  return dense.subarray(0, m);
}

/**
 * Zigzag deltas of round(v * 10^scale), the first from 0. Returns -1 once every value is
 * written, each exact as int / 10^scale; else the index of the first value that is not, or
 * whose integer is too large to code, and then leaves `out` as it was.
 */
function tryDeltas(out: ByteWriter, dense: Float64Array, scale: number): number {
  const p = POW10[scale]!;
  const buf = out.reserve(dense.length * MAX_VARINT_BYTES);
  let at = out.length;
  let last = 0;
  for (let k = 0; k < dense.length; k++) {
    const v = dense[k]!;
    const int = Math.round(v * p);
    // -0 would come back as +0, NaN and the infinities as no integer. Integers within
    // ±2^51 make deltas within ±2^52, which zigzag below 2^53.
    if (int / p !== v || Math.abs(int) > MAX_ZIGZAG_INPUT / 2 || (v === 0 && 1 / v < 0)) return k;
    const delta = int - last;
    at = putZigzag(buf, at, delta);
    last = int;
  }
  out.length = at;
  return -1;
}

/** The smallest scale from `from` at which `v` round-trips as a codable int / 10^scale, or -1. */
function scaleFor(v: number, from: number): number {
  if (v === 0 && 1 / v < 0) return -1;
  for (let scale = from; scale <= MAX_SCALE; scale++) {
    const p = POW10[scale]!;
    const int = Math.round(v * p);
    if (int / p === v && Math.abs(int) <= MAX_ZIGZAG_INPUT / 2) return scale;
  }
  return -1;
}

/**
 * Writes a double column as scaled deltas at the smallest scale that holds every value
 * exactly, and returns it; -1 (nothing written) when none does. One pass in the common
 * case: the first value settles the scale, and a later one that needs more digits starts
 * the column again at its scale.
 */
function writeScaled(out: ByteWriter, dense: Float64Array): number {
  let scale = dense.length === 0 ? 0 : scaleFor(dense[0]!, 0);
  while (scale >= 0) {
    const failed = tryDeltas(out, dense, scale);
    if (failed < 0) return scale;
    // A value no larger scale holds exactly: raw doubles.
    scale = scaleFor(dense[failed]!, scale + 1);
  }
  return -1;
}

/** The largest 10^k (k <= 6) that divides every delta: 3 for times that count milliseconds. */
function deltaScaleOf(dense: Float64Array): number {
  let scale = 6;
  for (let k = 1; k < dense.length && scale > 0; k++) {
    const delta = dense[k]! - dense[k - 1]!;
    while (scale > 0 && delta % POW10[scale]! !== 0) scale--;
  }
  return scale;
}

/** The first value, the first delta, then each delta's change, the deltas in units of 10^scale. */
function writeDeltaOfDelta(out: ByteWriter, dense: Float64Array, scale: number): boolean {
  const unit = POW10[scale]!;
  const buf = out.reserve(dense.length * MAX_VARINT_BYTES);
  let at = out.length;
  let last = 0;
  let lastDelta = 0;
  for (let k = 0; k < dense.length; k++) {
    const v = dense[k]!;
    const delta = (v - last) / unit;
    const coded = k === 0 ? v : k === 1 ? delta : delta - lastDelta;
    if (!Number.isSafeInteger(v) || !Number.isInteger(coded) || Math.abs(coded) > MAX_ZIGZAG_INPUT || Math.abs(delta) > MAX_ZIGZAG_INPUT) return false;
    at = putZigzag(buf, at, coded);
    last = v;
    lastDelta = delta;
  }
  out.length = at;
  return true;
}

/** Runs of equal values: the value (zigzag unless an index), then the run's length. */
function writeRuns(out: ByteWriter, dense: Float64Array, zigzagged: boolean): boolean {
  // At most a value and a length per point.
  const buf = out.reserve(dense.length * 2 * MAX_VARINT_BYTES);
  let at = out.length;
  let k = 0;
  while (k < dense.length) {
    const v = dense[k]!;
    if (!Number.isInteger(v) || Math.abs(v) > MAX_ZIGZAG_INPUT) return false;
    let end = k + 1;
    while (end < dense.length && dense[end] === v) end++;
    at = putVarint(buf, at, zigzagged ? zigzag(v) : v);
    at = putVarint(buf, at, end - k);
    k = end;
  }
  out.length = at;
  return true;
}

function writeFloats(out: ByteWriter, dense: Float64Array): void {
  for (let k = 0; k < dense.length; k++) out.float64(dense[k]!);
}

/** The presence bitmap in the sent order (`order`, or as it is when null). */
function orderedPresence(present: Uint8Array, order: Uint32Array | null): Uint8Array {
  if (order === null) return present;
  const out = new Uint8Array((order.length + 7) >> 3);
  for (let k = 0; k < order.length; k++) if (isPresent(present, order[k]!)) out[k >> 3]! |= 1 << (k & 7);
  return out;
}

/**
 * The order points are sent in: grouped by drone, in arrival order within each drone, so
 * that every delta is one drone's step from its previous point. A counting sort. Null when
 * the points arrived so: a source sends each drone's points in runs (the simulator a tick's
 * worth, a gateway's link one drone), so a batch mostly holds each drone's points together,
 * and then no column is copied into the order (0.05 of the agent's 0.5 CPU-us a point of
 * simulating, batching and encoding, 200 drones a gateway at 500 Hz).
 */
function droneOrder(drones: ColumnValues, count: number): Uint32Array | null {
  const ids = drones.values;
  // Ids count up from 0 as drones first appear, so the points are grouped exactly when
  // their ids never fall: the stable sort below would leave them where they are.
  let grouped = true;
  for (let i = 1; i < count && grouped; i++) grouped = ids[i]! >= ids[i - 1]!;
  if (grouped) return null;
  const groups = drones.dictionary!.length;
  const starts = new Uint32Array(groups + 1);
  for (let i = 0; i < count; i++) starts[ids[i]! + 1]!++;
  for (let g = 0; g < groups; g++) starts[g + 1]! += starts[g]!;
  const order = new Uint32Array(count);
  for (let i = 0; i < count; i++) order[starts[ids[i]!]!++] = i;
  return order;
}

const ColumnType = root.lookupType(`${PROTO_PACKAGE}.Column`);
const LENGTH_DELIMITED = 2;
const VARINT = 0;
const tagOf = (type: protobuf.Type, name: string, wireType: number): number => {
  const f = type.fields[name];
  if (!f) throw new Error(`telemetry.proto: ${type.name} has no field ${name}`);
  return (f.id << 3) | wireType;
};
// The ColumnarBody is written by hand, straight from the column data into one reused
// buffer: through protobufjs each column's bytes were copied twice more, into buffers
// allocated per column and batch.
const TAG_COLUMNS = tagOf(ColumnarBodyType, 'columns', LENGTH_DELIMITED);
const TAG_FIELD = tagOf(ColumnType, 'field', VARINT);
const TAG_ENCODING = tagOf(ColumnType, 'encoding', VARINT);
const TAG_SCALE = tagOf(ColumnType, 'scale', VARINT);
const TAG_PRESENT = tagOf(ColumnType, 'present', LENGTH_DELIMITED);
const TAG_DATA = tagOf(ColumnType, 'data', LENGTH_DELIMITED);
const TAG_DICTIONARY = tagOf(ColumnType, 'dictionary', LENGTH_DELIMITED);

const varintSize = (v: number): number => {
  let n = 1;
  while (v >= 0x80) {
    v = Math.floor(v / 0x80);
    n++;
  }
  return n;
};
/** A length-delimited field's size: its tag (one byte for these), length and bytes. */
const fieldSize = (length: number): number => 1 + varintSize(length) + length;

const utf8 = new TextEncoder();
const columnData = new ByteWriter();
const bodyScratch = new ByteWriter();

/** Appends one Column message, whose values are in `data`, to the body. */
function appendColumn(body: ByteWriter, field: number, encoding: number, scale: number, present: Uint8Array | null, data: ByteWriter, dictionary: readonly string[] | null): void {
  const strings = dictionary?.map((s) => Buffer.byteLength(s)) ?? [];
  const size =
    1 + varintSize(field) + 1 + varintSize(encoding) + (scale > 0 ? 1 + varintSize(scale) : 0) +
    (present ? fieldSize(present.length) : 0) + fieldSize(data.length) + strings.reduce((n, len) => n + fieldSize(len), 0);
  const buf = body.reserve(1 + MAX_VARINT_BYTES + size);
  let at = body.length;
  buf[at++] = TAG_COLUMNS;
  at = putVarint(buf, at, size);
  buf[at++] = TAG_FIELD;
  at = putVarint(buf, at, field);
  buf[at++] = TAG_ENCODING;
  at = putVarint(buf, at, encoding);
  if (scale > 0) {
    buf[at++] = TAG_SCALE;
    at = putVarint(buf, at, scale);
  }
  if (present) {
    buf[at++] = TAG_PRESENT;
    at = putVarint(buf, at, present.length);
    buf.set(present, at);
    at += present.length;
  }
  buf[at++] = TAG_DATA;
  at = putVarint(buf, at, data.length);
  buf.set(data.buf.subarray(0, data.length), at);
  at += data.length;
  dictionary?.forEach((s, i) => {
    buf[at++] = TAG_DICTIONARY;
    at = putVarint(buf, at, strings[i]!);
    at += utf8.encodeInto(s, buf.subarray(at, at + strings[i]!)).written;
  });
  body.length = at;
  data.length = 0;
}

/** Encodes one column and appends it to the body. */
function encodeColumn(field: PointField, column: ColumnValues, order: Uint32Array | null, body: ByteWriter): void {
  const out = columnData;
  const present = column.present ? orderedPresence(column.present, order) : null;
  const dense = gather(column, order);
  const append = (encoding: number, scale = 0) => appendColumn(body, field.id, encoding, scale, present, out, column.dictionary);
  if (column.dictionary) {
    writeRuns(out, dense, false);
    return append(DICTIONARY);
  }
  switch (field.kind) {
    case 'double': {
      const scale = writeScaled(out, dense);
      if (scale >= 0) return append(DELTA, scale);
      break;
    }
    case 'timestamp': {
      const scale = deltaScaleOf(dense);
      if (writeDeltaOfDelta(out, dense, scale)) return append(DELTA_OF_DELTA, scale);
      break;
    }
    case 'uint64':
      if (tryDeltas(out, dense, 0) < 0) return append(DELTA);
      break;
    default:
      if (writeRuns(out, dense, true)) return append(RLE);
  }
  // A value no integer coding holds exactly (a seq past 2^52, an out-of-range input the
  // sink will reject): sent as it is, so that the sink sees exactly what was given.
  writeFloats(out, dense);
  append(FLOAT64);
}

/**
 * Brotli's quality for batches. On a real flight's columns (vtol.tlog, 807 points) quality 1
 * gives 8.33 bytes a point for 0.2 CPU-us, quality 5 8.03 bytes for 0.58 us, deflate 8.2
 * bytes for 0.7-0.85 us: the last few percent of bytes are not worth three times the CPU.
 */
export const BROTLI_QUALITY = 1;

function compress(body: Uint8Array, compression: Compression): Uint8Array {
  switch (compression) {
    case 'none':
      return body;
    case 'deflate':
      return zlib.deflateRawSync(body);
    case 'brotli':
      return zlib.brotliCompressSync(body, { params: { [zlib.constants.BROTLI_PARAM_QUALITY]: BROTLI_QUALITY, [zlib.constants.BROTLI_PARAM_SIZE_HINT]: body.length } });
    case 'zstd':
      if (!zstd.zstdCompressSync) throw new Error(`zstd needs Node 22.15 or later; this is ${process.version}`);
      return zstd.zstdCompressSync(body);
  }
}

/** One ColumnarBatch: the head, and the points' columns encoded and compressed as asked. */
export function encodeColumnar(head: BatchHead, points: PointColumns, compression: Compression = 'none'): Uint8Array {
  const order = droneOrder(points.columns[DRONE_COLUMN]!, points.count);
  const body = bodyScratch;
  body.length = 0;
  points.columns.forEach((column, c) => {
    if (column) encodeColumn(POINT_FIELDS[c]!, column, order, body);
  });
  // point_count first: a spool told apart v1 and v2 payloads by it (wireOfPayload).
  return ColumnarBatchType.encode({
    point_count: points.count,
    gateway_id: head.gatewayId,
    batch_seq: head.batchSeq,
    sent_at: head.sentAt,
    dropped_points: head.droppedPoints ?? 0,
    stream: head.stream ?? 0,
    compression: COMPRESSION_ID[compression],
    body: compress(body.buf.subarray(0, body.length), compression),
  }).finish();
}

/** The agent's batch builder for wire v2, shaped like BatchWriter (v1) so the batcher takes either. */
export class ColumnarWriter {
  private readonly builder = new ColumnsBuilder();

  constructor(private readonly compression: Compression) {}

  get pointCount(): number {
    return this.builder.count;
  }

  /** An upper bound of the encoded size before compression, in bytes. */
  get byteLength(): number {
    return this.builder.byteBound;
  }

  add(point: TelemetryPoint): void {
    this.builder.add(point);
  }

  /** The finished ColumnarBatch; the writer is empty afterwards and reuses its arrays. */
  finish(head: BatchHead): Uint8Array {
    const payload = encodeColumnar(head, this.builder.view(), this.compression);
    this.builder.reset();
    return payload;
  }
}

/**
 * Which wire a payload our agent wrote is: a v2 ColumnarBatch begins with its point_count
 * (tag 0x08), a v1 Batch with its gateway_id (tag 0x0a). Only for payloads this code
 * encoded, e.g. a spool written before a --wire change; the sink goes by the topic.
 */
export const wireOfPayload = (payload: Uint8Array): 'v1' | 'v2' => (payload[0] === 0x08 ? 'v2' : 'v1');

// ---- decoding ----

/** A decoded ColumnarBatch: its head as in a v1 batch, and its points as typed columns. */
export interface ColumnarBatch {
  gateway_id: string;
  batch_seq: number;
  sent_at: number;
  dropped_points: number;
  stream: number;
  points: PointColumns;
}

function decompress(body: Uint8Array, compression: number, count: number): Uint8Array {
  const limit = { maxOutputLength: maxBodyBytes(count) };
  switch (compression) {
    case COMPRESSION_ID.none:
      return body;
    case COMPRESSION_ID.deflate:
      return zlib.inflateRawSync(body, limit);
    case COMPRESSION_ID.brotli:
      return zlib.brotliDecompressSync(body, limit);
    case COMPRESSION_ID.zstd:
      if (!zstd.zstdDecompressSync) throw new Error(`zstd-compressed batch, and this Node (${process.version}) has no zstd`);
      return zstd.zstdDecompressSync(body, limit);
    default:
      throw new Error(`unknown compression ${compression}`);
  }
}

/** Points with a value in a presence bitmap of n points (bits past n do not count). */
function presentCount(present: Uint8Array, n: number): number {
  let m = 0;
  for (let i = 0; i < n; i++) if ((present[i >> 3]! & (1 << (i & 7))) !== 0) m++;
  return m;
}

// readColumn decodes a sparse column densely, then spreads it over the points that have a
// value; like the encoder's, one module-wide scratch serves every (synchronous) decode.
let decodeScratch = new Float64Array(1024);

/**
 * Reads a column's values into `column.values` at the points `column.present` marks (all
 * when null), and 0 at the others; sets `column.min` and `max`, found in the decoding loops,
 * where the values are at hand, so no pass of their own.
 * Each encoding is one tight loop over the values in order: no call per value beyond the
 * varint read, no object made.
 */
function readColumn(field: PointField, wire: WireColumn, n: number, column: ColumnValues): void {
  const { values, present } = column;
  const m = present === null ? n : presentCount(present, n);
  if (present !== null && decodeScratch.length < m) decodeScratch = new Float64Array(m);
  const dense = present === null ? values : decodeScratch;
  const r = new ByteReader(wire.data);
  const fail = (what: string): never => {
    throw new Error(what);
  };
  const isDouble = field.kind === 'double';
  // The least and greatest value read; NaN for raw float64 values, which are not tracked.
  let lo = Infinity;
  let hi = -Infinity;
  switch (wire.encoding) {
    case FLOAT64:
      for (let k = 0; k < m; k++) dense[k] = r.float64();
      lo = hi = NaN;
      break;
    case DELTA: {
      if (wire.scale > MAX_SCALE || (wire.scale > 0 && !isDouble)) fail(`scale ${wire.scale} out of range`);
      const p = POW10[wire.scale]!;
      r.zigzags(dense, m);
      let int = 0;
      for (let k = 0; k < m; k++) {
        int += dense[k]!;
        if (Math.abs(int) > Number.MAX_SAFE_INTEGER) fail('value overflows 2^53');
        if (int < lo) lo = int;
        if (int > hi) hi = int;
        dense[k] = int / p;
      }
      // Division by p > 0 keeps the order, and rounds the bounds as it rounds the values.
      lo /= p;
      hi /= p;
      break;
    }
    case DELTA_OF_DELTA: {
      if (wire.scale > 6) fail(`scale ${wire.scale} out of range`);
      const unit = POW10[wire.scale]!;
      let v = 0;
      let delta = 0;
      r.zigzags(dense, m);
      for (let k = 0; k < m; k++) {
        const coded = dense[k]!;
        if (k === 0) v = coded;
        else {
          delta = k === 1 ? coded : delta + coded;
          v += delta * unit;
        }
        if (Math.abs(v) > Number.MAX_SAFE_INTEGER || Math.abs(delta) > Number.MAX_SAFE_INTEGER) fail('value overflows 2^53');
        if (v < lo) lo = v;
        if (v > hi) hi = v;
        dense[k] = v;
      }
      break;
    }
    case RLE:
    case DICTIONARY: {
      const dictionary = wire.encoding === DICTIONARY;
      if (dictionary !== (field.kind === 'string')) fail(`encoding ${wire.encoding} does not suit a ${field.kind}`);
      let k = 0;
      while (k < m) {
        const raw = r.varint();
        const v = dictionary ? raw : unzigzag(raw);
        if (dictionary && v >= wire.dictionary.length) fail(`index ${v} past a dictionary of ${wire.dictionary.length}`);
        const run = r.varint();
        if (run === 0) fail('run of length 0');
        if (run > m - k) fail('more values than points');
        dense.fill(v, k, k + run);
        if (v < lo) lo = v;
        if (v > hi) hi = v;
        k += run;
      }
      break;
    }
    default:
      fail(`unknown encoding ${wire.encoding}`);
  }
  if (!r.done) fail('more values than points');
  if (wire.encoding === FLOAT64 && !isDouble && field.kind !== 'uint64' && field.kind !== 'timestamp') fail('FLOAT64 carries doubles and 64-bit integers only');
  // The protobuf types' ranges, which v1 decoding gives by construction; one loop per
  // kind, over the values sent (a point without one reads as 0, in every range).
  // Skipped where the bounds found show every value in range (an integer encoding's values
  // are whole, so a bool's are then 0 or 1); the loops name the value that is not.
  const [min, max] = RANGE_OF_KIND[field.kind];
  if (lo >= min && hi <= max) {
    // Every value in range.
  } else if (field.kind === 'bool') {
    for (let k = 0; k < m; k++) if (dense[k] !== 0 && dense[k] !== 1) fail(`value ${dense[k]} is no bool`);
  } else if (min !== -Infinity) {
    for (let k = 0; k < m; k++) if (!(dense[k]! >= min && dense[k]! <= max)) fail(`value ${dense[k]} is no ${field.kind}`);
  }
  if (present !== null) {
    // Every point is written, a point without a value as 0, which validation relies on
    // (proto/validate.ts): `values` may be an arena's, holding another batch's values.
    for (let i = 0, k = 0; i < n; i++) values[i] = (present[i >> 3]! & (1 << (i & 7))) !== 0 ? dense[k++]! : 0;
  }
  column.min = lo;
  column.max = hi;
}

/** The values a column of each kind may hold, beyond those its encoding gives (bools: 0 and 1, checked apart). */
const RANGE_OF_KIND: Record<ColumnKind, readonly [number, number]> = {
  uint32: [0, 0xffffffff],
  enum: [-(2 ** 31), 2 ** 31 - 1],
  bool: [0, 1],
  string: [-Infinity, Infinity],
  uint64: [-Infinity, Infinity],
  timestamp: [-Infinity, Infinity],
  double: [-Infinity, Infinity],
};

/**
 * Where a decoder that takes one batch at a time puts the columns' values, batch after
 * batch: the values it returns are valid until its next decode. A batch's columns in an
 * array of their own each time were 8 bytes a value allocated outside the heap, whose
 * garbage cost the sink more than decoding them.
 */
export interface ColumnArena {
  values: Float64Array;
}

function decodeColumns(count: number, wires: readonly WireColumn[], arena: ColumnArena | null): PointColumns {
  const columns: Array<ColumnValues | null> = POINT_FIELDS.map(() => null);
  const bitmapBytes = (count + 7) >> 3;
  let all: Float64Array | null = null;
  let used = 0;
  for (const wire of wires) {
    const c = INDEX_OF_ID.get(wire.field);
    // A field added to Point after this sink was built: skipped, as protobuf skips unknown fields.
    if (c === undefined) continue;
    const field = POINT_FIELDS[c]!;
    if (columns[c]) throw new Error(`column ${field.name} sent twice`);
    const present = wire.present.length === 0 ? null : wire.present;
    if (present && present.length !== bitmapBytes) throw new Error(`column ${field.name}: presence of ${present.length * 8} points for ${count}`);
    // One buffer for the batch's columns (see ColumnsBuilder.allocate), or the arena's.
    all ??= arenaValues(arena, count * wires.length);
    const column: ColumnValues = { values: all.subarray(used * count, ++used * count), present, dictionary: field.kind === 'string' ? wire.dictionary : null, min: NaN, max: NaN };
    try {
      readColumn(field, wire, count, column);
    } catch (err) {
      throw new Error(`column ${field.name}: ${(err as Error).message}`);
    }
    columns[c] = column;
  }
  // proto3: a required field no point carries is its default in every point.
  for (const c of [DRONE_COLUMN, SEQ_COLUMN, TS_COLUMN]) {
    const column = columns[c];
    if (column === null) columns[c] = { values: new Float64Array(count), present: null, dictionary: c === DRONE_COLUMN ? [''] : null, min: 0, max: 0 };
    else if (column?.present) {
      // Absent required values read as the default: 0, or a "" entry added to the dictionary.
      const dictionary = column.dictionary ? [...column.dictionary, ''] : null;
      const absent = dictionary ? dictionary.length - 1 : 0;
      for (let i = 0; i < count; i++) if (!isPresent(column.present, i)) column.values[i] = absent;
      columns[c] = { values: column.values, present: null, dictionary, min: Math.min(column.min, absent), max: Math.max(column.max, absent) };
    }
  }
  return { count, columns };
}

const bytesField = z.instanceof(Uint8Array);
const countField = z.number().int().nonnegative();
const WireColumnSchema = z.object({
  field: countField,
  encoding: z.number().int(),
  scale: countField,
  present: bytesField,
  data: bytesField,
  dictionary: z.array(z.string()),
});
type WireColumn = z.infer<typeof WireColumnSchema>;
const WireBatchSchema = z.object({
  point_count: countField.max(MAX_COLUMNAR_POINTS, `point_count over ${MAX_COLUMNAR_POINTS}`),
  gateway_id: z.string(),
  batch_seq: z.number(),
  sent_at: z.number(),
  dropped_points: z.number(),
  stream: z.number(),
  compression: z.number().int(),
  body: bytesField,
});
const WireBodySchema = z.object({ columns: z.array(WireColumnSchema) });
const asObject = { defaults: true, arrays: true } as const;

/** The arena's values, grown to at least `length`, or a new array without one. */
function arenaValues(arena: ColumnArena | null, length: number): Float64Array {
  if (arena === null) return new Float64Array(length);
  if (arena.values.length < length) arena.values = new Float64Array(length);
  return arena.values;
}

/**
 * A batch from its bytes, its columns' values in `arena` when one is given (ColumnArena).
 * Throws on bytes that are not a consistent ColumnarBatch: the sink quarantines those as
 * undecodable.
 */
export function decodeColumnar(bytes: Uint8Array, arena: ColumnArena | null = null): ColumnarBatch {
  const head = WireBatchSchema.parse(ColumnarBatchType.toObject(ColumnarBatchType.decode(bytes), asObject));
  const body = WireBodySchema.parse(ColumnarBodyType.toObject(ColumnarBodyType.decode(decompress(head.body, head.compression, head.point_count)), asObject));
  return {
    gateway_id: head.gateway_id,
    batch_seq: head.batch_seq,
    sent_at: head.sent_at,
    dropped_points: head.dropped_points,
    stream: head.stream,
    points: decodeColumns(head.point_count, body.columns, arena),
  };
}
