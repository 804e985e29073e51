import { ftruncateSync, writeSync } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, unlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as delay } from 'node:timers/promises';
import CRC32C from 'crc-32/crc32c.js';
import { fsyncPath } from '../deploy/runtime/files';
import { isStreamId, newStreamId } from '../proto/stream';
import type { ClosedBatch } from './batcher';

/*
 * On-disk layout. Every record is a frame
 *
 *   [u32 LE body length][u32 LE crc32c(body)][body]
 *
 * whose body starts with a type byte. Segment files `seg-<16-digit id>.log` hold
 *
 *   BATCH       [u8 1][f64 LE batch seq][u32 LE points][f64 LE appendedAt, ms since the epoch]
 *               [u32 LE payload length][payload][lastSeqs]
 *               lastSeqs: UTF-8 JSON {"droneId": seq} with the highest seq per drone in the
 *               batch; it fills the rest of the body and is empty when none was given.
 *   CHECKPOINT  [u8 2][UTF-8 JSON Checkpoint], with the stream the drone seqs count in
 *
 * and `acks.log` holds
 *
 *   ACK         [u8 3][f64 LE batch seq]
 *
 * Seqs are f64: batch seqs are safe integers (a clock in µs fits), and an f64 reads back
 * exactly without u64 arithmetic. The append time is stored in the record, so the age of a
 * recovered batch is its real age, not the age of a file.
 *
 * Every segment begins with a CHECKPOINT; more follow after a drop and on close. Recovery
 * replays records in file order, later checkpoints and lastSeqs overriding earlier values,
 * so the counters survive the deletion of any older segment.
 */

const BATCH = 1;
const CHECKPOINT = 2;
const ACK = 3;
const FRAME_HEADER = 8;
/** type, seq, points, appendedAt, payload length */
const BATCH_HEADER = 25;
const ACK_BODY = 9;
const ACK_FRAME = FRAME_HEADER + ACK_BODY;
const ACK_LOG = 'acks.log';
const ACK_LOG_TMP = 'acks.log.tmp';
const SEGMENT_NAME = /^seg-(\d{16})\.log$/;
const UTF8 = new TextDecoder('utf-8', { fatal: true });
const MiB = 1024 * 1024;

export type SpoolFullPolicy = 'block' | 'drop-oldest';

export interface SpoolOptions {
  dir: string;
  /** Total bytes of live segment files at most. Default 64 MiB. */
  maxBytes?: number;
  /**
   * Payload bytes held in memory: batches being sent and the newest ones waiting to be, at
   * most (plus one batch, so sending never stalls). The rest is read back from disk. Default 8 MiB.
   */
  memoryBytes?: number;
  /** A segment is closed once it would grow past this; at most maxBytes / 4. Default 8 MiB. */
  segmentBytes?: number;
  /** Group commit: at most one fsync per this many ms; 0 syncs as soon as a write lands. Default 50. */
  fsyncIntervalMs?: number;
  /** When full: `block` makes append wait for acks; `drop-oldest` deletes the oldest segment. Default `block`. */
  whenFull?: SpoolFullPolicy;
  /**
   * nextBatchSeq() never returns less. Pass a clock in µs: then a lost or wiped spool dir
   * cannot make batch seqs start again below ones the sink has already taken (and dedupes).
   */
  minBatchSeq?: number;
  /** Failures of background work (ack records, segment deletion); nothing is lost by them. */
  onError?: (err: unknown) => void;
  /** The disk ran out of room for a record (true), or took one again (false). */
  onDiskFull?: (full: boolean, err?: unknown) => void;
}

export interface SpoolRecovery {
  /** Segment files read at open. */
  segments: number;
  /** Valid records read from the segments (batches and checkpoints). */
  recordsRecovered: number;
  /** Bytes of torn or corrupt tails cut off segments, or dropped from the end of acks.log. */
  truncatedBytes: number;
  /** Corrupt stretches skipped between valid records, in segments and acks.log. */
  corruptRecords: number;
}

export interface SpoolStats {
  appends: number;
  acks: number;
  /** Group-commit rounds, each one fsync per file written since the last. */
  fsyncs: number;
  fsyncLastMs: number;
  fsyncMaxMs: number;
  segments: number;
  /** Bytes of live segment files. */
  bytes: number;
  /** Payload bytes held in memory (invariant 6: at most memoryBytes and one batch). */
  memoryBytes: number;
  dropped: { batches: number; points: number };
  /** Whether the disk is out of room right now (ENOSPC, EDQUOT), whatever maxBytes allows. */
  diskFull: boolean;
  /** Times the disk ran out of room. */
  diskFullEvents: number;
  recovery: SpoolRecovery;
}

interface Checkpoint {
  nextBatchSeq: number;
  droneSeqs: Record<string, number>;
  dropped: { batches: number; points: number };
  /** Every batch below this seq was dropped, even if a crash left its segment behind. */
  dropBelow: number;
  /** The stream droneSeqs count in; absent in spools written before streams. */
  stream?: number;
}

interface BatchRecord {
  type: typeof BATCH;
  batch: ClosedBatch;
  appendedAt: number;
  lastSeqs: Record<string, number>;
}

type SegmentRecord = BatchRecord | { type: typeof CHECKPOINT; checkpoint: Checkpoint };

interface Segment {
  readonly path: string;
  /** The CHECKPOINT a new segment starts with, until the file is created; recovered ones have none. */
  header: Uint8Array | undefined;
  handle: FileHandle | undefined;
  /** Bytes written or queued. */
  size: number;
  /** Bytes in the file: where the next record goes, and where a failed write is cut back to. */
  written: number;
  batches: number;
  /** Batches neither acked nor dropped; at 0 a sealed segment can go. */
  live: number;
  lastSeq: number;
  /** Acked seqs, so acks.log can be rewritten with just those of live segments. */
  acked: number[];
  /** Writes queued for this segment and not yet done: its handle must stay open for them. */
  queuedWrites: number;
}

/** A frame queued for the file; on a full disk it waits in Spool.parked with the error that parked it. */
interface PendingWrite {
  segment: Segment;
  frame: Uint8Array;
  /** With the offset the frame was written at. */
  done: (err?: unknown, at?: number) => void;
  error?: unknown;
}

interface Entry {
  seq: number;
  points: number;
  /** Payload bytes. */
  size: number;
  appendedAt: number;
  /** Unset while the append waits for room. */
  segment: Segment | undefined;
  /** Where the batch's frame starts in its segment file; -1 until it is written there. */
  frameAt: number;
  frameBytes: number;
  /** The payload while it is in memory: held (counted in memoryBytes), or until its write lands. */
  payload: Uint8Array | undefined;
  held: boolean;
  acked: boolean;
}

