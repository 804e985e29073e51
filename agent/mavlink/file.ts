import { open } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import type { TelemetryPoint } from '../../proto/types';
import type { Source, SourceOutput } from '../source';
import { detectFormat, MavlinkScanner, type StreamFormat } from './scanner';
import { MavlinkTelemetry, type MavlinkStats } from './telemetry';

const CHUNK = 64 * 1024;
// Longest MAVLink frame (v2, signed) plus a .tlog timestamp: the most a chunk leaves unread.
const MAX_RECORD = 8 + 10 + 255 + 2 + 13;
const PAUSE_MS = 20;

export interface MavlinkFileOptions {
  file: string;
  droneId: (sysid: number) => string;
  hz: number;
  firstSeq: (droneId: string) => number;
  /** Event time of a raw stream's first position report (µs); a raw stream without it is refused. */
  startUs?: number;
  /** Emit at the pace of the event times instead of as fast as the agent takes them. */
  realtime: boolean;
}

export interface MavlinkFileSource extends Source {
  readonly format: StreamFormat;
  readonly size: number;
  /** Bytes read so far. */
  readonly position: number;
  /** Points handed to the agent; in a paced replay that stops early, fewer than were decoded. */
  readonly emitted: number;
  stats(): MavlinkStats;
  /** Resolves once the whole file is read and every point emitted, or the source is stopped. */
  readonly done: Promise<void>;
}

/** A MAVLink file as a source: a .tlog, or a raw stream; which one is told from its first bytes. */
export async function openMavlinkFile(opts: MavlinkFileOptions): Promise<MavlinkFileSource> {
  const fh = await open(opts.file, 'r');
  try {
    const { size } = await fh.stat();
    const head = Buffer.alloc(Math.min(size, CHUNK));
    await fh.read(head, 0, head.length, 0);
    const format = detectFormat(head);
    if (format === null) throw new Error(`${opts.file}: no MAVLink packet in its first ${head.length} bytes`);
    if (format === 'raw' && opts.startUs === undefined) {
      throw new Error(`${opts.file} is a raw MAVLink stream, without timestamps: give the time of its first position with --start`);
    }
    return fileSource(fh, size, format, opts);
  } catch (err) {
    await fh.close();
    throw err;
  }
}

function fileSource(fh: Awaited<ReturnType<typeof open>>, size: number, format: StreamFormat, opts: MavlinkFileOptions): MavlinkFileSource {
  let out: SourceOutput | null = null;
  let stopped = false;
  let position = 0;
  let emitted = 0;
  // Ends a paced wait at once when the source is stopped.
  const abort = new AbortController();
  // Paced replay holds a chunk's points until their time comes, so it keeps copies.
  const paced: TelemetryPoint[] = [];
  const telemetry = new MavlinkTelemetry({
    droneId: opts.droneId,
    hz: opts.hz,
    firstSeq: opts.firstSeq,
    emit: (p) => {
      if (opts.realtime) {
        paced.push({ ...p });
      } else {
        out!.emit(p);
        emitted++;
      }
    },
    canEmit: () => true,
    rawStartUs: opts.startUs,
  });
  const scanner = new MavlinkScanner(format, telemetry.stats, (buf, frame, tlogUs) => telemetry.onFrame(buf, frame, tlogUs));
  let pace: { wallMs: number; eventUs: number } | null = null;

  const waitForRoom = async () => {
    while (!stopped && !out!.accepting) await sleep(PAUSE_MS, undefined, { signal: abort.signal }).catch(() => {});
  };
  const emitPaced = async () => {
    for (const p of paced) {
      if (stopped) break;
      pace ??= { wallMs: performance.now(), eventUs: p.ts };
      const due = pace.wallMs + (p.ts - pace.eventUs) / 1000 - performance.now();
      if (due > 0) await sleep(due, undefined, { signal: abort.signal }).catch(() => {});
      await waitForRoom();
      if (stopped) break;
      out!.emit(p);
      emitted++;
    }
    paced.length = 0;
  };

  const run = async () => {
    const buf = Buffer.alloc(CHUNK + MAX_RECORD);
    let tail = 0;
    try {
      while (!stopped) {
        await waitForRoom();
        if (stopped) break;
        const { bytesRead } = await fh.read(buf, tail, CHUNK, position);
        position += bytesRead;
        const end = tail + bytesRead;
        const final = bytesRead === 0 || position >= size;
        const rest = scanner.scan(buf, end, final);
        buf.copyWithin(0, rest, end);
        tail = end - rest;
        if (opts.realtime) await emitPaced();
        if (final) break;
      }
    } finally {
      await fh.close();
    }
  };

  let finished!: { resolve: () => void; reject: (err: unknown) => void };
  const done = new Promise<void>((resolve, reject) => (finished = { resolve, reject }));
  return {
    name: 'mavlink-file',
    format,
    size,
    get position() {
      return position;
    },
    get emitted() {
      return emitted;
    },
    stats: () => telemetry.stats,
    done,
    start(o) {
      out = o;
      run().then(finished.resolve, finished.reject);
    },
    async stop() {
      stopped = true;
      abort.abort();
      if (out !== null) await done.catch(() => {});
    },
  };
}
