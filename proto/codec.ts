import protobuf from 'protobufjs/light';
import { BatchType, CommitAckType, PointType } from './schema';
import type { CommitAck, TelemetryBatch, TelemetryPoint } from './types';

// encode() takes plain objects as they are (no fromObject/verify pass): callers hand over
// values typed by proto/types.ts, and the sink validates whatever it decodes.

const LENGTH_DELIMITED = 2;
const VARINT = 0;
const field = (name: string): number => {
  const f = BatchType.fields[name];
  if (!f) throw new Error(`telemetry.proto: Batch has no field ${name}`);
  return f.id;
};
const TAG_GATEWAY_ID = (field('gateway_id') << 3) | LENGTH_DELIMITED;
const TAG_BATCH_SEQ = (field('batch_seq') << 3) | VARINT;
const TAG_SENT_AT = (field('sent_at') << 3) | VARINT;
const TAG_POINTS = (field('points') << 3) | LENGTH_DELIMITED;
const TAG_DROPPED_POINTS = (field('dropped_points') << 3) | VARINT;
const TAG_STREAM = (field('stream') << 3) | VARINT;

/** The Batch fields other than its points. */
export interface BatchHead {
  gatewayId: string;
  batchSeq: number;
  /** Microseconds since the epoch. */
  sentAt: number;
  droppedPoints?: number;
  /** The stream the points' seqs count in; 0 or absent is the legacy stream. */
  stream?: number;
}

/**
 * Builds one Batch incrementally: each point is encoded as it arrives, so the batcher
 * knows the exact byte size at all times and closing a batch costs one copy. The bytes
 * are those encodeBatch() would give (protobuf readers accept fields in any order).
 */
export class BatchWriter {
  private points = protobuf.Writer.create();
  private count = 0;

  get pointCount(): number {
    return this.count;
  }

  /** Encoded size of the points so far, in bytes. */
  get byteLength(): number {
    return this.points.len;
  }

  add(point: TelemetryPoint): void {
    PointType.encode(point, this.points.uint32(TAG_POINTS).fork()).ldelim();
    this.count++;
  }

  /** The encoded points alone; joined to a batchHead() they make a Batch. Empties the writer. */
  finishPoints(): Uint8Array {
    const body = this.points.finish();
    this.points = protobuf.Writer.create();
    this.count = 0;
    return body;
  }

  /** The finished Batch; the writer is empty afterwards. */
  finish(head: BatchHead): Uint8Array {
    return joinBatch(batchHead(head), this.finishPoints());
  }
}

/** The Batch fields other than its points, encoded. */
export function batchHead({ gatewayId, batchSeq, sentAt, droppedPoints = 0, stream = 0 }: BatchHead): Uint8Array {
  const w = protobuf.Writer.create().uint32(TAG_GATEWAY_ID).string(gatewayId).uint32(TAG_BATCH_SEQ).uint64(batchSeq).uint32(TAG_SENT_AT).int64(sentAt);
  // proto3 leaves a zero scalar off the wire.
  if (droppedPoints > 0) w.uint32(TAG_DROPPED_POINTS).uint64(droppedPoints);
  if (stream > 0) w.uint32(TAG_STREAM).uint64(stream);
  return w.finish();
}

export function joinBatch(head: Uint8Array, points: Uint8Array): Uint8Array {
  const out = new Uint8Array(head.length + points.length);
  out.set(head, 0);
  out.set(points, head.length);
  return out;
}

export function encodeBatch(batch: TelemetryBatch): Uint8Array {
  return BatchType.encode(batch).finish();
}

// The decoder builds messages of the schema's shape; these checks hold the decoded object
// to the TypeScript type instead of casting it. They look at the Batch's few head fields
// and the points array, once per batch: each point is a Point message the decoder built,
// and the sink validates every point's values (proto/validate.ts).

const isCount = (v: unknown): boolean => v === undefined || v === null || typeof v === 'number';

function isBatch(m: object): m is TelemetryBatch {
  return (
    'gateway_id' in m && typeof m.gateway_id === 'string' &&
    'batch_seq' in m && typeof m.batch_seq === 'number' &&
    'sent_at' in m && typeof m.sent_at === 'number' &&
    'points' in m && Array.isArray(m.points) &&
    (!('dropped_points' in m) || isCount(m.dropped_points)) &&
    (!('stream' in m) || isCount(m.stream))
  );
}

function isAck(m: object): m is CommitAck {
  return (
    'gateway_id' in m && typeof m.gateway_id === 'string' &&
    'committed_at' in m && typeof m.committed_at === 'number' &&
    'batch_seqs' in m && Array.isArray(m.batch_seqs) && m.batch_seqs.every((seq) => typeof seq === 'number')
  );
}

/** Throws on bytes that are not a Batch (truncated, wrong wire types). */
export function decodeBatch(bytes: Uint8Array): TelemetryBatch {
  const batch = BatchType.decode(bytes);
  if (!isBatch(batch)) throw new Error('decoded Batch does not have the contract\'s fields');
  return batch;
}

export function encodeAck(ack: CommitAck): Uint8Array {
  return CommitAckType.encode(ack).finish();
}

/** Throws on bytes that are not a CommitAck. */
export function decodeAck(bytes: Uint8Array): CommitAck {
  const ack = CommitAckType.decode(bytes);
  if (!isAck(ack)) throw new Error('decoded CommitAck does not have the contract\'s fields');
  return ack;
}