/**
 * The agent's batches on disk until the sink's commit ack frees them: an append-only log of
 * segments with group-committed fsyncs, an ack log, and recovery that keeps every valid
 * record of whatever a crash or a bad disk left behind.
 *
 * Invariant 6: maxBytes bounds the disk only. Memory holds the payloads being sent and the
 * newest ones waiting to be, within memoryBytes; the backlog is read back from the segment
 * files as acks free room, so memory does not grow with the spool.
 */
export class Spool {
  private readonly dir: string;
  private readonly maxBytes: number;
  private readonly segmentBytes: number;
  private readonly fsyncIntervalMs: number;
  private readonly whenFull: SpoolFullPolicy;
  private readonly minBatchSeq: number;
  private readonly memoryBytes: number;
  private readonly onError: (err: unknown) => void;

  /** Unacked batches; insertion order is seq order because appends must increase. */
  private readonly entries = new Map<number, Entry>();
  private payloadBytes = 0;
  /** Payload bytes of held entries. */
  private heldBytes = 0;
  /** Shared by the segment reads at open, then let go. */
  private recoveryBuffer = new Uint8Array(0);
  private pointCount = 0;
  /** Live segment files, oldest first; the last one is the active one. */
  private segments: Segment[] = [];
  private nextSegmentId = 1;
  private diskBytes = 0;
  /** Frames of appends still waiting for room, so hasSpace() counts them. */
  private queuedBytes = 0;
  private lastFrameBytes = 0;
  private checkpointBytes = 0;

  private nextSeq = 0;
  private readonly droneSeqs = new Map<string, number>();
  /** The stream the drone seqs count in; 0 until recovery settles it. */
  private streamId = 0;
  private readonly dropped = { batches: 0, points: 0 };
  private dropBelow = 0;

  private ackHandle: FileHandle | undefined;
  private ackBytes = 0;
  /** Acks recorded since the last write to acks.log began; the next write takes them all. */
  private unwrittenAcks: number[] = [];
  private diskFull = false;
  /** Writes the disk had no room for, oldest first; later writes queue behind them. */
  private readonly parked: PendingWrite[] = [];
  private parkedTimer: NodeJS.Timeout | undefined;
  private readonly onDiskFull: (full: boolean, err?: unknown) => void;
  /** Handles written since their last fsync. */
  private readonly dirty = new Set<FileHandle>();
  /** Every file operation runs on this chain, one at a time, in order. */
  private io: Promise<unknown> = Promise.resolve();
  /** Appends take room and a place in the log one at a time, in call order. */
  private admission: Promise<unknown> = Promise.resolve();
  /** The next group commit, while it has not started; appends that wrote before it join it. */
  private pendingSync: Promise<void> | undefined;
  /** performance.now() of the last round: a wall-clock step back must not stall appends. */
  private lastSyncAt = -Infinity;
  private reclaimQueued = false;
  private waiters: Array<() => void> = [];
  private closed = false;
  private readonly counters = { appends: 0, acks: 0, fsyncs: 0, fsyncLastMs: 0, fsyncMaxMs: 0, diskFullEvents: 0 };
  private readonly recovery: SpoolRecovery = { segments: 0, recordsRecovered: 0, truncatedBytes: 0, corruptRecords: 0 };

  private constructor(options: SpoolOptions) {
    this.dir = options.dir;
    this.maxBytes = checkCount('maxBytes', options.maxBytes ?? 64 * MiB);
    // A segment is the unit that acks and drops free; larger than a quarter of the budget,
    // the spool would wait or drop in steps too coarse for the budget.
    this.segmentBytes = Math.min(checkCount('segmentBytes', options.segmentBytes ?? 8 * MiB), Math.floor(this.maxBytes / 4));
    this.fsyncIntervalMs = checkCount('fsyncIntervalMs', options.fsyncIntervalMs ?? 50);
    this.whenFull = options.whenFull ?? 'block';
    this.minBatchSeq = checkCount('minBatchSeq', options.minBatchSeq ?? 0);
    this.memoryBytes = checkCount('memoryBytes', options.memoryBytes ?? 8 * MiB);
    this.onError = options.onError ?? (() => {});
    this.onDiskFull = options.onDiskFull ?? (() => {});
  }

  /** Opens the spool in `dir` (created if missing), recovering what is there. Bad data never makes it fail. */
  static async open(options: SpoolOptions): Promise<Spool> {
    const spool = new Spool(options);
    await spool.recover();
    return spool;
  }

  get count(): number {
    return this.entries.size;
  }

  /** Payload bytes of unacked batches. */
  get bytes(): number {
    return this.payloadBytes;
  }

  get points(): number {
    return this.pointCount;
  }

  /**
   * The stream the drone seqs count in (invariant 3): kept with them in every checkpoint,
   * and drawn anew whenever the spool cannot show it restored every seq it handed out.
   */
  get stream(): number {
    return this.streamId;
  }

  /** The seq the next batch must have at least; it only grows, across restarts too. */
  nextBatchSeq(): number {
    return this.nextSeq;
  }

  /** Remembers a drone's latest seq; it is persisted with the next checkpoint (segment roll or close). */
  noteDroneSeq(droneId: string, seq: number): void {
    this.droneSeqs.set(droneId, checkCount('drone seq', seq));
  }

  droneSeq(droneId: string): number | undefined {
    return this.droneSeqs.get(droneId);
  }

  /** Whether an append of the usual size would go through without waiting: under drop-oldest, unless the disk is full. */
  hasSpace(): boolean {
    if (this.diskFull) return false;
    if (this.whenFull === 'drop-oldest') return true;
    return this.diskBytes + this.queuedBytes + this.lastFrameBytes <= this.maxBytes;
  }

  /** Points of an unacked batch; undefined if it is not held (unknown, acked or dropped). */
  pointsOf(seq: number): number | undefined {
    return this.entries.get(seq)?.points;
  }

  /** Seqs of the unacked batches in order, e.g. to send again after a restart. */
  seqs(): number[] {
    return Array.from(this.entries.keys());
  }

  /**
   * Whether load(seq) keeps the batch within memoryBytes: it is in memory already, or there
   * is room for it.
   */
  roomFor(seq: number): boolean {
    const entry = this.entries.get(seq);
    return entry === undefined || entry.held || this.heldBytes + entry.size <= this.memoryBytes;
  }

