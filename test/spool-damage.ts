import { randomBytes } from 'node:crypto';
import { readdir, readFile, truncate, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Spool } from '../agent/spool';
import { prng, tempDir } from './helpers';

interface Frame {
  start: number;
  end: number;
  type: number;
  /** A batch's seq, or the seq an ack frees. */
  seq: number | undefined;
}

/** The frames of an undamaged spool file, as the documented layout has them. */
function framesOf(bytes: Buffer): Frame[] {
  const frames: Frame[] = [];
  for (let pos = 0; pos + 8 <= bytes.length; ) {
    const end = pos + 8 + bytes.readUInt32LE(pos);
    const type = bytes[pos + 8]!;
    frames.push({ start: pos, end, type, seq: type === 2 ? undefined : bytes.readDoubleLE(pos + 9) });
    pos = end;
  }
  return frames;
}

export interface DamageRound {
  seed: number;
  file: string;
  how: 'flip' | 'truncate';
  /** What the damage hit: 'batch', 'checkpoint' or 'ack'. */
  hit: string;
  expected: number[];
  recovered: number[];
  counted: boolean;
  payloadsIntact: boolean;
  newStream: boolean;
}

/**
 * One power cut: a spool with batches, some acked, is closed; one of its files (a segment,
 * or acks.log) is cut inside a record or has a bit flipped; the spool is opened again. The
 * round says which batches should come back (the unacked ones, less those whose records were
 * damaged, plus those whose ack records were) and which did.
 */
export async function damageRound(seed: number): Promise<DamageRound> {
  const random = prng(seed);
  const { dir, remove } = await tempDir('spool-damage');
  try {
    const spool = await Spool.open({ dir, fsyncIntervalMs: 0, segmentBytes: 1024, maxBytes: 1024 * 1024 });
    const stream = spool.stream;
    const first = spool.nextBatchSeq();
    const payloads = new Map<number, Buffer>();
    for (let i = 0; i < 14; i++) {
      const payload = randomBytes(100 + Math.floor(random() * 200));
      payloads.set(first + i, payload);
      await spool.append({ seq: first + i, points: 1, payload }, new Map([['d-1', i]]));
    }
    for (const seq of payloads.keys()) if (random() < 0.35) spool.ack(seq);
    const unacked = new Set(spool.seqs());
    await spool.close();

    const files = (await readdir(dir)).filter((f) => f.startsWith('seg-') || f === 'acks.log').sort();
    const withRecords: Array<{ file: string; bytes: Buffer; frames: Frame[] }> = [];
    for (const file of files) {
      const bytes = await readFile(path.join(dir, file));
      if (bytes.length > 0) withRecords.push({ file, bytes, frames: framesOf(bytes) });
    }
    // acks.log a third of the time, when it holds any ack.
    const acks = withRecords.find((f) => f.file === 'acks.log');
    const segments = withRecords.filter((f) => f.file !== 'acks.log');
    const target = acks && random() < 0.33 ? acks : segments[Math.floor(random() * segments.length)]!;
    const how = random() < 0.5 ? 'flip' : 'truncate';
    // Inside a record, never on its first byte when cutting: a cut exactly between two
    // records cannot be told from records never written, as after a crash before an fsync.
    const frame = target.frames[Math.floor(random() * target.frames.length)]!;
    const offset = frame.start + (how === 'truncate' ? 1 : 0) + Math.floor(random() * (frame.end - frame.start - (how === 'truncate' ? 1 : 0)));
    if (how === 'flip') {
      target.bytes[offset] = target.bytes[offset]! ^ (1 << Math.floor(random() * 8));
      await writeFile(path.join(dir, target.file), target.bytes);
    } else {
      await truncate(path.join(dir, target.file), offset);
    }
    const damaged = how === 'flip' ? [frame] : target.frames.filter((f) => f.end > offset);
    // acks.log may still hold acks of segments already deleted: those batches are gone for good.
    const inSegments = new Set(segments.flatMap((f) => f.frames.filter((x) => x.type === 1).map((x) => x.seq)));
    const expected = new Set(unacked);
    // An ack may be in the log twice (once more when the log was rewritten while it was queued).
    const acksLeft = new Set(target.frames.filter((f) => f.type === 3 && !damaged.includes(f)).map((f) => f.seq));
    for (const f of damaged) {
      // A damaged batch record is lost; a damaged ack record brings its batch back (the sink dedupes it).
      if (f.type === 1 && f.seq !== undefined) expected.delete(f.seq);
      if (f.type === 3 && f.seq !== undefined && inSegments.has(f.seq) && !acksLeft.has(f.seq)) expected.add(f.seq);
    }

    const reopened = await Spool.open({ dir, fsyncIntervalMs: 0, segmentBytes: 1024, maxBytes: 1024 * 1024 });
    const batches = await reopened.unacked();
    const { recovery } = reopened.stats();
    const result: DamageRound = {
      seed,
      file: target.file,
      how,
      hit: frame.type === 1 ? 'batch' : frame.type === 2 ? 'checkpoint' : 'ack',
      expected: [...expected].sort((a, b) => a - b),
      recovered: batches.map((b) => b.seq),
      counted: recovery.truncatedBytes > 0 || recovery.corruptRecords > 0,
      payloadsIntact: batches.every((b) => Buffer.from(b.payload).equals(payloads.get(b.seq)!)),
      newStream: reopened.stream !== stream,
    };
    await reopened.close();
    return result;
  } finally {
    await remove();
  }
}
