import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { UsageError } from '../../deploy/runtime/options';
import { SIGNATURE_BYTES, type Frame } from './frame';

// MAVLink 2 message signing (https://mavlink.io/en/guide/message_signing.html): a signed
// frame ends with link id (1 byte), timestamp (6 bytes, little-endian, units of 10 µs
// since 2015-01-01 00:00:00 UTC) and signature (6 bytes): the first 48 bits of
// SHA-256(secret key + header + payload + CRC + link id + timestamp).

const KEY_BYTES = 32;
const SIGNATURE_AT = 7;
const SIGNATURE_LEN = 6;
/** 2015-01-01T00:00:00Z in µs: the epoch of signing timestamps. */
const SIGNING_EPOCH_US = 1_420_070_400_000_000;
/** "More than one minute behind" (the spec's 6,000,000 units of 10 µs). */
const MAX_LAG = 6_000_000;

/** Signing keys: one per system id, and one for every other system ('*'). */
export interface SigningKeys {
  bySystem: ReadonlyMap<number, Buffer>;
  other: Buffer | null;
}

/** Why a frame was dropped by the signing check or the sender allow list, as counted in /metrics. */
export const MAVLINK_REFUSALS = ['unsigned', 'no_key', 'bad_signature', 'replayed', 'stale', 'sender_denied'] as const;
export type MavlinkRefusal = (typeof MAVLINK_REFUSALS)[number];

export interface SigningStats {
  /** Frames whose signature, link id and timestamp passed. */
  verified: number;
  /** Frames (datagrams, for sender_denied) dropped, by reason. */
  refused: Record<MavlinkRefusal, number>;
}

export const newSigningStats = (): SigningStats => ({ verified: 0, refused: Object.fromEntries(MAVLINK_REFUSALS.map((r) => [r, 0])) as Record<MavlinkRefusal, number> });

/**
 * The keys of a key file: lines `SYSID=KEY` or `*=KEY` (# starts a comment), KEY as 64
 * hex digits or the base64 of 32 bytes, the form ArduPilot's SETUP_SIGNING and MAVProxy's
 * `signing setup` use (MAVProxy's key is the SHA-256 of its passphrase).
 */
export function parseSigningKeys(text: string, file: string): SigningKeys {
  const bySystem = new Map<number, Buffer>();
  let other: Buffer | null = null;
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const entry = lines[i]!.replace(/#.*/, '').trim();
    if (entry === '') continue;
    const fail = (problem: string): never => {
      throw new UsageError(`--mavlink-keys: ${file}: line ${i + 1}: ${problem}`);
    };
    const m = /^(\*|\d{1,3})\s*=\s*(\S+)$/.exec(entry);
    if (!m) fail('expected SYSID=KEY or *=KEY');
    const [, who, text64] = m!;
    const key = /^[0-9a-fA-F]{64}$/.test(text64!) ? Buffer.from(text64!, 'hex') : /^[A-Za-z0-9+/]{43}=$/.test(text64!) ? Buffer.from(text64!, 'base64') : null;
    if (key === null || key.length !== KEY_BYTES) fail('the key must be 32 bytes: 64 hex digits or 44 characters of base64');
    if (who === '*') {
      if (other !== null) fail('* is given twice');
      other = key;
      continue;
    }
    const sysid = Number(who);
    if (sysid < 1 || sysid > 255) fail(`system id ${sysid} is not in 1..255`);
    if (bySystem.has(sysid)) fail(`system id ${sysid} is given twice`);
    bySystem.set(sysid, key!);
  }
  if (bySystem.size === 0 && other === null) throw new UsageError(`--mavlink-keys: ${file}: holds no key`);
  return { bySystem, other };
}

export function readSigningKeys(file: string): SigningKeys {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new UsageError(`--mavlink-keys: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  return parseSigningKeys(text, file);
}

/** The 48-bit timestamp at `at`, exact in a double (2^48 < 2^53), without a BigInt. */
const readUint48 = (buf: Uint8Array, at: number): number =>
  (buf[at]! | (buf[at + 1]! << 8) | (buf[at + 2]! << 16)) + ((buf[at + 3]! | (buf[at + 4]! << 8) | (buf[at + 5]! << 16)) * 2 ** 24);

/**
 * Verifies signed frames as the spec's "Accepting Signed Packets" says: a frame must be
 * signed; its signature must match its system's key; and its timestamp must be later than
 * the last one accepted on its stream (system id, component id, link id), or, for a
 * stream not seen before, no more than a minute behind this receiver's time (the last
 * accepted timestamp or the clock, whichever is later). Unsigned frames are refused:
 * the spec's exception for unsigned input is --mavlink-unsigned, which runs no check.
 */
export function createSignatureCheck(keys: SigningKeys, stats: SigningStats): (buf: Uint8Array, frame: Frame, nowUs: number) => boolean {
  // Bounded by the streams that signed validly: 256 systems x 256 components x 256 links at most.
  const lastTimestamp = new Map<number, number>();
  let highest = 0;
  const refuse = (reason: MavlinkRefusal): false => {
    stats.refused[reason]++;
    return false;
  };
  return (buf, frame, nowUs) => {
    if (!frame.signed) return refuse('unsigned');
    const key = keys.bySystem.get(frame.sysid) ?? keys.other;
    if (key === null) return refuse('no_key');
    const block = frame.at + frame.total - SIGNATURE_BYTES;
    const expected = createHash('sha256').update(key).update(buf.subarray(frame.at, block + SIGNATURE_AT)).digest();
    if (!timingSafeEqual(expected.subarray(0, SIGNATURE_LEN), buf.subarray(block + SIGNATURE_AT, block + SIGNATURE_AT + SIGNATURE_LEN))) return refuse('bad_signature');
    const linkId = buf[block]!;
    const timestamp = readUint48(buf, block + 1);
    const stream = (frame.sysid << 16) | (frame.compid << 8) | linkId;
    const last = lastTimestamp.get(stream);
    if (last !== undefined) {
      if (timestamp <= last) return refuse('replayed');
    } else if (timestamp + MAX_LAG < Math.max(highest, (nowUs - SIGNING_EPOCH_US) / 10)) {
      return refuse('stale');
    }
    lastTimestamp.set(stream, timestamp);
    if (timestamp > highest) highest = timestamp;
    stats.verified++;
    return true;
  };
}