  /** An unacked batch, from memory or read back from disk; undefined if it is not held. */
  async get(seq: number): Promise<ClosedBatch | undefined> {
    const entry = this.entries.get(seq);
    const payload = entry && (entry.payload ?? (await this.readBack(entry)));
    return entry && payload && this.entries.has(seq) ? { seq, points: entry.points, payload } : undefined;
  }

  /**
   * get(), and the payload then stays in memory until the batch is acked or dropped: for
   * batches being sent, which a reconnect or a late ack sends again. The caller keeps
   * within memoryBytes with roomFor() (invariant 6).
   */
  async load(seq: number): Promise<ClosedBatch | undefined> {
    const entry = this.entries.get(seq);
    if (!entry) return undefined;
    // Counted at once, so roomFor() sees the reads under way too.
    if (!entry.held) {
      entry.held = true;
      this.heldBytes += entry.size;
    }
    const batch = await this.get(seq);
    // Not held any more if it was acked or dropped meanwhile.
    if (batch && entry.held) entry.payload ??= batch.payload;
    return batch;
  }

  /** Unacked batches in seq order, read back from disk as needed. */
  async unacked(): Promise<ClosedBatch[]> {
    const batches: ClosedBatch[] = [];
    for (const seq of this.seqs()) {
      const batch = await this.get(seq);
      if (batch) batches.push(batch);
    }
    return batches;
  }

  /** When the oldest unacked batch was appended (ms since the epoch), or null if none is. */
  oldestUnackedAppendedAt(): number | null {
    return this.entries.values().next().value?.appendedAt ?? null;
  }

  /** Points of the batches dropped so far: what each batch's head reports, read per batch without building stats(). */
  get droppedPoints(): number {
    return this.dropped.points;
  }

  stats(): SpoolStats {
    return {
      ...this.counters,
      segments: this.segments.length,
      bytes: this.diskBytes,
      memoryBytes: this.heldBytes,
      dropped: { ...this.dropped },
      diskFull: this.diskFull,
      recovery: { ...this.recovery },
    };
  }

  /**
   * Stores a batch; resolves once an fsync covering it has completed. The batch is visible to
   * get() and ack() at once, and stays in memory if memoryBytes has room for it. `lastSeqs` (highest seq per drone in the batch) is stored with
   * it, so droneSeq() survives a crash. Seqs must increase from nextBatchSeq().
   */
  async append(batch: ClosedBatch, lastSeqs?: ReadonlyMap<string, number>): Promise<void> {
    if (this.closed) throw new Error('spool is closed');
    if (!Number.isSafeInteger(batch.seq) || batch.seq < this.nextSeq) {
      throw new RangeError(`batch seq ${batch.seq} is below the spool's next batch seq ${this.nextSeq}`);
    }
    if (!Number.isInteger(batch.points) || batch.points < 0 || batch.points > 0xffffffff) {
      throw new RangeError(`batch ${batch.seq} has ${batch.points} points`);
    }
    for (const [droneId, seq] of lastSeqs ?? []) checkCount(`seq of drone ${droneId}`, seq);
    const appendedAt = Date.now();
    const frame = batchFrame(batch, appendedAt, lastSeqs);
    if (frame.length + this.checkpointBytes > this.maxBytes) {
      throw new Error(`batch ${batch.seq} takes ${frame.length} bytes on disk; the spool's maxBytes of ${this.maxBytes} cannot hold it`);
    }

    this.nextSeq = batch.seq + 1;
    for (const [droneId, seq] of lastSeqs ?? []) this.droneSeqs.set(droneId, seq);
    // The newest batches are the next to go out while the link is up; in an outage the
    // first ones stay in memory, and the rest are read back from disk.
    const held = this.heldBytes + batch.payload.length <= this.memoryBytes;
    const entry: Entry = {
      seq: batch.seq,
      points: batch.points,
      size: batch.payload.length,
      appendedAt,
      segment: undefined,
      frameAt: -1,
      frameBytes: frame.length,
      payload: batch.payload,
      held,
      acked: false,
    };
    this.remember(entry);
    this.counters.appends++;
    this.queuedBytes += frame.length;
    this.lastFrameBytes = frame.length;

    const admitted = this.admission.then(() => this.admit(entry, frame));
    this.admission = admitted.catch(() => undefined);
    const { written } = await admitted;
    await written;
    await this.requestSync();
  }

  /** Frees a batch on the sink's commit ack; false if it is not held (unknown, or already acked or dropped). */
  ack(seq: number): boolean {
    const entry = this.entries.get(seq);
    if (!entry || this.closed) return false;
    this.forget(entry);
    entry.acked = true;
    this.counters.acks++;
    // Without a segment yet, the batch waits for room; admit() records the ack once it has one.
    if (entry.segment) this.recordAck(seq, entry.segment);
    this.signal();
    return true;
  }

