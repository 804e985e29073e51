import { cp, mkdir, readdir, readFile, stat, truncate, writeFile } from 'node:fs/promises';
import path from 'node:path';
import CRC32C from 'crc-32/crc32c.js';
import { afterEach, describe, expect, it } from 'vitest';
import type { ClosedBatch } from '../agent/batcher';
import { Spool, type SpoolOptions } from '../agent/spool';
import { prng, tempDir, waitFor } from './helpers';

const removers: Array<() => Promise<void>> = [];
afterEach(async () => {
  await Promise.all(removers.splice(0).map((remove) => remove()));
});

async function newDir(): Promise<string> {
  const { dir, remove } = await tempDir('spool');
  removers.push(remove);
  return dir;
}

function randomBytes(length: number, seed: number): Uint8Array {
  const rand = prng(seed);
  return Uint8Array.from({ length }, () => Math.floor(rand() * 256));
}

function batch(seq: number, size = 1000): ClosedBatch {
  return { seq, points: seq + 1, payload: randomBytes(size, seq + 1) };
}

const open = (dir: string, options: Omit<SpoolOptions, 'dir'> = {}) => Spool.open({ dir, fsyncIntervalMs: 0, ...options });

/** 16 KiB budget and 4 KiB segments: three 1000-byte batches per segment. */
const SMALL = { maxBytes: 16 * 1024, segmentBytes: 4096 };

async function segmentFiles(dir: string): Promise<string[]> {
  return (await readdir(dir)).filter((name) => /^seg-\d{16}\.log$/.test(name)).sort();
}

async function segmentBytesOnDisk(dir: string): Promise<number> {
  let total = 0;
  for (const name of await segmentFiles(dir)) total += (await stat(path.join(dir, name))).size;
  return total;
}

interface Frame {
  start: number;
  end: number;
  /** Set for a BATCH. */
  seq: number | undefined;
  /** A CHECKPOINT's nextBatchSeq, or a BATCH's seq + 1. */
  nextBatchSeq: number;
  /** A CHECKPOINT's droneSeqs, or a BATCH's lastSeqs. */
  droneSeqs: Record<string, number>;
}

/** Walks the frames of a segment by their length fields, decoding them as the documented layout says. */
function framesOf(bytes: Buffer): Frame[] {
  const frames: Frame[] = [];
  for (let pos = 0; pos + 8 <= bytes.length; ) {
    const end = pos + 8 + bytes.readUInt32LE(pos);
    if (end > bytes.length) break;
    const body = bytes.subarray(pos + 8, end);
    if (body[0] === 1) {
      const seq = body.readDoubleLE(1);
      const tail = body.subarray(25 + body.readUInt32LE(21));
      frames.push({ start: pos, end, seq, nextBatchSeq: seq + 1, droneSeqs: tail.length ? JSON.parse(tail.toString()) : {} });
    } else {
      const checkpoint = JSON.parse(body.subarray(1).toString()) as { nextBatchSeq: number; droneSeqs: Record<string, number> };
      frames.push({ start: pos, end, seq: undefined, ...checkpoint });
    }
    pos = end;
  }
  return frames;
}

/** A CHECKPOINT frame as a spool from before streams wrote it: the same, without `stream`. */
function withoutStream(frame: Buffer): Buffer {
  const checkpoint = JSON.parse(frame.subarray(9).toString()) as Record<string, unknown>;
  delete checkpoint['stream'];
  const body = Buffer.concat([Buffer.from([2]), Buffer.from(JSON.stringify(checkpoint))]);
  const header = Buffer.alloc(8);
  header.writeUInt32LE(body.length, 0);
  header.writeUInt32LE(CRC32C.buf(body) >>> 0, 4);
  return Buffer.concat([header, body]);
}

function seqsOf(spool: Spool): number[] {
  return spool.seqs();
}

async function expectPayloadsIntact(spool: Spool, size = 1000): Promise<void> {
  for (const b of await spool.unacked()) {
    expect(Buffer.from(b.payload).equals(Buffer.from(batch(b.seq, size).payload)), `payload of ${b.seq}`).toBe(true);
    expect(b.points).toBe(b.seq + 1);
  }
}

function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  return Promise.race([promise, new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`${what} took over ${ms} ms`)), ms))]);
}

