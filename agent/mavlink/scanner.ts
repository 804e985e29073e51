import { MIN_TS_MICROS } from '../../proto/validate';
import { BAD_CRC, isStx, NEED_MORE, newFrame, tryFrame, UNKNOWN_MSGID, type Frame } from './frame';

/** What the framing of a stream found. Every byte is either in a frame or counted as garbage. */
export interface FramingStats {
  /** Frames whose CRC matched. */
  packets: number;
  /** Frames of message ids no dialect defines, so their CRC cannot be checked; skipped whole. */
  unknownMessages: number;
  /** Frames of a known message id whose CRC did not match: corrupt, or garbage that looked like a frame. */
  badCrc: number;
  /** Bytes outside every valid frame, including the bytes of bad frames. */
  garbageBytes: number;
  /** Datagrams or files that ended inside what looked like a frame. */
  truncated: number;
}

export const newFramingStats = (): FramingStats => ({ packets: 0, unknownMessages: 0, badCrc: 0, garbageBytes: 0, truncated: 0 });

/** 'raw': packets back to back; 'tlog': each packet after an 8-byte big-endian µs timestamp. */
export type StreamFormat = 'raw' | 'tlog';

const TLOG_TS = 8;
// Timestamps outside these years are garbage that happened to precede an STX.
const MAX_TLOG_US = 4_102_444_800_000_000; // 2100-01-01

/** Called for each valid frame; `tlogUs` is its .tlog timestamp, or null in a raw stream. */
export type OnFrame = (buf: Uint8Array, frame: Frame, tlogUs: number | null) => void;

function readTlogUs(buf: Uint8Array, at: number): number {
  // Two 32-bit halves: exact for any time before 2255, and no BigInt per packet.
  return (((buf[at]! << 24) | (buf[at + 1]! << 16) | (buf[at + 2]! << 8) | buf[at + 3]!) >>> 0) * 2 ** 32 + (((buf[at + 4]! << 24) | (buf[at + 5]! << 16) | (buf[at + 6]! << 8) | buf[at + 7]!) >>> 0);
}

const plausibleUs = (us: number): boolean => us >= MIN_TS_MICROS && us < MAX_TLOG_US;

/**
 * Splits a byte stream into MAVLink v1 and v2 frames, skipping and counting whatever is
 * not one: garbage between packets, bad CRCs, truncated packets. A bad frame costs one byte
 * of progress, so a packet right after the damage is still found.
 */
export class MavlinkScanner {
  private readonly frame = newFrame();

  constructor(
    private readonly format: StreamFormat,
    readonly stats: FramingStats,
    private readonly onFrame: OnFrame,
  ) {}

  /**
   * Scans `buf[0..end)` and returns where the unread tail starts: an incomplete frame that
   * the next bytes may complete. With `final` (a datagram, the end of a file) nothing is
   * left: an incomplete frame is counted as truncated.
   */
  scan(buf: Uint8Array, end: number, final: boolean): number {
    const skip = this.format === 'tlog' ? TLOG_TS : 0;
    const { stats, frame } = this;
    let i = 0;
    let truncated = false;
    while (end - i > skip) {
      const at = i + skip;
      if (!isStx(buf[at]) || (skip > 0 && !plausibleUs(readTlogUs(buf, i)))) {
        stats.garbageBytes++;
        i++;
        continue;
      }
      const r = tryFrame(buf, at, end, frame);
      if (r > 0) {
        stats.packets++;
        truncated = false;
        this.onFrame(buf, frame, skip > 0 ? readTlogUs(buf, i) : null);
        i = at + r;
        continue;
      }
      if (r === NEED_MORE) {
        if (!final) return i;
        truncated = true;
      } else if (r === UNKNOWN_MSGID && this.nextRecordStarts(buf, at + frame.total, end, skip)) {
        stats.unknownMessages++;
        truncated = false;
        i = at + frame.total;
        continue;
      } else if (r === BAD_CRC) {
        stats.badCrc++;
      }
      stats.garbageBytes++;
      i++;
    }
    if (final) {
      stats.garbageBytes += end - i;
      if (truncated) stats.truncated++;
      return end;
    }
    return i;
  }

  /** An unknown message is taken as a packet only when another record follows it where it should. */
  private nextRecordStarts(buf: Uint8Array, next: number, end: number, skip: number): boolean {
    return next === end || (next + skip < end && isStx(buf[next + skip]));
  }
}

/**
 * Which framing a file uses, from its first bytes: a .tlog when most packets found there
 * follow a plausible timestamp. Every .tlog also scans as a raw stream (the timestamps
 * become garbage), never the reverse, so the comparison is one-sided.
 */
export function detectFormat(head: Uint8Array): StreamFormat | null {
  const count = (format: StreamFormat) => {
    const stats = newFramingStats();
    new MavlinkScanner(format, stats, () => {}).scan(head, head.length, true);
    return stats.packets;
  };
  const raw = count('raw');
  if (raw === 0) return null;
  return count('tlog') * 2 >= raw ? 'tlog' : 'raw';
}