  /** Stops taking appends (those waiting for room fail), persists the counters, fsyncs and closes the files. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.signal();
    // Writes parked on a full disk get one last try, then fail.
    if (this.parked.length > 0) this.scheduleParkedRetry(0);
    await this.admission;
    // Drone seqs noted since the last checkpoint are kept too. A full disk skips it: the
    // batch records written already hold the seqs of their drones.
    await this.writeRecord(this.active, checkpointFrame(this.checkpoint())).written.catch((err: unknown) => {
      if (!isDiskFull(err)) throw err;
    });
    await this.serial(async () => {
      await this.syncRound();
      for (const seg of this.segments) {
        await seg.handle?.close();
        seg.handle = undefined;
      }
      await this.ackHandle?.close();
      this.ackHandle = undefined;
    });
    clearTimeout(this.parkedTimer);
  }

  // --- recovery ---

  private async recover(): Promise<void> {
    await mkdir(this.dir, { recursive: true });
    let lastSeq = -1;
    const { ids, highestName } = await listSegments(this.dir);
    for (const id of ids) {
      const seg = await this.recoverSegment(id);
      for (const { record, at, end } of seg.records) {
        // The append path writes seqs in increasing order; a record out of it cannot be ours.
        if (record.type === BATCH && record.batch.seq <= lastSeq) {
          this.recovery.corruptRecords++;
          continue;
        }
        this.recovery.recordsRecovered++;
        if (record.type === CHECKPOINT) this.restore(record.checkpoint);
        else lastSeq = this.replayBatch(seg.segment, record, at, end - at);
      }
    }
    for (const seq of await this.readAckLog()) {
      const entry = this.entries.get(seq);
      if (entry?.segment) this.release(entry, entry.segment).acked.push(seq);
    }
    // Dropped and counted before a crash that left their segment behind.
    for (const entry of this.entries.values()) {
      if (entry.seq >= this.dropBelow) break;
      if (entry.segment) this.release(entry, entry.segment);
    }
    this.nextSeq = Math.max(this.nextSeq, this.minBatchSeq);
    // Invariant 3: a new or wiped spool, one from before streams, or one whose records were
    // damaged (the damaged one may have held a drone's latest seq, which would then be
    // handed out again) starts a new stream, so no seq it hands out can name a point the
    // lake already holds.
    const damaged = this.recovery.truncatedBytes > 0 || this.recovery.corruptRecords > 0;
    if (this.streamId === 0 || damaged) this.streamId = newStreamId();
    this.recoveryBuffer = new Uint8Array(0);
    this.nextSegmentId = highestName + 1;
    // A fresh segment per start seals the old ones, so those fully acked can go now.
    this.roll();
    await this.reclaimNow();
  }

  private async recoverSegment(id: number): Promise<{ segment: Segment; records: Array<Located<SegmentRecord>> }> {
    const path = join(this.dir, segmentName(id));
    const data = await this.readWhole(path);
    const { records, validEnd, corrupt } = scan(data, decodeSegmentRecord);
    if (validEnd < data.length) await truncateFile(path, validEnd);
    this.recovery.segments++;
    this.recovery.truncatedBytes += data.length - validEnd;
    this.recovery.corruptRecords += corrupt;
    const segment = newSegment(path, undefined);
    segment.size = validEnd;
    segment.written = validEnd;
    this.segments.push(segment);
    this.diskBytes += validEnd;
    return { segment, records };
  }

  /**
   * A segment's bytes, in one buffer that every segment read at open shares: invariant 6, a
   * large spool on disk is not a burst of buffers in memory that wait for the next GC.
   */
  private async readWhole(path: string): Promise<Uint8Array> {
    const handle = await open(path, 'r');
    try {
      const { size } = await handle.stat();
      if (this.recoveryBuffer.length < size) this.recoveryBuffer = new Uint8Array(size);
      const data = this.recoveryBuffer.subarray(0, size);
      let done = 0;
      while (done < size) {
        const { bytesRead } = await handle.read(data, done, size - done, done);
        if (bytesRead === 0) break;
        done += bytesRead;
      }
      return data.subarray(0, done);
    } finally {
      await handle.close();
    }
  }

  private restore(checkpoint: Checkpoint): void {
    this.nextSeq = Math.max(this.nextSeq, checkpoint.nextBatchSeq);
    for (const [droneId, seq] of Object.entries(checkpoint.droneSeqs)) this.droneSeqs.set(droneId, seq);
    this.dropped.batches = checkpoint.dropped.batches;
    this.dropped.points = checkpoint.dropped.points;
    this.dropBelow = Math.max(this.dropBelow, checkpoint.dropBelow);
    if (checkpoint.stream !== undefined) this.streamId = checkpoint.stream;
  }

  private replayBatch(segment: Segment, record: BatchRecord, frameAt: number, frameBytes: number): number {
    const { batch, appendedAt, lastSeqs } = record;
    // Invariant 6: what memoryBytes has no room for is read back from the file when sent.
    // A copy, so a batch kept in memory does not pin its whole segment's buffer.
    const held = this.heldBytes + batch.payload.length <= this.memoryBytes;
    const payload = held ? batch.payload.slice() : undefined;
    this.remember({ seq: batch.seq, points: batch.points, size: batch.payload.length, appendedAt, segment, frameAt, frameBytes, payload, held, acked: false });
    segment.batches++;
    segment.live++;
    segment.lastSeq = batch.seq;
    this.nextSeq = Math.max(this.nextSeq, batch.seq + 1);
    for (const [droneId, seq] of Object.entries(lastSeqs)) this.droneSeqs.set(droneId, seq);
    return batch.seq;
  }

  private async readAckLog(): Promise<number[]> {
    let data: Uint8Array;
    try {
      data = bytesOf(await readFile(join(this.dir, ACK_LOG)));
    } catch (err) {
      if (isMissing(err)) return [];
      throw err;
    }
    // Not truncated in place: reclaimNow() rewrites the log from what survived.
    const { records, validEnd, corrupt } = scan(data, decodeAck);
    this.recovery.truncatedBytes += data.length - validEnd;
    this.recovery.corruptRecords += corrupt;
    return records.map((r) => r.record);
  }

  // --- appending ---

  private async admit(entry: Entry, frame: Uint8Array): Promise<{ written: Promise<void> }> {
    try {
      await this.makeRoom(frame.length);
    } catch (err) {
      this.forget(entry);
      throw err;
    } finally {
      this.queuedBytes -= frame.length;
    }
    if (this.rollsFor(frame.length)) this.roll();
    const segment = this.active;
    segment.batches++;
    segment.live++;
    segment.lastSeq = entry.seq;
    entry.segment = segment;
    const { written } = this.writeRecord(segment, frame);
    // Once in the file, a batch not held in memory is read back from there (invariant 6).
    const landed = written.then((at) => {
      entry.frameAt = at;
      if (!entry.held) entry.payload = undefined;
    });
    if (entry.acked) this.recordAck(entry.seq, segment);
    return { written: landed };
  }

  private async makeRoom(frameBytes: number): Promise<void> {
    for (;;) {
      if (this.closed) throw new Error('spool closed while the append waited for room');
      const need = frameBytes + (this.rollsFor(frameBytes) ? this.checkpointBytes : 0);
      if (this.diskBytes + need <= this.maxBytes) return;
      // The io chain is retrying parked writes, and deletes what acks free; a reclaim here could not write.
      if (this.diskFull) {
        await this.changed();
        continue;
      }
      if (this.segments.some((s) => s !== this.active && s.live === 0)) await this.reclaimNow();
      // Acked data in the active segment is freed by sealing it.
      else if (this.active.batches > 0 && this.active.live === 0) this.roll();
      else if (this.whenFull === 'block') await this.changed();
      else if (this.segments.length > 1 || this.active.batches > 0) await this.dropOldest();
      else throw new Error(`the spool cannot make room for ${frameBytes} bytes within maxBytes ${this.maxBytes}`);
    }
  }

  private rollsFor(frameBytes: number): boolean {
    return this.active.batches > 0 && this.active.size + frameBytes > this.segmentBytes;
  }