describe('spool', () => {
  it('round-trips batches, acks and counters through a reopen', async () => {
    const dir = await newDir();
    const spool = await open(dir);
    const appendedAt: number[] = [];
    for (let seq = 0; seq < 10; seq++) {
      appendedAt.push(Date.now());
      await spool.append(batch(seq, 100 + seq * 37), new Map([['d-a', seq * 10], ['d-b', seq * 10 + 1]]));
    }
    expect(spool.ack(0)).toBe(true);
    expect(spool.ack(3)).toBe(true);
    expect(spool.ack(7)).toBe(true);
    expect(spool.ack(7)).toBe(false);
    expect(spool.ack(42)).toBe(false);
    expect(spool.count).toBe(7);
    expect(spool.points).toBe([1, 2, 4, 5, 6, 8, 9].reduce((sum, seq) => sum + seq + 1, 0));
    expect(spool.bytes).toBe([1, 2, 4, 5, 6, 8, 9].reduce((sum, seq) => sum + 100 + seq * 37, 0));
    await spool.close();

    const again = await open(dir);
    expect(seqsOf(again)).toEqual([1, 2, 4, 5, 6, 8, 9]);
    for (const b of await again.unacked()) {
      expect(Buffer.from(b.payload).equals(Buffer.from(batch(b.seq, 100 + b.seq * 37).payload))).toBe(true);
      expect(b.points).toBe(b.seq + 1);
    }
    expect((await again.get(4))?.points).toBe(5);
    expect(await again.get(3)).toBeUndefined();
    expect(again.nextBatchSeq()).toBe(10);
    expect(again.droneSeq('d-a')).toBe(90);
    expect(again.droneSeq('d-b')).toBe(91);
    expect(again.droneSeq('d-c')).toBeUndefined();
    const oldest = again.oldestUnackedAppendedAt();
    expect(oldest).toBeGreaterThanOrEqual(appendedAt[1]!);
    expect(oldest).toBeLessThanOrEqual(appendedAt[2]!);
    // One segment: its checkpoint, ten batches and the checkpoint close() wrote.
    expect(again.stats().recovery).toEqual({ segments: 1, recordsRecovered: 12, truncatedBytes: 0, corruptRecords: 0 });
    expect(again.ack(4)).toBe(true);
    await again.close();
  });

  it('continues nextBatchSeq and drone seqs after every segment was acked and deleted', async () => {
    const dir = await newDir();
    const spool = await open(dir, { ...SMALL, minBatchSeq: 100 });
    expect(spool.nextBatchSeq()).toBe(100);
    for (let seq = 100; seq < 110; seq++) await spool.append(batch(seq), new Map([['d-1', seq * 2]]));
    spool.noteDroneSeq('d-2', 41);
    expect(await segmentFiles(dir)).toHaveLength(4);
    for (let seq = 100; seq < 110; seq++) expect(spool.ack(seq)).toBe(true);
    // Sealed segments go once acked; the active one stays.
    await waitFor('acked segments to be deleted', async () => (await segmentFiles(dir)).length === 1, 5000);
    expect(spool.stats().segments).toBe(1);
    expect(spool.stats().bytes).toBe(await segmentBytesOnDisk(dir));
    const [active] = await segmentFiles(dir);
    await spool.close();
    expect(await segmentFiles(dir)).toEqual([active]);

    const again = await open(dir);
    expect(again.count).toBe(0);
    expect(again.nextBatchSeq()).toBe(110);
    expect(again.droneSeq('d-1')).toBe(218);
    expect(again.droneSeq('d-2')).toBe(41);
    // A crash right after open deleted the last old segment still finds the counters.
    const crashed = await newDir();
    await cp(dir, crashed, { recursive: true });
    await again.close();
    const afterCrash = await open(crashed);
    expect(afterCrash.nextBatchSeq()).toBe(110);
    expect(afterCrash.droneSeq('d-2')).toBe(41);
    await afterCrash.close();
    // The old active segment had nothing live left, so only the new one is there.
    const files = await segmentFiles(dir);
    expect(files).toHaveLength(1);
    expect(files[0]).not.toBe(active);

    const third = await open(dir);
    expect(third.nextBatchSeq()).toBe(110);
    expect(third.droneSeq('d-2')).toBe(41);
    await third.close();
    const raised = await open(dir, { minBatchSeq: 5000 });
    expect(raised.nextBatchSeq()).toBe(5000);
    await raised.close();
  });

  it('keeps its stream across reopens, and draws a new one when wiped, damaged, or written before streams', async () => {
    const dir = await newDir();
    const first = await open(dir);
    const stream = first.stream;
    expect(Number.isSafeInteger(stream) && stream > 0).toBe(true);
    await first.append(batch(0, 300), new Map([['d-1', 41]]));
    await first.close();
    const again = await open(dir);
    expect(again.stream).toBe(stream);
    expect(again.droneSeq('d-1')).toBe(41);
    await again.close();

    // A flipped byte in the only batch record may have hidden a drone's latest seq.
    const [name] = await segmentFiles(dir);
    const bytes = await readFile(path.join(dir, name!));
    const frames = framesOf(bytes);
    const batchFrame = frames.find((f) => f.seq === 0)!;
    bytes[batchFrame.start + 20] = bytes[batchFrame.start + 20]! ^ 0xff;
    const damagedDir = await newDir();
    await writeFile(path.join(damagedDir, name!), bytes);
    const damaged = await open(damagedDir);
    expect(damaged.stats().recovery.corruptRecords + (damaged.stats().recovery.truncatedBytes > 0 ? 1 : 0)).toBeGreaterThan(0);
    expect(damaged.stream).not.toBe(stream);
    await damaged.close();

    // A wiped spool: nothing to restore, a new stream.
    const wiped = await open(await newDir());
    expect(wiped.stream).not.toBe(stream);
    await wiped.close();

    // A spool written before streams: its checkpoints name none.
    const legacyDir = await newDir();
    const legacy = Buffer.from(await readFile(path.join(dir, name!)));
    const legacyFrames = framesOf(legacy).filter((f) => f.seq === undefined);
    expect(legacyFrames.length).toBeGreaterThan(0);
    const stripped = Buffer.concat(framesOf(legacy).map((f) => (f.seq === undefined ? withoutStream(legacy.subarray(f.start, f.end)) : legacy.subarray(f.start, f.end))));
    await writeFile(path.join(legacyDir, name!), stripped);
    const old = await open(legacyDir);
    expect(old.stats().recovery.corruptRecords).toBe(0);
    expect(old.droneSeq('d-1')).toBe(41);
    expect(old.stream).not.toBe(stream);
    await old.close();
  });

  it('deletes a segment exactly when all its batches are acked', async () => {
    const dir = await newDir();
    const spool = await open(dir, SMALL);
    for (let seq = 0; seq < 7; seq++) await spool.append(batch(seq));
    const [first, second, third] = await segmentFiles(dir);
    expect(spool.ack(0)).toBe(true);
    expect(spool.ack(1)).toBe(true);
    expect(spool.ack(3)).toBe(true);
    expect(spool.ack(6)).toBe(true); // in the active segment, which stays regardless
    await spool.close();
    expect(await segmentFiles(dir)).toEqual([first, second, third]);

    const again = await open(dir, SMALL);
    expect(again.ack(2)).toBe(true);
    await waitFor('the first segment to go', async () => !(await segmentFiles(dir)).includes(first!), 5000);
    expect(await segmentFiles(dir)).toContain(second);
    expect(seqsOf(again)).toEqual([4, 5]);
    await again.close();
  });

  it('keeps acks across reopens and across a crash', async () => {
    const dir = await newDir();
    const spool = await open(dir);
    for (let seq = 0; seq < 6; seq++) await spool.append(batch(seq));
    spool.ack(1);
    spool.ack(4);
    await spool.close();
    // Two ack records of 8 + 9 bytes each.
    expect((await stat(path.join(dir, 'acks.log'))).size).toBe(34);

    const again = await open(dir);
    expect(seqsOf(again)).toEqual([0, 2, 3, 5]);
    again.ack(2);
    // The next append resolves only after an fsync that covers the earlier ack record too.
    await again.append(batch(6));
    const crashed = await newDir();
    await cp(dir, crashed, { recursive: true });
    await again.close();

    for (const d of [dir, crashed]) {
      const reopened = await open(d);
      expect(seqsOf(reopened)).toEqual([0, 3, 5, 6]);
      await expectPayloadsIntact(reopened);
      await reopened.close();
    }
  });

  it('cuts a torn tail at any offset, keeping exactly the records before the cut', async () => {
    const dir = await newDir();
    const spool = await open(dir, { maxBytes: 1024 * 1024, segmentBytes: 4096 });
    for (let seq = 0; seq < 20; seq++) await spool.append(batch(seq, 400), new Map([['d-1', seq * 3]]));
    await spool.close();
    const files = await segmentFiles(dir);
    expect(files.length).toBeGreaterThan(2);
    const last = files.at(-1)!;
    const lastBytes = await readFile(path.join(dir, last));
    const frames = framesOf(lastBytes);
    expect(frames.at(-1)!.end).toBe(lastBytes.length);
    const firstInLast = frames.find((f) => f.seq !== undefined)!.seq!;

    const rand = prng(7);
    const cuts = new Set<number>([0, 1, frames[0]!.end, frames[1]!.end - 1, frames[1]!.end + 1, lastBytes.length - 1]);
    while (cuts.size < 50) cuts.add(Math.floor(rand() * lastBytes.length));
    for (const cut of cuts) {
      const copy = await newDir();
      await cp(dir, copy, { recursive: true });
      await truncate(path.join(copy, last), cut);
      const kept = frames.filter((f) => f.end <= cut);
      const survivors = [
        ...Array.from({ length: firstInLast }, (_, i) => i),
        ...kept.flatMap((f) => (f.seq === undefined ? [] : [f.seq])),
      ];
      // The checkpoint starting a segment was written when its first batch had already
      // reserved its seq, so it may run ahead of the batches that survive: never behind.
      const nextBatchSeq = Math.max(survivors.at(-1)! + 1, ...kept.map((f) => f.nextBatchSeq));
      const droneSeq = kept.reduce((seq, f) => f.droneSeqs['d-1'] ?? seq, (firstInLast - 1) * 3);

      const reopened = await open(copy);
      expect(seqsOf(reopened), `cut at ${cut}`).toEqual(survivors);
      await expectPayloadsIntact(reopened, 400);
      const { recovery } = reopened.stats();
      expect(recovery.truncatedBytes, `cut at ${cut}`).toBe(cut - (kept.at(-1)?.end ?? 0));
      expect(recovery.corruptRecords).toBe(0);
      expect(reopened.nextBatchSeq()).toBe(nextBatchSeq);
      expect(reopened.droneSeq('d-1')).toBe(droneSeq);
      await reopened.close();
      // Cut back to its valid records, or deleted when none of its batches survived.
      const size = (await stat(path.join(copy, last)).catch(() => undefined))?.size;
      expect(size).toBe(kept.some((f) => f.seq !== undefined) ? kept.at(-1)!.end : undefined);

      const twice = await open(copy);
      expect(seqsOf(twice)).toEqual(survivors);
      expect(twice.stats().recovery.truncatedBytes).toBe(0);
      await twice.close();
    }
  });

  it('skips a record with a flipped byte and keeps every other one', async () => {
    const dir = await newDir();
    const spool = await open(dir, { maxBytes: 1024 * 1024 });
    for (let seq = 0; seq < 20; seq++) await spool.append(batch(seq, 300));
    await spool.close();
    const [name] = await segmentFiles(dir);
    const original = await readFile(path.join(dir, name!));
    const frames = framesOf(original);
    expect(frames).toHaveLength(22);

    const rand = prng(42);
    for (let trial = 0; trial < 30; trial++) {
      // Any record but the last, so valid ones follow the damage.
      const frame = frames[Math.floor(rand() * (frames.length - 1))]!;
      const offset = frame.start + Math.floor(rand() * (frame.end - frame.start));
      const damaged = Buffer.from(original);
      damaged[offset] = damaged[offset]! ^ (1 + Math.floor(rand() * 255));
      const copy = await newDir();
      await writeFile(path.join(copy, name!), damaged);

      const reopened = await open(copy);
      const expected = frames.flatMap((f) => (f.seq === undefined || f === frame ? [] : [f.seq]));
      expect(seqsOf(reopened), `flip at ${offset}`).toEqual(expected);
      await expectPayloadsIntact(reopened, 300);
      expect(reopened.stats().recovery.corruptRecords, `flip at ${offset}`).toBe(1);
      expect(reopened.stats().recovery.truncatedBytes).toBe(0);
      expect(reopened.nextBatchSeq()).toBe(20);
      await reopened.close();
    }
  });

  it('opens despite garbage segment files, junk files and a damaged ack log', async () => {
    const dir = await newDir();
    const spool = await open(dir);
    for (let seq = 0; seq < 5; seq++) await spool.append(batch(seq));
    spool.ack(1);
    await spool.close();
    const garbage = randomBytes(5000, 99);
    const ackJunk = randomBytes(23, 5);
    await writeFile(path.join(dir, 'seg-0000000000000050.log'), garbage);
    await writeFile(path.join(dir, 'seg-0000000000000000.log'), new Uint8Array());
    await writeFile(path.join(dir, 'seg-12.log'), garbage);
    await writeFile(path.join(dir, 'notes.txt'), 'not ours');
    await mkdir(path.join(dir, 'seg-0000000000000077.log'));
    await writeFile(path.join(dir, 'acks.log'), Buffer.concat([await readFile(path.join(dir, 'acks.log')), ackJunk]));

    const reopened = await open(dir);
    expect(seqsOf(reopened)).toEqual([0, 2, 3, 4]);
    await expectPayloadsIntact(reopened);
    expect(reopened.stats().recovery).toEqual({
      segments: 3,
      recordsRecovered: 7,
      truncatedBytes: garbage.length + ackJunk.length,
      corruptRecords: 0,
    });
    expect(reopened.nextBatchSeq()).toBe(5);
    await reopened.close();
    const names = await readdir(dir);
    // Segment files with nothing live are deleted; what is not ours is left alone.
    expect(names).not.toContain('seg-0000000000000050.log');
    expect(names).not.toContain('seg-0000000000000000.log');
    expect(names).toContain('seg-0000000000000078.log'); // numbered above every name in use
    expect(names).toContain('seg-12.log');
    expect(names).toContain('notes.txt');
    expect(names).toContain('seg-0000000000000077.log');
  });

  it('blocks appends while full and resumes once acks free a segment', async () => {
    const dir = await newDir();
    const spool = await open(dir, SMALL);
    let seq = 0;
    while (spool.hasSpace()) await spool.append(batch(seq++));
    expect(seq).toBe(15);
    expect(spool.stats().bytes).toBeLessThanOrEqual(SMALL.maxBytes);

    let done = false;
    const blocked = spool.append(batch(seq)).then(() => (done = true));
    expect((await spool.get(seq))?.seq).toBe(seq);
    spool.ack(4); // frees no whole segment
    // A batch can be sent, and acked, while it waits for room; it is still written, then freed.
    expect(spool.ack(12)).toBe(true);
    expect(spool.ack(15)).toBe(true);
    // Proving that something does not happen takes some time.
    await new Promise((r) => setTimeout(r, 150));
    expect(done).toBe(false);
    expect(spool.hasSpace()).toBe(false);

    const [first] = await segmentFiles(dir);
    for (const s of [0, 1, 2]) spool.ack(s);
    await within(blocked, 5000, 'the blocked append');
    expect(await segmentFiles(dir)).not.toContain(first);
    expect(spool.stats().bytes).toBe(await segmentBytesOnDisk(dir));
    expect(spool.stats().bytes).toBeLessThanOrEqual(SMALL.maxBytes);
    expect(seqsOf(spool)).toEqual([3, 5, 6, 7, 8, 9, 10, 11, 13, 14]);
    const [, , , fourth] = await segmentFiles(dir);
    spool.ack(13);
    spool.ack(14);
    // 12, 13 and 14 share a segment: acked, it goes; 15, acked before it was written, stays gone after a reopen.
    await waitFor('the segment of 12-14 to go', async () => !(await segmentFiles(dir)).includes(fourth!), 5000);
    expect(seqsOf(spool)).toEqual([3, 5, 6, 7, 8, 9, 10, 11]);

    // An append still waiting for room when the spool closes fails rather than hangs.
    seq++;
    while (spool.hasSpace()) await spool.append(batch(seq++));
    const stuck = expect(spool.append(batch(seq))).rejects.toThrow('spool closed while the append waited for room');
    await new Promise((r) => setTimeout(r, 50));
    expect((await spool.get(seq))?.seq).toBe(seq);
    const before = seqsOf(spool).slice(0, -1);
    await spool.close();
    await stuck;
    expect(await spool.get(seq)).toBeUndefined();
    const again = await open(dir, SMALL);
    expect(seqsOf(again)).toEqual(before);
    await again.close();
  });

  it('drops the oldest segments when full under drop-oldest, and remembers the counts', async () => {
    const dir = await newDir();
    const spool = await open(dir, { ...SMALL, whenFull: 'drop-oldest' });
    const stash = await newDir();
    for (let seq = 0; seq < 30; seq++) {
      await spool.append(batch(seq));
      // The fourth append seals the first segment; keep a copy of it as it was.
      if (seq === 3) await cp(dir, stash, { recursive: true });
    }
    const [firstSegment] = await segmentFiles(stash);
    expect(await segmentFiles(dir)).not.toContain(firstSegment);
    const { dropped, bytes } = spool.stats();
    expect(dropped.batches).toBeGreaterThan(0);
    expect(dropped.batches % 3).toBe(0); // whole segments of three
    expect(dropped.points).toBe(((dropped.batches + 1) * dropped.batches) / 2);
    const kept = Array.from({ length: 30 - dropped.batches }, (_, i) => i + dropped.batches);
    expect(seqsOf(spool)).toEqual(kept);
    expect(spool.ack(0)).toBe(false);
    expect(bytes).toBeLessThanOrEqual(SMALL.maxBytes);
    expect(bytes).toBe(await segmentBytesOnDisk(dir));
    await spool.close();

    const again = await open(dir, { ...SMALL, whenFull: 'drop-oldest' });
    expect(seqsOf(again)).toEqual(kept);
    await expectPayloadsIntact(again);
    expect(again.stats().dropped).toEqual(dropped);
    expect(again.nextBatchSeq()).toBe(30);
    await again.close();

    // A crash after the drop's checkpoint but before the unlink leaves the segment behind:
    // its batches stay dropped and are not counted again.
    await cp(path.join(stash, firstSegment!), path.join(dir, firstSegment!));
    const resurrected = await open(dir, { ...SMALL, whenFull: 'drop-oldest' });
    expect(seqsOf(resurrected)).toEqual(kept);
    expect(resurrected.stats().dropped).toEqual(dropped);
    await resurrected.close();
    expect(await segmentFiles(dir)).not.toContain(firstSegment);
  });

  it('group-commits: concurrent appends share fsyncs', async () => {
    const dir = await newDir();
    const spool = await open(dir, { fsyncIntervalMs: 20 });
    const started = Date.now();
    await Promise.all(Array.from({ length: 200 }, (_, seq) => spool.append(batch(seq, 200))));
    const elapsed = Date.now() - started;
    const stats = spool.stats();
    expect(stats.appends).toBe(200);
    expect(stats.fsyncs).toBeGreaterThanOrEqual(1);
    expect(stats.fsyncs).toBeLessThanOrEqual(Math.min(20, Math.ceil(elapsed / 20) + 1));
    expect(stats.fsyncMaxMs).toBeGreaterThanOrEqual(stats.fsyncLastMs);
    await spool.close();

    // One append at a time: one fsync each, but no closer together than the interval.
    const paced = await open(await newDir(), { fsyncIntervalMs: 100 });
    const pacedStart = Date.now();
    for (let seq = 0; seq < 4; seq++) await paced.append(batch(seq, 200));
    expect(Date.now() - pacedStart).toBeGreaterThanOrEqual(290);
    expect(paced.stats().fsyncs).toBe(4);
    await paced.close();

    // With no interval, each awaited append gets its own fsync at once.
    const eager = await open(await newDir(), { fsyncIntervalMs: 0 });
    for (let seq = 0; seq < 10; seq++) await eager.append(batch(seq, 200));
    expect(eager.stats().fsyncs).toBe(10);
    await eager.close();
  });

  it('takes many concurrent appends across segment rolls without losing a write', async () => {
    // Appends in flight at once, as the agent makes them: a roll seals a segment that may
    // still have writes queued behind a sync round, which must not close its file first.
    const dir = await newDir();
    const spool = await open(dir, { maxBytes: 1024 * 1024, segmentBytes: 8192, fsyncIntervalMs: 3 });
    const appends: Array<Promise<void>> = [];
    for (let i = 0; i < 300; i++) {
      appends.push(spool.append(batch(i + 1, 700)));
      // Spread over a few group-commit rounds, so rolls land between a round's queueing and its run.
      if (i % 4 === 3) await new Promise((r) => setTimeout(r, 1));
    }
    const results = await Promise.allSettled(appends);
    expect(results.filter((r) => r.status === 'rejected')).toEqual([]);
    expect(spool.count).toBe(300);
    await spool.close();
    const reopened = await open(dir);
    expect(seqsOf(reopened)).toEqual(Array.from({ length: 300 }, (_, i) => i + 1));
    expect(reopened.stats().recovery.corruptRecords).toBe(0);
    await expectPayloadsIntact(reopened, 700);
    await reopened.close();
  });

  it('rejects a batch larger than maxBytes, and seqs that do not increase', async () => {
    const dir = await newDir();
    const spool = await open(dir, SMALL);
    await expect(spool.append(batch(0, SMALL.maxBytes))).rejects.toThrow(/batch 0 takes \d+ bytes on disk; the spool's maxBytes of 16384 cannot hold it/);
    expect(spool.count).toBe(0);
    expect(spool.nextBatchSeq()).toBe(0);
    await spool.append(batch(0));
    await expect(spool.append(batch(0))).rejects.toThrow(RangeError);
    expect(seqsOf(spool)).toEqual([0]);
    await spool.close();
  });

  it('holds payloads in memory only within memoryBytes, and reads the rest back from disk, before and after a reopen', async () => {
    const dir = await newDir();
    // Three 1000-byte payloads fit; the other 37 of the backlog are read back from the segments.
    const options = { maxBytes: 1024 * 1024, segmentBytes: 16 * 1024, memoryBytes: 3000 };
    const spool = await open(dir, options);
    for (let seq = 0; seq < 40; seq++) await spool.append(batch(seq));
    expect(spool.stats().memoryBytes).toBe(3000);
    expect(spool.roomFor(2)).toBe(true);
    expect(spool.roomFor(3)).toBe(false);
    await expectPayloadsIntact(spool);
    // Reads for inspection do not stay in memory.
    expect(spool.stats().memoryBytes).toBe(3000);
    // A batch loaded to be sent stays until its ack; the ack makes room for the next.
    expect((await spool.load(10))?.seq).toBe(10);
    expect(spool.stats().memoryBytes).toBe(4000);
    expect(spool.ack(10)).toBe(true);
    expect(spool.ack(0)).toBe(true);
    expect(spool.stats().memoryBytes).toBe(2000);
    expect(spool.roomFor(20)).toBe(true);
    await spool.close();

    const reopened = await open(dir, options);
    // Recovery holds the first three it replays (0, 1, 2); 0 was acked, so two stay.
    expect(reopened.stats().memoryBytes).toBe(2000);
    expect(reopened.count).toBe(38);
    await expectPayloadsIntact(reopened);
    await reopened.close();
  });

  it('counts a batch damaged on disk after it was written as dropped when it is read back', async () => {
    const dir = await newDir();
    const spool = await open(dir, { maxBytes: 1024 * 1024, segmentBytes: 16 * 1024, memoryBytes: 1000 });
    for (let seq = 0; seq < 5; seq++) await spool.append(batch(seq));
    const [file] = await segmentFiles(dir);
    const bytes = await readFile(path.join(dir, file!));
    const frame = framesOf(bytes).find((f) => f.seq === 3)!;
    bytes[frame.end - 10] = bytes[frame.end - 10]! ^ 0xff;
    await writeFile(path.join(dir, file!), bytes);
    expect(await spool.get(3)).toBeUndefined();
    expect(spool.stats().dropped).toEqual({ batches: 1, points: 4 });
    expect(seqsOf(spool)).toEqual([0, 1, 2, 4]);
    await expectPayloadsIntact(spool);
    await spool.close();
  });
});