  /** Drops the oldest segment whole, which a single unlink makes crash-atomic. */
  private async dropOldest(): Promise<void> {
    if (this.segments.length === 1) this.roll();
    this.countDrop(this.segments[0]!);
    // Durable before the unlink: a crash in between finds the drop counted and its batches
    // below dropBelow, so they are neither resurrected nor counted twice.
    await this.writeRecord(this.active, checkpointFrame(this.checkpoint())).written;
    await this.requestSync();
    await this.reclaimNow();
  }

  /** Frees and counts the live batches of the oldest segment (invariant 1: a counted loss); the caller deletes it. */
  private countDrop(oldest: Segment): void {
    for (const entry of this.entries.values()) {
      if (entry.segment !== oldest) break;
      this.release(entry, oldest);
      this.dropped.batches++;
      this.dropped.points += entry.points;
    }
    this.dropBelow = Math.max(this.dropBelow, oldest.lastSeq + 1);
  }

  /** Seals the active segment and starts a new one; its file is created on first write. */
  private roll(): void {
    const previous = this.segments.at(-1);
    const header = checkpointFrame(this.checkpoint());
    const id = this.nextSegmentId++;
    const segment = newSegment(join(this.dir, segmentName(id)), header);
    segment.size = header.length;
    this.segments.push(segment);
    this.diskBytes += header.length;
    this.checkpointBytes = header.length;
    if (previous?.live === 0) this.scheduleReclaim();
  }

  /** The segment appends go to; open() leaves one, and nothing ever removes it. */
  private get active(): Segment {
    return this.segments.at(-1)!;
  }

  private checkpoint(): Checkpoint {
    return {
      nextBatchSeq: this.nextSeq,
      droneSeqs: Object.fromEntries(this.droneSeqs),
      dropped: { ...this.dropped },
      dropBelow: this.dropBelow,
      stream: this.streamId,
    };
  }

  /** Queues a frame for `segment`; `written` resolves once it is in the file (not yet fsynced). */
  private writeRecord(segment: Segment, frame: Uint8Array): { written: Promise<number> } {
    segment.size += frame.length;
    this.diskBytes += frame.length;
    segment.queuedWrites++;
    const written = new Promise<number>((resolve, reject) => {
      const write: PendingWrite = {
        segment,
        frame,
        done: (err, at = -1) => {
          segment.queuedWrites--;
          if (err === undefined) resolve(at);
          else reject(err);
        },
      };
      // Invariant 1: behind a write parked on a full disk, later ones park too, so records
      // (batches in seq order) reach the file in the order they were queued.
      this.serial(async () => (this.parked.length > 0 ? void this.parked.push(write) : this.writeOrPark(write))).catch(write.done);
    });
    return { written };
  }

  /**
   * Writes a frame at the end of its segment, on the io chain. A disk without room fails the
   * write, which is cut back so no torn frame stays, and parks it: invariant 1, the frame is
   * written once there is room instead of being lost. The io chain keeps running meanwhile,
   * so fsyncs, acks and reclaims (which make room) go on.
   */
  private async writeOrPark(write: PendingWrite): Promise<void> {
    if (await this.tryWrite(write)) return;
    this.parked.push(write);
    if (!this.diskFull) this.setDiskFull(true, write.error);
    this.scheduleParkedRetry(0);
  }

  /** True once written (or failed for good); false when the disk has no room. */
  private async tryWrite(write: PendingWrite): Promise<boolean> {
    let at: number;
    try {
      const handle = await this.openSegment(write.segment);
      at = write.segment.written;
      writeAt(handle, write.frame, at);
      write.segment.written += write.frame.length;
      this.dirty.add(handle);
    } catch (err) {
      if (!isDiskFull(err) || this.closed) {
        write.done(err);
        return true;
      }
      write.error = err;
      return false;
    }
    write.done(undefined, at);
    return true;
  }

  private scheduleParkedRetry(attempt: number): void {
    clearTimeout(this.parkedTimer);
    // Backoff: acks, drops and other programs make room at their own pace; close retries at once.
    const ms = this.closed ? 0 : Math.min(1000, 50 * 2 ** attempt);
    this.parkedTimer = setTimeout(() => void this.serial(() => this.retryParked(attempt)).catch(this.onError), ms);
  }

  /** Writes parked frames in order while the disk takes them; on the io chain. */
  private async retryParked(attempt: number): Promise<void> {
    await this.deleteDeadSegments();
    while (this.parked.length > 0) {
      if (!(await this.tryWrite(this.parked[0]!))) break;
      this.parked.shift();
    }
    if (this.parked.length === 0) {
      if (!this.closed) this.setDiskFull(false);
      return;
    }
    const dropped = this.whenFull === 'drop-oldest' && (await this.dropOldestForDisk(this.parked[0]!.segment));
    this.scheduleParkedRetry(dropped ? 0 : attempt + 1);
  }

  private setDiskFull(full: boolean, err?: unknown): void {
    this.diskFull = full;
    if (full) this.counters.diskFullEvents++;
    this.onDiskFull(full, err);
    this.signal();
  }

  /** Whether a segment file other than `going` holds a checkpoint, so deleting those loses no counter. */
  private checkpointKeptWithout(going: readonly Segment[]): boolean {
    return this.segments.some((s) => !going.includes(s) && s.header === undefined);
  }

  /** Deletes sealed segments whose batches are all acked; on the io chain. */
  private async deleteDeadSegments(): Promise<void> {
    let dead = this.segments.filter((s) => s !== this.active && s.live === 0 && s.queuedWrites === 0);
    // The newest stays while no newer file holds a checkpoint: it carries the counters.
    if (!this.checkpointKeptWithout(dead)) dead = dead.slice(0, -1);
    if (dead.length === 0) return;
    for (const seg of dead) await this.deleteSegment(seg);
    await fsyncPath(this.dir);
    this.signal();
  }

  /**
   * drop-oldest on a full disk: drops the oldest sealed segment (never the one the first parked
   * write goes to) and counts its batches; false when there is none. On the io chain. The
   * unlink comes first, as the disk may have no room for the checkpoint that counts the drop:
   * a crash between the two loses that count, not data the spool still holds.
   */
  private async dropOldestForDisk(pending: Segment): Promise<boolean> {
    const oldest = this.segments[0]!;
    if (oldest === this.active || oldest === pending || oldest.queuedWrites > 0 || !this.checkpointKeptWithout([oldest])) return false;
    this.countDrop(oldest);
    await this.deleteSegment(oldest);
    await fsyncPath(this.dir);
    const checkpoint = checkpointFrame(this.checkpoint());
    try {
      const handle = await this.openSegment(pending);
      writeAt(handle, checkpoint, pending.written);
      pending.written += checkpoint.length;
      pending.size += checkpoint.length;
      this.diskBytes += checkpoint.length;
      this.dirty.add(handle);
    } catch (err) {
      if (!isDiskFull(err)) throw err;
    }
    this.signal();
    return true;
  }

  private async openSegment(segment: Segment): Promise<FileHandle> {
    if (segment.handle) return segment.handle;
    if (!segment.header) throw new Error(`${segment.path} was recovered and is never written again`);
    // 'w', so a retry after a failed creation starts the file over from its checkpoint.
    const handle = await open(segment.path, 'w');
    try {
      writeAt(handle, segment.header, 0);
      await handle.sync();
      await fsyncPath(this.dir);
    } catch (err) {
      await handle.close();
      throw err;
    }
    segment.handle = handle;
    segment.written = segment.header.length;
    segment.header = undefined;
    return handle;
  }

  // --- group commit ---

  private requestSync(): Promise<void> {
    this.pendingSync ??= this.scheduleSync();
    return this.pendingSync;
  }

  private async scheduleSync(): Promise<void> {
    const wait = this.lastSyncAt + this.fsyncIntervalMs - performance.now();
    if (wait > 0) await delay(wait);
    await this.serial(() => {
      // From here on, a write needs the next round: this one may run before it lands.
      this.pendingSync = undefined;
      return this.syncRound();
    });
  }

  private async syncRound(): Promise<void> {
    const started = performance.now();
    this.lastSyncAt = started;
    const handles = [...this.dirty];
    this.dirty.clear();
    if (handles.length === 0) return;
    try {
      await Promise.all(handles.map((h) => h.sync()));
    } catch (err) {
      // Still unsynced: the next round tries again, and its waiters hear of it if it fails too.
      for (const h of handles) this.dirty.add(h);
      throw err;
    }
    const ms = performance.now() - started;
    this.counters.fsyncs++;
    this.counters.fsyncLastMs = ms;
    this.counters.fsyncMaxMs = Math.max(this.counters.fsyncMaxMs, ms);
    await this.closeSealed();
  }

  /** Sealed segments are never written again; their handles go once their data is synced. */
  private async closeSealed(): Promise<void> {
    for (const seg of this.segments) {
      // A segment sealed by a roll may still have writes queued behind this sync round.
      if (seg === this.active || !seg.handle || this.dirty.has(seg.handle) || seg.queuedWrites > 0) continue;
      await seg.handle.close();
      seg.handle = undefined;
    }
  }

  // --- acks and reclaiming ---

  private recordAck(seq: number, segment: Segment): void {
    segment.live--;
    segment.acked.push(seq);
    // Best effort: a lost ack record only means the batch is sent again after a restart.
    // A commit ack frees many batches at once: their records wait here and go to acks.log
    // in one write, where a write each cost a round trip through the thread pool per batch.
    this.unwrittenAcks.push(seq);
    if (this.unwrittenAcks.length === 1) {
      this.serial(async () => {
        const seqs = this.unwrittenAcks;
        this.unwrittenAcks = [];
        if (!this.ackHandle) return;
        const frames = ackFrames(seqs);
        // A failed write (a full disk) is cut back, so later ack records follow whole frames.
        writeAt(this.ackHandle, frames, this.ackBytes);
        this.ackBytes += frames.length;
        this.dirty.add(this.ackHandle);
      })
        .then(() => this.requestSync())
        // On a full disk the ack records are skipped; the disk-full episode is reported once.
        .catch((err: unknown) => isDiskFull(err) || this.onError(err));
    }
    if (segment !== this.active && segment.live === 0) this.scheduleReclaim();
  }

  private scheduleReclaim(): void {
    if (this.reclaimQueued || this.closed) return;
    this.reclaimQueued = true;
    this.reclaimNow().catch(this.onError);
  }

  /**
   * Deletes sealed segments without live batches, then rewrites acks.log to hold only acks for
   * the segments left. Each step leaves a state recovery accepts: an ack for a deleted
   * segment is ignored, and a segment whose acks are lost is just sent again.
   */
  private reclaimNow(): Promise<void> {
    return this.serial(async () => {
      this.reclaimQueued = false;
      const dead = this.segments.filter((s) => s !== this.active && s.live === 0);
      if (dead.length === 0 && this.ackHandle) return;
      // The newest checkpoint must be on disk before the older ones go; on a full disk,
      // the retry of parked writes deletes them once it can.
      try {
        await this.openSegment(this.active);
      } catch (err) {
        if (isDiskFull(err)) return;
        throw err;
      }
      for (const seg of dead) await this.deleteSegment(seg);
      await fsyncPath(this.dir);
      await this.rewriteAckLog();
      this.signal();
    });
  }

  private async deleteSegment(segment: Segment): Promise<void> {
    if (segment.handle) {
      this.dirty.delete(segment.handle);
      await segment.handle.close();
      segment.handle = undefined;
    }
    await unlink(segment.path).catch((err: unknown) => {
      if (!isMissing(err)) throw err;
    });
    this.segments = this.segments.filter((s) => s !== segment);
    this.diskBytes -= segment.size;
  }

  private async rewriteAckLog(): Promise<void> {
    const tmp = join(this.dir, ACK_LOG_TMP);
    const path = join(this.dir, ACK_LOG);
    const out = await open(tmp, 'w');
    const acks = ackFrames(this.segments.flatMap((s) => s.acked));
    try {
      writeAt(out, acks, 0);
      await out.sync();
    } catch (err) {
      // On a full disk the old log stays: acks of deleted segments in it are ignored.
      if (!isDiskFull(err)) throw err;
      await unlink(tmp).catch(() => undefined);
      return;
    } finally {
      await out.close();
    }
    if (this.ackHandle) {
      this.dirty.delete(this.ackHandle);
      await this.ackHandle.close();
      this.ackHandle = undefined;
    }
    await rename(tmp, path);
    await fsyncPath(this.dir);
    // Positional writes at ackBytes, so a write cut back after a failure is written over.
    this.ackHandle = await open(path, 'r+');
    this.ackBytes = acks.length;
  }

  // --- bookkeeping ---

  private remember(entry: Entry): void {
    this.entries.set(entry.seq, entry);
    this.payloadBytes += entry.size;
    this.pointCount += entry.points;
    if (entry.held) this.heldBytes += entry.size;
  }

  private forget(entry: Entry): void {
    if (!this.entries.delete(entry.seq)) return;
    this.payloadBytes -= entry.size;
    this.pointCount -= entry.points;
    if (entry.held) this.heldBytes -= entry.size;
    entry.held = false;
    entry.payload = undefined;
  }

  /**
   * Reads a batch's payload back from its segment file. A record damaged since it was
   * written is a counted loss (invariant 1), like one recovery finds damaged.
   */
  private async readBack(entry: Entry): Promise<Uint8Array | undefined> {
    const segment = entry.segment;
    if (!segment || entry.frameAt < 0) return undefined;
    let data: Uint8Array;
    try {
      data = await readAt(segment.path, entry.frameAt, entry.frameBytes);
    } catch (err) {
      // Deleted meanwhile: the batch was acked or dropped.
      if (isMissing(err)) return undefined;
      throw err;
    }
    const frame = frameAt(data, viewOf(data), 0, decodeSegmentRecord);
    if (frame?.record.type === BATCH && frame.record.batch.seq === entry.seq && frame.end === data.length) return frame.record.batch.payload;
    if (this.entries.get(entry.seq) === entry) {
      this.release(entry, segment);
      this.dropped.batches++;
      this.dropped.points += entry.points;
      this.onError(new Error(`batch ${entry.seq} in ${segment.path} is damaged; its ${entry.points} points are counted as dropped`));
    }
    return undefined;
  }

  /** Frees an entry of `segment`, acked or dropped; returns the segment. */
  private release(entry: Entry, segment: Segment): Segment {
    this.forget(entry);
    segment.live--;
    return segment;
  }

  private serial<T>(op: () => Promise<T>): Promise<T> {
    const run = this.io.then(op);
    this.io = run.catch(() => undefined);
    return run;
  }

  /** Resolves at the next ack, reclaim or close: whatever may have made room. */
  private changed(): Promise<void> {
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  private signal(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const wake of waiters) wake();
  }
}

// --- records ---

function frameOf(body: Uint8Array): Uint8Array {
  const frame = new Uint8Array(FRAME_HEADER + body.length);
  frame.set(body, FRAME_HEADER);
  return seal(frame);
}

/** Fills in the header of a frame whose body is in place. */
function seal(frame: Uint8Array): Uint8Array {
  const body = frame.subarray(FRAME_HEADER);
  const view = viewOf(frame);
  view.setUint32(0, body.length, true);
  view.setUint32(4, CRC32C.buf(body) >>> 0, true);
  return frame;
}

/**
 * {"droneId": seq, ...}, written straight from the map: JSON.stringify(Object.fromEntries())
 * built an object of every drone in the batch first, which took 65 us for 300 drones against
 * 38 us this way. Seqs are safe integers (checked by append), which print as JSON does.
 */
function seqsJson(lastSeqs: ReadonlyMap<string, number>): string {
  let json = '';
  for (const [droneId, seq] of lastSeqs) json += `${json === '' ? '{' : ','}${JSON.stringify(droneId)}:${seq}`;
  return `${json}}`;
}

/** Built in place: payloads are the bulk of the spool, so they are copied once. */
function batchFrame(batch: ClosedBatch, appendedAt: number, lastSeqs: ReadonlyMap<string, number> | undefined): Uint8Array {
  const seqs = lastSeqs?.size ? Buffer.from(seqsJson(lastSeqs)) : new Uint8Array();
  const frame = new Uint8Array(FRAME_HEADER + BATCH_HEADER + batch.payload.length + seqs.length);
  const view = viewOf(frame);
  const at = FRAME_HEADER;
  view.setUint8(at, BATCH);
  view.setFloat64(at + 1, batch.seq, true);
  view.setUint32(at + 9, batch.points, true);
  view.setFloat64(at + 13, appendedAt, true);
  view.setUint32(at + 21, batch.payload.length, true);
  frame.set(batch.payload, at + BATCH_HEADER);
  frame.set(seqs, at + BATCH_HEADER + batch.payload.length);
  return seal(frame);
}

function checkpointFrame(checkpoint: Checkpoint): Uint8Array {
  const json = Buffer.from(JSON.stringify(checkpoint));
  const body = new Uint8Array(1 + json.length);
  body[0] = CHECKPOINT;
  body.set(json, 1);
  return frameOf(body);
}

/** The ack records of `seqs`, framed one after another in one buffer, each built in place. */
function ackFrames(seqs: readonly number[]): Uint8Array {
  const frames = new Uint8Array(seqs.length * ACK_FRAME);
  seqs.forEach((seq, i) => {
    const frame = frames.subarray(i * ACK_FRAME, (i + 1) * ACK_FRAME);
    const view = viewOf(frame);
    view.setUint8(FRAME_HEADER, ACK);
    view.setFloat64(FRAME_HEADER + 1, seq, true);
    seal(frame);
  });
  return frames;
}

/**
 * Decoders return undefined for anything that is not a well-formed body. They run before
 * the CRC, so resyncing through garbage rejects nearly every offset without checksumming.
 */
function decodeSegmentRecord(body: Uint8Array): SegmentRecord | undefined {
  if (body[0] === BATCH) return decodeBatch(body);
  if (body[0] !== CHECKPOINT || body[1] !== 0x7b /* { */) return undefined;
  const value = parseJson(body.subarray(1));
  if (!isObject(value) || !isCount(value.nextBatchSeq) || !isCount(value.dropBelow) || !isSeqMap(value.droneSeqs)) return undefined;
  const dropped = value.dropped;
  if (!isObject(dropped) || !isCount(dropped.batches) || !isCount(dropped.points)) return undefined;
  if (value.stream !== undefined && !(isStreamId(value.stream) && value.stream > 0)) return undefined;
  return {
    type: CHECKPOINT,
    checkpoint: {
      nextBatchSeq: value.nextBatchSeq,
      droneSeqs: value.droneSeqs,
      dropped: { batches: dropped.batches, points: dropped.points },
      dropBelow: value.dropBelow,
      ...(value.stream !== undefined && { stream: value.stream }),
    },
  };
}

function decodeBatch(body: Uint8Array): BatchRecord | undefined {
  if (body.length < BATCH_HEADER) return undefined;
  const view = viewOf(body);
  const seq = view.getFloat64(1, true);
  const appendedAt = view.getFloat64(13, true);
  const payloadLength = view.getUint32(21, true);
  if (!isCount(seq) || !Number.isFinite(appendedAt) || payloadLength > body.length - BATCH_HEADER) return undefined;
  const tail = body.subarray(BATCH_HEADER + payloadLength);
  const lastSeqs = tail.length === 0 ? {} : parseJson(tail);
  if (!isSeqMap(lastSeqs)) return undefined;
  const batch = { seq, points: view.getUint32(9, true), payload: body.subarray(BATCH_HEADER, BATCH_HEADER + payloadLength) };
  return { type: BATCH, batch, appendedAt, lastSeqs };
}

function decodeAck(body: Uint8Array): number | undefined {
  if (body.length !== ACK_BODY || body[0] !== ACK) return undefined;
  const seq = viewOf(body).getFloat64(1, true);
  return isCount(seq) ? seq : undefined;
}

interface Located<T> {
  record: T;
  /** Where its frame starts and ends in the file. */
  at: number;
  end: number;
}

interface Scan<T> {
  records: Array<Located<T>>;
  /** Where the valid data ends; what follows holds no valid record. */
  validEnd: number;
  /** Corrupt stretches skipped with valid records after them. */
  corrupt: number;
}

/** Reads frames in order, resyncing past corrupt stretches to the next valid frame. */
function scan<T>(data: Uint8Array, decode: Decode<T>): Scan<T> {
  const records: Array<Located<T>> = [];
  let corrupt = 0;
  const view = viewOf(data);
  let pos = 0;
  while (pos < data.length) {
    const frame = frameAt(data, view, pos, decode);
    if (frame) {
      records.push({ record: frame.record, at: pos, end: frame.end });
      pos = frame.end;
      continue;
    }
    const next = nextFrame(data, view, pos + 1, decode);
    if (next < 0) break;
    corrupt++;
    pos = next;
  }
  return { records, validEnd: pos, corrupt };
}

type Decode<T> = (body: Uint8Array) => T | undefined;

function frameAt<T>(data: Uint8Array, view: DataView, pos: number, decode: Decode<T>): { record: T; end: number } | undefined {
  if (data.length - pos < FRAME_HEADER) return undefined;
  const length = view.getUint32(pos, true);
  const end = pos + FRAME_HEADER + length;
  if (length === 0 || end > data.length) return undefined;
  const body = data.subarray(pos + FRAME_HEADER, end);
  const record = decode(body);
  if (record === undefined || CRC32C.buf(body) >>> 0 !== view.getUint32(pos + 4, true)) return undefined;
  return { record, end };
}

function nextFrame<T>(data: Uint8Array, view: DataView, from: number, decode: Decode<T>): number {
  for (let pos = from; data.length - pos >= FRAME_HEADER; pos++) {
    if (frameAt(data, view, pos, decode)) return pos;
  }
  return -1;
}

// --- files ---

function newSegment(path: string, header: Uint8Array | undefined): Segment {
  return { path, header, handle: undefined, size: 0, written: 0, batches: 0, live: 0, lastSeq: -1, acked: [], queuedWrites: 0 };
}

function segmentName(id: number): string {
  return `seg-${String(id).padStart(16, '0')}.log`;
}

/**
 * Ids of the segment files in the dir, oldest first, and the highest id any entry is named
 * with: new segments are numbered above it, so a stray directory with such a name cannot
 * block one. Anything else in the dir is not ours and is left alone.
 */
async function listSegments(dir: string): Promise<{ ids: number[]; highestName: number }> {
  const ids: number[] = [];
  let highestName = 0;
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const id = Number(SEGMENT_NAME.exec(entry.name)?.[1]);
    if (!Number.isSafeInteger(id)) continue;
    highestName = Math.max(highestName, id);
    if (entry.isFile()) ids.push(id);
  }
  return { ids: ids.sort((a, b) => a - b), highestName };
}

/**
 * Writes `data` at offset `at`; if that fails, cuts the file back to `at` so no torn frame
 * stays. The write is a plain pwrite on this thread: it lands in the page cache and takes a
 * few microseconds, where the same write through the thread pool cost 40-47 CPU-us on a
 * 2-core VM, mostly the wake-ups between the threads (a batch of 10 KB: 4.5 against 40-47).
 * Every spool write goes this way: frames and ack records, one or two a batch, and the
 * headers and ack logs of new files; the fsyncs, which wait for the disk, stay on the
 * thread pool. The cost: when the kernel throttles a writer whose disk falls behind, this
 * thread waits with it, where a pool write would have kept it free for the link meanwhile;
 * appends would wait either way. Used on the io chain only, so writes keep their order.
 */
function writeAt(handle: FileHandle, data: Uint8Array, at: number): void {
  try {
    for (let done = 0; done < data.length; ) done += writeSync(handle.fd, data, done, data.length - done, at + done);
  } catch (err) {
    try {
      ftruncateSync(handle.fd, at);
    } catch {
      // The write's error is the one to report; the next write at `at` overwrites the rest.
    }
    throw err;
  }
}

/** Reads `length` bytes at offset `at`; fewer if the file ends first. */
async function readAt(path: string, at: number, length: number): Promise<Uint8Array> {
  const handle = await open(path, 'r');
  try {
    const data = new Uint8Array(length);
    let done = 0;
    while (done < length) {
      const { bytesRead } = await handle.read(data, done, length - done, at + done);
      if (bytesRead === 0) break;
      done += bytesRead;
    }
    return data.subarray(0, done);
  } finally {
    await handle.close();
  }
}

async function truncateFile(path: string, length: number): Promise<void> {
  const handle = await open(path, 'r+');
  try {
    await handle.truncate(length);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

// --- small helpers ---

function bytesOf(buffer: Buffer): Uint8Array {
  return new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
}

function viewOf(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function parseJson(bytes: Uint8Array): unknown {
  try {
    return JSON.parse(UTF8.decode(bytes));
  } catch {
    return undefined;
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isCount(value: unknown): value is number {
  return Number.isSafeInteger(value) && (value as number) >= 0;
}

function isSeqMap(value: unknown): value is Record<string, number> {
  return isObject(value) && Object.values(value).every(isCount);
}

function checkCount(name: string, value: number): number {
  if (!isCount(value)) throw new RangeError(`${name} must be a non-negative integer, got ${value}`);
  return value;
}

/** The disk (or the user's quota on it) has no room. */
function isDiskFull(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT';
}

function isMissing(err: unknown): boolean {
  return (err as NodeJS.ErrnoException | undefined)?.code === 'ENOENT';
}
